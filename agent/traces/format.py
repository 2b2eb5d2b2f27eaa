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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from math import isfinite
from pathlib import Path
from typing import IO, Any, Final, Literal
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
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError(f'"t" {t!r} has no UTC offset')
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
    wall = dt.timestamp()
    mono = obj.get("m", wall)
    if type(mono) is not float and type(mono) is not int:
        raise ValueError('"m" must be a number')
    return SensorEvent(sensor, kind, value, wall, float(mono))


@dataclass(slots=True)
class TracePoint:
    """An event plus the line-level facts the replay driver needs."""

    event: SensorEvent
    synced: bool
    line: int


def iter_trace(path: Path, on_error: OnError | None = None) -> Iterator[TracePoint]:
    """Events of a trace in order. The header is checked first.

    A malformed or out-of-order line raises ``TraceError`` naming its line, or, with
    ``on_error``, is handed to it and skipped.
    """
    handle = on_error or _raise
    spath = str(path)
    with _open(path) as fh:
        _parse_header(spath, fh.readline())
        last_mono = float("-inf")
        loads = json.loads
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                obj = loads(line)
                event = parse_event(obj)
            except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
                msg = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                handle(TraceError(spath, lineno, msg))
                continue
            if event.mono < last_mono:
                handle(TraceError(spath, lineno, "event is earlier than the line before it"))
                continue
            last_mono = event.mono
            yield TracePoint(event, obj.get("sync", True) is not False, lineno)


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


def write_trace(
    out: Path | IO[str], header: TraceHeader, events: Iterable[SensorEvent]
) -> int:
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
