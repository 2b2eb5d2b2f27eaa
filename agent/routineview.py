"""``hub routine``: what the hub has learned of a home, for people and for developers.

- ``learn_from_trace`` runs the hub's detectors over a whole trace, as the hub would have
  lived it, and returns the routine the person rules learned (``detection.routine``).
- ``render_text`` and ``to_json`` say what is in a routine: days learned, the usual
  get-up and bedtime, bathroom stays, the learned inactivity limits by place and hour,
  and activity by hour of the day.
- ``plot_day`` draws one day of a home for developers: the sensors' events per room, the
  learned normal activity and the alerts of that day. It shows sensor-level data: the
  picture is a local file and must never be sent anywhere (it is not a hub output).

matplotlib is optional (the ``plot`` extra); only ``plot_day`` needs it, imported lazily.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role
from agent.messages import AlertMessage, AlertState, Severity
from agent.traces.format import TraceHeader, TracePoint, iter_trace, read_header
from detection.activity import PERSON_KINDS, is_person_activity
from detection.drive import advance
from detection.engine import Engine
from detection.person import PersonWatch
from detection.routine import PLACE_WORDS, SLOT_S, SLOTS, Place, Routine, RoutineFileError

#: hours of the day shown in the text table of limits (JSON has every hour)
TEXT_HOURS = (0, 3, 6, 9, 12, 15, 18, 21)
DEFAULT_ZONE = "Europe/Amsterdam"
_BARS = "·▁▂▃▄▅▆▇█"  # "·": never active at that hour
_DAY_S = 86400.0

__all__ = [
    "PlotUnavailableError",
    "learn_from_trace",
    "load_routine",
    "plot_day",
    "render_text",
    "settings",
    "to_json",
]


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed: ``pip install 'leefsamen-hub[plot]'``."""


# ---- settings ----------------------------------------------------------------------------
def settings(config: Path | None) -> tuple[DetectionConfig, ZoneInfo]:
    """The ``[detection]`` section and the hub's time zone of a configuration file.

    Without a file: the defaults and ``Europe/Amsterdam``. ``ConfigError`` if it is bad.
    """
    if config is None:
        return DetectionConfig(), ZoneInfo(DEFAULT_ZONE)
    from agent.config import load_config

    loaded = load_config(config)
    return loaded.detection, loaded.zone


def _offline(config: DetectionConfig | None) -> DetectionConfig:
    """The configuration, but the routine kept in memory: never touch a live hub's file."""
    config = config or DetectionConfig()
    routine = config.routine.model_copy(update={"path": None})
    return config.model_copy(update={"routine": routine})


def load_routine(path: Path, config: DetectionConfig | None, tz: ZoneInfo) -> Routine:
    """A saved routine; ``RoutineFileError`` (naming ``path``) for any file it cannot use."""
    cfg = config or DetectionConfig()
    routine = Routine(tz, cfg.routine, cfg.inactivity, cfg.wakeup, cfg.bathroom)
    if path.is_file() and not zipfile.is_zipfile(path):
        # numpy's own words for such a file talk of pickles and of loading it unsafely
        raise RoutineFileError(
            f"{path}: not a routine file (a routine is the .npz archive that "
            "`hub routine show --trace T --save FILE` or the hub writes)"
        )
    routine.load(path)
    routine.refresh(force=True)
    return routine


# ---- running the hub over a trace --------------------------------------------------------
@dataclass
class _Run:
    """An engine driven over a trace in simulated time, recording the alerts raised."""

    header: TraceHeader
    config: DetectionConfig
    clock: SimClock = field(init=False)
    engine: Engine = field(init=False)
    watch: PersonWatch = field(init=False)
    raised: list[AlertMessage] = field(default_factory=list)
    events: int = 0

    def __post_init__(self) -> None:
        self.clock = SimClock(self.header.zone)
        self.engine = Engine(
            "routine", self.clock, self.header.home, _offline(self.config), self._sink
        )
        watch = next((d for d in self.engine.detectors if isinstance(d, PersonWatch)), None)
        if watch is None:
            raise ValueError(
                "the configuration disables every person rule (inactivity, wakeup, bathroom, "
                "night_exit): the hub learns no routine"
            )
        self.watch = watch

    def _sink(self, message: AlertMessage) -> None:
        if message.state is AlertState.RAISED:
            self.raised.append(message)

    def feed(self, point: TracePoint) -> None:
        event = point.event
        if event.sensor not in self.header.home.sensors:
            return
        advance(self.engine, self.clock, event.mono)
        self.clock.set(event.wall, event.mono, point.synced)
        self.engine.on_event(event)
        self.events += 1

    def until_wall(self, wall: float) -> None:
        """Let time pass, without events, until the wall clock shows ``wall``."""
        if self.events == 0:
            return  # the clocks are set by the first event; nothing can be due before it
        gap = wall - self.clock.wall()
        if gap > 0:
            advance(self.engine, self.clock, self.clock.monotonic() + gap)


