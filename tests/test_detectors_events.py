"""The event rules: emergencies, intrusion, temperature and sensor health.

Every test drives an engine with one detector over a ``SimClock``. Monotonic time is
offset from wall time on purpose, so that a rule measuring a duration on the wall clock
(or stamping an alert with monotonic time) gets the wrong answer and fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.messages import AlertMessage, AlertState, Mode, Severity
from detection.drive import advance, feed
from detection.emergency import Emergency
from detection.engine import INF, Detector, Engine
from detection.intrusion import Intrusion
from detection.sensorhealth import SensorHealth, down_sensors
from detection.temperature import Temperature

TZ = ZoneInfo("Europe/Amsterdam")
OFFSET = 1_700_000_000.0  # monotonic = wall - OFFSET

RAISED, UPDATED, RESOLVED = AlertState.RAISED, AlertState.UPDATED, AlertState.RESOLVED


def spec(room: str, role: Role, kind: EventKind | None = None, **kw: object) -> SensorSpec:
    return SensorSpec.model_validate({"room": room, "role": role, "kind": kind, **kw})


HOME = HomeMap(
    sensors={
        "kitchen-motion": spec("Kitchen", Role.KITCHEN, EventKind.MOTION),
        "living-motion": spec("Living", Role.LIVING, EventKind.MOTION),
        "bathroom-motion": spec("Bathroom", Role.BATHROOM, EventKind.MOTION),
        "fall-radar": spec("Bathroom", Role.BATHROOM, EventKind.FALL),
        "pendant": spec("Living", Role.WEARABLE, EventKind.BUTTON, label="Pendant"),
        "kitchen-smoke": spec("Kitchen", Role.KITCHEN, EventKind.SMOKE),
        "hall-smoke": spec("Hallway", Role.HALLWAY, EventKind.SMOKE),
        "washer-leak": spec("Bathroom", Role.OTHER, EventKind.WATER_LEAK),
        "front-door": spec("Hallway", Role.FRONT_DOOR, EventKind.CONTACT, label="Front door"),
        "bedroom-window": spec("Bedroom", Role.WINDOW, EventKind.CONTACT),
        "fridge": spec("Kitchen", Role.KITCHEN, EventKind.CONTACT),
        "living-temp": spec("Living", Role.LIVING, EventKind.TEMPERATURE, report_interval_s=600),
        "bedroom-temp": spec("Bedroom", Role.BEDROOM, EventKind.TEMPERATURE),
        "bedroom-temp-2": spec("Bedroom", Role.BED, EventKind.TEMPERATURE),
        "pendant-temp": spec("Living", Role.WEARABLE, EventKind.TEMPERATURE),
    }
)

#: the home for the sensor-health rule: few sensors, so each alert is the one tested
HEALTH_HOME = HomeMap(
    sensors={
        "kitchen-motion": spec("Kitchen", Role.KITCHEN, EventKind.MOTION),
        "living-motion": spec("Living", Role.LIVING, EventKind.MOTION),
        "bedroom-motion": spec("Bedroom", Role.BEDROOM, EventKind.MOTION, label="Bedroom PIR"),
        "pendant": spec("Living", Role.WEARABLE, EventKind.BUTTON),
        "garden-door": spec("Kitchen", Role.OUTSIDE_DOOR, EventKind.CONTACT),
        "living-temp": spec("Living", Role.LIVING, EventKind.TEMPERATURE, report_interval_s=3600),
        "attic-temp": spec("Attic", Role.OTHER, EventKind.TEMPERATURE),
    }
)


def ts(local: str) -> float:
    """POSIX seconds of a local time ("2026-11-10T09:00:00"), or of one with an offset."""
    dt = datetime.fromisoformat(local)
    return (dt if dt.tzinfo else dt.replace(tzinfo=TZ)).timestamp()


def at(local: str) -> datetime:
    return datetime.fromtimestamp(ts(local), tz=TZ)


def ev(local: str, sensor: str, kind: str | float | None = None, value: float = 1.0) -> SensorEvent:
    """An event; the kind defaults to the sensor's main kind (``ev(t, s, 0)``: value 0)."""
    if isinstance(kind, int | float):
        kind, value = None, float(kind)
    if kind is None:
        main = (HOME.get(sensor) or HEALTH_HOME.sensors[sensor]).kind
        assert main is not None
        kind = main.value
    t = ts(local)
    return SensorEvent(sensor, EventKind(kind), value, t, t - OFFSET)


def every(
    start: str, minutes: float, count: int, sensor: str, kind: str, value: float = 1.0
) -> list[SensorEvent]:
    t0 = ts(start)
    out = []
    for i in range(count):
        t = t0 + i * minutes * 60
        out.append(SensorEvent(sensor, EventKind(kind), value, t, t - OFFSET))
    return out


