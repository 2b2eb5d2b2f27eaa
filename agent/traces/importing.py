"""What every importer of a recorded home shares: the result, local times, labels, saving.

The recorded homes give naive local wall times. ``localize`` turns them into real instants
with one fixed rule for the two daylight-saving edge cases, so that every importer, and
every run of one importer, gives the same trace:

- a time that does not exist (spring forward, e.g. 02:30 on the last Sunday of March in
  Europe) moves forward by the size of the gap: 02:30 becomes 03:30 summer time;
- a time that exists twice (autumn back, 02:30 on the last Sunday of October) is taken
  as its first occurrence (``fold=0``, still summer time).

The second rule can put the events of the repeated hour on top of the first hour; a
recording that crosses an autumn change shows that as an hour with twice the events.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.errors import TraceError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.traces.format import Label, TraceHeader, labels_path, write_labels, write_trace


@dataclass
class Imported:
    """A recorded home turned into trace format v1, with what the importer had to skip.

    ``activations`` counts what the sensors reported as use: the sensor intervals of an
    interval dataset (each gives an "on" and an "off" event), or the "on" readings of
    activity kinds in an event dataset. ``warnings`` are for people: each says what was
    skipped or guessed and, where there is one, the line.
    """

    header: TraceHeader
    events: list[SensorEvent]
    labels: list[Label]
    activations: int
    warnings: list[str]


def save(imported: Imported, out: Path) -> None:
    """Write the trace to ``out`` and its labels to the side file beside it."""
    write_trace(out, imported.header, imported.events)
    write_labels(labels_path(out), imported.labels)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time as an aware time in ``tz`` (see the module doc for DST).

    A non-existent time moves forward by the gap; an ambiguous one is its first
    occurrence. The result carries the offset that is really in force at that instant.
    """
    if naive.tzinfo is not None:
        raise ValueError("localize wants a naive local time")
    # fold=0 makes zoneinfo use the offset from before the transition: for a gap that
    # is the winter offset (so the instant lands after the gap), for an overlap the
    # summer offset (the first occurrence). The round trip through UTC then gives the
    # wall time and offset really in force at that instant.
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz)