def learn_from_trace(trace: Path, detection_config: DetectionConfig | None = None) -> Routine:
    """The routine the hub learns running over all of ``trace`` with this configuration.

    The engine has the trace's home map and time zone; the routine is the person
    detector's at the end of the trace. ``TraceError`` for a bad trace; ``ValueError`` when
    the configuration runs no person detector.
    """
    header = read_header(trace)
    run = _Run(header, detection_config or DetectionConfig())
    for point in iter_trace(trace):
        run.feed(point)
    if header.end is not None:
        run.until_wall(header.end.timestamp())
    routine = run.watch.routine
    routine.refresh()
    return routine


# ---- words and numbers -------------------------------------------------------------------
def _clock(seconds: float | None) -> str | None:
    """Local seconds of the day as ``HH:MM`` (a bedtime after midnight wraps round)."""
    if seconds is None or math.isnan(seconds):
        return None
    minutes = round(seconds / 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(seconds: float | None) -> int | None:
    if seconds is None or math.isnan(seconds):
        return None
    return round(seconds / 60)


def _span(seconds: float | None) -> str:
    """``8100`` -> ``"2 h 15"``; ``"-"`` for not known."""
    minutes = _minutes(seconds)
    if minutes is None:
        return "-"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d}"


def _limit_at(routine: Routine, place: Place, hour: int) -> float | None:
    """The learned limit of a quiet spell beginning at ``hour``:00 at ``place``."""
    value = float(routine.limits[place, hour * 4])
    return None if math.isnan(value) else value


def _learned_places(routine: Routine) -> list[Place]:
    return [p for p in Place if not np.isnan(routine.limits[p]).all()]


