"""PersonWatch: where the person is, and the rules that share that question.

Away and arrival, the door at night, bathroom overstay, not up, blind sensors, the home's
mode, one alert per situation, acknowledgement, learned limits, daylight saving, a wall
clock that is not synchronised, and keeping the learned routine on disk.

The engine here runs the person detector alone (as ``detectors=[PersonWatch]``), so every
message in a test is one of its own; the home is small and has a sensor of every role the
rules read.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import warnings
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig, RoutineConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.messages import AlertMessage, AlertState, Mode, Severity
from agent.replay import replay_runtime
from agent.traces.format import write_trace
from agent.traces.simulate import simulate
from detection.drive import advance, feed
from detection.engine import Engine
from detection.keeper import RoutineKeeper
from detection.person import PersonWatch
from detection.routine import VERSION, Place, Routine

TZ = ZoneInfo("Europe/Amsterdam")
H = 3600.0
M = 60.0

#: sensor id -> (room, role, kind)
SENSORS: dict[str, tuple[str, Role, EventKind]] = {
    "kitchen": ("Kitchen", Role.KITCHEN, EventKind.MOTION),
    "living": ("Living", Role.LIVING, EventKind.MOTION),
    "chair": ("Living", Role.SEAT, EventKind.PRESSURE),
    "bedroom": ("Bedroom", Role.BEDROOM, EventKind.MOTION),
    "bed": ("Bedroom", Role.BED, EventKind.PRESSURE),
    "bathroom": ("Bathroom", Role.BATHROOM, EventKind.MOTION),
    "hallway": ("Hallway", Role.HALLWAY, EventKind.MOTION),
    "door": ("Hallway", Role.FRONT_DOOR, EventKind.CONTACT),
}
HOME = HomeMap(
    sensors={sid: SensorSpec(room=room, role=role) for sid, (room, role, _) in SENSORS.items()}
)
ACTIVITY_SENSORS = len(SENSORS)

#: the fixed inactivity rule without the get-up rule, as in tests/test_detection_v1.py
FIXED_ONLY = DetectionConfig.model_validate({"wakeup": {"enabled": False}})


def ts(local: str) -> float:
    """Local ISO time (or with an explicit offset) to POSIX seconds."""
    dt = datetime.fromisoformat(local)
    return (dt if dt.tzinfo else dt.replace(tzinfo=TZ)).timestamp()


def ts_local(t: float) -> str:
    """POSIX seconds to an ISO time with its offset, so that ``ts`` reads it back exactly."""
    return datetime.fromtimestamp(t, tz=TZ).isoformat()


def at(local: str) -> datetime:
    return datetime.fromtimestamp(ts(local), tz=TZ)


def ev(local: str, sensor: str, value: float = 1.0) -> SensorEvent:
    t = ts(local)
    return SensorEvent(sensor, SENSORS[sensor][2], value, t, t)


def every(first: str, last: str, step: float, sensor: str) -> list[SensorEvent]:
    """``sensor`` seen every ``step`` seconds from ``first`` up to and including ``last``."""
    t, end = ts(first), ts(last)
    out = []
    while t <= end:
        out.append(SensorEvent(sensor, SENSORS[sensor][2], 1.0, t, t))
        t += step
    return out


def offline(local: str, sensor: str) -> SensorEvent:
    t = ts(local)
    return SensorEvent(sensor, EventKind.AVAILABILITY, 0.0, t, t)


class Run:
    """An engine with the person detector alone, a simulated clock and its messages."""

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.clock = SimClock(TZ)
        self.alerts: list[AlertMessage] = []
        self.monos: list[float] = []  # the monotonic moment of each message
        self.engine = Engine(
            "h-test",
            self.clock,
            HOME,
            config or DetectionConfig(),
            self._sink,
            detectors=[PersonWatch],
        )
        watch = self.engine.detectors[0]
        assert isinstance(watch, PersonWatch)
        self.watch = watch

    def _sink(self, message: AlertMessage) -> None:
        self.alerts.append(message)
        self.monos.append(self.clock.monotonic())

    def feed(self, *events: SensorEvent, until: str | None = None) -> list[AlertMessage]:
        feed(self.engine, self.clock, events, ts(until) if until else None)
        return self.alerts

    def feed_all(self, events: Iterable[SensorEvent]) -> list[AlertMessage]:
        feed(self.engine, self.clock, events)
        return self.alerts

    def until(self, local: str) -> list[AlertMessage]:
        advance(self.engine, self.clock, ts(local))
        return self.alerts

    def raised(self) -> list[AlertMessage]:
        return [a for a in self.alerts if a.state is AlertState.RAISED]


def states(alerts: Iterable[AlertMessage]) -> list[tuple[str, str]]:
    return [(a.kind, a.state.value) for a in alerts]


# ---- a regular person, for the learned routine -----------------------------------------


def _wall(day: date, h: int, m: int, s: int = 0) -> float:
    """Local wall time on ``day``; a time the clocks skip lands just after the gap."""
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=TZ).timestamp()


def routine_events(first: date, days: int, seed: int = 1) -> list[SensorEvent]:
    """``days`` regular days from 07:00 on ``first`` to 07:00 after the last night.

    In bed 23:00-07:00 (turning over at 02:00 and 04:30), the bathroom on getting up and
    before bed, the kitchen and the living room every ~20 min by day, a nap in the chair
    13:30-15:00. Every anchor is local wall time: across a DST change the person keeps to
    the clock on the wall.
    """
    rng = random.Random(seed)
    raw: list[tuple[float, str, float]] = []

    def by_day(day: date, start: tuple[int, int], end: tuple[int, int]) -> None:
        t, stop, n = _wall(day, *start), _wall(day, *end), 0
        while t < stop:
            raw.append((t, "kitchen" if n % 2 == 0 else "living", 1.0))
            t += 20 * M + rng.uniform(-3 * M, 3 * M)
            n += 1

    for i in range(days):
        day = first + timedelta(days=i)
        nxt = day + timedelta(days=1)
        raw += [
            (_wall(day, 7, 0), "bed", 0.0),
            (_wall(day, 7, 2), "bathroom", 1.0),
            (_wall(day, 7, 10), "bathroom", 1.0),
            (_wall(day, 7, 20), "kitchen", 1.0),
        ]
        by_day(day, (7, 40), (13, 20))
        raw += [
            (_wall(day, 13, 30), "chair", 1.0),
            (_wall(day, 14, 15), "living", 1.0),  # shifting in the chair: still seated
            (_wall(day, 15, 0), "chair", 0.0),
        ]
        by_day(day, (15, 10), (22, 30))
        raw += [
            (_wall(day, 22, 45), "bathroom", 1.0),
            (_wall(day, 22, 55), "bedroom", 1.0),
            (_wall(day, 23, 0), "bed", 1.0),
            (_wall(nxt, 2, 0), "bedroom", 1.0),  # turning over in bed
            (_wall(nxt, 4, 30), "bedroom", 1.0),
        ]
    raw.sort()
    return [SensorEvent(s, SENSORS[s][2], v, t, t) for t, s, v in raw]


def upto(events: list[SensorEvent], local: str) -> list[SensorEvent]:
    end = ts(local)
    return [e for e in events if e.wall <= end]


# ---- 1. away -----------------------------------------------------------------------------


def test_out_of_the_house_is_no_emergency_and_a_long_absence_is_information() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T13:55:00", "hallway"),
        ev("2026-11-10T14:00:00", "door"),
        ev("2026-11-10T14:00:30", "door", 0),
        until="2026-11-11T20:00:30",  # 30 h after the door
    )
    assert run.alerts == []
    run.until("2026-11-12T02:00:29")
    assert run.alerts == []
    run.until("2026-11-12T02:00:30")  # 36 h after the door closed
    (away,) = run.alerts
    assert (away.kind, away.state, away.severity) == ("away_long", "raised", "info")
    assert away.since == at("2026-11-10T14:00:30")
    assert away.at == at("2026-11-12T02:00:30")
    assert away.room is None
    assert away.evidence == {"away_h": 36.0}
    assert away.summary == "Out of the house for 36 h, since the door at 14:00."
    # coming home: the door is not yet inside, the kitchen is
    run.feed(ev("2026-11-12T10:00:00", "door"), ev("2026-11-12T10:00:20", "door", 0))
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-12T10:02:00", "kitchen"))
    home = run.alerts[-1]
    assert (home.id, home.kind, home.state) == (away.id, "away_long", AlertState.RESOLVED)
    assert home.at == at("2026-11-12T10:02:00")
    assert home.summary == "Home again after 44 h 2 min away."
    assert home.evidence == {"away_h": 44.0}
    run.until("2026-11-12T13:00:00")
    assert not any(a.severity is Severity.URGENT for a in run.alerts)
    assert len(run.alerts) == 2


# ---- 2. arrival --------------------------------------------------------------------------


def test_the_door_after_an_absence_is_coming_home_so_silence_counts_again() -> None:
    run = Run(FIXED_ONLY)
    run.feed(
        ev("2026-11-10T09:55:00", "hallway"),
        ev("2026-11-10T10:00:00", "door"),
        ev("2026-11-10T10:00:30", "door", 0),
        ev("2026-11-10T14:00:00", "door"),  # home again, and nothing else
        ev("2026-11-10T14:00:30", "door", 0),
        until="2026-11-11T14:00:00",
    )
    (raised,) = run.alerts
    assert (raised.kind, raised.state, raised.severity) == ("inactivity", "raised", "urgent")
    assert raised.since == at("2026-11-10T14:00:30")
    assert raised.room == "Hallway"
    assert "last seen in Hallway" in raised.summary
    assert raised.at <= at("2026-11-11T02:00:30")
    assert not run.watch.away


def test_a_person_who_came_home_has_the_hallway_limit_not_the_door_limit() -> None:
    # Home at 14:00 and collapsed in the hallway: the day limit (4 h, 'default') applies,
    # as for anyone last seen in the hallway, not the door's 12 h meant for "perhaps out".
    run = Run(FIXED_ONLY)
    run.feed(
        ev("2026-11-10T09:55:00", "hallway"),
        ev("2026-11-10T10:00:00", "door"),
        ev("2026-11-10T10:00:30", "door", 0),
        ev("2026-11-10T14:00:00", "door"),
        ev("2026-11-10T14:00:30", "door", 0),
        until="2026-11-11T14:00:00",
    )
    raised = run.raised()[0]
    assert raised.at == at("2026-11-10T18:00:30")
    assert raised.evidence == {"quiet_min": 240, "limit_min": 240}


# ---- 3. the door at night ------------------------------------------------------------------


def test_the_door_at_night_then_silence_is_urgent_after_half_an_hour() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T02:25:00", "bed", 0),
        ev("2026-11-10T02:27:00", "hallway"),
        ev("2026-11-10T02:29:50", "door"),
        ev("2026-11-10T02:30:00", "door", 0),
        until="2026-11-10T02:59:59",
    )
    assert run.alerts == []
    run.until("2026-11-10T03:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.state, raised.severity) == ("door_night", "raised", "urgent")
    assert raised.since == at("2026-11-10T02:30:00")
    assert raised.at == at("2026-11-10T03:00:00")
    assert raised.room == "Hallway"
    assert raised.evidence == {"quiet_min": 30, "door_min": 30}
    assert raised.summary == (
        "The front door opened at 02:30 at night and there has been no activity inside for 30 min."
    )
    # one alert for the whole night out: not a second one when the 'away' timer passes
    run.until("2026-11-10T12:00:00")
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-10T12:10:00", "hallway"))
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.state) == (raised.id, AlertState.RESOLVED)
    assert resolved.summary.startswith("Seen moving again in Hallway after 9 h 40 min")


def test_the_door_by_day_is_going_out_not_a_night_exit() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T14:27:00", "hallway"),
        ev("2026-11-10T14:29:50", "door"),
        ev("2026-11-10T14:30:00", "door", 0),
        until="2026-11-11T14:30:00",  # a whole day out
    )
    assert run.alerts == []
    assert run.watch.away


def test_the_door_at_night_then_activity_inside_is_nothing() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T02:25:00", "bed", 0),
        ev("2026-11-10T02:27:00", "hallway"),
        ev("2026-11-10T02:29:50", "door"),  # checking the door, or putting out the bin
        ev("2026-11-10T02:30:00", "door", 0),
        ev("2026-11-10T02:50:00", "hallway"),
        ev("2026-11-10T02:55:00", "kitchen"),
        ev("2026-11-10T03:05:00", "bedroom"),
        ev("2026-11-10T03:06:00", "bed"),
        until="2026-11-10T06:00:00",
    )
    assert run.alerts == []
    assert run.watch.door_mono is None and not run.watch.away


# ---- 4. bathroom overstay --------------------------------------------------------------


def test_a_long_stay_in_the_bathroom_is_urgent_after_the_fixed_limit() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T03:05:00", "bed", 0),
        *every("2026-11-10T03:10:00", "2026-11-10T03:40:00", 5 * M, "bathroom"),
        until="2026-11-10T04:09:59",
    )
    assert run.alerts == []
    run.until("2026-11-10T04:10:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.state, raised.severity) == (
        "bathroom_overstay",
        "raised",
        "urgent",
    )
    assert raised.at == at("2026-11-10T04:10:00")
    assert raised.room == "Bathroom"
    assert raised.evidence == {"stay_min": 60, "limit_min": 60}
    assert raised.summary == ("In the bathroom for 1 h; the longest usual stay with margin is 1 h.")
    # the bathroom's own inactivity limit (night: 8 h) is far off, and would not add one
    run.until("2026-11-10T04:30:00")
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-10T04:31:00", "hallway"))
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.kind, resolved.state) == (
        raised.id,
        "bathroom_overstay",
        AlertState.RESOLVED,
    )
    assert resolved.summary == "Seen moving again in Hallway after 51 min without activity."
    assert resolved.evidence == {"quiet_min": 51}


def test_movement_on_the_bathroom_floor_does_not_hide_an_overstay() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T03:05:00", "bed", 0),
        *every("2026-11-10T03:10:00", "2026-11-10T05:00:00", 5 * M, "bathroom"),
        until="2026-11-10T05:30:00",
    )
    assert not any(a.kind == "inactivity" for a in run.alerts)  # it never would fire
    raised = run.raised()[0]
    assert (raised.kind, raised.at) == ("bathroom_overstay", at("2026-11-10T04:10:00"))
    assert raised.evidence == {"stay_min": 60, "limit_min": 60}


def test_a_bathroom_overstay_is_dated_from_entering_the_bathroom() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T03:05:00", "bed", 0),
        *every("2026-11-10T03:10:00", "2026-11-10T03:40:00", 5 * M, "bathroom"),
        until="2026-11-10T04:10:00",
    )
    (raised,) = run.alerts
    assert raised.since == at("2026-11-10T03:10:00")  # "in the bathroom for 1 h" since then


# ---- 5. not up -------------------------------------------------------------------------------


def _evening() -> list[SensorEvent]:
    return [
        ev("2026-11-09T20:00:00", "kitchen"),
        ev("2026-11-09T22:45:00", "bathroom"),
        ev("2026-11-09T22:55:00", "bedroom"),
        ev("2026-11-09T23:00:00", "bed"),
        ev("2026-11-10T01:40:00", "bedroom"),  # turning over
        ev("2026-11-10T03:10:00", "bedroom"),
    ]


def test_not_up_by_the_fixed_time_is_urgent_at_that_time() -> None:
    run = Run()  # wake-up rule on, not_up_by 10:00 until learned
    run.feed(*_evening(), until="2026-11-10T09:59:59")
    assert run.alerts == []
    run.until("2026-11-10T10:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.state, raised.severity) == ("not_up", "raised", "urgent")
    assert raised.since == at("2026-11-10T03:10:00")
    assert raised.at == at("2026-11-10T10:00:00")
    assert raised.room == "Bedroom"
    assert raised.evidence == {"quiet_min": 410, "by_min": 600}
    assert raised.summary == (
        "Not up yet: no one seen out of the bedroom by 10:00; last activity 6 h 50 min ago, "
        "in bed (Bedroom)."
    )
    # the bed's own night limit (14 h) does not add a second alert for the same morning
    run.until("2026-11-10T18:00:00")
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-10T18:05:00", "bed", 0))
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.state, resolved.at) == (
        raised.id,
        AlertState.RESOLVED,
        at("2026-11-10T18:05:00"),
    )
    assert resolved.summary == "Seen moving again in Bedroom after 14 h 55 min without activity."
    assert resolved.evidence == {"quiet_min": 895}


def test_a_toilet_visit_at_five_then_back_to_bed_is_not_getting_up() -> None:
    run = Run()
    run.feed(
        *_evening(),
        ev("2026-11-10T05:00:00", "bed", 0),
        ev("2026-11-10T05:02:00", "bathroom"),
        ev("2026-11-10T05:08:00", "bathroom"),
        ev("2026-11-10T05:12:00", "bedroom"),
        ev("2026-11-10T05:13:00", "bed"),
        until="2026-11-10T09:59:59",
    )
    assert run.alerts == []
    run.until("2026-11-10T10:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.at) == (
        "not_up",
        "urgent",
        at("2026-11-10T10:00:00"),
    )
    assert raised.since == at("2026-11-10T05:13:00")
    assert raised.evidence == {"quiet_min": 287, "by_min": 600}


def test_getting_up_at_half_past_seven_is_nothing() -> None:
    run = Run()
    run.feed(
        *_evening(),
        ev("2026-11-10T07:30:00", "bed", 0),
        ev("2026-11-10T07:32:00", "bathroom"),
        ev("2026-11-10T07:45:00", "kitchen"),
        *every("2026-11-10T08:00:00", "2026-11-10T11:00:00", 20 * M, "living"),
        until="2026-11-10T12:00:00",
    )
    assert run.alerts == []
    assert run.watch.up_day == date(2026, 11, 10).toordinal()


# ---- 6. blind ----------------------------------------------------------------------------


def test_every_sensor_offline_is_monitoring_lost_not_an_emergency() -> None:
    run = Run(FIXED_ONLY)
    run.feed(
        ev("2026-11-10T09:00:00", "kitchen"),
        *[offline("2026-11-10T09:30:00", sid) for sid in SENSORS],
        until="2026-11-10T12:59:59",
    )
    assert run.alerts == []
    run.until("2026-11-10T13:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.state, raised.severity) == (
        "monitoring_lost",
        "raised",
        "warning",
    )
    assert raised.since == at("2026-11-10T09:00:00")
    assert raised.at == at("2026-11-10T13:00:00")
    assert raised.room is None
    assert raised.evidence == {"quiet_min": 240, "sensors_down": ACTIVITY_SENSORS}
    assert raised.summary == (
        f"No activity for 4 h, but {ACTIVITY_SENSORS} of {ACTIVITY_SENSORS} activity sensors "
        "are offline or a driver is down: the hub cannot tell whether all is well."
    )
    run.until("2026-11-11T13:00:00")
    assert len(run.alerts) == 1  # and not an urgent inactivity after it
    run.feed(ev("2026-11-11T13:05:00", "kitchen"))  # the person, seen by a sensor back online
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.kind, resolved.state) == (
        raised.id,
        "monitoring_lost",
        AlertState.RESOLVED,
    )
    assert resolved.summary == "Seen moving again in Kitchen after 28 h 5 min without activity."
    assert run.watch.offline == set(SENSORS) - {"kitchen"}


def test_one_sensor_offline_of_several_still_raises_the_emergency_and_says_so() -> None:
    run = Run(FIXED_ONLY)
    run.feed(
        ev("2026-11-10T09:00:00", "kitchen"),
        offline("2026-11-10T09:30:00", "bathroom"),
        until="2026-11-10T13:00:00",
    )
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.at) == (
        "inactivity",
        "urgent",
        at("2026-11-10T13:00:00"),
    )
    assert raised.evidence == {"quiet_min": 240, "limit_min": 240, "sensors_down": 1}
    assert raised.summary == (
        "No activity for 4 h, last seen in Kitchen; the limit is 4 h. "
        f"1 of {ACTIVITY_SENSORS} activity sensors are offline."
    )


def test_a_sensor_that_reports_again_is_no_longer_counted_down() -> None:
    run = Run(FIXED_ONLY)
    run.feed(
        offline("2026-11-10T08:00:00", "bathroom"),
        ev("2026-11-10T08:30:00", "bathroom"),  # it saw the person: it works
        ev("2026-11-10T09:00:00", "kitchen"),
        until="2026-11-10T13:00:00",
    )
    (raised,) = run.alerts
    assert raised.evidence == {"quiet_min": 240, "limit_min": 240}


def test_a_driver_down_as_the_quiet_begins_is_monitoring_lost() -> None:
    run = Run(FIXED_ONLY)
    run.feed(ev("2026-11-10T09:00:00", "kitchen"), until="2026-11-10T09:00:30")
    run.engine.driver_state("zigbee", up=False)
    run.until("2026-11-10T13:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.since, raised.at) == (
        "monitoring_lost",
        "warning",
        at("2026-11-10T09:00:00"),
        at("2026-11-10T13:00:00"),
    )
    assert raised.evidence == {"quiet_min": 240, "sensors_down": 0}


def test_a_driver_down_during_the_quiet_is_monitoring_lost() -> None:
    run = Run(FIXED_ONLY)
    run.feed(ev("2026-11-10T09:00:00", "kitchen"), until="2026-11-10T09:30:00")
    run.engine.driver_state("zigbee", up=False)  # nothing can be heard from 09:30 on
    run.until("2026-11-10T13:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.severity) == ("monitoring_lost", "warning")


# ---- 7. mode -------------------------------------------------------------------------------


def test_away_mode_resolves_and_silences_and_normal_counts_the_quiet_from_then() -> None:
    run = Run(FIXED_ONLY)
    run.feed(ev("2026-11-10T09:00:00", "kitchen"), until="2026-11-10T13:30:00")
    (raised,) = run.alerts
    assert raised.kind == "inactivity"
    run.engine.set_mode(Mode.AWAY)
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.state) == (raised.id, AlertState.RESOLVED)
    assert resolved.summary == "The home was set to away."
    assert resolved.at == at("2026-11-10T13:30:00")
    run.until("2026-11-13T10:00:00")  # three days away: nothing, not even not_up
    assert len(run.alerts) == 2
    run.engine.set_mode(Mode.NORMAL)
    run.until("2026-11-13T13:59:59")
    assert len(run.alerts) == 2
    run.until("2026-11-13T14:00:00")
    again = run.alerts[-1]
    assert (again.kind, again.state, again.severity) == ("inactivity", "raised", "urgent")
    assert again.id != raised.id
    assert again.since == at("2026-11-13T10:00:00")
    assert again.at == at("2026-11-13T14:00:00")
    assert again.evidence == {"quiet_min": 240, "limit_min": 240}


def test_activity_while_away_raises_nothing() -> None:
    run = Run()
    run.feed(ev("2026-11-10T09:00:00", "kitchen"))
    run.engine.set_mode(Mode.AWAY)
    run.feed(  # a neighbour waters the plants
        ev("2026-11-11T11:00:00", "door"),
        ev("2026-11-11T11:02:00", "kitchen"),
        ev("2026-11-11T11:10:00", "bathroom"),
        ev("2026-11-11T11:40:00", "door"),
        until="2026-11-14T10:00:00",
    )
    assert run.alerts == []


def test_after_a_visitor_while_away_normal_mode_uses_the_default_limit() -> None:
    run = Run(FIXED_ONLY)
    run.feed(ev("2026-11-10T09:00:00", "kitchen"))
    run.engine.set_mode(Mode.AWAY)
    run.feed(
        ev("2026-11-11T11:00:00", "door"),
        ev("2026-11-11T11:02:00", "kitchen"),
        ev("2026-11-11T11:40:00", "door"),
        until="2026-11-13T10:00:00",
    )
    run.engine.set_mode(Mode.NORMAL)
    run.until("2026-11-14T10:00:00")
    (again,) = run.alerts
    assert again.at == at("2026-11-13T14:00:00")  # the 'default' day limit, 4 h
    assert again.evidence == {"quiet_min": 240, "limit_min": 240}


def test_holiday_mode_also_silences_the_get_up_rule() -> None:
    run = Run()
    run.feed(*_evening())
    run.until("2026-11-10T05:00:00")
    run.engine.set_mode(Mode.HOLIDAY)
    run.until("2026-11-12T12:00:00")
    assert run.alerts == []


# ---- 8. one situation, one alert -------------------------------------------------------


def test_an_open_inactivity_alert_keeps_not_up_from_adding_a_second() -> None:
    run = Run()
    # the living room at 20:00 and no more: the night limit (10 h) ends at 06:00
    run.feed(ev("2026-11-09T20:00:00", "living"), until="2026-11-10T12:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.at) == ("inactivity", at("2026-11-10T06:00:00"))
    # 10:00 passed without a not_up alert: the same person, the same silence


def test_a_bathroom_overstay_keeps_inactivity_and_not_up_from_adding_more() -> None:
    run = Run()
    run.feed(ev("2026-11-09T21:00:00", "bathroom"), until="2026-11-10T12:00:00")
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.at) == (
        "bathroom_overstay",
        "urgent",
        at("2026-11-09T22:00:00"),
    )
    # the bathroom's inactivity limit (05:00) and not up (10:00) passed without a second


# ---- 9. acknowledgement ------------------------------------------------------------------


def test_an_acknowledged_alert_is_not_raised_again_for_the_same_quiet() -> None:
    run = Run(FIXED_ONLY)
    run.feed(ev("2026-11-10T09:00:00", "kitchen"), until="2026-11-10T13:05:00")
    (raised,) = run.alerts
    assert run.engine.acknowledge(raised.id)
    resolved = run.alerts[-1]
    assert (resolved.id, resolved.state, resolved.summary) == (
        raised.id,
        AlertState.RESOLVED,
        "Acknowledged by the centre.",
    )
    assert resolved.at == at("2026-11-10T13:05:00")
    run.until("2026-11-11T09:00:00")  # past midnight, when the timers are worked out anew
    assert len(run.alerts) == 2
    # new activity, then a new quiet: a new alert
    run.feed(ev("2026-11-11T09:30:00", "kitchen"), until="2026-11-11T13:29:59")
    assert len(run.alerts) == 2
    run.until("2026-11-11T13:30:00")
    again = run.alerts[-1]
    assert (again.kind, again.state, again.since) == (
        "inactivity",
        AlertState.RAISED,
        at("2026-11-11T09:30:00"),
    )
    assert again.id != raised.id
    assert not run.engine.acknowledge(raised.id)


def test_an_acknowledged_not_up_is_not_raised_again_the_next_morning() -> None:
    run = Run(DetectionConfig.model_validate({"inactivity": {"enabled": False}}))
    run.feed(*_evening(), until="2026-11-10T10:05:00")
    (raised,) = run.alerts
    assert raised.kind == "not_up"
    assert run.engine.acknowledge(raised.id)
    run.until("2026-11-12T12:00:00")  # two more mornings of the same silence
    assert states(run.alerts) == [("not_up", "raised"), ("not_up", "resolved")]


@pytest.mark.parametrize("first", ["not_up", "inactivity"])
def test_an_acknowledged_silence_is_not_raised_again_under_another_kind(first: str) -> None:
    run = Run()
    if first == "not_up":
        run.feed(*_evening(), until="2026-11-10T10:05:00")
    else:
        run.feed(ev("2026-11-10T09:00:00", "kitchen"), until="2026-11-10T13:05:00")
    (raised,) = run.alerts
    assert raised.kind == first
    assert run.engine.acknowledge(raised.id)
    run.until("2026-11-12T12:00:00")
    assert len(run.alerts) == 2  # raised and acknowledged, nothing more


# ---- 10. learned limits ----------------------------------------------------------------


@pytest.fixture(scope="module")
def learned_run() -> tuple[list[SensorEvent], date]:
    """Eleven regular days from Monday 2 November 2026 (read-only, shared)."""
    first = date(2026, 11, 2)
    return routine_events(first, 11, seed=5), first


def test_ten_regular_days_teach_a_shorter_limit_by_day(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    events, _ = learned_run
    run = Run(FIXED_ONLY)
    # day 11: the morning as usual until 10:00 in the kitchen, then nothing
    run.feed_all([*upto(events, "2026-11-12T09:59:00"), ev("2026-11-12T10:00:00", "kitchen")])
    assert run.alerts == []
    routine = run.watch.routine
    assert routine.ready and routine.days_seen == 11
    assert routine.limit(Place.KITCHEN, 10 * H) == 2 * H  # ~20 min spells: the floor
    run.until("2026-11-12T11:59:59")
    assert run.alerts == []
    run.until("2026-11-12T12:00:00")  # not 14:00, the fixed day limit
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("inactivity", "urgent", "Kitchen")
    assert raised.since == at("2026-11-12T10:00:00")
    assert raised.at == at("2026-11-12T12:00:00")
    assert raised.evidence == {"quiet_min": 120, "limit_min": 120}
    assert raised.summary == (
        "No activity for 2 h, last seen in Kitchen; the usual longest here at this time is 2 h."
    )


def test_the_bathroom_limit_is_learned_from_the_usual_stays(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    events, _ = learned_run
    run = Run()
    run.feed_all(upto(events, "2026-11-12T09:59:00"))
    # stays of 18 min (07:02-07:20) and 10 min (22:45-22:55): 18 x 1.5 + 20 = 47 min
    assert run.watch.routine.usual_bath() == 47 * M
    run.feed(
        *every("2026-11-12T10:00:00", "2026-11-12T10:20:00", 5 * M, "bathroom"),
        until="2026-11-12T10:46:59",
    )
    assert run.alerts == []
    run.until("2026-11-12T10:47:00")  # not 11:00, the fixed hour
    (raised,) = run.alerts
    assert (raised.kind, raised.severity, raised.room) == (
        "bathroom_overstay",
        "urgent",
        "Bathroom",
    )
    assert raised.at == at("2026-11-12T10:47:00")
    assert raised.evidence == {"stay_min": 47, "limit_min": 47}
    assert raised.summary == (
        "In the bathroom for 47 min; the longest usual stay with margin is 47 min."
    )


NO_NIGHT_RULE = DetectionConfig.model_validate({"inactivity": {"night_learned": False}})
NIGHT_RULE = DetectionConfig.model_validate(
    {"inactivity": {"night_learned": True, "night_margin": 1.0, "night_window": 0}}
)


def test_a_learned_night_in_bed_does_not_alarm_before_the_learned_get_up_limit(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    events, _ = learned_run
    run = Run(NO_NIGHT_RULE)
    run.feed_all([*upto(events, "2026-11-12T22:56:00"), ev("2026-11-12T23:00:00", "bed")])
    routine = run.watch.routine
    getup = routine.usual_getup(date(2026, 11, 13).toordinal())
    assert getup == 8 * H + 2 * M  # up at 07:02 every day, plus the hour's margin
    limit = routine.limit(Place.IN_BED, 23 * H)
    assert limit is not None and limit < 5 * H  # alone, the bed's limit would end at 03:xx
    run.until("2026-11-13T08:01:59")
    assert run.alerts == []
    run.until("2026-11-13T08:02:00")
    (raised,) = run.alerts
    assert (raised.state, raised.severity) == (AlertState.RAISED, Severity.URGENT)
    assert raised.since == at("2026-11-12T23:00:00")
    assert raised.at == at("2026-11-13T08:02:00")
    assert raised.room == "Bedroom"


def test_a_learned_night_in_bed_raises_not_up_at_the_learned_get_up_limit(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    events, _ = learned_run
    run = Run(NO_NIGHT_RULE)
    run.feed_all([*upto(events, "2026-11-12T22:56:00"), ev("2026-11-12T23:00:00", "bed")])
    run.until("2026-11-13T08:02:00")
    (raised,) = run.alerts
    assert raised.kind == "not_up"
    assert "by 08:02 (usual latest plus margin)" in raised.summary


def test_a_usual_night_raises_nothing(learned_run: tuple[list[SensorEvent], date]) -> None:
    events, _ = learned_run
    run = Run(NIGHT_RULE)
    run.feed_all(upto(events, "2026-11-13T06:59:00"))
    run.until("2026-11-13T06:59:00")
    assert run.alerts == []


def test_a_night_without_its_usual_stirring_raises_inactivity_at_that_hour(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    # every night the bedroom sees the person turn over at 02:00 and 04:30; tonight the
    # person went to bed at 23:00 and nothing moved since
    events, _ = learned_run
    run = Run(NIGHT_RULE)
    run.feed_all([*upto(events, "2026-11-12T22:56:00"), ev("2026-11-12T23:00:00", "bed")])
    routine = run.watch.routine
    longest = routine.cover_longest(Place.IN_BED, 2 * H + 20 * M)
    # by 02:30 no usual night has been quiet for more than the 30 min since turning over
    assert longest == 30 * M
    run.until("2026-11-13T02:14:59")  # until then the quiet since 23:00 was usual
    assert run.alerts == []
    run.until("2026-11-13T02:15:00")  # 3 h 15 min against 30 min plus the hour's pad
    (raised,) = run.alerts
    assert (raised.kind, raised.severity) == ("inactivity", Severity.URGENT)
    assert raised.since == at("2026-11-12T23:00:00")
    assert raised.at == at("2026-11-13T02:15:00")
    assert raised.evidence == {"quiet_min": 195, "limit_min": 90}
    assert "at this hour of the night the longest usual quiet with margin is" in raised.summary
    # the person is seen again: the alert resolves
    run.feed(ev("2026-11-13T03:40:00", "bedroom"))
    assert [m.state for m in run.alerts] == [AlertState.RAISED, AlertState.RESOLVED]


def test_without_the_night_rule_the_same_night_waits_for_the_get_up_limit(
    learned_run: tuple[list[SensorEvent], date],
) -> None:
    events, _ = learned_run
    run = Run(NO_NIGHT_RULE)
    run.feed_all([*upto(events, "2026-11-12T22:56:00"), ev("2026-11-12T23:00:00", "bed")])
    run.until("2026-11-13T07:00:00")
    assert run.alerts == []


# ---- 11. daylight saving -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bed", "not_up", "quiet_min"),
    [
        # spring forward: 02:00 CET -> 03:00 CEST; the night is an hour shorter
        ("2026-03-28T23:00:00+01:00", "2026-03-29T10:00:00+02:00", 600),
        # fall back: 03:00 CEST -> 02:00 CET; the night is an hour longer
        ("2026-10-24T23:00:00+02:00", "2026-10-25T10:00:00+01:00", 720),
    ],
    ids=["spring", "autumn"],
)
def test_not_up_lands_on_the_local_time_of_the_change_day(
    bed: str, not_up: str, quiet_min: int
) -> None:
    run = Run()
    run.feed(
        ev(ts_local(ts(bed) - 2 * H), "kitchen"),
        ev(ts_local(ts(bed)), "bed"),
        until=ts_local(ts(not_up) - 1),
    )
    assert run.alerts == []
    run.until(ts_local(ts(not_up)))
    (raised,) = run.alerts
    assert raised.kind == "not_up"
    assert raised.at.isoformat() == not_up
    assert raised.evidence == {"quiet_min": quiet_min, "by_min": 600}
    assert run.monos[0] - ts(bed) == quiet_min * M  # real time, on the monotonic clock
    run.until(ts_local(ts(not_up) + 30 * H))
    assert len(run.alerts) == 1  # not twice


@pytest.mark.parametrize(
    ("seen", "alert"),
    [
        ("2026-03-28T22:30:00+01:00", "2026-03-29T09:30:00+02:00"),
        ("2026-10-24T22:30:00+02:00", "2026-10-25T07:30:00+01:00"),
    ],
    ids=["spring", "autumn"],
)
def test_the_night_limit_is_ten_real_hours_across_the_change(seen: str, alert: str) -> None:
    run = Run()
    run.feed(ev(seen, "kitchen"), until=ts_local(ts(alert) - 1))
    assert run.alerts == []
    run.until(ts_local(ts(alert) + 6 * H))
    (raised,) = run.alerts  # not_up at 10:00 is the same situation: no second alert
    assert raised.kind == "inactivity"
    assert raised.at.isoformat() == alert
    assert raised.evidence == {"quiet_min": 600, "limit_min": 600}


@pytest.mark.parametrize(
    ("first", "change_night", "quiet_bed", "getup"),
    [
        (date(2026, 3, 18), "2026-03-28", "2026-03-28T23:00:00+01:00", "2026-03-29T08:02:00+02:00"),
        pytest.param(
            date(2026, 10, 14),
            "2026-10-24",
            "2026-10-24T23:00:00+02:00",
            "2026-10-25T08:02:00+01:00",
        ),
    ],
    ids=["spring", "autumn"],
)
def test_a_learned_routine_keeps_working_across_the_change(
    first: date, change_night: str, quiet_bed: str, getup: str
) -> None:
    events = routine_events(first, 12, seed=9)  # ten days before the change night, and two
    run = Run()
    run.feed_all(events)
    assert run.watch.routine.ready
    assert run.alerts == []  # the change night and the day after are as normal as the rest
    # the same routine up to the evening of the change, then a night without getting up
    run = Run(NO_NIGHT_RULE)
    run.feed_all([*upto(events, f"{change_night}T22:56:00"), ev(quiet_bed, "bed")])
    run.until(ts_local(ts(getup) - 1))
    assert run.alerts == []
    run.until(ts_local(ts(getup) + 6 * H))
    raised = run.raised()
    assert len(raised) == 1
    assert raised[0].at.isoformat() == getup  # the learned 08:02, on the wall of that day
    # with the night rule, the missing stirring of the night is noticed within the night
    run = Run(NIGHT_RULE)
    run.feed_all([*upto(events, f"{change_night}T22:56:00"), ev(quiet_bed, "bed")])
    run.until(ts_local(ts(getup) + 6 * H))
    (night,) = run.raised()
    assert night.kind == "inactivity" and night.at.timestamp() < ts(getup)


# ---- 12. an unsynchronised wall clock ------------------------------------------------------

T0 = 1_000.0  # monotonic seconds at the start of an unsynchronised run


def _unsynced_run(config: DetectionConfig | None = None) -> tuple[Run, float]:
    run = Run(config)
    wall0 = ts("2026-11-10T10:00:00")  # what the unsynchronised clock says
    run.clock.set(wall0, T0, synced=False)
    return run, wall0


def _unsynced_ev(sensor: str, wall: float, mono: float, value: float = 1.0) -> SensorEvent:
    return SensorEvent(sensor, SENSORS[sensor][2], value, wall, mono)


@pytest.mark.parametrize("jump", [0.0, -1 * H, 3 * H], ids=["steady", "back-1h", "ahead-3h"])
def test_a_jumping_unsynchronised_wall_clock_does_not_move_the_alert(jump: float) -> None:
    run, wall0 = _unsynced_run()
    run.feed_all([_unsynced_ev("kitchen", wall0, T0)])
    advance(run.engine, run.clock, T0 + 2 * H)
    run.clock.set(run.clock.wall() + jump, T0 + 2 * H, synced=False)
    advance(run.engine, run.clock, T0 + 10 * H - 1)
    assert run.alerts == []
    advance(run.engine, run.clock, T0 + 30 * H)
    (raised,) = run.alerts
    # not synchronised: the hour is unknown, so the place's longer limit, night (10 h)
    assert run.monos == [T0 + 10 * H]
    assert (raised.kind, raised.severity, raised.clock_synced) == ("inactivity", "urgent", False)
    assert raised.evidence == {"quiet_min": 600, "limit_min": 600}
    assert raised.at.timestamp() == wall0 + 10 * H + jump


def test_no_get_up_rule_while_the_wall_clock_is_unsynchronised() -> None:
    run, _ = _unsynced_run()
    bed = ts("2026-11-09T23:00:00")
    run.feed_all([_unsynced_ev("bed", bed, T0)])
    advance(run.engine, run.clock, T0 + 14 * H - 1)  # past 10:00 by the wall
    assert run.alerts == []
    advance(run.engine, run.clock, T0 + 20 * H)
    (raised,) = run.alerts
    assert raised.kind == "inactivity"  # the bed's longest limit, 14 h: not not_up
    assert run.monos == [T0 + 14 * H]


def test_no_night_door_rule_while_the_wall_clock_is_unsynchronised() -> None:
    run, _ = _unsynced_run()
    door = ts("2026-11-10T02:30:00")
    run.feed_all(
        [
            _unsynced_ev("hallway", door - 60, T0),
            _unsynced_ev("door", door, T0 + 60),
            _unsynced_ev("door", door + 10, T0 + 70, 0.0),
        ]
    )
    advance(run.engine, run.clock, T0 + 70 + 36 * H)
    assert states(run.alerts) == [("away_long", "raised")]  # out, not a night exit
    assert run.monos == [T0 + 70 + 36 * H]


def test_learning_waits_for_a_synchronised_clock() -> None:
    run, wall0 = _unsynced_run()
    routine = run.watch.routine
    for k in range(6):
        run.feed_all([_unsynced_ev("kitchen", wall0 + k * 600, T0 + k * 600)])
    assert (routine.sp_n, routine.days_seen) == (0, 0)
    # synchronised from now on: the first spell straddles the change and is not learned
    base = T0 + 6 * 600
    wall = ts("2026-11-10T12:00:00")
    for k in range(4):
        run.clock.set(wall + k * 600, base + k * 600, synced=True)
        run.feed_all([_unsynced_ev("living", wall + k * 600, base + k * 600)])
    assert routine.sp_n == 3
    assert list(routine.sp_dur[:3]) == [600.0, 600.0, 600.0]
    assert routine.days_seen == 1


# ---- 13. keeping the routine -------------------------------------------------------------


def _engine(alerts: list[AlertMessage]) -> tuple[Engine, SimClock]:
    clock = SimClock(TZ)
    engine = Engine(
        "h-test", clock, HOME, DetectionConfig(), alerts.append, detectors=[PersonWatch]
    )
    return engine, clock


def _routine_of(engine: Engine) -> Routine:
    watch = engine.detectors[0]
    assert isinstance(watch, PersonWatch)
    return watch.routine


def test_the_keeper_saves_and_a_fresh_engine_loads_the_same_routine(
    tmp_path: Path, learned_run: tuple[list[SensorEvent], date]
) -> None:
    events, _ = learned_run
    config = RoutineConfig(path=tmp_path / "state" / "routine.npz")
    engine, clock = _engine([])
    keeper = RoutineKeeper.for_engine(engine, config)
    assert keeper is not None
    feed(engine, clock, upto(events, "2026-11-10T12:00:00"))
    assert keeper.save()
    assert config.path is not None and config.path.is_file()
    before = _routine_of(engine)
    before.refresh(force=True)  # limits are otherwise recomputed once a day

    alerts: list[AlertMessage] = []
    fresh, fresh_clock = _engine(alerts)
    loaded = RoutineKeeper.for_engine(fresh, config)
    assert loaded is not None
    after = _routine_of(fresh)
    assert after is loaded.routine
    assert after.days_seen == before.days_seen == 9
    assert after.sp_n == before.sp_n > 0
    for name in Routine._ARRAYS:  # every observation came back as it was
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), name)
    after.refresh(force=True)
    np.testing.assert_array_equal(after.limits, before.limits)
    assert after.usual_getup(date(2026, 11, 11).toordinal()) == 8 * H + 2 * M
    # and it is used: a quiet in the kitchen gets the learned limit at once
    feed(fresh, fresh_clock, [ev("2026-11-10T12:10:00", "kitchen")], ts("2026-11-10T14:10:00"))
    (raised,) = alerts
    assert raised.evidence == {"quiet_min": 120, "limit_min": 120}


def _damaged(kind: str, path: Path) -> bytes:
    """A routine file damaged in one of the ways a Pi's SD card or a person manages."""
    if kind == "garbage":
        return b"not a routine at all"
    if kind == "zip-magic":
        return b"PK\x03\x04 and then nothing of a zip"
    routine = Routine(TZ)
    routine.save(path)
    whole = path.read_bytes()
    if kind == "truncated":
        return whole[: len(whole) // 2]
    assert kind == "empty"
    return b""


@pytest.mark.parametrize("kind", ["garbage", "zip-magic", "truncated", "empty"])
def test_a_corrupt_routine_file_is_moved_aside_and_the_engine_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    path = tmp_path / "routine.npz"
    damaged = _damaged(kind, path)
    path.write_bytes(damaged)
    engine, _ = _engine([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.ERROR, logger="detection.keeper"):
            keeper = RoutineKeeper.for_engine(engine, RoutineConfig(path=path))
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []  # closed
    assert keeper is not None
    aside = tmp_path / "routine.npz.corrupt-1"
    assert aside.read_bytes() == damaged
    assert not path.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "learned routine unreadable" in message and str(aside) in message
    routine = _routine_of(engine)
    assert routine is keeper.routine
    assert (routine.days_seen, routine.sp_n, routine.ready) == (0, 0, False)


def test_a_second_corrupt_file_does_not_overwrite_the_first_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "routine.npz"
    path.write_bytes(b"first")
    RoutineKeeper.for_engine(_engine([])[0], RoutineConfig(path=path))
    path.write_bytes(b"second")
    RoutineKeeper.for_engine(_engine([])[0], RoutineConfig(path=path))
    assert (tmp_path / "routine.npz.corrupt-1").read_bytes() == b"first"
    assert (tmp_path / "routine.npz.corrupt-2").read_bytes() == b"second"
    assert not path.exists()


def test_a_routine_of_another_version_is_moved_aside_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routine.npz"
    np.savez(path, version=np.array(VERSION + 1))
    with caplog.at_level(logging.ERROR, logger="detection.keeper"):
        RoutineKeeper.for_engine(_engine([])[0], RoutineConfig(path=path))
    assert (tmp_path / "routine.npz.corrupt-1").is_file()
    assert f"routine version {VERSION + 1}, not {VERSION}" in caplog.text


def test_a_routine_learned_in_another_time_zone_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routine.npz"
    elsewhere = Routine(ZoneInfo("America/New_York"))
    elsewhere.days_seen = 30
    elsewhere.save(path)
    engine, _ = _engine([])
    with caplog.at_level(logging.ERROR, logger="detection.keeper"):
        RoutineKeeper.for_engine(engine, RoutineConfig(path=path))
    assert _routine_of(engine).days_seen == 0
    assert (tmp_path / "routine.npz.corrupt-1").is_file()
    assert "learned in time zone America/New_York" in caplog.text


@pytest.mark.parametrize("how", ["file-in-the-way", "read-only"])
def test_a_save_that_cannot_write_returns_false_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    if how == "file-in-the-way":
        (tmp_path / "state").write_text("a file where the folder should be")
        path = tmp_path / "state" / "routine.npz"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to a read-only folder anyway")
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        path = folder / "routine.npz"
    engine, clock = _engine([])
    keeper = RoutineKeeper.for_engine(engine, RoutineConfig(path=path))
    assert keeper is not None
    feed(engine, clock, every("2026-11-10T09:00:00", "2026-11-10T10:00:00", 10 * M, "kitchen"))
    with caplog.at_level(logging.ERROR, logger="detection.keeper"):
        assert keeper.save() is False
        assert keeper.save() is False
    assert keeper.failures == 2
    assert not path.exists()
    assert [r.levelno for r in caplog.records].count(logging.ERROR) == 2
    assert "could not save the learned routine" in caplog.text
    assert _routine_of(engine).sp_n == 6  # what it learned is kept in memory


# ---- 14. a replay keeps the routine --------------------------------------------------------


def test_a_replay_with_a_routine_path_writes_the_routine_at_the_end(tmp_path: Path) -> None:
    sim = simulate(3, 8, date(2026, 11, 2), TZ, "typical")
    trace = tmp_path / "home.jsonl"
    write_trace(trace, sim.header, sim.events)
    routine_path = tmp_path / "state" / "routine.npz"
    config = tmp_path / "hub.toml"
    config.write_text(
        '[hub]\nid = "h-routine"\ntimezone = "Europe/Amsterdam"\n'
        '[uplink]\ntype = "memory"\n'
        f'[detection.routine]\npath = "{routine_path}"\nsave_interval = "30d"\n',
        encoding="utf-8",
    )
    runtime = replay_runtime(trace, config, "max")
    keeper = runtime.routine_keeper
    assert keeper is not None and keeper.path == routine_path
    assert not routine_path.exists()  # nothing learned yet at the start
    asyncio.run(runtime.run())
    assert routine_path.is_file()  # the save interval is 30 days: this is the last save
    saved = Routine(TZ)
    saved.load(routine_path)
    assert saved.days_seen == keeper.routine.days_seen == 3
    assert saved.sp_n == keeper.routine.sp_n > 100
    assert list(tmp_path.joinpath("state").iterdir()) == [routine_path]  # no temporary left


# ---- a live hub starting during a quiet ----------------------------------------------------


def _started(local: str, mode: Mode = Mode.NORMAL) -> Run:
    """A hub that starts at ``local`` (a power cut is over) and never sees an event."""
    run = Run()
    t = ts(local)
    run.clock.set(t, t, True)  # as in every test here: monotonic = wall
    if mode is not Mode.NORMAL:
        run.engine.set_mode(mode)
    run.engine.start()
    return run


def test_a_hub_started_during_a_quiet_raises_by_the_fixed_limit_without_any_event() -> None:
    run = _started("2026-11-10T10:00:00")
    run.until("2026-11-10T13:59:59")
    assert run.alerts == []
    run.until("2026-11-10T14:00:00")  # 4 h: the fixed day limit for an unknown place
    (raised,) = run.alerts
    assert (raised.kind, raised.severity) == ("inactivity", Severity.URGENT)
    assert raised.since == at("2026-11-10T10:00:00")  # the quiet counts from the start


def test_a_hub_started_before_the_get_up_time_raises_not_up() -> None:
    run = _started("2026-11-10T06:00:00")
    run.until("2026-11-10T10:00:00")
    (raised,) = run.alerts
    assert raised.kind == "not_up" and raised.at == at("2026-11-10T10:00:00")


def test_a_hub_started_in_away_mode_waits() -> None:
    run = _started("2026-11-10T10:00:00", Mode.AWAY)
    run.until("2026-11-11T10:00:00")
    assert run.alerts == []


def test_without_the_start_a_silent_hub_never_raises() -> None:
    """What the start is for: before it, a restart during a quiet stayed silent."""
    run = Run()
    run.clock.set(ts("2026-11-10T10:00:00"), ts("2026-11-10T10:00:00"), True)
    run.until("2026-11-11T10:00:00")
    assert run.alerts == []
