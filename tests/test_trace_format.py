"""Trace format v1: round trip, and every malformed line reported with its number."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.errors import TraceError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.traces.format import (
    Label,
    TraceHeader,
    iter_events,
    iter_trace,
    labels_path,
    read_header,
    read_labels,
    write_labels,
    write_trace,
)

TZ = ZoneInfo("Europe/Amsterdam")
HEADER = TraceHeader(
    tz="Europe/Amsterdam",
    home=HomeMap(sensors={"hall": SensorSpec(room="Hallway", role=Role.HALLWAY)}),
)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    events = [
        SensorEvent("hall", EventKind.MOTION, 1.0, 1_790_000_000.0, 1_790_000_000.0),
        SensorEvent("hall", EventKind.MOTION, 0.0, 1_790_000_090.25, 1_790_000_090.25),
        SensorEvent("hall", EventKind.TEMPERATURE, 19.4, 1_790_000_100.0, 5.0e9),
    ]
    path = tmp_path / "t.jsonl"
    assert write_trace(path, HEADER, events) == 3
    assert read_header(path).home == HEADER.home
    assert list(iter_events(path)) == events
    first = path.read_text().splitlines()[1]
    want = {"t": "2026-09-21T16:13:20+02:00", "s": "hall", "k": "motion", "v": 1}
    assert json.loads(first) == want


def test_labels_live_beside_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "home.jsonl"
    assert labels_path(trace).name == "home.labels.jsonl"
    label = Label.model_validate(
        {"type": "activity", "label": "sleeping", "start": "2026-11-10T23:00:00+01:00",
         "end": "2026-11-11T07:00:00+01:00"}
    )
    write_labels(labels_path(trace), [label])
    assert read_labels(labels_path(trace)) == [label]


BAD_LINES = [
    ("{not json", "Expecting property name"),
    ('["a list"]', "must be a JSON object"),
    ('{"t": "2026-11-10T10:00:00+01:00", "s": "hall", "k": "motion"}', "missing field 'v'"),
    ('{"t": "2026-11-10T10:00:00", "s": "hall", "k": "motion", "v": 1}', "no UTC offset"),
    ('{"t": "yesterday", "s": "hall", "k": "motion", "v": 1}', "Invalid isoformat"),
    ('{"t": "2026-11-10T10:00:00+01:00", "s": "hall", "k": "teleport", "v": 1}', "unknown kind"),
    ('{"t": "2026-11-10T10:00:00+01:00", "s": "hall", "k": "motion", "v": "on"}', '"v" must be'),
    ('{"t": "2026-11-10T10:00:00+01:00", "s": "", "k": "motion", "v": 1}', '"s" must be'),
    ('{"t": "2026-11-10T08:00:00+01:00", "s": "hall", "k": "motion", "v": 1}', "earlier than"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_malformed_line_is_reported_with_its_number(
    tmp_path: Path, line: str, message: str
) -> None:
    good = '{"t": "2026-11-10T09:00:00+01:00", "s": "hall", "k": "motion", "v": 1}'
    after = '{"t": "2026-11-10T11:00:00+01:00", "s": "hall", "k": "motion", "v": 0}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([HEADER.model_dump_json(), good, line, after]) + "\n")
    with pytest.raises(TraceError) as info:
        list(iter_events(path))
    assert info.value.line == 3
    assert message in str(info.value)
    assert f"{path}:3" in str(info.value)
    # with a handler: reported, skipped, and the rest still comes
    seen: list[TraceError] = []
    points = list(iter_trace(path, seen.append))
    assert [p.line for p in points] == [2, 4]
    assert [e.line for e in seen] == [3]


@pytest.mark.parametrize(
    ("first", "message"),
    [
        ("", "header is not JSON"),
        ('{"format": "csv"}', "not a trace"),
        ('{"format": "leefsamen-trace", "version": 9}', "version 9 is not supported"),
        (
            '{"format": "leefsamen-trace", "version": 1, "tz": "Mars/Base", "home": {}}',
            "unknown time zone",
        ),
        (
            '{"format": "leefsamen-trace", "version": 1, "tz": "UTC",'
            ' "home": {"sensors": {"x": {"room": "r", "role": "attic"}}}}',
            "home.sensors.x.role",
        ),
    ],
)
def test_a_bad_header_names_line_one(tmp_path: Path, first: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(first + "\n")
    with pytest.raises(TraceError) as info:
        read_header(path)
    assert info.value.line == 1 and message in str(info.value)


def test_wall_clock_flags_and_monotonic_time_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        HEADER.model_dump_json()
        + '\n{"t":"2020-01-01T00:00:00+00:00","s":"hall","k":"motion","v":1,"m":100,"sync":false}\n'
    )
    (point,) = iter_trace(path)
    assert point.synced is False
    assert point.event.mono == 100.0 and point.event.wall == 1_577_836_800.0


def test_bytes_that_are_not_utf8_spoil_only_their_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = b'{"t":"2026-11-10T09:00:00+01:00","s":"hall","k":"motion","v":1}\n'
    bad = b'{"t":"2026-11-10T09:01:00+01:00","s":"hall","k":"mot\xffion","v":1}\n'
    later = good.replace(b"09:00", b"09:02")
    path.write_bytes(HEADER.model_dump_json().encode() + b"\n" + good + bad + later)
    seen: list[TraceError] = []
    assert [p.line for p in iter_trace(path, seen.append)] == [2, 4]
    assert [e.line for e in seen] == [3] and "unknown kind" in str(seen[0])


def test_a_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot open"):
        read_header(tmp_path / "nope.jsonl")


def test_the_fast_time_reader_agrees_with_datetime() -> None:
    """Every canonical time is read to the same float as ``datetime.timestamp()``."""
    import random
    from datetime import datetime, timedelta

    from agent.traces.format import epoch_of, format_time

    rng = random.Random(5)
    for zone in ("Europe/Amsterdam", "America/St_Johns", "Asia/Kolkata", "UTC"):
        tz = ZoneInfo(zone)
        base = datetime(2026, 1, 1, tzinfo=tz).timestamp()
        for _ in range(3000):
            wall = base + rng.uniform(0, 366 * 86400)
            wall = round(wall, rng.choice([0, 3, 6]))
            text = format_time(wall, tz)
            assert epoch_of(text) == datetime.fromisoformat(text).timestamp(), text
    for text in ("2026-11-10T10:00:00.5+01:00", "2026-11-10T10:00:00.123456-03:30"):
        assert epoch_of(text) == datetime.fromisoformat(text).timestamp()
    assert epoch_of("2026-11-10T09:00:00Z") == epoch_of("2026-11-10T10:00:00+01:00")
    assert timedelta(seconds=epoch_of("2026-03-29T03:00:00+02:00") - epoch_of(
        "2026-03-29T01:59:59+01:00")) == timedelta(seconds=1)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-10T10:61:00+01:00",
        "2026-11-10T10:00:60+01:00",
        "2026-13-10T10:00:00+01:00",
        "2026-11-10T25:00:00+01:00",
        "2026-11-10T10: 5:00+01:00",
        "2026-11-10T10:00:00",
        "2026-11-10T10:00:00+01:0x",
    ],
)
def test_the_fast_time_reader_refuses_what_datetime_refuses(text: str) -> None:
    from agent.traces.format import epoch_of

    with pytest.raises(ValueError):
        epoch_of(text)