def localize_span(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[datetime, datetime, bool]:
    """Both ends of a naive local span, localized; True when the end had to be moved.

    A start inside a spring-forward gap moves forward by the gap and can pass an end
    just after the gap (02:30 -> 03:30, end 03:10). The span then ends where it starts:
    it is kept, as a span of no length, rather than lost.
    """
    first = localize(start, tz)
    last = localize(end, tz)
    if last < first:
        return first, first, True
    return first, last, False


#: The warning that goes with ``localize_span`` returning True.
GAP_WARNING = "starts in the daylight-saving gap, moved past its end; it now ends where it starts"


def local_midnight(instant: datetime, tz: ZoneInfo) -> datetime:
    """Midnight at the start of the local calendar day that holds ``instant``."""
    day = instant.astimezone(tz).date()
    return localize(datetime.combine(day, time()), tz)


_NOT_WORD = re.compile(r"[^0-9a-z]+")


def snake_case(name: str) -> str:
    """``"Spare_Time/TV"`` -> ``"spare_time_tv"``, ``"go to bed"`` -> ``"go_to_bed"``."""
    return _NOT_WORD.sub("_", _fold_accents(name).lower()).strip("_")


def kebab_case(name: str) -> str:
    """``"Hall-Bedroom door"`` -> ``"hall-bedroom-door"``: the form of a sensor id in a trace."""
    return _NOT_WORD.sub("-", _fold_accents(name).lower()).strip("-")


def _fold_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


#: Names of the common label vocabulary that detectors and evaluations rely on. Each
#: dataset's table maps its own names (in snake_case) onto these; a name that is not in
#: a table is kept as the snake_case of the original.
LEAVING = "leaving"
SLEEPING = "sleeping"
TOILETING = "toileting"
SHOWERING = "showering"


def activity_name(original: str, table: Mapping[str, str]) -> str:
    """The label name for a dataset's activity ``original``, through that dataset's table."""
    key = snake_case(original)
    return table.get(key, key)


def activity_label(
    original: str, start: datetime, end: datetime, tz: ZoneInfo, table: Mapping[str, str]
) -> tuple[Label, bool]:
    """An activity label from a naive local span; True when the gap rule moved its end."""
    first, last, moved = localize_span(start, end, tz)
    label = Label(type="activity", label=activity_name(original, table), start=first, end=last)
    return label, moved


def build_header(
    tz: ZoneInfo,
    home: HomeMap,
    events: Iterable[SensorEvent],
    labels: Iterable[Label],
    *,
    source: str,
    generator: dict[str, Any] | None = None,
) -> TraceHeader:
    """The header of an imported trace.

    ``start`` is local midnight of the first day that has an event or a label; ``end``
    is the later of the last event and the last label end, so that the silence after
    the last event is part of the recording too.
    """
    firsts: list[datetime] = []
    lasts: list[datetime] = []
    walls = [e.wall for e in events]
    if walls:
        firsts.append(datetime.fromtimestamp(min(walls), tz))
        lasts.append(datetime.fromtimestamp(max(walls), tz))
    for label in labels:
        firsts.append(label.start)
        lasts.append(label.end or label.start)
    start = local_midnight(min(firsts), tz) if firsts else None
    end = max(lasts).astimezone(tz) if lasts else None
    return TraceHeader(
        tz=tz.key, home=home, start=start, end=end, source=source, generator=generator
    )


@dataclass(frozen=True, slots=True)
class Interval:
    """A sensor that was on from ``start`` to ``end`` (POSIX seconds); ``line`` is its row."""

    sensor: str
    kind: EventKind
    start: float
    end: float
    line: int


def interval_events(intervals: Iterable[Interval]) -> list[SensorEvent]:
    """Each interval as an "on" (1) and an "off" (0) event, sorted by time.

    The sort is stable, so events at the same instant keep the order of the file (and an
    interval's "on" stays before its own "off" when both fall on the same second).
    """
    events: list[SensorEvent] = []
    for iv in intervals:
        events.append(SensorEvent(iv.sensor, iv.kind, 1.0, iv.start, iv.start))
        events.append(SensorEvent(iv.sensor, iv.kind, 0.0, iv.end, iv.end))
    events.sort(key=_wall)
    return events


def _wall(event: SensorEvent) -> float:
    return event.wall


@dataclass
class Warnings:
    """Warnings for people, with a cap on line-level ones so a broken file stays readable."""

    limit: int = 200
    messages: list[str] = field(default_factory=list)
    suppressed: int = 0

    def line(self, source: str, line: int, message: str) -> None:
        """A problem on one line of ``source``, written as ``source:line: message``."""
        if len(self.messages) >= self.limit:
            self.suppressed += 1
            return
        self.messages.append(f"{source}:{line}: {message}")

    def note(self, message: str) -> None:
        """A problem with no single line (counts, missing files); never suppressed."""
        self.messages.append(message)

    def result(self) -> list[str]:
        if self.suppressed:
            return [*self.messages, f"... and {self.suppressed} more line warning(s)"]
        return list(self.messages)


def read_text(path: Path, encoding: str) -> str:
    """A whole source file as text; an unreadable file is a ``TraceError`` on line 0."""
    try:
        return path.read_bytes().decode(encoding)
    except OSError as err:
        raise TraceError(str(path), 0, f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise TraceError(str(path), 0, f"not {encoding} text: {err.reason}") from err


def split_lines(text: str) -> list[str]:
    """Lines without their ends, for CRLF and LF files alike.

    Only ``\\n`` ends a line: ``str.splitlines`` would also split on characters such as
    U+0085, which Latin-1 text can hold as an ordinary byte.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def finish(
    importer: str,
    tz: ZoneInfo,
    home: HomeMap,
    events: list[SensorEvent],
    labels: list[Label],
    activations: int,
    warn: Warnings,
    *,
    source: str,
    files: Iterable[str],
) -> Imported:
    """The header and the result of an import, made alike by every importer."""
    messages = warn.result()
    header = build_header(
        tz,
        home,
        events,
        labels,
        source=source,
        generator={
            "importer": importer,
            "files": list(files),
            "activations": activations,
            "warnings": len(messages),
        },
    )
    return Imported(header, events, labels, activations, messages)
