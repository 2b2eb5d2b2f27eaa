"""CASAS importer: both separators, any fraction of a second, the area variant, labels,
the sensor map, and a defined outcome for every broken line. Sample files are in
tests/data/casas/ (written for these tests, in the CASAS layout)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.errors import ConfigError, TraceError
from agent.events import EventKind
from agent.homemap import Role
from agent.traces.casas import (
    SNIFF_LINES,
    guess_kind,
    import_casas,
    load_sensor_map,
    parse_line,
    parse_sensor_map,
    parse_time,
)
from agent.traces.format import iter_trace, labels_path, read_labels
from agent.traces.importing import Imported, localize, save

DATA = Path(__file__).parent / "data" / "casas"
MAP = DATA / "home.toml"
PULLMAN = ZoneInfo("America/Los_Angeles")

#: What classic-tabs.txt (and classic-spaces.txt) hold, line by line, once imported.
CLASSIC_EVENTS = [
    ("m003", EventKind.MOTION, 1.0, "2010-11-04 00:03:50.209589"),
    ("m003", EventKind.MOTION, 0.0, "2010-11-04 00:03:57.399391"),
    ("t002", EventKind.TEMPERATURE, 21.5, "2010-11-04 00:15:08.984841"),
    ("m003", EventKind.MOTION, 1.0, "2010-11-04 00:30:19.185547"),
    ("m003", EventKind.MOTION, 0.0, "2010-11-04 00:30:19.200000"),
    ("m004", EventKind.MOTION, 1.0, "2010-11-04 05:40:51"),
    ("l005", EventKind.APPLIANCE, 1.0, "2010-11-04 05:40:52.012300"),
    ("batp001", EventKind.BATTERY, 87.0, "2010-11-04 05:41:10.500000"),
    ("d001", EventKind.CONTACT, 1.0, "2010-11-04 05:43:00.123456"),
    ("d001", EventKind.CONTACT, 0.0, "2010-11-04 05:43:05.000001"),
    ("d001", EventKind.CONTACT, 1.0, "2010-11-04 07:12:45.300000"),
    ("d001", EventKind.CONTACT, 0.0, "2010-11-04 07:12:47.300000"),
    ("l005", EventKind.APPLIANCE, 0.0, "2010-11-04 07:20:00"),
    ("t002", EventKind.TEMPERATURE, 22.0, "2010-11-04 07:25:00"),
    ("m003", EventKind.MOTION, 1.0, "2010-11-04 07:30:00"),
    ("m003", EventKind.MOTION, 0.0, "2010-11-04 07:33:00"),
    ("ls001", EventKind.ILLUMINANCE, 312.0, "2010-11-04 07:40:00"),
    ("m004", EventKind.MOTION, 0.0, "2010-11-04 07:41:00"),
]
CLASSIC_LABELS = [
    ("sleeping", "2010-11-04 00:03:50.209589", "2010-11-04 05:40:51"),
    ("leaving", "2010-11-04 05:43:00.123456", "2010-11-04 07:12:47.300000"),
    ("bed_to_toilet", "2010-11-04 07:30:00", "2010-11-04 07:33:00"),
]
AREA_LABELS = [
    ("sleeping", "2012-07-20 08:00:00.500000", "2012-07-20 08:00:03.250000"),
    ("toileting", "2012-07-20 08:05:00", "2012-07-20 08:05:30.100000"),
    ("cook", "2012-07-20 08:10:00.000001", "2012-07-20 08:15:10"),
    ("leaving", "2012-07-20 08:20:00", "2012-07-20 08:20:04"),
    ("enter_home", "2012-07-20 09:40:00", "2012-07-20 09:40:03"),
    ("cook", "2012-07-20 09:41:00", "2012-07-20 09:42:00"),
]


def _wall(text: str) -> float:
    return localize(datetime.fromisoformat(text), PULLMAN).timestamp()


def _events(imported: Imported) -> list[tuple[str, EventKind, float, float]]:
    return [(e.sensor, e.kind, e.value, e.wall) for e in imported.events]


def _labels(imported: Imported) -> list[tuple[str, float, float | None]]:
    return [
        (lb.label, lb.start.timestamp(), lb.end.timestamp() if lb.end else None)
        for lb in imported.labels
    ]


def _write(tmp_path: Path, text: str, name: str = "data.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def classic() -> Imported:
    return import_casas(DATA / "classic-tabs.txt", PULLMAN, MAP)


# ---- lines and values ----------------------------------------------------------------------


def test_readings_come_out_with_kind_value_and_exact_time(classic: Imported) -> None:
    assert _events(classic) == [(s, k, v, _wall(t)) for s, k, v, t in CLASSIC_EVENTS]


def test_tabs_and_spaces_give_the_same_trace(classic: Imported) -> None:
    spaced = import_casas(DATA / "classic-spaces.txt", PULLMAN, MAP)
    assert _events(spaced) == _events(classic)
    assert _labels(spaced) == _labels(classic)


@pytest.mark.parametrize(
    ("clock", "micro"),
    [
        ("00:03:50.209589", 209589),
        ("00:03:50.2", 200000),
        ("00:03:50.0123", 12300),
        ("00:03:50.12345678", 123456),
        ("00:03:50", 0),
    ],
)
def test_fractions_of_a_second_of_any_length(clock: str, micro: int) -> None:
    assert parse_time("2010-11-04", clock) == datetime(2010, 11, 4, 0, 3, 50, micro)


def test_temperatures_are_numbers(classic: Imported) -> None:
    temps = [(e.kind, e.value) for e in classic.events if e.sensor == "t002"]
    assert temps == [(EventKind.TEMPERATURE, 21.5), (EventKind.TEMPERATURE, 22.0)]


def test_battery_lines_are_battery_levels(classic: Imported) -> None:
    battery = [(e.kind, e.value) for e in classic.events if e.sensor == "batp001"]
    assert battery == [(EventKind.BATTERY, 87.0)]


def test_light_switches_are_appliances_and_light_levels_illuminance(classic: Imported) -> None:
    switch = [(e.kind, e.value) for e in classic.events if e.sensor == "l005"]
    assert switch == [(EventKind.APPLIANCE, 1.0), (EventKind.APPLIANCE, 0.0)]
    level = [(e.kind, e.value) for e in classic.events if e.sensor == "ls001"]
    assert level == [(EventKind.ILLUMINANCE, 312.0)]


def test_activations_are_the_on_readings_of_activity_sensors(classic: Imported) -> None:
    expected = sum(
        1
        for _, kind, value, _ in CLASSIC_EVENTS
        if value == 1.0 and kind in {EventKind.MOTION, EventKind.CONTACT, EventKind.APPLIANCE}
    )
    assert classic.activations == expected


# ---- labels -------------------------------------------------------------------------------


def test_begin_and_end_pairs_become_activity_labels(classic: Imported) -> None:
    assert _labels(classic) == [(n, _wall(a), _wall(b)) for n, a, b in CLASSIC_LABELS]
    assert all(lb.type == "activity" and lb.room is None for lb in classic.labels)


def test_area_variant_per_line_labels_become_runs() -> None:
    imported = import_casas(DATA / "area-variant.txt", PULLMAN, MAP)
    assert _labels(imported) == [(n, _wall(a), _wall(b)) for n, a, b in AREA_LABELS]


def test_area_variant_reads_the_sensor_not_the_area() -> None:
    imported = import_casas(DATA / "area-variant.txt", PULLMAN, MAP)
    assert {e.sensor for e in imported.events} == {
        "m012",
        "ma015",
        "ls001",
        "d003",
        "t101",
        "m020",
        "d001",
    }
    # 19 lines, one of them from a sensor the map does not know
    assert len(imported.events) == 18
    assert imported.events[-1].sensor == "m020"  # the last line is tab separated


def test_area_column_after_the_sensor_and_a_type_column_are_read() -> None:
    line = parse_line("2012-07-20 09:41:00 M020 Kitchen ON Control4-Motion Cook", 7, {"M020"})
    assert (line.sensor, line.area, line.value, line.label) == ("M020", "Kitchen", "ON", "Cook")
    # without a map, the column shaped like a sensor id is the sensor
    line = parse_line("2012-07-20 08:00:00 Bedroom M012 ON Sleep", 8)
    assert (line.sensor, line.area, line.value, line.label) == ("M012", "Bedroom", "ON", "Sleep")


def test_activity_names_with_spaces_and_per_line_labels_in_the_classic_layout(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        "2010-11-04 10:00:00 M003 ON R1 work in office begin\n"
        "2010-11-04 10:05:00 M003 OFF\n"
        "2010-11-04 10:30:00 M003 ON R1 work in office end\n"
        "2010-11-04 11:00:00 M003 ON Relax\n"
        "2010-11-04 11:00:30 M003 OFF Relax\n"
        "2010-11-04 11:05:00 M003 ON\n",
    )
    imported = import_casas(path, PULLMAN, MAP)
    assert [lb.label for lb in imported.labels] == ["r1_work_in_office", "relax"]
    relax = imported.labels[1]
    assert relax.end is not None
    assert (relax.end - relax.start).total_seconds() == 30


def test_unmatched_begin_and_end_are_warned_and_give_no_label(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "2010-11-04 10:00:00 M003 ON Cooking end\n"
        "2010-11-04 10:01:00 M003 OFF Eating begin\n"
        "2010-11-04 10:02:00 M003 ON Eating begin\n"
        "2010-11-04 10:03:00 M003 OFF Sleeping begin\n"
        "2010-11-04 10:04:00 M003 ON Eating end\n",
    )
    imported = import_casas(path, PULLMAN, MAP)
    assert [lb.label for lb in imported.labels] == ["eating"]
    start = imported.labels[0].start
    assert start.isoformat() == "2010-11-04T10:01:00-07:00"  # the second begin is ignored
    warnings = imported.warnings
    assert any(w.startswith("data.txt:1:") and "never began" in w for w in warnings)
    assert any(w.startswith("data.txt:3:") and "begins again" in w for w in warnings)
    assert any(w.startswith("data.txt:4:") and "never ends" in w for w in warnings)
    assert len(imported.events) == 5


# ---- broken input ---------------------------------------------------------------------------


def test_unknown_sensor_is_reported_with_its_count_not_fatal(classic: Imported) -> None:
    assert "m099" not in classic.header.home.sensors
    assert any("'M099'" in w and "2 line(s)" in w and "line 16" in w for w in classic.warnings)
    assert len(classic.events) == len(CLASSIC_EVENTS)


def test_unknown_value_word_is_reported_with_its_count(classic: Imported) -> None:
    assert any("'ONc'" in w and "1 line(s)" in w and "line 14" in w for w in classic.warnings)


def test_malformed_line_is_reported_with_its_number(classic: Imported) -> None:
    numbered = [w for w in classic.warnings if re.match(r"classic-tabs\.txt:\d+:", w)]
    assert len(numbered) == 1
    assert numbered[0].startswith("classic-tabs.txt:11:")


def test_a_file_that_is_not_casas_is_a_trace_error(tmp_path: Path) -> None:
    lines = [json.dumps({"t": f"2026-01-01T00:00:{i:02d}+01:00", "s": "x"}) for i in range(30)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(TraceError, match="not a CASAS recording") as err:
        import_casas(path, PULLMAN, MAP)
    assert err.value.line == 1


def test_twenty_bad_lines_at_the_top_mean_not_casas_whatever_follows(tmp_path: Path) -> None:
    path = _write(tmp_path, "x y z w\n" * SNIFF_LINES + "2010-11-04 10:00:00 M003 ON\n")
    with pytest.raises(TraceError, match="not a CASAS recording"):
        import_casas(path, PULLMAN, MAP)


def test_an_empty_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="empty"):
        import_casas(_write(tmp_path, "\n\n"), PULLMAN, MAP)


def test_bad_lines_at_the_top_of_a_casas_file_are_only_warnings(tmp_path: Path) -> None:
    path = _write(tmp_path, "# exported 2010-11-05\n\n2010-11-04 10:00:00 M003 ON\n")
    imported = import_casas(path, PULLMAN, MAP)
    assert len(imported.events) == 1
    assert any(w.startswith("data.txt:1:") for w in imported.warnings)


def test_missing_source_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        import_casas(tmp_path / "absent.txt", PULLMAN, MAP)


# ---- the sensor map -------------------------------------------------------------------------


def test_sensor_map_gives_rooms_roles_and_kinds(classic: Imported) -> None:
    sensors = classic.header.home.sensors
    assert (sensors["d001"].role, sensors["d001"].room) == (Role.FRONT_DOOR, "hall")
    assert sensors["m004"].role is Role.BED
    assert sensors["m004"].label == "motion over the bed"
    assert sensors["m003"].label == "M003"  # no label in the map: the CASAS id
    assert sensors["d003"].kind is EventKind.CONTACT  # given
    assert sensors["p001"].kind is EventKind.PRESSURE  # given; P suggests nothing
    assert sensors["ma015"].kind is EventKind.MOTION  # guessed
    assert classic.header.source == load_sensor_map(MAP).source


@pytest.mark.parametrize(
    ("sensor", "kind"),
    [
        ("M003", EventKind.MOTION),
        ("MA015", EventKind.MOTION),
        ("D001", EventKind.CONTACT),
        ("T102", EventKind.TEMPERATURE),
        ("L005", EventKind.APPLIANCE),
        ("LS001", EventKind.ILLUMINANCE),
        ("B01", EventKind.BATTERY),
        ("BATP001", EventKind.BATTERY),
        ("AD1-A", None),
        ("X17", None),
    ],
)
def test_kinds_are_guessed_from_the_id_prefix(sensor: str, kind: EventKind | None) -> None:
    assert guess_kind(sensor) is kind


def test_broken_map_lists_every_problem_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        load_sensor_map(DATA / "broken-map.toml")
    assert {p.where for p in err.value.problems} == {
        "colour",
        "sensors.M001.role",
        "sensors.X17.kind",
        "sensors.D002.room",
        "sensors.D002.kind",
    }
    assert "broken-map.toml" in str(err.value)


def test_map_that_is_not_toml_says_where() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_sensor_map('[sensors.M001]\nroom = "bedroom\n', "map.toml")


def test_map_ids_that_clash_or_are_unusable_are_problems() -> None:
    text = (
        '[sensors.M004]\nroom = "a"\nrole = "bedroom"\n'
        '[sensors.m004]\nroom = "a"\nrole = "bedroom"\n'
        '[sensors."#"]\nroom = "a"\nrole = "bedroom"\nkind = "motion"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_sensor_map(text, "map.toml")
    wheres = [p.where for p in err.value.problems]
    assert "sensors.m004" in wheres
    assert "sensors.#" in wheres


def test_a_map_with_no_sensors_is_a_problem() -> None:
    with pytest.raises(ConfigError) as err:
        parse_sensor_map('source = "x"\n[sensors]\n', "map.toml")
    assert [p.where for p in err.value.problems] == ["sensors"]


def test_a_broken_map_stops_the_import_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        import_casas(tmp_path / "absent.txt", PULLMAN, DATA / "broken-map.toml")


# ---- the written trace -----------------------------------------------------------------------


def test_written_trace_reads_back_in_order_with_pacific_offsets(
    classic: Imported, tmp_path: Path
) -> None:
    out = tmp_path / "casas.jsonl"
    save(classic, out)
    points = list(iter_trace(out))
    assert [p.event.sensor for p in points] == [e.sensor for e in classic.events]
    # the trace keeps milliseconds
    pairs = zip(points, classic.events, strict=True)
    assert all(abs(p.event.wall - e.wall) < 0.001 for p, e in pairs)
    times = [json.loads(line)["t"] for line in out.read_text().splitlines()[1:]]
    assert all(t.endswith("-07:00") for t in times)
    assert classic.header.start is not None
    assert classic.header.start.isoformat() == "2010-11-04T00:00:00-07:00"
    assert read_labels(labels_path(out)) == classic.labels
    assert '"activity"' not in out.read_text()


def test_lines_out_of_order_are_sorted_ties_in_file_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "2010-11-04 10:00:05 M003 OFF\n"
        "2010-11-04 10:00:00 M003 ON\n"
        "2010-11-04 10:00:05 M004 ON\n",
    )
    imported = import_casas(path, PULLMAN, MAP)
    assert [(e.sensor, e.value) for e in imported.events] == [
        ("m003", 1.0),
        ("m003", 0.0),
        ("m004", 1.0),
    ]


def test_autumn_double_hour_is_read_as_its_first_occurrence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "2010-11-07 00:59:00 M003 ON\n"
        "2010-11-07 01:30:00 M003 OFF\n"
        "2010-11-07 02:10:00 M003 ON\n",
    )
    imported = import_casas(path, PULLMAN, MAP)
    offsets = [datetime.fromtimestamp(e.wall, PULLMAN).utcoffset() for e in imported.events]
    hours = [o.total_seconds() / 3600 for o in offsets if o is not None]
    assert hours == [-7, -7, -8]