class Run:
    """An engine with the given detectors, its clock and the alerts it sent."""

    def __init__(
        self,
        *detectors: type[Detector],
        home: HomeMap = HOME,
        config: DetectionConfig | None = None,
        start: str | None = "2026-11-10T00:00:00",
        mode: Mode = Mode.NORMAL,
    ) -> None:
        if start is None:  # as a replay builds it: the clock is set by the first event
            self.clock = SimClock(TZ)
        else:
            self.clock = SimClock(TZ, wall=ts(start), mono=ts(start) - OFFSET)
        self.alerts: list[AlertMessage] = []
        self.engine = Engine(
            "h-test",
            self.clock,
            home,
            config or DetectionConfig(),
            self.alerts.append,
            detectors=detectors,
            mode=mode,
        )

    def feed(self, *events: SensorEvent | Iterable[SensorEvent], until: str | None = None) -> None:
        flat: list[SensorEvent] = []
        for item in events:
            if isinstance(item, SensorEvent):
                flat.append(item)
            else:
                flat.extend(item)
        flat.sort(key=lambda e: e.mono)
        feed(self.engine, self.clock, flat, ts(until) - OFFSET if until else None)

    def until(self, local: str) -> None:
        advance(self.engine, self.clock, ts(local) - OFFSET)

    def mono(self, local: str) -> float:
        return ts(local) - OFFSET

    def states(self) -> list[tuple[str, AlertState]]:
        return [(a.kind, a.state) for a in self.alerts]


# ---- emergencies ---------------------------------------------------------------------


def test_smoke_is_urgent_at_once_counts_repeats_and_resolves_when_clear() -> None:
    run = Run(Emergency)
    run.feed(ev("2026-11-10T09:59:59", "kitchen-motion"))
    assert run.alerts == []
    run.feed(ev("2026-11-10T10:00:00", "kitchen-smoke"))
    [raised] = run.alerts
    assert (raised.kind, raised.state, raised.severity) == ("smoke", RAISED, Severity.URGENT)
    assert raised.room == "Kitchen"
    assert raised.since == at("2026-11-10T10:00:00") == raised.at
    assert raised.evidence == {"reports": 1}
    assert raised.summary == "Smoke alarm in Kitchen (kitchen-smoke)."
    run.feed(ev("2026-11-10T10:01:00", "kitchen-smoke"))
    updated = run.alerts[-1]
    assert (updated.state, updated.id, updated.evidence) == (UPDATED, raised.id, {"reports": 2})
    assert "again" in updated.summary and "2 reports" in updated.summary
    run.feed(ev("2026-11-10T10:12:00", "kitchen-smoke", 0))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.at == at("2026-11-10T10:12:00")
    assert resolved.summary == "The smoke alarm in Kitchen cleared after 12 min."
    assert resolved.evidence == {"reports": 2, "open_min": 12}
    run.feed(ev("2026-11-10T10:13:00", "kitchen-smoke", 0))  # clear again: nothing open
    assert len(run.alerts) == 3


def test_smoke_in_two_rooms_is_two_alerts_and_one_clearing_ends_only_its_own() -> None:
    run = Run(Emergency)
    run.feed(
        ev("2026-11-10T10:00:00", "kitchen-smoke"),
        ev("2026-11-10T10:00:30", "hall-smoke"),
        ev("2026-11-10T10:05:30", "hall-smoke", 0),
    )
    kitchen, hall, hall_clear = run.alerts
    assert kitchen.id != hall.id
    assert (kitchen.room, hall.room) == ("Kitchen", "Hallway")
    assert (hall_clear.id, hall_clear.state) == (hall.id, RESOLVED)
    assert "Hallway" in hall_clear.summary and "5 min" in hall_clear.summary
    assert run.engine.open and len(run.engine.open) == 1


def test_a_water_leak_resolves_when_its_sensor_is_dry() -> None:
    run = Run(Emergency)
    run.feed(ev("2026-11-10T03:00:00", "washer-leak"), ev("2026-11-10T04:30:00", "washer-leak", 0))
    raised, resolved = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("water_leak", "urgent", "Bathroom")
    assert raised.summary == "Water leak detected in Bathroom (washer-leak)."
    assert resolved.state is RESOLVED
    assert resolved.summary == "The leak sensor in Bathroom reports dry again after 1 h 30 min."
    assert resolved.evidence == {"reports": 1, "open_min": 90}


def test_a_fall_resolves_on_movement_in_another_room_not_in_its_own() -> None:
    run = Run(Emergency)
    run.feed(
        ev("2026-11-10T07:00:00", "fall-radar", "fall"),
        ev("2026-11-10T07:02:00", "fall-radar", "fall"),  # reported again
        ev("2026-11-10T07:05:00", "bathroom-motion", "motion"),  # stirring on the floor
        ev("2026-11-10T07:06:00", "fall-radar", "presence"),
        ev("2026-11-10T07:07:00", "pendant", "button"),  # the pendant is not getting up
        ev("2026-11-10T07:08:00", "kitchen-motion", "motion", 0),  # a PIR clearing is no one
    )
    assert run.states() == [("fall", RAISED), ("fall", UPDATED)]
    raised = run.alerts[0]
    assert (raised.severity, raised.room) == (Severity.URGENT, "Bathroom")
    assert raised.since == at("2026-11-10T07:00:00")
    assert raised.summary == "A fall was detected in Bathroom (fall-radar)."
    assert run.alerts[1].evidence == {"reports": 2}
    run.feed(ev("2026-11-10T07:20:00", "kitchen-motion", "motion"))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "Seen moving again in Kitchen 20 min after the fall."
    assert resolved.evidence == {"reports": 2, "minutes_since_fall": 20}