def _hourly(routine: Routine, weekend: bool) -> list[float]:
    """Share of the quarter-hours of each hour on which the person was active (0..1)."""
    profile = routine.activity_profile(weekend).reshape(24, SLOTS // 24)
    return [round(float(v), 3) for v in profile.mean(axis=1)]


def _spark(values: Iterable[float]) -> str:
    """One character per value in 0..1: a dot for never, the lowest bar for a little."""
    top = len(_BARS) - 1
    return "".join(_BARS[0 if v <= 0 else min(top, max(1, round(v * top)))] for v in values)


def to_json(routine: Routine) -> dict[str, Any]:
    """What ``hub routine show --json`` prints: times as ``HH:MM``, durations in minutes.

    ``inactivity_limits_min`` has, for each place with a learned value, the limit of a
    quiet spell beginning at each hour of the day (null where not learned).
    """
    s = routine.summary()
    limits = {
        place.name.lower(): {
            f"{hour:02d}:00": _minutes(_limit_at(routine, place, hour)) for hour in range(24)
        }
        for place in _learned_places(routine)
    }
    return {
        "time_zone": routine.tz.key,
        "days_seen": s["days_seen"],
        "min_days": routine.cfg.min_days,
        "ready": s["ready"],
        "quiet_spells": s["spells"],
        "getup": {
            "median": _clock(s["getup_median"]),
            "latest": _clock(s["getup_latest"]),
            "limit_weekday": _clock(s["getup_limit_weekday"]),
            "limit_weekend": _clock(s["getup_limit_weekend"]),
        },
        "bedtime": {"median": _clock(s["bedtime_median"])},
        "bathroom": {
            "median_min": _minutes(s["bath_median"]),
            "limit_min": _minutes(s["bath_limit"]),
        },
        "inactivity_limits_min": limits,
        "activity_by_hour": {
            "weekday": _hourly(routine, weekend=False),
            "weekend": _hourly(routine, weekend=True),
        },
    }


def render_text(routine: Routine) -> str:
    """The routine for people: one screen, no sensor-level data."""
    s = routine.summary()
    ready = (
        "ready: the rules use it"
        if s["ready"]
        else f"not ready: the rules use fixed limits until {routine.cfg.min_days} days"
    )
    lines = [
        f"Routine of {s['days_seen']} day(s) learned, {ready}",
        f"  time zone {routine.tz.key}; {s['spells']} quiet spells of a minute or more",
        "",
        f"  get up     median {_clock(s['getup_median']) or '-'}, latest "
        f"{_clock(s['getup_latest']) or '-'}; limit weekdays "
        f"{_clock(s['getup_limit_weekday']) or '-'}, weekends "
        f"{_clock(s['getup_limit_weekend']) or '-'}",
        f"  bedtime    median {_clock(s['bedtime_median']) or '-'}",
        f"  bathroom   median stay {_span(s['bath_median'])}, limit {_span(s['bath_limit'])}",
        "",
    ]
    places = _learned_places(routine)
    if places:
        lines.append("  Inactivity limits: a quiet spell beginning at this hour, at this place")
        head = "".join(f"{h:02d}:00".rjust(9) for h in TEXT_HOURS)
        lines.append(f"  {'':<20}{head}")
        for place in places:
            cells = "".join(_span(_limit_at(routine, place, h)).rjust(9) for h in TEXT_HOURS)
            lines.append(f"  {PLACE_WORDS[place]:<20}{cells}")
    else:
        lines.append("  Inactivity limits: none learned yet")
    lines.append("")
    lines.append("  Activity by hour (share of quarter-hours active)")
    axis = "".join(f"{h:02d}".ljust(6) for h in range(0, 24, 6)).rstrip()
    lines.append(f"  {'':<20}{axis}")
    for name, weekend in (("weekdays", False), ("weekends", True)):
        lines.append(f"  {name:<20}{_spark(_hourly(routine, weekend))}")
    return "\n".join(lines)


# ---- one day in a picture ----------------------------------------------------------------
@dataclass
class _Day:
    """What the plot of one day needs, gathered in one pass over the trace."""

    start: float
    end: float
    events: list[SensorEvent]
    alerts: list[AlertMessage]
    profile: np.ndarray[Any, np.dtype[np.float64]]
    days_learned: int
    ready: bool
    pressed: set[str]  # mats occupied at the start of the day


def _bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    nxt = day + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()


def _check_in_trace(
    trace: Path, day: date, tz: ZoneInfo, first: float | None, last: float | None
) -> None:
    """``ValueError`` unless the trace, from ``first`` to ``last``, covers part of ``day``."""
    start, end = _bounds(day, tz)
    if first is None or last is None:
        raise ValueError(f"{trace}: {day.isoformat()} is not in the trace (no events)")
    if first >= end or last <= start:
        raise ValueError(
            f"{trace}: {day.isoformat()} is not in the trace "
            f"({_date(first, tz)} to {_date(last, tz, end=True)})"
        )


def _gather(trace: Path, header: TraceHeader, day: date, config: DetectionConfig) -> _Day:
    tz = header.zone
    start, end = _bounds(day, tz)
    head_first = header.start.timestamp() if header.start else None
    head_last = header.end.timestamp() if header.end else None
    if head_first is not None and head_last is not None:
        _check_in_trace(trace, day, tz, head_first, head_last)  # before the long part
    run = _Run(header, config)
    points: Iterator[TracePoint] = iter_trace(trace)
    profile: np.ndarray[Any, np.dtype[np.float64]] | None = None
    days_learned, ready = 0, False
    first: float | None = None
    last: float | None = None
    events: list[SensorEvent] = []
    pressed: set[str] = set()

    def snapshot() -> None:
        nonlocal profile, days_learned, ready
        run.until_wall(start)
        routine = run.watch.routine
        profile = routine.activity_profile(day.weekday() >= 5).copy()
        days_learned, ready = routine.days_seen, routine.ready

    for point in points:
        event = point.event
        wall = event.wall
        first = wall if first is None else first
        last = wall
        if wall >= start and profile is None:
            snapshot()
        if wall >= end:
            break
        run.feed(point)
        if wall >= start:
            if is_person_activity(event):
                events.append(event)
        elif event.kind is EventKind.PRESSURE and event.sensor in header.home.sensors:
            if event.value > 0:
                pressed.add(event.sensor)
            else:
                pressed.discard(event.sensor)
    known_first = min((t for t in (head_first, first) if t is not None), default=None)
    known_last = max((t for t in (head_last, last) if t is not None), default=None)
    _check_in_trace(trace, day, tz, known_first, known_last)
    if profile is None:  # the events end before the day; the recording goes on into it
        snapshot()
    assert profile is not None
    run.until_wall(min(end, known_last or end))
    alerts = [a for a in run.raised if start <= a.at.timestamp() < end]
    return _Day(start, end, events, alerts, profile, days_learned, ready, pressed)


def _date(wall: float, tz: ZoneInfo, end: bool = False) -> str:
    """The local date of ``wall``; an ``end`` at midnight belongs to the day before."""
    return datetime.fromtimestamp(wall - 1e-3 if end else wall, tz=tz).date().isoformat()


def _hours(wall: float, tz: ZoneInfo) -> float:
    """Local clock hours since midnight (the activity profile's axis)."""
    t = datetime.fromtimestamp(wall, tz=tz)
    return t.hour + t.minute / 60 + t.second / 3600 + t.microsecond / 3.6e9


_ROLE_ORDER = {role: i for i, role in enumerate(Role)}


def _rooms(home: HomeMap, events: Iterable[SensorEvent]) -> list[str]:
    """Rooms with activity sensors (or events), the bedroom first, the way Role lists them."""
    rank: dict[str, int] = {}
    seen = {e.sensor for e in events}
    for sid, spec in home.sensors.items():
        if sid in seen or spec.kind in PERSON_KINDS:
            order = _ROLE_ORDER[spec.role]
            rank[spec.room] = min(order, rank.get(spec.room, order))
    return sorted(rank, key=lambda room: (rank[room], room))


_SEVERITY_COLOUR = {
    Severity.URGENT: "#c0392b",
    Severity.WARNING: "#e67e22",
    Severity.INFO: "#2471a3",
}


def plot_day(
    trace: Path, day: date, out: Path, detection_config: DetectionConfig | None = None
) -> Path:
    """Draw one day of the home in ``trace`` to ``out`` (PNG); returns ``out``.

    The routine is learned from the trace up to the start of ``day``; the engine then
    goes on over the day and the alerts it raises that day are marked. The picture shows
    sensor-level data: a local file for developers, never to be sent anywhere.

    ``PlotUnavailableError`` without matplotlib; ``TraceError`` for a bad trace;
    ``ValueError`` when ``day`` is not in the trace.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotUnavailableError(
            "hub routine plot needs matplotlib: install the plot extra, "
            "pip install 'leefsamen-hub[plot]'"
        ) from err

    header = read_header(trace)
    tz = header.zone
    data = _gather(trace, header, day, detection_config or DetectionConfig())
    home = header.home
    rooms = _rooms(home, data.events)
    row = {room: i for i, room in enumerate(rooms)}

    fig = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])

    # the person's events, one row per room; a mat's occupied spans as bars
    ticks: dict[str, list[float]] = {room: [] for room in rooms}
    mats: dict[str, float] = dict.fromkeys(data.pressed, 0.0)
    spans: dict[str, list[tuple[float, float]]] = {room: [] for room in rooms}
    for event in data.events:
        spec = home.sensors[event.sensor]
        x = _hours(event.wall, tz)
        ticks[spec.room].append(x)
        if event.kind is EventKind.PRESSURE:
            if event.value > 0:
                mats.setdefault(event.sensor, x)
            elif event.sensor in mats:
                on = mats.pop(event.sensor)
                spans[spec.room].append((on, max(x - on, 0.02)))
    for sensor, on in mats.items():  # still on the mat at midnight
        spans[home.sensors[sensor].room].append((on, 24.0 - on))
    for room in rooms:
        y = row[room]
        if spans[room]:
            top.broken_barh(spans[room], (y - 0.3, 0.6), color="#aed6f1", zorder=1)
        if ticks[room]:
            top.vlines(ticks[room], y - 0.35, y + 0.35, color="#1b4f72", lw=0.6, zorder=2)
    top.set_yticks(range(len(rooms)), rooms)
    top.set_ylim(len(rooms) - 0.5, -0.5)
    top.set_ylabel("person activity")
    top.grid(axis="x", color="#dddddd", lw=0.5)

    # what is normal on such a day, learned before it
    kind = "weekend" if day.weekday() >= 5 else "weekday"
    hours = np.arange(SLOTS + 1) * SLOT_S / 3600.0
    share = np.append(data.profile, data.profile[-1])  # the last step reaches 24:00
    bottom.fill_between(hours, share, step="post", color="#82e0aa", alpha=0.8, lw=0)
    bottom.step(hours, share, where="post", color="#1e8449", lw=0.8)
    learned = f"learned from {data.days_learned} day(s) before this one"
    if not data.ready:
        learned += ", not ready yet"
    bottom.set_ylabel(f"usual activity\n({kind})")
    days = "weekend days" if day.weekday() >= 5 else "weekdays"
    bottom.set_title(f"Share of {days} active per quarter-hour, {learned}", fontsize=9)
    bottom.set_ylim(0, 1.05)
    bottom.grid(axis="x", color="#dddddd", lw=0.5)

    # the alerts raised that day
    for alert in data.alerts:
        at = _hours(alert.at.timestamp(), tz)
        colour = _SEVERITY_COLOUR.get(alert.severity, "#7d3c98")
        for ax in (top, bottom):
            ax.axvline(at, color=colour, lw=1.5, ls="--", zorder=3)
        top.annotate(
            f"{alert.kind} ({alert.severity.value})",
            (at, -0.5),
            xytext=(3, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=8,
            color=colour,
        )

    bottom.set_xlim(0, 24)
    bottom.set_xticks(range(0, 25, 2), [f"{h:02d}:00" for h in range(0, 25, 2)])
    bottom.set_xlabel(f"local time ({tz.key})")
    names = ", ".join(sorted({a.kind for a in data.alerts})) or "none"
    fig.suptitle(
        f"{day.isoformat()} ({day.strftime('%A')}): {header.source or trace.name}\n"
        f"alerts raised: {names}  -  sensor-level data: a local file, do not send or share",
        fontsize=11,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out
