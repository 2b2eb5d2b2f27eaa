"""Time-of-day arithmetic in the home's own time zone, daylight-saving changes included."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def seconds_of_day(t: time) -> float:
    """``t`` as seconds since midnight on the wall clock."""
    return t.hour * 3600.0 + t.minute * 60.0 + t.second


def in_window(t: time, start: time, end: time) -> bool:
    """``start <= t < end`` on a 24-hour dial; the window may cross midnight."""
    if start <= end:
        return start <= t < end
    return t >= start or t < end


def _at(day: datetime, t: time, tz: ZoneInfo) -> float:
    """POSIX seconds of wall-clock time ``t`` on the local date of ``day``.

    A time that does not exist (spring forward) is read with the offset before the change,
    which lands it just after the gap; an ambiguous one (autumn) takes the first.
    """
    return datetime.combine(day.date(), t, tzinfo=tz).timestamp()


def boundaries(
    start: float, tz: ZoneInfo, marks: tuple[time, ...], days: int = 4
) -> Iterator[float]:
    """Every moment after ``start`` (for ``days`` days) at which the local time is a mark."""
    d0 = datetime.fromtimestamp(start, tz=tz)
    found: list[float] = []
    for i in range(days + 1):
        day = d0 + timedelta(days=i)
        for mark in marks:
            ts = _at(day, mark, tz)
            if ts > start:
                found.append(ts)
    yield from sorted(set(found))


def first_crossing(
    start: float,
    limit_at: Callable[[float], float],
    tz: ZoneInfo,
    marks: tuple[time, ...],
    horizon_days: int = 4,
) -> float:
    """The first moment ``t >= start`` at which ``t - start >= limit_at(t)``.

    ``limit_at`` is constant between the ``marks`` (local times where the limit changes),
    so each stretch between two marks is checked once. Past the horizon the limit of the
    last stretch applies.
    """
    seg_start = start
    limit = limit_at(start)
    for edge in boundaries(start, tz, marks, horizon_days):
        candidate = max(seg_start, start + limit)
        if candidate < edge:
            return candidate
        seg_start = edge
        limit = limit_at(edge)
    return max(seg_start, start + limit)