def test_a_radar_fall_resolves_when_it_clears_and_then_sees_movement() -> None:
    run = Run(Emergency)
    run.feed(
        ev("2026-11-10T07:00:00", "fall-radar", "fall"),
        ev("2026-11-10T07:03:00", "fall-radar", "presence"),  # before clearing: not enough
        ev("2026-11-10T07:10:00", "fall-radar", "fall", 0),  # clearing alone: not enough
    )
    assert run.states() == [("fall", RAISED)]
    run.feed(ev("2026-11-10T07:12:00", "fall-radar", "presence"))
    resolved = run.alerts[-1]
    assert resolved.state is RESOLVED
    assert resolved.summary == (
        "The fall sensor cleared and there was movement in Bathroom 12 min after the fall."
    )
    assert resolved.evidence == {"reports": 1, "minutes_since_fall": 12}


def test_a_pendant_fall_is_placed_where_the_person_was_last_seen() -> None:
    run = Run(Emergency)
    run.feed(
        ev("2026-11-10T09:00:00", "kitchen-motion", "motion"),
        ev("2026-11-10T09:30:00", "pendant", "fall"),
        ev("2026-11-10T09:40:00", "kitchen-motion", "motion"),  # the kitchen: where they fell
        ev("2026-11-10T09:41:00", "pendant", "button"),
    )
    [raised] = run.alerts
    assert raised.room == "Living"  # the pendant's room in the map
    assert (
        raised.summary
        == "A fall was detected by Pendant, worn by the person (last seen in Kitchen)."
    )
    run.feed(ev("2026-11-10T09:50:00", "living-motion", "motion"))
    assert run.alerts[-1].state is RESOLVED
    assert run.alerts[-1].summary == "Seen moving again in Living 20 min after the fall."


def test_acknowledging_resolves_and_only_configured_kinds_count() -> None:
    config = DetectionConfig.model_validate({"emergency": {"kinds": ["smoke"]}})
    run = Run(Emergency, config=config)
    run.feed(
        ev("2026-11-10T07:00:00", "fall-radar", "fall"),
        ev("2026-11-10T07:00:10", "washer-leak", "water_leak"),
        ev("2026-11-10T07:01:00", "kitchen-smoke", "smoke"),
    )
    [raised] = run.alerts
    assert raised.kind == "smoke"
    assert run.engine.acknowledge(raised.id)
    assert run.alerts[-1].state is RESOLVED and "Acknowledged" in run.alerts[-1].summary
    run.feed(ev("2026-11-10T07:05:00", "kitchen-smoke", "smoke"))
    again = run.alerts[-1]
    assert again.state is RAISED and again.id != raised.id and again.evidence == {"reports": 1}


# ---- intrusion -----------------------------------------------------------------------


def test_in_normal_mode_an_open_door_or_window_is_daily_life() -> None:
    run = Run(Intrusion)
    run.feed(
        ev("2026-11-10T03:00:00", "front-door", "contact"),
        ev("2026-11-10T03:01:00", "bedroom-window", "contact"),
        until="2026-11-11T00:00:00",
    )
    assert run.alerts == []
    assert run.engine.next_wakeup == INF


def test_intrusion_after_the_exit_delay_updates_and_resolves_when_set_to_normal() -> None:
    run = Run(Intrusion)
    run.until("2026-11-10T10:00:00")
    run.engine.set_mode(Mode.AWAY)
    run.feed(
        ev("2026-11-10T10:01:59", "front-door", "contact", 1),  # leaving: inside the delay
        ev("2026-11-10T10:01:59", "front-door", "contact", 0),
    )
    assert run.alerts == []
    run.feed(ev("2026-11-10T10:02:00", "front-door", "contact", 1))
    [raised] = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("intrusion", "urgent", "Hallway")
    assert raised.since == raised.at == at("2026-11-10T10:02:00")
    assert raised.summary == ("The front door in Hallway was opened while the home is set to away.")
    assert raised.evidence == {"openings": 1}
    run.feed(
        ev("2026-11-10T14:00:00", "fridge", "contact", 1),  # not a way in
        ev("2026-11-10T14:00:05", "bedroom-window", "contact", 0),  # closing: nothing
        ev("2026-11-10T14:01:00", "bedroom-window", "contact", 1),
    )
    updated = run.alerts[-1]
    assert (updated.state, updated.id, updated.evidence) == (UPDATED, raised.id, {"openings": 2})
    assert "window in Bedroom" in updated.summary
    run.until("2026-11-10T18:00:00")
    run.engine.set_mode(Mode.NORMAL)
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.at == at("2026-11-10T18:00:00")
    assert "set to normal" in resolved.summary and resolved.evidence == {"openings": 2}
    assert len(run.alerts) == 3
    run.feed(ev("2026-11-10T18:05:00", "front-door", "contact"))
    assert len(run.alerts) == 3


