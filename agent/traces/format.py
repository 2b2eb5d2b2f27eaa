"""Trace format v1: JSON Lines, a header line then one event per line.

See ``docs/trace-format.md`` for the full description. In short::

    {"format": "leefsamen-trace", "version": 1, "tz": "Europe/Madrid",
     "start": "2011-11-28T00:00:00+01:00", "end": "2011-12-12T00:00:00+01:00",
     "source": "...", "home": {"sensors": {"bed": {"room": "Bedroom", "role": "bed"}}}}
    {"t": "2011-11-28T02:27:59+01:00", "s": "bed", "k": "pressure", "v": 1}

Optional per event: ``"m"`` monotonic seconds (when the recording's wall clock jumped)
and ``"sync": false`` (the wall clock was not synchronised at that moment).

Activity labels and known incidents live in a side file ``<trace>.labels.jsonl``; they
are for evaluation only and are never read by the replay driver or the detectors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from math import isfinite
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import TraceError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap

FORMAT_NAME: Final = "leefsamen-trace"
FORMAT_VERSION: Final = 1

_KINDS: dict[str, EventKind] = {k.value: k for k in EventKind}


class TraceHeader(BaseModel):
    """The first line of a trace."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["leefsamen-trace"] = FORMAT_NAME
    version: Literal[1] = FORMAT_VERSION
    tz: str
    home: HomeMap
    start: datetime | None = None
    end: datetime | None = Field(
        default=None, description="when the recording ended; silence up to here is data too"
    )
    source: str | None = None
    generator: dict[str, Any] | None = None

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("times need a UTC offset, for example +01:00")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


class Label(BaseModel):
    """One line of a labels side file: an activity or a known incident."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["activity", "incident"]
    label: str
    start: datetime
    end: datetime | None = None
    room: str | None = None
    expect: list[str] = Field(
        default_factory=list, description="alert kinds an incident should raise"
    )


OnError = Callable[[TraceError], None]


def labels_path(trace: Path) -> Path:
    """``home.jsonl`` -> ``home.labels.jsonl``."""
    name = trace.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return trace.with_name(stem + ".labels.jsonl")


def _parse_header(path: str, line: str) -> TraceHeader:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise TraceError(path, 1, f"header is not JSON: {err.msg}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise TraceError(
            path, 1, f'not a trace: the first line must have "format": "{FORMAT_NAME}"'
        )
    if raw.get("version") != FORMAT_VERSION:
        raise TraceError(
            path, 1, f"trace format version {raw.get('version')!r} is not supported (want 1)"
        )
    try:
        return TraceHeader.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TraceError(path, 1, f"header: {where}: {first['msg']}") from err


def _open(path: Path) -> IO[str]:
    # A byte that is not UTF-8 becomes U+FFFD: its line then fails to parse, or names a
    # sensor nobody knows, and is reported as such instead of ending the whole file.
    try:
        return path.open("r", encoding="utf-8", errors="replace")
    except OSError as err:
        raise TraceError(str(path), 0, f"cannot open: {err.strerror}") from err


def read_header(path: Path) -> TraceHeader:
    with _open(path) as fh:
        return _parse_header(str(path), fh.readline())


def _raise(err: TraceError) -> None:
    raise err


def parse_event(obj: Any) -> SensorEvent:
    """One decoded event line to a ``SensorEvent``; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("an event line must be a JSON object")
    try:
        t = obj["t"]
        sensor = obj["s"]
        kind_name = obj["k"]
        value = obj["v"]
    except KeyError as err:
        raise ValueError(f"missing field {err.args[0]!r}") from None
    if type(t) is not str:
        raise ValueError('"t" must be an ISO 8601 time string')
    wall = epoch_of(t)
    if type(sensor) is not str or not sensor:
        raise ValueError('"s" must be a sensor id')
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise ValueError(f"unknown kind {kind_name!r}")
    vtype = type(value)
    if vtype is not float and vtype is not int and vtype is not bool:
        raise ValueError(f'"v" must be a number or a boolean, not {value!r}')
    value = float(value)
    if not isfinite(value):
        raise ValueError(f'"v" must be a finite number, not {value!r}')
    mono = obj.get("m", wall)
    if type(mono) is not float and type(mono) is not int:
        raise ValueError('"m" must be a number')
    return SensorEvent(sensor, kind, value, wall, float(mono))


class TracePoint(NamedTuple):
    """An event plus the line-level facts the replay driver needs."""

    event: SensorEvent
    synced: bool
    line: int


# POSIX seconds of the start of each (local hour, UTC offset) seen: a year of a home has
# fewer than 9,000, and most lines of a trace then need no date arithmetic at all.
_HOUR_START: dict[str, int] = {}
_TIME = r"(\d{4}-\d\d-\d\dT\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d:\d\d)"
_TIME_RE = re.compile(_TIME + "$")

# The canonical event line, as written by ``event_line``; any other shape (extra fields,
# spaces, escapes, booleans, other time forms) is read by the JSON parser instead, with
# the same result.
_CANONICAL = re.compile(
    r'\{"t":"' + _TIME + r'","s":"([^"\\]+)","k":"([a-z_]+)",'
    r'"v":(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)\}\s*$'
)

# Built without the generated ``__new__`` of a named tuple: a C call instead of a Python one.
_new_tuple = tuple.__new__


def _iso_epoch(t: str) -> float:
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError(f'"t" {t!r} has no UTC offset')
    return dt.timestamp()


# microseconds in one unit of a fraction of 1 to 6 digits
_FRACTION_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)


