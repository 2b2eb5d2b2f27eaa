"""``hub evaluate``: how soon the hub notices an emergency, and how often it cries wolf.

The protocol, in this order, on each recorded home:

1. learn from the first ``learn_days`` local days (the hub runs over them as it would
   live, and keeps learning afterwards from what it has seen, never from what is ahead);
2. false alarms: urgent alerts raised on the untouched remaining days, per day;
3. emergencies: an onset every ``every`` hours of each remaining day (00:00, 02:00, ...,
   local time). For each, every event after the onset is deleted and the hub goes on in
   silence: the time to detect is the first urgent alert raised at or after the onset,
   capped at ``cap`` (a miss). Onsets while the labels say the person was out of the
   house are skipped; so are onsets after the recording ends.
4. per home and per alert kind: mean and median time to detect, misses, false alarms per
   day; and, in the same run, the same for a fixed baseline (an alert after 12 h
   without any activity).

Deleting the events after an onset and replaying is the same as copying the hub's state
at the onset and letting time pass without events: the detectors are deterministic and
see only the past. So the evaluation runs each home once and copies the engine at each
onset, which makes a 4-week home take seconds, not minutes.

On a simulated home with known incidents, it also checks that the alert each incident
should raise (the label's ``expect``) is among those raised within ``cap`` of it.
"""

from __future__ import annotations

import bisect
import copy
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig
from agent.events import SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, AlertState, Severity
from agent.traces.format import (
    Label,
    TraceHeader,
    iter_events,
    labels_path,
    read_header,
    read_labels,
)
from agent.traces.simulate import TERMINAL_INCIDENTS
from detection.activity import PERSON_KINDS, is_person_activity
from detection.drive import advance
from detection.engine import INF, Detector, Engine
from detection.person import read_place, sensor_places
from detection.routine import Place

#: activity labels that mean the person was out of the house
OUT_LABELS = frozenset({"leaving", "leave_house", "outside", "out", "away"})
HOUR = 3600.0


class FixedBaseline(Detector):
    """The baseline of the protocol: urgent after 12 h without any activity at all."""

    name = "baseline"
    kinds = PERSON_KINDS
    LIMIT = 12 * HOUR

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.last_wall = 0.0

    def on_event(self, event: SensorEvent) -> None:
        if not is_person_activity(event):
            return
        if self.engine.is_open(self, "quiet"):
            self.engine.resolve(self, "quiet", "Activity again.")
        self.last_wall = event.wall
        self.wake = event.mono + self.LIMIT

    def on_wakeup(self, now: float) -> None:
        self.raise_alert(
            "quiet",
            "inactivity",
            Severity.URGENT,
            self.last_wall,
            None,
            "No activity for 12 h.",
            {"quiet_min": 720},
        )


class _Recorder:
    def __init__(self) -> None:
        self.raised: list[AlertMessage] = []

    def __call__(self, message: AlertMessage) -> None:
        if message.state is AlertState.RAISED:
            self.raised.append(message)


@dataclass
class Detection:
    onset: float
    delay: float | None  # seconds; None: missed within the cap
    kind: str | None


@dataclass
class SystemResult:
    """One detection system on one home."""

    name: str
    detections: list[Detection] = field(default_factory=list)
    false_alarms: Counter[str] = field(default_factory=Counter)
    test_days: float = 0.0
    cap: float = 24 * HOUR
    tz: Any = None

    def delays(self) -> list[float]:
        """Times to detect, a miss counted as the cap."""
        return [d.delay if d.delay is not None else self.cap for d in self.detections]

    def summary(self) -> dict[str, Any]:
        delays = self.delays()
        misses = sum(1 for d in self.detections if d.delay is None)
        by_kind: dict[str, dict[str, Any]] = {}
        kinds = Counter(d.kind for d in self.detections if d.kind is not None)
        for kind, count in sorted(kinds.items()):
            ds = [d.delay for d in self.detections if d.kind == kind and d.delay is not None]
            by_kind[kind] = {
                "first": count,
                "mean_h": round(statistics.fmean(ds) / HOUR, 2),
                "median_h": round(statistics.median(ds) / HOUR, 2),
                "false_alarms": self.false_alarms.get(kind, 0),
            }
        for kind, count in self.false_alarms.items():
            by_kind.setdefault(
                kind, {"first": 0, "mean_h": None, "median_h": None, "false_alarms": count}
            )
        total_fa = sum(self.false_alarms.values())
        by_hour: dict[str, float] = {}
        hours: dict[int, list[float]] = {}
        for d in self.detections:
            hour = datetime.fromtimestamp(d.onset, tz=self.tz).hour if self.tz else 0
            hours.setdefault(hour, []).append(d.delay if d.delay is not None else self.cap)
        for hour, ds in sorted(hours.items()):
            by_hour[f"{hour:02d}"] = round(statistics.fmean(ds) / HOUR, 2)
        return {
            "onsets": len(self.detections),
            "mean_h": round(statistics.fmean(delays) / HOUR, 3) if delays else None,
            "median_h": round(statistics.median(delays) / HOUR, 3) if delays else None,
            "misses": misses,
            "false_alarms": total_fa,
            "false_per_day": round(total_fa / self.test_days, 3) if self.test_days else None,
            "by_kind": by_kind,
            "mean_h_by_onset_hour": by_hour,
        }