def test_arming_again_restarts_the_exit_delay_but_away_to_holiday_does_not() -> None:
    run = Run(Intrusion)
    run.until("2026-11-10T10:00:00")
    run.engine.set_mode(Mode.AWAY)
    run.until("2026-11-10T10:01:00")
    run.engine.set_mode(Mode.HOLIDAY)  # still armed from 10:02
    run.feed(ev("2026-11-10T10:02:00", "bedroom-window", "contact"))
    assert run.states() == [("intrusion", RAISED)]
    assert "set to holiday" in run.alerts[0].summary
    run.until("2026-11-10T11:00:00")
    run.engine.set_mode(Mode.NORMAL)
    run.until("2026-11-10T12:00:00")
    run.engine.set_mode(Mode.AWAY)
    run.feed(ev("2026-11-10T12:01:59", "front-door", "contact"))
    assert len(run.alerts) == 2  # raised, resolved: the new delay holds
    run.feed(ev("2026-11-10T12:02:00", "front-door", "contact"))
    assert run.states()[-1] == ("intrusion", RAISED)


def test_a_hub_started_in_away_mode_is_armed_at_once() -> None:
    run = Run(Intrusion, mode=Mode.AWAY)
    run.feed(ev("2026-11-10T00:00:01", "bedroom-window", "contact"))
    assert run.states() == [("intrusion", RAISED)] and run.alerts[0].room == "Bedroom"


# ---- temperature ---------------------------------------------------------------------


def cold_morning() -> list[SensorEvent]:
    """Living room readings every 10 min from 06:00 to 08:50: 15.5, then 14.8 at 07:00."""
    out = every("2026-11-10T06:00:00", 10, 18, "living-temp", "temperature", 15.2)
    out[0] = out[0]._replace(value=15.5)
    out[6] = out[6]._replace(value=14.8)
    return out


def test_cold_for_three_hours_raises_then_resolves_past_the_hysteresis() -> None:
    run = Run(Temperature)
    run.feed(cold_morning(), until="2026-11-10T08:59:59")
    assert run.alerts == []
    run.until("2026-11-10T09:00:00")
    [raised] = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("cold", Severity.WARNING, "Living")
    assert raised.since == at("2026-11-10T06:00:00")
    assert raised.at == at("2026-11-10T09:00:00")
    assert raised.evidence == {"temp_c": 15.2, "lowest_c": 14.8, "hours": 3.0}
    assert raised.summary == "Below 16 °C in Living for 3 h: now 15.2 °C, lowest 14.8 °C."
    run.feed(
        ev("2026-11-10T09:00:00", "living-temp", "temperature", 15.9),
        ev("2026-11-10T09:10:00", "living-temp", "temperature", 16.2),  # inside hysteresis
    )
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-10T09:20:00", "living-temp", "temperature", 16.5))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == (
        "Back to 16.5 °C in Living after 3 h 20 min below 16 °C; the lowest was 14.8 °C."
    )
    assert resolved.evidence == {"temp_c": 16.5, "lowest_c": 14.8, "hours": 3.3}


def test_a_single_warm_reading_starts_the_count_again() -> None:
    run = Run(Temperature)
    readings = every("2026-11-10T06:00:00", 10, 28, "living-temp", "temperature", 15.0)
    readings[9] = readings[9]._replace(value=16.0)  # 07:30: not below 16
    run.feed(readings, until="2026-11-10T10:39:59")  # readings to 10:30
    assert run.alerts == []
    run.until("2026-11-10T10:40:00")
    [raised] = run.alerts
    assert raised.since == at("2026-11-10T07:40:00")
    assert raised.evidence["hours"] == 3.0


def test_heat_for_three_hours_reports_the_highest() -> None:
    run = Run(Temperature, start="2026-07-20T00:00:00")
    readings = every("2026-07-20T13:00:00", 10, 19, "living-temp", "temperature", 29.0)
    readings[5] = readings[5]._replace(value=31.26)
    run.feed(readings)
    [raised] = run.alerts
    assert (raised.kind, raised.at) == ("heat", at("2026-07-20T16:00:00"))
    assert raised.evidence == {"temp_c": 29.0, "highest_c": 31.3, "hours": 3.0}
    assert raised.summary == "Above 28 °C in Living for 3 h: now 29.0 °C, highest 31.3 °C."
    run.feed(ev("2026-07-20T16:10:00", "living-temp", "temperature", 27.6))  # not 27.5
    assert len(run.alerts) == 1
    run.feed(ev("2026-07-20T16:20:00", "living-temp", "temperature", 27.5))
    assert run.alerts[-1].state is RESOLVED and "above 28 °C" in run.alerts[-1].summary


