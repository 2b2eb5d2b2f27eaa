"""Importers of recorded homes: the real Ordóñez and van Kasteren homes, and each quirk
of their formats on small literal samples (those run everywhere)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.errors import TraceError
from agent.events import EventKind, SensorEvent
from agent.homemap import Role
from agent.traces.format import iter_trace, labels_path, read_labels
from agent.traces.importing import (
    Imported,
    Interval,
    activity_name,
    interval_events,
    kebab_case,
    localize,
    localize_span,
    save,
    snake_case,
)
from agent.traces.info import render, trace_info
from agent.traces.kasteren import SENSOR_NAMES, import_kasteren
from agent.traces.ordonez import import_ordonez, parse_sensor_rows

MADRID = ZoneInfo("Europe/Madrid")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _events_of(imported: Imported) -> Counter[tuple[str, float, float]]:
    return Counter((e.sensor, e.value, e.wall) for e in imported.events)


def _times(trace: Path) -> list[str]:
    return [json.loads(line)["t"] for line in trace.read_text().splitlines()[1:]]


def _saved(imported: Imported, tmp_path: Path) -> Path:
    out = tmp_path / "home.jsonl"
    save(imported, out)
    return out


# ---- common parts ------------------------------------------------------------------------


def test_localize_moves_a_spring_gap_time_forward() -> None:
    # 2011-03-27 02:30 does not exist in Madrid: clocks went from 02:00 to 03:00.
    moved = localize(datetime(2011, 3, 27, 2, 30), MADRID)
    assert moved.isoformat() == "2011-03-27T03:30:00+02:00"


def test_localize_takes_the_first_of_an_autumn_double_hour() -> None:
    # 2011-10-30 02:30 happened twice in Madrid; the first time was still summer time.
    first = localize(datetime(2011, 10, 30, 2, 30), MADRID)
    assert first.isoformat() == "2011-10-30T02:30:00+02:00"
    assert localize(datetime(2011, 10, 30, 3, 30), MADRID).utcoffset() != first.utcoffset()


def test_a_span_that_starts_in_the_gap_is_kept_with_no_length() -> None:
    start, end, moved = localize_span(
        datetime(2008, 3, 30, 2, 30), datetime(2008, 3, 30, 3, 10), AMSTERDAM
    )
    assert moved
    assert start == end
    assert start.isoformat() == "2008-03-30T03:30:00+02:00"


def test_names_become_sensor_ids_and_label_names() -> None:
    assert kebab_case("Hall-Bedroom door") == "hall-bedroom-door"
    assert kebab_case("Salón") == "salon"
    assert snake_case("Spare_Time/TV") == "spare_time_tv"
    assert activity_name("leave house", {"leave_house": "leaving"}) == "leaving"
    assert activity_name("prepare Breakfast", {}) == "prepare_breakfast"


def test_lines_end_only_at_newlines_whatever_latin1_holds() -> None:
    from agent.traces.importing import split_lines

    # U+0085 is an ordinary Latin-1 byte (0x85); str.splitlines would break the row there.
    assert split_lines("Sal\x85n\tPIR\r\nBed\tPressure") == ["Sal\x85n\tPIR", "Bed\tPressure"]


def test_intervals_become_on_and_off_events_in_time_order_ties_in_file_order() -> None:
    events = interval_events(
        [
            Interval("door", EventKind.CONTACT, 10.0, 20.0, 3),
            Interval("door", EventKind.CONTACT, 20.0, 30.0, 4),
            Interval("fridge", EventKind.CONTACT, 15.0, 15.0, 5),
        ]
    )
    assert [(e.sensor, e.value, e.wall) for e in events] == [
        ("door", 1.0, 10.0),
        ("fridge", 1.0, 15.0),
        ("fridge", 0.0, 15.0),
        ("door", 0.0, 20.0),
        ("door", 1.0, 20.0),
        ("door", 0.0, 30.0),
    ]


# ---- Ordóñez: literal samples ------------------------------------------------------------

ORDONEZ_SENSORS = (
    "Start time          \tEnd time            \tLocation\tType\t\tPlace\r\n"
    "--------------------\t--------------------\t--------\t--------\t-----\r\n"
    "2011-11-28 02:27:59\t\t2011-11-28 10:18:11\t\tBed\t\t\tPressure\tBedroom\r\n"
    "2011-11-28 10:21:24\t\t2011-11-28 10:21:31\t\tCabinet\t\tMagnetic\tBathroom  \t \r\n"
    "\r\n"
    "2011-11-28 10:30:00\t\t2011-11-28 10:29:00\t\tToilet\t\tFlush\t\tBathroom\r\n"
    "this is not a row\r\n"
    "2011-11-28 10:40:00\t\t2011-11-28 10:41:00\t\tSalón\t\tPIR\t\t\tLiving\r\n"
    "2011-11-28 10:45:00\t\t2011-11-28 10:45:30\t\tMaindoor\tMagnetic\tEntrance\r\n"
    "2011-11-28 10:50:00\t\t2011-11-28 10:55:00\t\tRadar\t\tSonar\t\tLiving\r\n"
    "2011-11-28 11:00:00\t\t2011-11-28 11:00:00\t\tToilet\t\tFlush\t\tBathroom"
)
ORDONEZ_ADLS = (
    "Start time          \tEnd time            \tActivity\t\r\n"
    "--------------------\t--------------------\t--------\r\n"
    "2011-11-28 02:27:59\t\t2011-11-28 10:18:11\t\tSleeping\t\t\r\n"
    "2011-11-28 10:21:24\t\t2011-11-28 10:23:36\t\t\t\t\r\n"
    "2011-11-28 10:45:00\t\t2011-11-28 12:00:00\t\tLeaving\t\r\n"
    "2011-12-02 12:20:41\t\t2011-12-01 10:20:59\t\tGrooming\t\r\n"
    "2011-11-28 13:00:00\t\t2011-11-28 14:00:00\t\tSpare_Time/TV\t\t\r\n"
    "2011-11-28 14:00:00\t\t2011-11-28 14:05:00\t\tToileting"
)


@pytest.fixture
def ordonez_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ordonez"
    folder.mkdir()
    (folder / "HomeX_Sensors.txt").write_bytes(ORDONEZ_SENSORS.encode("latin-1"))
    (folder / "HomeX_ADLs.txt").write_bytes(ORDONEZ_ADLS.encode("latin-1"))
    return folder


def test_ordonez_sample_reads_crlf_latin1_and_repeated_tabs(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    sensors = imported.header.home.sensors
    assert set(sensors) == {"bed", "cabinet", "salon", "maindoor", "toilet"}
    assert sensors["salon"].label == "Salón"
    assert sensors["salon"].role is Role.LIVING  # not in the table: from its room
    assert sensors["cabinet"].room == "bathroom"  # trailing whitespace dropped
    assert imported.activations == 5
    assert len(imported.events) == 10


def test_ordonez_interval_ending_before_it_starts_is_skipped_with_its_line(
    ordonez_dir: Path,
) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    assert any(w.startswith("HomeX_Sensors.txt:6:") and "before" in w for w in imported.warnings)
    toilet = [e for e in imported.events if e.sensor == "toilet"]
    assert len(toilet) == 2  # only the row on the last line


def test_ordonez_garbage_line_is_skipped_with_its_line(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    assert any(w.startswith("HomeX_Sensors.txt:7:") for w in imported.warnings)


def test_ordonez_unknown_sensor_type_is_reported_with_its_count(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    assert "radar" not in imported.header.home.sensors
    assert any("'Sonar'" in w and "1 row(s)" in w for w in imported.warnings)


def test_ordonez_zero_length_interval_gives_on_then_off(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    toilet = [e for e in imported.events if e.sensor == "toilet"]
    assert [e.value for e in toilet] == [1.0, 0.0]
    assert toilet[0].wall == toilet[1].wall


def test_ordonez_blank_and_backwards_labels_are_skipped(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir], MADRID)
    assert [lb.label for lb in imported.labels] == [
        "sleeping",
        "leaving",
        "spare_time_tv",
        "toileting",
    ]
    assert any(w.startswith("HomeX_ADLs.txt:4:") and "blank" in w for w in imported.warnings)
    assert any(w.startswith("HomeX_ADLs.txt:6:") and "before" in w for w in imported.warnings)


def test_ordonez_labels_are_optional(ordonez_dir: Path) -> None:
    imported = import_ordonez([ordonez_dir / "HomeX_Sensors.txt"], MADRID)
    assert imported.labels == []
    assert imported.activations == 5


def test_ordonez_parse_keeps_line_numbers() -> None:
    from agent.traces.importing import Warnings, split_lines

    warn = Warnings()
    rows = parse_sensor_rows(split_lines(ORDONEZ_SENSORS), "s.txt", warn)
    assert [r.line for r in rows] == [3, 4, 8, 9, 10, 11]
    assert rows[0].start == datetime(2011, 11, 28, 2, 27, 59)


def test_ordonez_two_homes_in_one_folder_is_an_error(ordonez_dir: Path) -> None:
    (ordonez_dir / "HomeY_Sensors.txt").write_bytes(ORDONEZ_SENSORS.encode("latin-1"))
    with pytest.raises(TraceError, match="more than one home"):
        import_ordonez([ordonez_dir], MADRID)


def test_ordonez_file_with_no_rows_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "Nothing_Sensors.txt"
    path.write_text("Start time\tEnd time\tLocation\tType\tPlace\r\n", encoding="latin-1")
    with pytest.raises(TraceError, match="no sensor rows"):
        import_ordonez([path], MADRID)


# ---- van Kasteren: literal samples -------------------------------------------------------

KASTEREN_SENSE = (
    "Start time: Time sensor started firing\r\n"
    "End time: Time sensor stopped firing\r\n"
    "ID: sensor id (see list below)\r\n"
    "val: value of sensor (always 1)\r\n"
    "\r\n"
    "Sensor IDs are: \r\n"
    "    [ 5]    'Hall-Toilet door'  \r\n"
    "    [12]    'Frontdoor'         \r\n"
    "    [14]    'ToiletFlush'       \r\n"
    "    [30]    'Garden door'       \r\n"
    "\r\n"
    "Start time          \tEnd time            \tID\tVal\r\n"
    "--------------------\t--------------------\t--\t---\r\n"
    "29-Mar-2008 23:10:00\t29-Mar-2008 23:10:05\t12\t1\r\n"
    "30-Mar-2008 09:00:00\t30-Mar-2008 08:59:00\t5\t1\r\n"
    "30-Mar-2008 09:30:00\t30-Mar-2008 09:30:04\t14\t1\r\n"
    "garbage\r\n"
    "30-Mar-2008 09:40:00\t30-Mar-2008 09:40:02\t99\t1\r\n"
    "30-Mar-2008 10:00:00\t30-Mar-2008 10:00:09\t30\t0\r\n"
    "30-Mar-2008 02:30:00\t30-Mar-2008 03:10:00\t5\t1\r\n"
    "Length: 9"
)
KASTEREN_ACT = (
    "Start time: start of an activity\r\n"
    "ID: activity id (see list below)\r\n"
    "\r\n"
    "activity id list:\r\n"
    "1: 'leave house'\r\n"
    "4: 'use toilet'\r\n"
    "21:'water plants'\r\n"
    "\r\n"
    "Start time          \tEnd time            \tID\r\n"
    "--------------------\t--------------------\t--\r\n"
    "29-Mar-2008 23:10:00\t30-Mar-2008 09:00:00\t1\r\n"
    "30-Mar-2008 09:30:00\t30-Mar-2008 09:31:00\t4\r\n"
    "30-Mar-2008 10:00:00\t30-Mar-2008 10:05:00\t21\r\n"
    "30-Mar-2008 11:00:00\t30-Mar-2008 11:05:00\t8\r\n"
    "Length: 4"
)


@pytest.fixture
def kasteren_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "kasteren"
    folder.mkdir()
    (folder / "kasterenSenseData.txt").write_bytes(KASTEREN_SENSE.encode("latin-1"))
    (folder / "kasterenActData.txt").write_bytes(KASTEREN_ACT.encode("latin-1"))
    return folder


def test_kasteren_sensor_names_come_from_the_header(kasteren_dir: Path) -> None:
    imported = import_kasteren([kasteren_dir], AMSTERDAM)
    sensors = imported.header.home.sensors
    assert set(sensors) == {"hall-toilet-door", "frontdoor", "toiletflush", "garden-door"}
    assert sensors["garden-door"].label == "Garden door"  # not a name of the 2008 house
    assert sensors["garden-door"].role is Role.OTHER
    assert any("'Garden door'" in w for w in imported.warnings)


def test_kasteren_without_an_id_list_falls_back_to_the_2008_names(tmp_path: Path) -> None:
    path = tmp_path / "kasterenSenseData.txt"
    path.write_text(
        "Start time\tEnd time\tID\tVal\r\n---\t---\t--\t---\r\n"
        "25-Feb-2008 09:37:51\t25-Feb-2008 09:37:52\t14\t1\r\n",
        encoding="latin-1",
    )
    imported = import_kasteren([path], AMSTERDAM)
    assert imported.events[0].sensor == kebab_case(SENSOR_NAMES[14])
    assert any("no sensor id list" in w for w in imported.warnings)


def test_kasteren_quirks_each_have_a_defined_outcome(kasteren_dir: Path) -> None:
    imported = import_kasteren([kasteren_dir], AMSTERDAM)
    warnings = imported.warnings
    assert any(w.startswith("kasterenSenseData.txt:15:") and "before" in w for w in warnings)
    assert any(w.startswith("kasterenSenseData.txt:17:") for w in warnings)  # garbage
    assert any(w.startswith("kasterenSenseData.txt:18:") and "99" in w for w in warnings)
    assert any(w.startswith("kasterenSenseData.txt:19:") and "'0'" in w for w in warnings)
    assert any("footer says 9" in w and "has 7" in w for w in warnings)
    # rows on lines 14, 16, 19 (value 0, still imported) and 20 (in the DST gap)
    assert imported.activations == 4
    assert sorted({e.sensor for e in imported.events}) == [
        "frontdoor",
        "garden-door",
        "hall-toilet-door",
        "toiletflush",
    ]


def test_kasteren_interval_starting_in_the_dst_gap_is_kept(kasteren_dir: Path) -> None:
    imported = import_kasteren([kasteren_dir], AMSTERDAM)
    assert any(w.startswith("kasterenSenseData.txt:20:") and "gap" in w for w in imported.warnings)
    door = [e for e in imported.events if e.sensor == "hall-toilet-door"]
    assert [e.value for e in door] == [1.0, 0.0]
    moved = localize(datetime(2008, 3, 30, 3, 30), AMSTERDAM).timestamp()
    assert door[0].wall == door[1].wall == moved


def test_kasteren_offsets_change_at_the_dst_switch(kasteren_dir: Path, tmp_path: Path) -> None:
    times = _times(_saved(import_kasteren([kasteren_dir], AMSTERDAM), tmp_path))
    assert times[0] == "2008-03-29T23:10:00+01:00"
    assert "2008-03-30T09:30:00+02:00" in times
    assert times == sorted(times, key=datetime.fromisoformat)


def test_kasteren_activities_from_the_act_header(kasteren_dir: Path) -> None:
    imported = import_kasteren([kasteren_dir], AMSTERDAM)
    assert [lb.label for lb in imported.labels] == ["leaving", "toileting", "water_plants"]
    assert any(w.startswith("kasterenActData.txt:14:") and "8" in w for w in imported.warnings)


def test_kasteren_acts_are_optional(kasteren_dir: Path) -> None:
    imported = import_kasteren([kasteren_dir / "kasterenSenseData.txt"], AMSTERDAM)
    assert imported.labels == []


# ---- the real homes ------------------------------------------------------------------------

_ORDONEZ_ROW = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_KASTEREN_ROW = re.compile(r"^\d\d-[A-Z][a-z]{2}-\d{4} ")


def _ordonez_rows(path: Path) -> list[list[str]]:
    """The data rows of an Ordóñez file, read here independently of the importer."""
    text = path.read_bytes().decode("latin-1")
    return [
        [f.strip() for f in line.split("\t") if f.strip()]
        for line in text.split("\r\n")
        if _ORDONEZ_ROW.match(line)
    ]


def _kasteren_rows(path: Path) -> list[list[str]]:
    text = path.read_bytes().decode("latin-1")
    return [line.split("\t") for line in text.split("\r\n") if _KASTEREN_ROW.match(line)]


def _wall(text: str, fmt: str, tz: ZoneInfo) -> float:
    return datetime.strptime(text, fmt).replace(tzinfo=tz).timestamp()


@pytest.fixture
def ordonez_a(shared_data: Path) -> Path:
    return shared_data / "ordonez-home-a"


@pytest.fixture
def kasteren(shared_data: Path) -> Path:
    return shared_data / "kasteren-2008"


@pytest.mark.realdata
def test_ordonez_a_has_409_activations_and_818_events(ordonez_a: Path) -> None:
    imported = import_ordonez([ordonez_a], MADRID)
    assert len(_ordonez_rows(ordonez_a / "OrdonezA_Sensors.txt")) == 409
    assert imported.activations == 409
    assert len(imported.events) == 818
    assert not [w for w in imported.warnings if "Sensors" in w]


@pytest.mark.realdata
def test_ordonez_a_every_interval_is_an_on_and_an_off_event(ordonez_a: Path) -> None:
    imported = import_ordonez([ordonez_a], MADRID)
    expected: Counter[tuple[str, float, float]] = Counter()
    fmt = "%Y-%m-%d %H:%M:%S"
    for start, end, name, *_ in _ordonez_rows(ordonez_a / "OrdonezA_Sensors.txt"):
        expected[(name.lower(), 1.0, _wall(start, fmt, MADRID))] += 1
        expected[(name.lower(), 0.0, _wall(end, fmt, MADRID))] += 1
    assert _events_of(imported) == expected


@pytest.mark.realdata
def test_ordonez_a_sensors_have_their_rooms_and_roles(ordonez_a: Path) -> None:
    sensors = import_ordonez([ordonez_a], MADRID).header.home.sensors
    assert len(sensors) == 12
    assert (sensors["bed"].role, sensors["bed"].kind) == (Role.BED, EventKind.PRESSURE)
    assert sensors["seat"].role is Role.SEAT
    assert sensors["maindoor"].role is Role.FRONT_DOOR
    assert (sensors["toilet"].role, sensors["toilet"].kind) == (Role.TOILET, EventKind.FLUSH)
    assert sensors["bed"].room == "bedroom"
    assert sensors["fridge"].role is Role.KITCHEN


@pytest.mark.realdata
def test_ordonez_a_labels_go_to_the_side_file_only(ordonez_a: Path, tmp_path: Path) -> None:
    imported = import_ordonez([ordonez_a], MADRID)
    rows = _ordonez_rows(ordonez_a / "OrdonezA_ADLs.txt")
    backwards = [r for r in rows if r[1] < r[0]]
    assert len(imported.labels) == len(rows) - len(backwards)
    assert len([w for w in imported.warnings if "before it starts" in w]) == len(backwards)
    leaving = sum(1 for r in rows if r[2] == "Leaving" and r[1] >= r[0])
    assert sum(1 for lb in imported.labels if lb.label == "leaving") == leaving > 0
    out = _saved(imported, tmp_path)
    assert read_labels(labels_path(out)) == imported.labels
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(imported.events)
    assert all('"type"' not in line and '"label":"' not in line for line in lines[1:])


@pytest.mark.realdata
def test_ordonez_a_reads_back_in_order_with_madrid_offsets(
    ordonez_a: Path, tmp_path: Path
) -> None:
    imported = import_ordonez([ordonez_a], MADRID)
    out = _saved(imported, tmp_path)
    walls = [p.event.wall for p in iter_trace(out)]
    assert walls == sorted(walls)
    assert walls == [e.wall for e in imported.events]
    assert all(t.endswith("+01:00") for t in _times(out))
    assert imported.header.start is not None
    assert imported.header.start.isoformat() == "2011-11-28T00:00:00+01:00"


@pytest.mark.realdata
def test_ordonez_a_info_reports_two_weeks(ordonez_a: Path, tmp_path: Path) -> None:
    imported = import_ordonez([ordonez_a], MADRID)
    info = trace_info(_saved(imported, tmp_path))
    assert 14 <= info.days < 15
    assert info.events == len(imported.events)
    assert sum(info.per_day.values()) == info.events
    assert info.labels == len(imported.labels)
    assert sum(s.events for s in info.sensors) == info.events
    assert "maindoor" in render(info)


@pytest.mark.realdata
def test_kasteren_has_1319_activations_and_2638_events(kasteren: Path) -> None:
    imported = import_kasteren([kasteren], AMSTERDAM)
    assert len(_kasteren_rows(kasteren / "kasterenSenseData.txt")) == 1319
    assert imported.activations == 1319
    assert len(imported.events) == 2638
    assert imported.warnings == []


@pytest.mark.realdata
def test_kasteren_every_interval_is_an_on_and_an_off_event(kasteren: Path) -> None:
    imported = import_kasteren([kasteren], AMSTERDAM)
    names = {
        int(m[1]): m[2]
        for m in re.finditer(
            r"\[\s*(\d+)\]\s*'([^']*)'", (kasteren / "kasterenSenseData.txt").read_text("latin-1")
        )
    }
    fmt = "%d-%b-%Y %H:%M:%S"
    expected: Counter[tuple[str, float, float]] = Counter()
    for start, end, ident, _value in _kasteren_rows(kasteren / "kasterenSenseData.txt"):
        sid = kebab_case(names[int(ident)])
        expected[(sid, 1.0, _wall(start, fmt, AMSTERDAM))] += 1
        expected[(sid, 0.0, _wall(end, fmt, AMSTERDAM))] += 1
    assert _events_of(imported) == expected


@pytest.mark.realdata
def test_kasteren_sensors_have_their_rooms_and_roles(kasteren: Path) -> None:
    sensors = import_kasteren([kasteren], AMSTERDAM).header.home.sensors
    assert len(sensors) == 14
    assert sensors["frontdoor"].role is Role.FRONT_DOOR
    assert (sensors["toiletflush"].role, sensors["toiletflush"].kind) == (
        Role.TOILET,
        EventKind.FLUSH,
    )
    assert sensors["hall-bedroom-door"].role is Role.BEDROOM
    assert sensors["hall-toilet-door"].role is Role.TOILET
    assert sensors["microwave"].kind is EventKind.APPLIANCE
    assert sensors["cups-cupboard"].kind is EventKind.CONTACT
    assert not any(s.kind is EventKind.MOTION for s in sensors.values())


@pytest.mark.realdata
def test_kasteren_labels_go_to_the_side_file_only(kasteren: Path, tmp_path: Path) -> None:
    imported = import_kasteren([kasteren], AMSTERDAM)
    rows = _kasteren_rows(kasteren / "kasterenActData.txt")
    assert len(imported.labels) == len(rows)
    leave = sum(1 for r in rows if r[2].strip() == "1")
    assert sum(1 for lb in imported.labels if lb.label == "leaving") == leave > 0
    assert {"sleeping", "toileting", "showering"} <= {lb.label for lb in imported.labels}
    out = _saved(imported, tmp_path)
    assert len(read_labels(labels_path(out))) == len(rows)
    assert all('"label":"' not in line for line in out.read_text().splitlines()[1:])


@pytest.mark.realdata
def test_kasteren_reads_back_in_order_with_amsterdam_offsets(
    kasteren: Path, tmp_path: Path
) -> None:
    imported = import_kasteren([kasteren], AMSTERDAM)
    out = _saved(imported, tmp_path)
    points = list(iter_trace(out))
    assert len(points) == 2638
    assert [p.event.wall for p in points] == sorted(p.event.wall for p in points)
    assert all(t.endswith("+01:00") for t in _times(out))
    assert imported.header.start is not None
    assert imported.header.start.isoformat() == "2008-02-25T00:00:00+01:00"


@pytest.mark.realdata
def test_kasteren_info_reports_four_weeks(kasteren: Path, tmp_path: Path) -> None:
    imported = import_kasteren([kasteren], AMSTERDAM)
    info = trace_info(_saved(imported, tmp_path))
    assert 27 <= info.days <= 28.5
    assert info.events == 2638
    assert info.labels == len(imported.labels)
    assert info.kinds.get("motion") is None
    assert set(info.kinds) == {"contact", "flush", "appliance"}


def test_info_without_labels_and_with_a_bad_line(tmp_path: Path) -> None:
    from agent.homemap import HomeMap, SensorSpec
    from agent.traces.format import TraceHeader, write_trace

    header = TraceHeader(
        tz="Europe/Amsterdam",
        home=HomeMap(sensors={"hall": SensorSpec(room="hall", role=Role.HALLWAY)}),
    )
    t0 = datetime(2026, 1, 5, 23, 0, tzinfo=AMSTERDAM).timestamp()
    events = [
        SensorEvent("hall", EventKind.MOTION, float(i % 2), t0 + 1800 * i, t0 + 1800 * i)
        for i in range(4)
    ]
    path = tmp_path / "t.jsonl"
    write_trace(path, header, events)
    with path.open("a") as fh:
        fh.write("{broken\n")
    info = trace_info(path)
    assert info.labels is None
    assert info.events == 4
    assert info.bad_lines == 1
    assert [(d.isoformat(), n) for d, n in info.per_day.items()] == [
        ("2026-01-05", 2),
        ("2026-01-06", 2),
    ]
    text = render(info)
    assert "no labels side file" in text
    assert "1 malformed line" in text