def _hour_start(hour: str, offset: str) -> int:
    start = int(_iso_epoch(f"{hour}:00:00{offset}"))  # checks the date, hour and offset
    if len(_HOUR_START) > 100_000:
        _HOUR_START.clear()
    _HOUR_START[hour + offset] = start
    return start


def _epoch(hour: str, minute: str, second: str, frac: str | None, offset: str) -> float:
    """Exactly ``datetime.timestamp()`` of the parts of a canonical time.

    ``iter_trace`` has this inlined on its hot path; keep the two alike.
    """
    start = _HOUR_START.get(hour + offset) or _hour_start(hour, offset)
    m = int(minute)
    s = int(second)
    if m > 59 or s > 59:
        raise ValueError(f'"t" {hour}:{minute}:{second} is not a valid time')
    if frac is None:
        return float(start + m * 60 + s)
    # the same integer microseconds and one division as datetime.timestamp()
    return ((start + m * 60 + s) * 1_000_000 + int(frac) * _FRACTION_SCALE[len(frac)]) / 1_000_000


def epoch_of(t: str) -> float:
    """POSIX seconds of an ISO 8601 time with a UTC offset, exactly as ``datetime`` does it.

    ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]+HH:MM``, the form this format writes, is read through a
    cache of hour starts; anything else goes through ``datetime.fromisoformat``.
    """
    m = _TIME_RE.match(t)
    if m is None:
        return _iso_epoch(t)
    return _epoch(*m.groups())


def iter_trace(path: Path, on_error: OnError | None = None) -> Iterator[TracePoint]:
    """Events of a trace in order. The header is checked first.

    A malformed or out-of-order line raises ``TraceError`` naming its line, or, with
    ``on_error``, is handed to it and skipped.
    """
    handle = on_error or _raise
    spath = str(path)
    kinds = _KINDS
    match = _CANONICAL.match
    loads = json.loads
    hour_start = _HOUR_START
    scale = _FRACTION_SCALE
    new = _new_tuple
    with _open(path) as fh:
        _parse_header(spath, fh.readline())
        last_mono = float("-inf")
        for lineno, line in enumerate(fh, start=2):
            synced = True
            try:
                m = match(line)
                if m is not None:
                    hour, minute, second, frac, offset, sensor, kind_name, v = m.groups()
                    kind = kinds.get(kind_name)
                    if kind is None:
                        raise ValueError(f"unknown kind {kind_name!r}")
                    value = float(v)
                    if not isfinite(value):
                        raise ValueError(f'"v" must be a finite number, not {v}')
                    # _epoch, inlined: this runs for every line of a trace
                    start = hour_start.get(hour + offset) or _hour_start(hour, offset)
                    mi = int(minute)
                    se = int(second)
                    if mi > 59 or se > 59:
                        raise ValueError(f'"t" {hour}:{minute}:{second} is not a valid time')
                    if frac is None:
                        wall = float(start + mi * 60 + se)
                    else:
                        us = int(frac) * scale[len(frac)]
                        wall = ((start + mi * 60 + se) * 1_000_000 + us) / 1_000_000
                    event = new(SensorEvent, (sensor, kind, value, wall, wall))
                else:
                    if not line.strip():
                        continue
                    obj = loads(line)
                    event = parse_event(obj)
                    synced = obj.get("sync", True) is not False
            except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
                msg = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                handle(TraceError(spath, lineno, msg))
                continue
            if event.mono < last_mono:
                handle(TraceError(spath, lineno, "event is earlier than the line before it"))
                continue
            last_mono = event.mono
            yield new(TracePoint, (event, synced, lineno))


def iter_events(path: Path, on_error: OnError | None = None) -> Iterator[SensorEvent]:
    for point in iter_trace(path, on_error):
        yield point.event


def format_time(wall: float, tz: ZoneInfo) -> str:
    """POSIX seconds to ISO 8601 local time with offset; fractions only when present."""
    dt = datetime.fromtimestamp(wall, tz=tz)
    if dt.microsecond == 0:
        return dt.isoformat(timespec="seconds")
    return dt.isoformat(timespec="milliseconds" if dt.microsecond % 1000 == 0 else "microseconds")


def event_line(event: SensorEvent, tz: ZoneInfo, synced: bool = True) -> str:
    obj: dict[str, Any] = {
        "t": format_time(event.wall, tz),
        "s": event.sensor,
        "k": event.kind.value,
        "v": int(event.value) if event.value.is_integer() else event.value,
    }
    if event.mono != event.wall:
        obj["m"] = event.mono
    if not synced:
        obj["sync"] = False
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def header_line(header: TraceHeader) -> str:
    return header.model_dump_json(exclude_none=True)


def write_trace(out: Path | IO[str], header: TraceHeader, events: Iterable[SensorEvent]) -> int:
    """Write a whole trace; returns the number of events written."""
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="\n") as fh:
            return write_trace(fh, header, events)
    tz = header.zone
    out.write(header_line(header) + "\n")
    n = 0
    for event in events:
        out.write(event_line(event, tz) + "\n")
        n += 1
    return n


def write_labels(path: Path, labels: Iterable[Label]) -> int:
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for label in labels:
            fh.write(label.model_dump_json(exclude_none=True) + "\n")
            n += 1
    return n


def read_labels(path: Path) -> list[Label]:
    labels: list[Label] = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                labels.append(Label.model_validate_json(line))
            except ValidationError as err:
                raise TraceError(str(path), lineno, str(err.errors()[0]["msg"])) from err
    return labels