def test_a_room_with_two_thermometers_takes_their_mean_and_ignores_the_pendant() -> None:
    run = Run(Temperature)
    run.feed(
        ev("2026-11-10T06:00:00", "bedroom-temp", "temperature", 15.0),
        ev("2026-11-10T06:00:00", "bedroom-temp-2", "temperature", 17.4),  # mean 16.2
        every("2026-11-10T06:00:00", 10, 10, "pendant-temp", "temperature", 10.0),
        ev("2026-11-10T07:00:00", "bedroom-temp-2", "temperature", 16.4),  # mean 15.7
        until="2026-11-10T09:59:59",
    )
    assert run.alerts == []
    run.until("2026-11-10T10:00:00")
    [raised] = run.alerts
    assert (raised.room, raised.since) == ("Bedroom", at("2026-11-10T07:00:00"))
    assert raised.evidence == {"temp_c": 15.7, "lowest_c": 15.7, "hours": 3.0}


def test_a_silent_thermometer_does_not_keep_a_cold_alert_open() -> None:
    run = Run(Temperature)
    # no declared interval: a reading counts for 6 h
    run.feed(every("2026-11-10T00:00:00", 60, 3, "bedroom-temp", "temperature", 15.0))
    run.until("2026-11-10T07:59:59")
    assert run.states() == [("cold", RAISED)]
    assert run.alerts[0].at == at("2026-11-10T03:00:00")
    run.until("2026-11-10T08:00:00")
    resolved = run.alerts[-1]
    assert resolved.state is RESOLVED and resolved.at == at("2026-11-10T08:00:00")
    assert resolved.summary == (
        "No temperature reading from Bedroom for 6 h: the thermometer is silent, so the "
        "cold alert is closed without a current temperature."
    )
    assert resolved.evidence == {"hours": 8.0}
    assert run.engine.next_wakeup == INF  # nothing left to watch: no polling
    # it speaks again, still cold: a new count, a new alert three hours on
    run.feed(ev("2026-11-10T09:00:00", "bedroom-temp", "temperature", 15.0))
    run.until("2026-11-10T11:59:59")
    assert len(run.alerts) == 2
    run.until("2026-11-10T12:00:00")
    assert run.alerts[-1].state is RAISED and run.alerts[-1].id != run.alerts[0].id


def test_a_stale_reading_never_raises() -> None:
    run = Run(Temperature)
    # declared every 10 min: a reading counts for 20 min
    run.feed(
        ev("2026-11-10T06:00:00", "living-temp", "temperature", 12.0),
        ev("2026-11-10T06:20:00", "living-temp", "temperature", 12.0),  # 20 min on: a new count
        until="2026-11-10T12:00:00",
    )
    assert run.alerts == []
    assert run.engine.next_wakeup == INF


def test_an_acknowledged_cold_alert_is_not_raised_again_until_the_room_warms() -> None:
    run = Run(Temperature)
    run.feed(cold_morning(), until="2026-11-10T09:00:00")
    assert run.engine.acknowledge(run.alerts[0].id)
    run.feed(every("2026-11-10T09:00:00", 10, 30, "living-temp", "temperature", 15.0))
    assert [a.state for a in run.alerts] == [RAISED, RESOLVED]
    run.feed(
        ev("2026-11-10T14:00:00", "living-temp", "temperature", 16.5),
        every("2026-11-10T14:10:00", 10, 19, "living-temp", "temperature", 15.0),
    )
    assert [a.state for a in run.alerts] == [RAISED, RESOLVED, RAISED]
    assert run.alerts[-1].at == at("2026-11-10T17:10:00")


def test_spring_forward_does_not_shorten_the_cold_count() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: from 00:30 CET, three real hours end at 04:30 CEST
    run = Run(Temperature, start="2026-03-29T00:00:00+01:00")
    run.feed(
        every("2026-03-29T00:30:00+01:00", 10, 18, "living-temp", "temperature", 15.0),
        until="2026-03-29T04:29:59+02:00",
    )
    assert run.alerts == []
    run.until("2026-03-29T04:30:00+02:00")
    [raised] = run.alerts
    assert raised.at.isoformat() == "2026-03-29T04:30:00+02:00"
    assert raised.since.isoformat() == "2026-03-29T00:30:00+01:00"
    assert raised.evidence["hours"] == 3.0 and "for 3 h:" in raised.summary


# ---- sensor health -------------------------------------------------------------------


def health(home: HomeMap = HEALTH_HOME, start: str | None = "2026-11-10T00:00:00") -> Run:
    return Run(SensorHealth, home=home, start=start)