@dataclass
class IncidentCheck:
    label: str
    at: float
    expect: list[str]
    raised: list[str]

    @property
    def ok(self) -> bool:
        return not self.expect or bool(set(self.expect) & set(self.raised))


@dataclass
class HomeResult:
    trace: str
    source: str
    days: float
    learn_days: int
    test_days: float
    skipped_out: int
    systems: list[SystemResult]
    incidents: list[IncidentCheck]
    skipped_rules: list[str]
    bounds: list[SystemResult] = field(default_factory=list)
    #: with ``frontier``: the quiet-enough learned hour table (margin, pad, result)
    frontier: tuple[float, float, SystemResult] | None = None
    frontier_searched: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "source": self.source,
            "days": round(self.days, 1),
            "learn_days": self.learn_days,
            "test_days": round(self.test_days, 1),
            "onsets_skipped_out": self.skipped_out,
            "skipped_rules": self.skipped_rules,
            "systems": {s.name: s.summary() for s in self.systems},
            "bounds": {b.name: _bound_summary(b) for b in self.bounds},
            **({"frontier": self._frontier_json()} if self.frontier_searched else {}),
            "incidents": [
                {
                    "label": i.label,
                    "expect": i.expect,
                    "raised": i.raised,
                    "ok": i.ok,
                }
                for i in self.incidents
            ],
        }

    def _frontier_json(self) -> dict[str, Any] | None:
        if self.frontier is None:
            return None
        margin, pad, result = self.frontier
        return {"margin": margin, "pad_h": pad / HOUR, **_bound_summary(result)}


def _bound_summary(bound: SystemResult) -> dict[str, Any]:
    """A yardstick's figures: no alert kinds; a fitted bound has no false alarms to count."""
    s = bound.summary()
    drop = {"by_kind"}
    if bound.name.startswith("bound_"):
        drop |= {"false_alarms", "false_per_day"}
    return {k: v for k, v in s.items() if k not in drop}


def _out_intervals(labels: Sequence[Label]) -> list[tuple[float, float]]:
    out = []
    for lab in labels:
        if lab.type == "activity" and lab.label in OUT_LABELS and lab.end is not None:
            out.append((lab.start.timestamp(), lab.end.timestamp()))
    return sorted(out)


