"""A summary of a trace for people: how long, how busy, which sensors, which labels.

``trace_info`` streams the file through ``iter_trace``, so a year of a busy home costs
one pass and no more memory than the counters. Malformed lines are counted and the first
few kept, not raised: a summary is how one finds out that a file has them. A header that
is not a trace header is still a ``TraceError``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from pydantic import ValidationError

from agent.errors import TraceError
from agent.traces.format import Label, iter_trace, labels_path, read_header

#: How many malformed lines ``TraceInfo.problems`` keeps word for word.
KEEP_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class SensorSummary:
    """One sensor: where the header puts it (None when the header does not know it)."""

    sensor: str
    room: str | None
    role: str | None
    kinds: tuple[str, ...]
    events: int


@dataclass
class TraceInfo:
    """What ``trace_info`` found. Times are local to the trace's zone.

    ``start``/``end`` come from the header, or from the first and last event where the
    header has none. ``per_day`` has every local calendar day from start to end, days
    without events included (as 0), so ``mean_per_day`` is the mean over calendar days.
    ``labels`` is None when there is no labels side file.
    """

    path: Path
    tz: str
    source: str | None
    start: datetime | None
    end: datetime | None
    first_event: datetime | None
    last_event: datetime | None
    events: int
    per_day: dict[date, int]
    sensors: list[SensorSummary]
    kinds: dict[str, int]
    labels: int | None
    label_names: dict[str, int] = field(default_factory=dict)
    bad_lines: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def days(self) -> float:
        """Days covered, from start to end, as a fraction."""
        if self.start is None or self.end is None:
            return 0.0
        return (self.end - self.start).total_seconds() / 86400

    @property
    def mean_per_day(self) -> float:
        return self.events / len(self.per_day) if self.per_day else 0.0


def _calendar_days(start: datetime, end: datetime) -> list[date]:
    """Local dates from start's to end's; an end at exactly midnight does not add its day."""
    last = end.date()
    if end.timetz().replace(tzinfo=None) == time() and end > start:
        last -= timedelta(days=1)
    days: list[date] = []
    day = start.date()
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    return days


def trace_info(path: Path) -> TraceInfo:
    """Summarise the trace at ``path`` (and its labels side file, when there is one)."""
    header = read_header(path)
    tz = header.zone
    bad: list[TraceError] = []
    bad_count = 0

    def on_error(err: TraceError) -> None:
        nonlocal bad_count
        bad_count += 1
        if len(bad) < KEEP_PROBLEMS:
            bad.append(err)

    count = 0
    first: float | None = None
    last: float | None = None
    per_sensor: Counter[str] = Counter()
    sensor_kinds: dict[str, set[str]] = {}
    kinds: Counter[str] = Counter()
    per_day: Counter[date] = Counter()
    # Day boundaries are cached: converting every event's time to a local date is the
    # slow part of a long trace, and events come in time order.
    day_start = day_end = float("inf")
    today: date | None = None
    for point in iter_trace(path, on_error):
        event = point.event
        count += 1
        if first is None:
            first = event.wall
        last = event.wall
        per_sensor[event.sensor] += 1
        sensor_kinds.setdefault(event.sensor, set()).add(event.kind.value)
        kinds[event.kind.value] += 1
        if not day_start <= event.wall < day_end:
            today = datetime.fromtimestamp(event.wall, tz).date()
            day_start = datetime.combine(today, time(), tz).timestamp()
            day_end = datetime.combine(today + timedelta(days=1), time(), tz).timestamp()
        assert today is not None
        per_day[today] += 1

    first_event = datetime.fromtimestamp(first, tz) if first is not None else None
    last_event = datetime.fromtimestamp(last, tz) if last is not None else None
    start = header.start.astimezone(tz) if header.start else first_event
    end = header.end.astimezone(tz) if header.end else last_event
    days = _calendar_days(start, end) if start and end else []
    counts = {day: per_day.get(day, 0) for day in days}
    for day, n in per_day.items():  # events outside the header's span still count
        counts.setdefault(day, n)

    sensors: list[SensorSummary] = []
    for sid in sorted(set(header.home.sensors) | set(per_sensor)):
        spec = header.home.get(sid)
        seen = sensor_kinds.get(sid, set())
        kinds_of = tuple(sorted(seen)) or ((spec.kind.value,) if spec and spec.kind else ())
        sensors.append(
            SensorSummary(
                sid,
                spec.room if spec else None,
                spec.role.value if spec else None,
                kinds_of,
                per_sensor.get(sid, 0),
            )
        )

    n_labels, names = _labels(labels_path(path))
    return TraceInfo(
        path=path,
        tz=header.tz,
        source=header.source,
        start=start,
        end=end,
        first_event=first_event,
        last_event=last_event,
        events=count,
        per_day=dict(sorted(counts.items())),
        sensors=sensors,
        kinds=dict(kinds.most_common()),
        labels=n_labels,
        label_names=dict(names.most_common()),
        bad_lines=bad_count,
        problems=[str(err) for err in bad],
    )


def _labels(path: Path) -> tuple[int | None, Counter[str]]:
    """Number of labels and how often each name occurs, streamed; None without a file."""
    names: Counter[str] = Counter()
    if not path.exists():
        return None, names
    n = 0
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                label = Label.model_validate_json(line)
            except (ValidationError, json.JSONDecodeError) as err:
                raise TraceError(str(path), lineno, f"not a label: {err}") from err
            n += 1
            names[label.label] += 1
    return n, names


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _when(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="minutes") if moment else "-"


def _table(head: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render(info: TraceInfo) -> str:
    """The summary as plain text: a few facts, then tables of sensors, kinds and days."""
    lines = [
        f"trace     {info.path}",
        f"source    {info.source or '-'}",
        f"zone      {info.tz}",
        f"from      {_when(info.start)}",
        f"to        {_when(info.end)}",
        f"days      {info.days:.1f} ({len(info.per_day)} calendar day(s))",
        f"events    {info.events} ({info.mean_per_day:.1f} a day on average)",
    ]
    if info.per_day:
        quiet = min(info.per_day, key=lambda d: info.per_day[d])
        busy = max(info.per_day, key=lambda d: info.per_day[d])
        lines.append(
            f"          fewest {info.per_day[quiet]} on {quiet}, "
            f"most {info.per_day[busy]} on {busy}"
        )
    if info.labels is None:
        lines.append("labels    none (no labels side file)")
    else:
        names = ", ".join(f"{name} {n}" for name, n in info.label_names.items())
        lines.append(f"labels    {info.labels}" + (f": {names}" if names else ""))
    if info.bad_lines:
        lines.append(f"problems  {info.bad_lines} malformed line(s) skipped, first ones:")
        lines.extend(f"          {p}" for p in info.problems)
    lines.append("")
    lines += _table(
        ["sensor", "room", "role", "kind", "events"],
        [
            [s.sensor, s.room or "?", s.role or "?", ",".join(s.kinds) or "-", str(s.events)]
            for s in info.sensors
        ],
        right={4},
    )
    lines.append("")
    lines += _table(["kind", "events"], [[k, str(n)] for k, n in info.kinds.items()], right={1})
    lines.append("")
    lines += _table(
        ["day", "events"],
        [[f"{d.isoformat()} {_WEEKDAYS[d.weekday()]}", str(n)] for d, n in info.per_day.items()],
        right={1},
    )
    return "\n".join(lines) + "\n"