def test_a_sensor_with_a_declared_interval_is_silent_after_three_of_them() -> None:
    run = health()
    run.feed(every("2026-11-10T08:00:00", 60, 5, "living-temp", "temperature", 20.0))
    run.until("2026-11-10T14:59:59")  # last report 12:00; 3 x 1 h
    assert run.alerts == []
    run.until("2026-11-10T15:00:00")
    [raised] = run.alerts
    assert (raised.kind, raised.severity, raised.room) == (
        "sensor_silent",
        Severity.MAINTENANCE,
        "Living",
    )
    assert raised.since == at("2026-11-10T12:00:00") and raised.at == at("2026-11-10T15:00:00")
    assert raised.evidence == {"silent_h": 3.0, "limit_h": 3.0}
    assert raised.summary == (
        "living-temp in Living has not reported for 3 h; it reports at least every 1 h."
    )
    det = run.engine.detectors[0]
    assert isinstance(det, SensorHealth)
    assert det.down_sensors(run.mono("2026-11-10T15:30:00")) == {"living-temp"}
    assert down_sensors(run.engine) == {"living-temp"}
    run.feed(ev("2026-11-10T16:30:00", "living-temp", "humidity", 50.0))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "living-temp in Living reported again after 4 h 30 min of silence."
    assert resolved.evidence == {"silent_h": 4.5}
    assert down_sensors(run.engine) == set()
    assert run.engine.next_wakeup == run.mono("2026-11-10T19:30:00")


def test_a_sensor_never_heard_counts_from_the_start_not_from_zero() -> None:
    run = health(start=None)  # the clock reads 0 until the first event, as in a replay
    run.feed(ev("2026-11-10T08:00:00", "kitchen-motion", "motion"), until="2026-11-10T10:59:59")
    assert run.alerts == []
    run.until("2026-11-10T11:00:00")
    [raised] = run.alerts
    assert raised.room == "Living" and raised.since == at("2026-11-10T08:00:00")
    assert raised.summary == (
        "living-temp in Living has not reported since the hub started, 3 h ago; "
        "it reports at least every 1 h."
    )


def attic(start: str, minutes: float, count: int) -> list[SensorEvent]:
    """Reports of the attic thermometer: temperature, humidity a second later, battery."""
    out = []
    for e in every(start, minutes, count, "attic-temp", "temperature", 18.0):
        out.append(e)
        out.append(
            e._replace(kind=EventKind.HUMIDITY, value=60.0, wall=e.wall + 1, mono=e.mono + 1)
        )
        out.append(e._replace(kind=EventKind.BATTERY, value=90.0, wall=e.wall + 2, mono=e.mono + 2))
    return out


def attic_alerts(run: Run) -> list[AlertMessage]:
    return [a for a in run.alerts if a.room == "Attic"]


def test_a_measuring_sensor_learns_its_interval_from_its_reports() -> None:
    run = health()
    reports = attic("2026-11-10T00:00:00", 120, 6)  # 00:00 .. 10:00, every 2 h
    # the reports from 06:00 come 3 h late: one gap of 5 h, the median stays 2 h
    reports = [
        e._replace(wall=e.wall + 3 * 3600, mono=e.mono + 3 * 3600) if i >= 9 else e
        for i, e in enumerate(reports)
    ]
    run.feed(reports, until="2026-11-10T19:00:01")  # last heard 13:00:02; 3 x 2 h
    assert attic_alerts(run) == []
    run.until("2026-11-10T19:00:02")
    [raised] = attic_alerts(run)
    assert raised.since == at("2026-11-10T13:00:02")
    assert raised.evidence == {"silent_h": 6.0, "limit_h": 6.0}
    assert raised.summary == (
        "attic-temp in Attic has not reported for 6 h; it usually reports every 2 h."
    )


def test_a_learned_interval_needs_four_gaps_and_is_at_least_an_hour() -> None:
    run = health()
    run.feed(attic("2026-11-10T00:00:00", 120, 4), until="2026-11-12T00:00:00")  # 3 gaps
    assert attic_alerts(run) == []
    run = health()
    run.feed(attic("2026-11-10T00:00:00", 10, 5), until="2026-11-10T03:39:59")  # every 10 min
    assert attic_alerts(run) == []  # not 30 min: a learned interval is at least 1 h
    run.until("2026-11-10T03:40:02")
    [raised] = attic_alerts(run)
    assert raised.at == at("2026-11-10T03:40:02")
    assert raised.evidence == {"silent_h": 3.0, "limit_h": 3.0}


def lived_in(start: str, hours: int) -> list[SensorEvent]:
    """Someone about the house: the kitchen and the living room in turns, every hour."""
    t0 = ts(start)
    out = []
    for h in range(hours):
        sensor = "kitchen-motion" if h % 2 == 0 else "living-motion"
        t = t0 + h * 3600
        out.append(SensorEvent(sensor, EventKind.MOTION, 1.0, t, t - OFFSET))
    return out


#: the home without sensors that report periodically
ACT_HOME = HomeMap(
    sensors={
        sid: s for sid, s in HEALTH_HOME.sensors.items() if s.kind is not EventKind.TEMPERATURE
    }
)