def _inside(t: float, intervals: Sequence[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in intervals)


def _midnight(wall: float, clock: SimClock) -> float:
    dt = datetime.fromtimestamp(wall, tz=clock.tz)
    return datetime(dt.year, dt.month, dt.day, tzinfo=clock.tz).timestamp()


def _local_day_starts(first: float, last: float, clock: SimClock) -> list[float]:
    days = []
    d = datetime.fromtimestamp(_midnight(first, clock), tz=clock.tz)
    while d.timestamp() <= last:
        days.append(d.timestamp())
        nxt = d + timedelta(days=1)
        d = datetime(nxt.year, nxt.month, nxt.day, tzinfo=clock.tz)
    return days


def run_system(
    name: str,
    events: Sequence[SensorEvent],
    home: HomeMap,
    clock_tz: Any,
    config: DetectionConfig,
    detectors: Iterable[type[Detector]] | None,
    test_start: float,
    end: float,
    onsets: Sequence[float],
    cap: float,
    incidents: Sequence[tuple[float, float]] = (),
) -> tuple[SystemResult, list[AlertMessage]]:
    """Run one system over a home once, copying it at each onset (see the module doc)."""
    clock = SimClock(clock_tz)
    recorder = _Recorder()
    engine = Engine("evaluate", clock, home, config, recorder, detectors=detectors)
    result = SystemResult(name, cap=cap, tz=clock_tz)
    sensors = home.sensors
    pending = list(onsets)
    i = 0

    def at_onset(onset: float) -> None:
        advance(engine, clock, onset)
        already = [
            a for a in engine.open.values() if a.severity is Severity.URGENT and a.since <= onset
        ]
        if already:
            result.detections.append(Detection(onset, 0.0, already[0].kind))
            return
        # shared, read-only parts are not copied: only the state that time changes
        memo: dict[int, Any] = {id(recorder): recorder, id(home): home, id(config): config}
        twin = copy.deepcopy(engine, memo)
        seen = _Recorder()
        twin.sink = seen
        twin_clock = twin.clock
        assert isinstance(twin_clock, SimClock)
        limit = onset + cap
        while twin.next_wakeup <= limit and not any(
            m.severity is Severity.URGENT for m in seen.raised
        ):
            due = twin.next_wakeup
            twin_clock.advance_to(due)
            twin.fire(due)
        first = next((m for m in seen.raised if m.severity is Severity.URGENT), None)
        if first is None:
            result.detections.append(Detection(onset, None, None))
        else:
            delay = first.at.timestamp() - onset
            result.detections.append(Detection(onset, max(0.0, delay), first.kind))

    for event in events:
        while i < len(pending) and pending[i] < event.wall:
            at_onset(pending[i])
            i += 1
        if event.sensor not in sensors:
            continue
        advance(engine, clock, event.mono)
        clock.set(event.wall, event.mono, True)
        engine.on_event(event)
    while i < len(pending):
        at_onset(pending[i])
        i += 1
    advance(engine, clock, end)
    for msg in recorder.raised:
        t = msg.at.timestamp()
        if msg.severity is not Severity.URGENT or not test_start <= t <= end:
            continue
        if any(a <= t <= b for a, b in incidents):
            continue  # the alert an incident should raise
        result.false_alarms[msg.kind] += 1
    result.test_days = (end - test_start) / 86400.0
    return result, recorder.raised


def hindsight_bounds(
    events: Sequence[SensorEvent],
    home: HomeMap,
    tz: Any,
    test_start: float,
    end: float,
    onsets: Sequence[float],
    out: Sequence[tuple[float, float]],
    cap: float,
    margin: float = 1.0,
    pad: float = 0.0,
) -> list[SystemResult]:
    """How well a table of limits could do, with and without hindsight: yardsticks.

    A table gives each quiet spell a limit by a key of the activity that began it; an
    onset is detected when the quiet since the last activity before it reaches that
    activity's limit. Spells (between two person activities) that overlap a time the
    labels say the person was out count for nothing, here as in the onsets.

    - ``bound_hour``: key, the hour of the day; limit, the longest spell of the test days
      under that key. Fitted on the test days themselves, it raises no false alarm by
      construction: the time targets of the evaluation are this bound.
    - ``bound_place_hour``: the same with where the person was too, as the hub reads it:
      how much knowing the place could gain, with hindsight.
    - ``past_hour``: the hour's table learned as a hub must, from the days before (at
      each local midnight, the longest spell of all earlier days; 12 h for an hour not
      yet seen), with no margin at all: the cost of not knowing the test days, counted
      in false alarms. ``margin`` and ``pad`` give it one (``past_frontier`` searches
      them).
    """
    places = sensor_places(home)
    times: list[float] = []
    keys: list[tuple[int, int]] = []
    days: list[float] = []  # the local midnight before each activity
    place: Place | None = None
    for event in events:
        sensor = places.get(event.sensor)
        if sensor is None or not is_person_activity(event):
            continue
        place = read_place(sensor, event, place) or place
        local = datetime.fromtimestamp(event.wall, tz=tz)
        times.append(event.wall)
        keys.append((local.hour, -1 if place is None else int(place)))
        days.append(datetime(local.year, local.month, local.day, tzinfo=tz).timestamp())
    spells = [
        i
        for i in range(len(times) - 1)
        if not any(x < times[i + 1] and times[i] < y for x, y in out)
    ]
    test_days = (end - test_start) / 86400.0

    def by_hour(k: tuple[int, int]) -> tuple[int, int]:
        return (k[0], 0)

    def by_place_hour(k: tuple[int, int]) -> tuple[int, int]:
        return k

    results = []
    for name, key in (("bound_hour", by_hour), ("bound_place_hour", by_place_hour)):
        fitted: dict[tuple[int, int], float] = {}
        for i in spells:
            if times[i + 1] >= test_start:
                cell = key(keys[i])
                fitted[cell] = max(fitted.get(cell, 0.0), times[i + 1] - times[i])
        limits = [fitted.get(key(k), 0.0) for k in keys]
        results.append(_yardstick(name, times, limits, onsets, cap, tz, test_days))
    # learned from the past: spells in the order they ended, taken in before each day
    learned: dict[tuple[int, int], float] = {}
    ended = sorted(spells, key=lambda i: times[i + 1])
    j = 0
    limits = []
    for i in range(len(times)):
        while j < len(ended) and times[ended[j] + 1] < days[i]:
            k = ended[j]
            cell = by_hour(keys[k])
            learned[cell] = max(learned.get(cell, 0.0), times[k + 1] - times[k])
            j += 1
        seen = learned.get(by_hour(keys[i]))
        limits.append(FixedBaseline.LIMIT if seen is None else seen * margin + pad)
    past = _yardstick("past_hour", times, limits, onsets, cap, tz, test_days)
    for i in spells:
        if times[i] >= test_start and times[i + 1] - times[i] > limits[i]:
            past.false_alarms["inactivity"] += 1
    results.append(past)
    return results


#: the margins and pads ``past_frontier`` tries on the learned hour table
FRONTIER_MARGINS = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
FRONTIER_PADS_H = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def past_frontier(
    yardsticks: Callable[[float, float], list[SystemResult]], per_day: float = 0.05
) -> tuple[float, float, SystemResult] | None:
    """The fastest ``past_hour`` table with at most ``per_day`` false alarms a day.

    ``yardsticks(margin, pad)``: ``hindsight_bounds`` of one home with that margin and
    pad (seconds), ``past_hour`` last. Tries every margin of ``FRONTIER_MARGINS`` with
    every pad of ``FRONTIER_PADS_H``; returns (margin, pad in seconds, its result), or
    None when none is quiet enough.
    What it takes a learned hour table, without hindsight, to cry wolf as seldom as the
    target allows.
    """
    best: tuple[float, float, SystemResult] | None = None
    best_mean = math.inf
    for margin in FRONTIER_MARGINS:
        for pad_h in FRONTIER_PADS_H:
            past = yardsticks(margin, pad_h * HOUR)[-1]
            s = past.summary()
            if s["false_per_day"] is None or s["false_per_day"] > per_day:
                continue
            if s["mean_h"] is not None and s["mean_h"] < best_mean:
                best_mean = s["mean_h"]
                best = (margin, pad_h * HOUR, past)
    return best


def _yardstick(
    name: str,
    times: Sequence[float],
    limits: Sequence[float],
    onsets: Sequence[float],
    cap: float,
    tz: Any,
    test_days: float,
) -> SystemResult:
    """Detections of a table: the quiet after the last activity before each onset."""
    result = SystemResult(name, cap=cap, tz=tz, test_days=test_days)
    for onset in onsets:
        i = bisect.bisect_right(times, onset) - 1
        if i < 0:
            result.detections.append(Detection(onset, None, None))
            continue
        delay = max(0.0, times[i] + limits[i] - onset)
        hit = delay <= cap
        result.detections.append(Detection(onset, delay if hit else None, name if hit else None))
    return result


@dataclass
class Protocol:
    """One home set out for the protocol: its events, test days, onsets and outings."""

    trace: Path
    header: TraceHeader
    events: list[SensorEvent]
    labels: list[Label]
    first: float
    test_start: float
    end: float
    onsets: list[float]
    skipped: int  # onsets skipped: out, or after an incident
    out: list[tuple[float, float]]  # the person out (labels), or unable to act (incident)
    incident_windows: list[tuple[float, float]]
    cap: float


def protocol(
    trace: Path, learn_days: int = 7, every_h: float = 2.0, cap_h: float = 24.0
) -> Protocol:
    """Read a recorded home and lay out the protocol's days and onsets (module doc)."""
    header = read_header(trace)
    tz = header.zone
    events = list(iter_events(trace))
    if not events:
        raise ValueError(f"{trace}: no events")
    lpath = labels_path(trace)
    labels = read_labels(lpath) if lpath.exists() else []
    probe = SimClock(tz)
    first = header.start.timestamp() if header.start else events[0].wall
    end = header.end.timestamp() if header.end else events[-1].wall
    days = _local_day_starts(first, end, probe)
    if len(days) <= learn_days:
        raise ValueError(
            f"{trace}: {len(days)} day(s) of data; the protocol needs more than {learn_days}"
        )
    test_start = days[learn_days]
    out = _out_intervals(labels)
    cap = cap_h * HOUR
    # a known incident is an emergency, not a false alarm; after one that leaves the person
    # unable to act, the trace holds no normal life to put onsets in
    incident_windows = [
        (lab.start.timestamp(), lab.start.timestamp() + cap)
        for lab in labels
        if lab.type == "incident"
    ]
    out += [
        (lab.start.timestamp(), end)
        for lab in labels
        if lab.type == "incident" and lab.label in TERMINAL_INCIDENTS
    ]
    onsets: list[float] = []
    skipped = 0
    for day in days[learn_days:]:
        base = datetime.fromtimestamp(day, tz=tz)
        k = 0
        while k * every_h < 24:
            onset = (base + timedelta(hours=k * every_h)).timestamp()
            k += 1
            if onset < test_start or onset > end:
                continue
            if _inside(onset, out):
                skipped += 1
                continue
            onsets.append(onset)
    return Protocol(
        trace,
        header,
        events,
        labels,
        first,
        test_start,
        end,
        onsets,
        skipped,
        out,
        incident_windows,
        cap,
    )


def evaluate_home(
    trace: Path,
    config: DetectionConfig | None = None,
    learn_days: int = 7,
    every_h: float = 2.0,
    cap_h: float = 24.0,
    frontier: bool = False,
) -> HomeResult:
    """The protocol on one home; ``frontier``: also search ``past_frontier``."""
    proto = protocol(trace, learn_days, every_h, cap_h)
    header, events, labels = proto.header, proto.events, proto.labels
    tz = header.zone
    test_start, end, onsets, cap = proto.test_start, proto.end, proto.onsets, proto.cap
    incident_windows = proto.incident_windows
    config = config or DetectionConfig()
    config = config.model_copy(update={"routine": config.routine.model_copy(update={"path": None})})
    hub, raised = run_system(
        "hub",
        events,
        header.home,
        tz,
        config,
        None,
        test_start,
        end,
        onsets,
        cap,
        incident_windows,
    )
    base_cfg = DetectionConfig()
    baseline, _ = run_system(
        "baseline_12h",
        events,
        header.home,
        tz,
        base_cfg,
        [FixedBaseline],
        test_start,
        end,
        onsets,
        cap,
        incident_windows,
    )
    bounds = hindsight_bounds(events, header.home, tz, test_start, end, onsets, proto.out, cap)
    found = None
    if frontier:
        found = past_frontier(
            lambda margin, pad: hindsight_bounds(
                events, header.home, tz, test_start, end, onsets, proto.out, cap, margin, pad
            )
        )
    incidents = []
    for lab in labels:
        if lab.type != "incident":
            continue
        t0 = lab.start.timestamp()
        kinds = sorted({m.kind for m in raised if t0 <= m.at.timestamp() <= t0 + cap})
        incidents.append(IncidentCheck(lab.label, t0, list(lab.expect), kinds))
    skipped_rules = _skipped_rules(header.home)
    return HomeResult(
        trace=str(trace),
        source=header.source or "",
        days=(end - proto.first) / 86400.0,
        learn_days=learn_days,
        test_days=(end - test_start) / 86400.0,
        skipped_out=proto.skipped,
        systems=[hub, baseline],
        bounds=bounds,
        frontier=found,
        frontier_searched=frontier,
        incidents=incidents,
        skipped_rules=skipped_rules,
    )


def _skipped_rules(home: HomeMap) -> list[str]:
    """Rules that this home's sensors cannot support, named, never guessed."""
    from agent.homemap import Role

    roles = {spec.role for spec in home.sensors.values()}
    skipped = []
    if not roles & {Role.BATHROOM, Role.TOILET}:
        skipped.append("bathroom_overstay: no bathroom sensor")
    if not roles & {Role.FRONT_DOOR, Role.OUTSIDE_DOOR}:
        skipped.append("door_night and away: no door to the outside")
    if not roles & {Role.BED, Role.BEDROOM}:
        skipped.append("not_up: no bed or bedroom sensor")
    return skipped


def _h(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    hours = int(value)
    minutes = round((value - hours) * 60)
    if minutes == 60:
        hours, minutes = hours + 1, 0
    return f"{hours} h {minutes:02d}"


def format_table(results: Sequence[HomeResult]) -> str:
    """The report: one block per home, the hub's rules against the fixed baseline."""
    lines: list[str] = []
    for res in results:
        lines.append(f"{res.source or res.trace}")
        lines.append(
            f"  {res.days:.1f} days: learn {res.learn_days}, test {res.test_days:.1f}; "
            f"onsets every 2 h: {len(res.systems[0].detections)} "
            f"({res.skipped_out} skipped: out, or after an incident)"
        )
        for rule in res.skipped_rules:
            lines.append(f"  skipped: {rule}")
        lines.append(
            f"  {'system':<14}{'mean':>9}{'median':>9}{'misses':>8}{'false':>7}{'per day':>9}"
        )
        for system in res.systems:
            s = system.summary()
            lines.append(
                f"  {system.name:<14}{_h(s['mean_h']):>9}{_h(s['median_h']):>9}"
                f"{s['misses']:>8}{s['false_alarms']:>7}{s['false_per_day']:>9.3f}"
            )
        for bound in res.bounds:
            s = bound.summary()
            fitted = bound.name.startswith("bound_")
            false = "" if fitted else f"{s['false_alarms']:>7}{s['false_per_day']:>9.3f}"
            lines.append(
                f"  {bound.name:<17}{_h(s['mean_h']):>6}{_h(s['median_h']):>9}{s['misses']:>8}"
                f"{false}".rstrip()
            )
        if res.bounds:
            lines.append(
                "  bound_*: limits by hour (and place) fitted on the test days: none false"
            )
            lines.append("  past_hour: limits by hour learned from the days before, no margin")
        if res.frontier_searched:
            if res.frontier is None:
                lines.append("  past_hour with a margin: none of the margins tried is quiet enough")
            else:
                margin, pad, found = res.frontier
                s = found.summary()
                lines.append(
                    f"  past_hour x {margin:g} + {_h(pad / HOUR)}, the fastest at <= 0.05 false "
                    f"a day: {_h(s['mean_h'])} mean, {s['misses']} misses, "
                    f"{s['false_alarms']} false ({s['false_per_day']:.3f} a day)"
                )
        hub = res.systems[0].summary()
        if hub["by_kind"]:
            lines.append(f"  {'alert kind':<20}{'first':>6}{'mean':>9}{'median':>9}{'false':>7}")
            for kind, k in hub["by_kind"].items():
                lines.append(
                    f"  {kind:<20}{k['first']:>6}{_h(k['mean_h']):>9}{_h(k['median_h']):>9}"
                    f"{k['false_alarms']:>7}"
                )
        if res.incidents:
            ok = sum(1 for i in res.incidents if i.ok)
            lines.append(f"  incidents: {ok} of {len(res.incidents)} raised the expected alert")
            for inc in res.incidents:
                mark = "ok" if inc.ok else "MISSED"
                lines.append(
                    f"    {mark:<7}{inc.label:<15} expect {','.join(inc.expect) or '-'}; "
                    f"raised {','.join(inc.raised) or 'nothing'}"
                )
        lines.append("")
    return "\n".join(lines)


__all__ = [
    "INF",
    "FixedBaseline",
    "HomeResult",
    "evaluate_home",
    "format_table",
    "hindsight_bounds",
    "past_frontier",
    "protocol",
]
