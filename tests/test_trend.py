"""Fall-risk trends: weeks of synthetic days through an engine with only the trend rule."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig, TrendConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.messages import AlertMessage, AlertState, Mode, Severity
from detection.drive import advance, feed
from detection.engine import Engine
from detection.trend import FallRiskTrend, _median

TZ = ZoneInfo("Europe/Amsterdam")
M, P, C, F = EventKind.MOTION, EventKind.PRESSURE, EventKind.CONTACT, EventKind.FLUSH


def _home(*without: str) -> HomeMap:
    sensors = {
        "bed": SensorSpec(room="Bedroom", role=Role.BED, kind=P),
        "bedroom-motion": SensorSpec(room="Bedroom", role=Role.BEDROOM, kind=M),
        "hall-1": SensorSpec(room="Hallway", role=Role.HALLWAY, kind=M),
        "hall-2": SensorSpec(room="Hallway", role=Role.HALLWAY, kind=M),
        "bathroom-motion": SensorSpec(room="Bathroom", role=Role.BATHROOM, kind=M),
        "flush": SensorSpec(room="Bathroom", role=Role.TOILET, kind=F),
        "kitchen-motion": SensorSpec(room="Kitchen", role=Role.KITCHEN, kind=M),
        "living-motion": SensorSpec(room="Living", role=Role.LIVING, kind=M),
        "front-door": SensorSpec(room="Hallway", role=Role.FRONT_DOOR, kind=C),
        "pendant": SensorSpec(room="Living", role=Role.WEARABLE, kind=EventKind.BUTTON),
    }
    return HomeMap(sensors={k: v for k, v in sensors.items() if k not in without})


HOME = _home()
HOME_NO_HALL = _home("hall-1", "hall-2")
KIND = {sid: spec.kind for sid, spec in HOME.sensors.items() if spec.kind is not None}

# The usual night: visits by weekday (Monday first); median 1, and the MAD is 0.
USUAL_VISITS = (1, 1, 2, 1, 0, 1, 1)
# One night visit: 8 events outside bed (the bed exit, both hallway sensors twice, the
# bathroom twice and the flush); without hallway sensors, 4.
RESTLESS_PER_VISIT = 8


def local(day: date, clock_time: time, fold: int = 0) -> float:
    return datetime.combine(day, clock_time, tzinfo=TZ).replace(fold=fold).timestamp()


def at(local_iso: str) -> float:
    return datetime.fromisoformat(local_iso).replace(tzinfo=TZ).timestamp()


@dataclass
class Day:
    """One synthetic day: its night (the one that ends on it) and its daytime."""

    visits: int = 1  # night-time bathroom visits, from 01:00 every 45 min
    until: float = 22.0  # activity every 15 min from 07:15 until this hour (by the clock)
    transit: float = 6.1  # seconds from one hallway sensor to the other
    present: bool = True  # False: no event at all that day
    visit_times: list[float] = field(default_factory=list)  # extra visits (wall times)


def _visit(out: list[tuple[float, str, float]], t: float, transit: float) -> None:
    """Out of bed, through the hallway to the bathroom, the flush, and back to bed."""
    for dt, sid, value in (
        (0, "bed", 0),
        (20, "bedroom-motion", 1),
        (15, "hall-1", 1),
        (transit, "hall-2", 1),
        (10, "bathroom-motion", 1),
        (120, "flush", 1),
        (6, "flush", 0),  # the flush stopping is not the person
        (30, "bathroom-motion", 1),
        (20, "hall-2", 1),
        (transit, "hall-1", 1),
        (15, "bedroom-motion", 1),
        (20, "bed", 1),
    ):
        t += dt
        out.append((t, sid, value))


def day_events(day: date, spec: Day) -> list[tuple[float, str, float]]:
    """(wall, sensor, value) of one day; 62 active 15-min periods plus one per visit."""
    if not spec.present:
        return []
    out: list[tuple[float, str, float]] = []
    for i in range(spec.visits):
        _visit(out, local(day, time(1, 0)) + i * 45 * 60, spec.transit)
    for t in spec.visit_times:
        _visit(out, t, spec.transit)
    # up at 07:00: the morning toilet, by the hallway
    _visit(out, local(day, time(7, 0)), spec.transit)
    out[-1] = (out[-1][0], "bedroom-motion", 1)  # not back to bed
    minute = 7 * 60 + 15
    while minute < spec.until * 60:
        sid = "kitchen-motion" if minute % 30 else "living-motion"
        out.append((local(day, time(minute // 60, minute % 60)), sid, 1))
        minute += 15
    for hour in (9, 12, 15, 18):  # walks through the hallway in the day
        t = local(day, time(hour, 5))
        out += [(t, "hall-1", 1), (t + spec.transit, "hall-2", 1)]
    out += [
        (local(day, time(22, 30)), "bathroom-motion", 1),
        (local(day, time(22, 40)), "bedroom-motion", 1),
        (local(day, time(22, 45)), "bed", 1),
    ]
    return out


def history(first: date, last: date, plan: Callable[[date], Day]) -> list[SensorEvent]:
    """Every event from ``first`` through ``last`` in time order (wall = monotonic)."""
    rows: list[tuple[float, str, float]] = []
    day = first
    while day <= last:
        rows += day_events(day, plan(day))
        day += timedelta(days=1)
    rows.sort()
    return [SensorEvent(sid, KIND[sid], value, t, t) for t, sid, value in rows]


def usual(day: date) -> Day:
    return Day(visits=USUAL_VISITS[day.weekday()])


def before(events: list[SensorEvent], local_iso: str) -> list[SensorEvent]:
    return [e for e in events if e.wall < at(local_iso)]


def after(events: list[SensorEvent], local_iso: str) -> list[SensorEvent]:
    return [e for e in events if e.wall >= at(local_iso)]


class Run:
    def __init__(self, home: HomeMap = HOME, trend: TrendConfig | None = None) -> None:
        self.clock = SimClock(TZ)
        self.alerts: list[AlertMessage] = []
        config = DetectionConfig(trend=trend or TrendConfig())
        self.engine = Engine(
            "h-test", self.clock, home, config, self.alerts.append, detectors=[FallRiskTrend]
        )
        det = self.engine.detectors[0]
        assert isinstance(det, FallRiskTrend)
        self.trend = det

    def feed(self, events: Iterable[SensorEvent], until: str | None = None) -> None:
        feed(self.engine, self.clock, events, at(until) if until else None)

    def until(self, local_iso: str) -> None:
        advance(self.engine, self.clock, at(local_iso))


def excluded(run: Run, day: date) -> bool:
    got = run.trend.day(day)
    assert got is not None, day
    return got.excluded


def test_a_life_that_does_not_change_raises_nothing_at_any_weekly_check() -> None:
    rng = np.random.default_rng(7)
    days: dict[date, Day] = {}

    def varied(day: date) -> Day:
        days[day] = Day(
            visits=int(rng.choice([0, 1, 1, 2])),
            until=float(rng.choice([20.5, 21.0, 21.5, 22.0])),
            transit=float(rng.choice([5.6, 6.1, 6.6])),
        )
        return days[day]

    run = Run()
    run.feed(history(date(2026, 1, 4), date(2026, 2, 15), varied), until="2026-02-16T10:00:01")
    assert run.alerts == []
    assert run.trend.checks == 7  # every Monday from 5 January through 16 February
    assert run.trend.last_days == 35
    assert set(run.trend.last) == {"night_visits", "restless", "transit", "activity"}
    assert all(abs(c.z) < 3 for c in run.trend.last.values()), run.trend.last
    # the days themselves were counted as generated
    d = date(2026, 2, 10)
    got = run.trend.day(d)
    assert got is not None
    assert got.night_visits == days[d].visits
    assert got.restless == RESTLESS_PER_VISIT * days[d].visits
    assert got.transits == 2 * days[d].visits + 2 + 4
    assert not got.excluded


def test_more_night_visits_raise_a_trend_on_monday_at_ten_and_resolve_a_week_later() -> None:
    def plan(day: date) -> Day:
        if date(2026, 1, 26) <= day <= date(2026, 2, 1):
            return Day(visits=3)
        return usual(day)  # and the week after, back to the usual

    events = history(date(2026, 1, 4), date(2026, 2, 8), plan)
    run = Run()
    run.feed(before(events, "2026-02-02T10:00:00"), until="2026-02-02T09:59:59")
    assert run.alerts == []
    assert run.trend.checks == 4 and run.trend.last_days == 21  # 4 January was partial
    run.until("2026-02-02T10:00:00")
    assert len(run.alerts) == 1
    raised = run.alerts[0]
    assert (raised.kind, raised.state, raised.severity) == (
        "fall_risk_trend",
        AlertState.RAISED,
        Severity.TREND,
    )
    assert raised.room is None
    assert raised.at == datetime(2026, 2, 2, 10, 0, tzinfo=TZ)
    assert raised.since == datetime(2026, 1, 26, 0, 0, tzinfo=TZ)  # the week compared
    # visits: 3 against 1, spread 1.4826 * 0.4 (the floor) -> z 3.4;
    # restlessness: 24 against 8, spread 1.2533 * mean |dev| 16/7 -> z 5.6
    assert raised.evidence == {
        "signals": 4,
        "days_now": 7,
        "night_visits_now": 3.0,
        "night_visits_before": 1.0,
        "night_visits_z": 3.4,
        "restless_now": 24.0,
        "restless_before": 8.0,
        "restless_z": 5.6,
    }
    assert raised.summary == (
        "Night-time bathroom visits 3.0 a night this week against 1.0 before; "
        "night-time movements out of bed 24.0 a night this week against 8.0 before."
    )
    # back to the usual nights: resolved at the next check, not before
    run.feed(after(events, "2026-02-02T10:00:00"), until="2026-02-09T09:59:59")
    assert len(run.alerts) == 1
    run.until("2026-02-09T10:00:00")
    assert len(run.alerts) == 2
    resolved = run.alerts[1]
    assert resolved.state is AlertState.RESOLVED and resolved.id == raised.id
    assert resolved.summary.startswith("No fall-risk sign any more this week: ")
    assert "night-time bathroom visits 1.0 a night" in resolved.summary
    assert resolved.evidence["night_visits_now"] == 1.0
    assert resolved.evidence["restless_now"] == 8.0


def test_less_activity_names_activity_and_a_second_week_updates_the_alert() -> None:
    def plan(day: date) -> Day:
        if day >= date(2026, 1, 26):
            return Day(visits=USUAL_VISITS[day.weekday()], until=12.0)
        return usual(day)

    run = Run(HOME_NO_HALL)
    assert not run.trend.transit_available
    run.feed(history(date(2026, 1, 4), date(2026, 2, 8), plan), until="2026-02-09T10:00:00")
    raised, updated = run.alerts
    assert raised.state is AlertState.RAISED and raised.at.date() == date(2026, 2, 2)
    # 63 periods (15.75 h) before, 23 (5.75 h) now; spread 1.4826 * 10 % of 15.75 h
    assert raised.evidence == {
        "signals": 3,  # no hallway sensors: no transit time
        "days_now": 7,
        "active_h_now": 5.8,
        "active_h_before": 15.8,
        "activity_z": -4.3,
    }
    assert raised.summary == "Active 5.8 h a day this week against 15.8 h before."
    assert "activity" in run.trend.last and run.trend.last["activity"].risen
    assert updated.state is AlertState.UPDATED and updated.id == raised.id
    assert updated.at == datetime(2026, 2, 9, 10, 0, tzinfo=TZ)
    assert updated.evidence["active_h_now"] == 5.8


def test_too_little_history_compares_nothing() -> None:
    def plan(day: date) -> Day:
        return Day(visits=4) if day >= date(2026, 1, 26) else usual(day)

    events = history(date(2026, 1, 11), date(2026, 2, 1), plan)
    run = Run()
    run.feed(events, until="2026-02-02T10:00:01")
    assert run.alerts == []
    assert run.trend.checks == 4 and run.trend.last_days == 21 and run.trend.last == {}
    # the same weeks with min_days 21 are enough: the change was there to see
    run = Run(trend=TrendConfig(min_days=21))
    run.feed(events, until="2026-02-02T10:00:01")
    assert [a.evidence["night_visits_now"] for a in run.alerts] == [4.0]


def test_nights_across_the_autumn_clock_change_are_counted_once_each() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET. The night to the 25th has a visit at 23:30 on the
    # 24th and two at 02:15, one in summer time and one in winter time.
    def plan(day: date) -> Day:
        if day == date(2026, 10, 25):
            return Day(
                visits=0,
                visit_times=[local(day, time(2, 15), fold=0), local(day, time(2, 15), fold=1)],
            )
        if day == date(2026, 10, 24):
            return Day(visits=3, visit_times=[local(day, time(23, 30))])
        if day >= date(2026, 10, 19):
            return Day(visits=3)
        return usual(day)

    run = Run()
    events = history(date(2026, 9, 20), date(2026, 10, 26), plan)
    run.feed(before(events, "2026-10-26T10:00:00"), until="2026-10-26T09:59:59")
    assert run.alerts == []
    counts = {d: run.trend.day(date(2026, 10, d)) for d in (23, 24, 25, 26)}
    assert {d: c.night_visits for d, c in counts.items() if c} == {23: 3, 24: 3, 25: 3, 26: 3}
    assert {d: c.restless for d, c in counts.items() if c} == {23: 24, 24: 24, 25: 24, 26: 24}
    # active periods by real time: the 25th has 25 hours, and the two 02:15s are an hour apart
    assert counts[24] is not None and counts[24].active_slots == 62 + 3 + 1
    assert counts[25] is not None and counts[25].active_slots == 62 + 2
    run.until("2026-10-26T10:00:00")
    (raised,) = run.alerts
    assert raised.at.isoformat() == "2026-10-26T10:00:00+01:00"  # 10:00 in winter time
    assert raised.since.isoformat() == "2026-10-19T00:00:00+02:00"
    assert raised.evidence["days_now"] == 7
    assert raised.evidence["night_visits_now"] == 3.0


def test_days_without_any_event_are_left_out_not_counted_as_a_drop() -> None:
    away = {date(2026, 1, 27), date(2026, 1, 28), date(2026, 1, 29)}

    def plan(day: date) -> Day:
        if day in away:
            return Day(present=False)
        return Day(visits=3) if day >= date(2026, 1, 26) else usual(day)

    run = Run()  # from 28 December: 32 days of data with the three days away
    run.feed(history(date(2025, 12, 28), date(2026, 2, 1), plan), until="2026-02-02T10:00:00")
    (raised,) = run.alerts
    assert run.trend.last_days == 32
    assert raised.evidence["days_now"] == 4
    assert raised.evidence["night_visits_now"] == 3.0
    assert "h a day" not in raised.summary and not run.trend.last["activity"].risen
    assert run.trend.last["activity"].now == 65 / 4  # the four days at home, not zeros
    assert run.trend.day(date(2026, 1, 28)) is None
    # five empty days of seven: too few to compare, and certainly no drop in activity
    five = {date(2026, 1, 26) + timedelta(days=i) for i in range(5)}
    run = Run(trend=TrendConfig(min_days=14))
    run.feed(
        history(date(2026, 1, 4), date(2026, 2, 1), lambda d: Day(present=d not in five)),
        until="2026-02-02T10:00:00",
    )
    assert run.alerts == []
    assert run.trend.last_days == 23 and run.trend.last == {}


def test_a_slower_walk_through_the_hallway_is_a_trend() -> None:
    def plan(day: date) -> Day:
        if day >= date(2026, 1, 26):
            return Day(visits=USUAL_VISITS[day.weekday()], transit=12.1)
        return usual(day)

    run = Run()
    assert run.trend.transit_available
    run.feed(history(date(2026, 1, 4), date(2026, 2, 1), plan), until="2026-02-02T10:00:00")
    (raised,) = run.alerts
    # daily medians in 0.25 s bins: 6.125 and 12.125 s; spread 1.4826 * 10 % of 6.125
    assert raised.evidence == {
        "signals": 4,
        "days_now": 7,
        "transit_s_now": 12.1,
        "transit_s_before": 6.1,
        "transit_z": 6.6,
    }
    assert raised.summary == "Walking the hallway 12.1 s this week against 6.1 s before."
    day = run.trend.day(date(2026, 1, 27))
    assert day is not None and day.transit_s == 12.125 and day.transits == 2 * 1 + 2 + 4


def test_which_homes_can_time_a_walk() -> None:
    def trend(home: HomeMap) -> FallRiskTrend:
        det = Engine(
            "h", SimClock(TZ), home, DetectionConfig(), lambda m: None, detectors=[FallRiskTrend]
        ).detectors[0]
        assert isinstance(det, FallRiskTrend)
        return det

    assert trend(HOME).transit_available  # two hallway sensors
    assert trend(_home("hall-2")).transit_available  # one, beside bedroom and bathroom
    assert not trend(_home("hall-2", "bedroom-motion", "bathroom-motion")).transit_available
    assert not trend(HOME_NO_HALL).transit_available


def test_a_wall_clock_that_goes_back_leaves_earlier_days_alone() -> None:
    run = Run()
    run.feed(history(date(2026, 1, 4), date(2026, 1, 20), usual))
    before = run.trend.day(date(2026, 1, 19))
    # at 23:00 on the 20th the clock jumps back a day for an hour (a bathroom visit at
    # "01:00 on the 20th" repeated), then forward again to the right time
    t = at("2026-01-20T23:00:00")
    jumped = [
        SensorEvent("bathroom-motion", M, 1, t - 86400 + i * 60, t + i * 60) for i in range(5)
    ]
    run.feed(jumped)
    run.feed(history(date(2026, 1, 21), date(2026, 2, 1), usual), until="2026-02-02T10:00:00")
    assert run.trend.day(date(2026, 1, 19)) == before
    assert run.trend.dropped == 5
    # the hour lived under the wrong clock is missing from the 20th and the 21st
    assert [excluded(run, date(2026, 1, d)) for d in (19, 20, 21, 22)] == [
        False,
        True,
        True,
        False,
    ]
    assert run.alerts == [] and run.trend.checks == 5 and run.trend.last_days == 28 - 2


def test_days_in_away_mode_are_left_out() -> None:
    run = Run()
    run.feed(history(date(2026, 1, 4), date(2026, 1, 27), usual))
    run.engine.set_mode(Mode.HOLIDAY)  # at 22:45 on the 27th: that day is partial
    run.feed(history(date(2026, 1, 28), date(2026, 1, 29), usual))  # someone else there
    run.engine.set_mode(Mode.NORMAL)
    run.feed(history(date(2026, 1, 30), date(2026, 2, 1), usual), until="2026-02-02T10:00:00")
    assert [excluded(run, date(2026, 1, d)) for d in (26, 27, 28, 29, 30)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert run.trend.last_days == 28 - 3


def test_an_engine_copy_goes_on_by_itself() -> None:
    run = Run()
    run.feed(history(date(2026, 1, 4), date(2026, 1, 31), usual))
    twin = copy.deepcopy(run.engine)
    twin_trend = twin.detectors[0]
    assert isinstance(twin_trend, FallRiskTrend)
    twin_clock = twin.clock
    assert isinstance(twin_clock, SimClock)
    feed(twin, twin_clock, history(date(2026, 2, 1), date(2026, 2, 1), lambda d: Day(visits=5)))
    got = twin_trend.day(date(2026, 2, 1))
    assert got is not None and got.night_visits == 5
    assert run.trend.day(date(2026, 2, 1)) is None


def test_six_weeks_of_the_simulated_home_count_its_night_visits_and_raise_nothing() -> None:
    from agent.traces.simulate import simulate

    start = date(2026, 9, 1)
    sim = simulate(42, 1, start, TZ, profile="typical")
    run = Run(sim.header.home)
    run.feed(sim.events, until=sim.header.end.replace(tzinfo=None).isoformat())
    assert run.alerts == []
    assert run.trend.checks == 6 and run.trend.last_days == 35
    assert set(run.trend.last) == {"night_visits", "restless", "transit", "activity"}
    # the labelled toilet visits that begin in the night, by the day the night ends on
    labelled: dict[date, int] = {}
    for label in sim.labels:
        clock_time = label.start.time()
        if label.label == "toileting" and (clock_time >= time(23) or clock_time < time(6)):
            night = label.start.date() + timedelta(days=clock_time >= time(23))
            labelled[night] = labelled.get(night, 0) + 1
    counted = {}
    for i in range(1, 42):
        got = run.trend.day(start + timedelta(days=i))
        assert got is not None
        counted[start + timedelta(days=i)] = got.night_visits
    assert counted == {d: labelled.get(d, 0) for d in counted}
    assert sum(counted.values()) > 30


def test_the_median_is_numpys_without_importing_numpy_ma() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 7, 28):
        values = rng.integers(0, 5, n).astype(np.float64)  # ties, as counts have
        assert _median(values) == float(np.median(values))
    script = (
        "import sys, numpy as np\n"
        "from detection.trend import robust_z\n"
        "robust_z(np.array([3.0, 4.0, 5.0]), np.array([1.0, 1.0, 2.0, 9.0]), 0.5)\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, check=False, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