def test_an_activity_sensor_quiet_for_three_days_while_the_person_is_active_is_silent() -> None:
    run = health(home=ACT_HOME)
    run.feed(
        ev("2026-11-10T08:00:00", "bedroom-motion", "motion"),
        lived_in("2026-11-10T09:00:00", 70),  # to 2026-11-13 06:00
        ev("2026-11-13T07:59:59", "kitchen-motion", "motion"),
    )
    assert run.alerts == []
    run.feed(ev("2026-11-13T08:00:00", "kitchen-motion", "motion"))
    [raised] = run.alerts  # not the pendant, nor the garden door
    assert (raised.kind, raised.room) == ("sensor_silent", "Bedroom")
    assert raised.since == at("2026-11-10T08:00:00") and raised.at == at("2026-11-13T08:00:00")
    assert raised.evidence == {"silent_h": 72.0, "limit_h": 72.0}
    assert raised.summary == (
        "Bedroom PIR in Bedroom has not reported for 3 d "
        "while the person was active elsewhere in the home."
    )
    assert down_sensors(run.engine) == {"bedroom-motion"}
    run.feed(ev("2026-11-13T09:00:00", "bedroom-motion", "motion", 0))
    resolved = run.alerts[-1]
    assert resolved.state is RESOLVED
    assert resolved.summary == "Bedroom PIR in Bedroom reported again after 3 d 1 h of silence."
    assert resolved.evidence == {"silent_h": 73.0}


def test_a_quiet_home_blames_no_sensor_and_a_homecoming_starts_the_count_again() -> None:
    run = health()
    run.feed(
        ev("2026-11-10T08:00:00", "bedroom-motion", "motion"),
        ev("2026-11-10T09:00:00", "kitchen-motion", "motion"),
        ev("2026-11-10T09:00:00", "living-motion", "motion"),
        until="2026-11-15T12:00:00",  # everyone out for five days
    )
    assert [a for a in run.alerts if a.room != "Living"] == []
    # home again: the bedroom sensor gets three days of the person being about
    run.feed(lived_in("2026-11-15T12:00:00", 72), ev("2026-11-18T11:59:59", "kitchen-motion"))
    assert [a.room for a in run.alerts if a.kind == "sensor_silent"] == ["Living"]
    run.feed(ev("2026-11-18T12:00:00", "kitchen-motion", "motion"))
    raised = run.alerts[-1]
    assert (raised.room, raised.state, raised.at) == ("Bedroom", RAISED, at("2026-11-18T12:00:00"))
    assert raised.since == at("2026-11-10T08:00:00")
    assert raised.evidence == {"silent_h": 196.0, "limit_h": 72.0}


def test_an_offline_sensor_is_down_at_once_and_reported_after_five_minutes() -> None:
    run = health()
    run.feed(
        ev("2026-11-10T09:00:00", "kitchen-motion", "motion"),
        ev("2026-11-10T10:00:00", "kitchen-motion", "availability", 0),
    )
    assert down_sensors(run.engine) == {"kitchen-motion"}
    run.until("2026-11-10T10:04:59")
    assert [a for a in run.alerts if a.room == "Kitchen"] == []
    run.until("2026-11-10T10:05:00")
    [raised] = [a for a in run.alerts if a.room == "Kitchen"]
    assert raised.kind == "sensor_silent" and raised.since == at("2026-11-10T10:00:00")
    assert raised.evidence == {"offline_min": 5, "silent_h": 1.1}
    assert raised.summary == (
        "kitchen-motion in Kitchen is offline: its network has not reached it for 5 min."
    )
    run.feed(ev("2026-11-10T10:30:00", "kitchen-motion", "availability", 1))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "kitchen-motion in Kitchen is back online after 30 min offline."
    assert resolved.evidence == {"offline_min": 30}
    # a blip that ends with an event is no alert
    n = len(run.alerts)
    run.feed(
        ev("2026-11-10T11:00:00", "kitchen-motion", "availability", 0),
        ev("2026-11-10T11:02:00", "kitchen-motion", "motion"),
        until="2026-11-10T11:30:00",
    )
    assert len(run.alerts) == n and "kitchen-motion" not in down_sensors(run.engine)


def test_a_driver_down_for_five_minutes_raises_and_resolves_when_up() -> None:
    run = health()
    run.until("2026-11-10T10:00:00")
    run.engine.driver_state("zigbee", up=False)
    run.until("2026-11-10T10:04:59")
    assert run.alerts == []
    run.until("2026-11-10T10:05:00")
    [raised] = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("driver_down", "maintenance", None)
    assert raised.since == at("2026-11-10T10:00:00")
    assert raised.evidence == {"down_min": 5}
    assert raised.summary == "The zigbee driver has been down for 5 min: its sensors cannot report."
    run.until("2026-11-10T10:20:00")
    run.engine.driver_state("zigbee", up=True)
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id, resolved.evidence) == (
        RESOLVED,
        raised.id,
        {"down_min": 20},
    )
    assert resolved.summary == "The zigbee driver is back after 20 min down."
    # a short outage says nothing
    run.until("2026-11-10T11:00:00")
    run.engine.driver_state("zigbee", up=False)
    run.until("2026-11-10T11:03:00")
    run.engine.driver_state("zigbee", up=True)
    run.until("2026-11-10T12:00:00")
    assert len(run.alerts) == 2


def test_a_low_battery_raises_once_and_only_a_new_battery_resolves_it() -> None:
    run = health(home=ACT_HOME)
    run.feed(
        ev("2026-11-10T10:00:00", "kitchen-motion", "battery", 40),
        ev("2026-11-10T11:00:00", "kitchen-motion", "battery", 15),  # not below 15
    )
    assert run.alerts == []
    run.feed(ev("2026-11-10T12:00:00", "kitchen-motion", "battery", 14))
    [raised] = run.alerts
    assert (raised.kind, raised.severity, raised.room) == ("battery_low", "maintenance", "Kitchen")
    assert raised.evidence == {"battery_pct": 14}
    assert raised.summary == "The battery of kitchen-motion in Kitchen is low: 14 %."
    run.feed(
        ev("2026-11-10T13:00:00", "kitchen-motion", "battery", 12),
        ev("2026-11-10T14:00:00", "kitchen-motion", "battery", 25),  # not above 25
    )
    assert len(run.alerts) == 1
    run.feed(ev("2026-11-11T10:00:00", "kitchen-motion", "battery", 100))
    resolved = run.alerts[-1]
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "New battery in kitchen-motion in Kitchen: 100 %."
    assert resolved.evidence == {"battery_pct": 100}


def test_a_low_battery_flag_raises_and_clears() -> None:
    run = health(home=ACT_HOME)
    run.feed(
        ev("2026-11-10T10:00:00", "living-motion", "battery_low", 1),
        ev("2026-11-10T10:30:00", "living-motion", "battery_low", 1),
        ev("2026-11-10T11:00:00", "living-motion", "battery_low", 0),
    )
    assert run.states() == [("battery_low", RAISED), ("battery_low", RESOLVED)]
    assert run.alerts[0].summary == "living-motion in Living reports a low battery."
    assert run.alerts[1].summary == "living-motion in Living no longer reports a low battery."


def test_an_acknowledged_silence_is_not_raised_again() -> None:
    run = health()
    run.feed(ev("2026-11-10T08:00:00", "living-temp", "temperature", 20.0))
    run.until("2026-11-10T11:00:00")
    assert run.engine.acknowledge(run.alerts[0].id)
    run.until("2026-11-12T00:00:00")
    assert run.states() == [("sensor_silent", RAISED), ("sensor_silent", RESOLVED)]
    assert down_sensors(run.engine) == {"living-temp"}  # still down, only acknowledged
    run.feed(ev("2026-11-12T01:00:00", "living-temp", "temperature", 20.0))
    assert len(run.alerts) == 2 and down_sensors(run.engine) == set()


def test_autumn_clock_change_does_not_change_how_long_silence_is() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: from 01:30 CEST, 3 real hours end at 03:30 CET
    run = health(start="2026-10-25T00:00:00+02:00")
    run.feed(ev("2026-10-25T01:30:00+02:00", "living-temp", "temperature", 20.0))
    run.until("2026-10-25T03:29:59+01:00")
    assert run.alerts == []
    run.until("2026-10-25T03:30:00+01:00")
    [raised] = run.alerts
    assert raised.at.isoformat() == "2026-10-25T03:30:00+01:00"
    assert raised.evidence == {"silent_h": 3.0, "limit_h": 3.0}


def test_a_wall_clock_jump_does_not_change_how_long_silence_is() -> None:
    run = health()
    first = ev("2026-11-10T08:00:00", "living-temp", "temperature", 20.0)
    # NTP sets the wall clock an hour forward at 09:00; monotonic time runs on
    jumped = ev("2026-11-10T09:00:00", "kitchen-motion", "motion")
    jumped = jumped._replace(wall=jumped.wall + 3600)
    run.feed(first, jumped)
    run.until("2026-11-10T10:59:59")
    assert run.alerts == []
    run.until("2026-11-10T11:00:00")  # monotonic 3 h after the report
    [raised] = run.alerts
    assert raised.evidence == {"silent_h": 3.0, "limit_h": 3.0}
    assert raised.at == at("2026-11-10T12:00:00")  # the wall clock reads an hour later


def test_the_four_rules_together_give_the_same_messages_every_time() -> None:
    def messages() -> list[str]:
        run = Run(Emergency, Intrusion, Temperature, SensorHealth)
        run.feed(
            ev("2026-11-10T08:00:00", "kitchen-motion"),
            cold_morning(),
            ev("2026-11-10T09:30:00", "kitchen-smoke"),
            ev("2026-11-10T09:31:00", "kitchen-motion", "battery", 9),
            until="2026-11-10T12:00:00",
        )
        run.engine.set_mode(Mode.AWAY)
        run.feed(ev("2026-11-10T12:05:00", "front-door"), until="2026-11-10T13:00:00")
        return [a.model_dump_json() for a in run.alerts]

    first = messages()
    assert first == messages()
    steps = [(json.loads(m)["kind"], json.loads(m)["state"]) for m in first]
    assert steps == [
        ("cold", "raised"),  # 09:00
        ("cold", "resolved"),  # 09:10: the thermometer's last reading went stale
        ("sensor_silent", "raised"),  # 09:20: three intervals of 10 min
        ("smoke", "raised"),
        ("battery_low", "raised"),
        ("intrusion", "raised"),
    ]
