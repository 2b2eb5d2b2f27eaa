"""Detection v1: the alert lifecycle, inactivity by role and hour, the help button."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.clock import SimClock
from agent.detectconfig import DetectionConfig, HelpButtonConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.messages import AlertMessage, AlertState, Severity
from detection.button import HelpButton
from detection.drive import advance, feed
from detection.engine import Detector, Engine
from detection.person import PersonWatch

TZ = ZoneInfo("Europe/Amsterdam")
HOME = HomeMap(
    sensors={
        "kitchen-motion": SensorSpec(room="Kitchen", role=Role.KITCHEN),
        "living-motion": SensorSpec(room="Living", role=Role.LIVING),
        "bed": SensorSpec(room="Bedroom", role=Role.BED),
        "bathroom-motion": SensorSpec(room="Bathroom", role=Role.BATHROOM),
        "front-door": SensorSpec(room="Hallway", role=Role.FRONT_DOOR),
        "help-button": SensorSpec(room="Living", role=Role.WEARABLE),
        "living-temp": SensorSpec(room="Living", role=Role.LIVING, report_interval_s=600),
    }
)
KIND = {
    "kitchen-motion": EventKind.MOTION,
    "living-motion": EventKind.MOTION,
    "bathroom-motion": EventKind.MOTION,
    "bed": EventKind.PRESSURE,
    "front-door": EventKind.CONTACT,
    "help-button": EventKind.BUTTON,
    "living-temp": EventKind.TEMPERATURE,
}


def ts(local: str) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=TZ).timestamp()


def ev(local: str, sensor: str, value: float = 1.0) -> SensorEvent:
    t = ts(local)
    return SensorEvent(sensor, KIND[sensor], value, t, t)


#: the fixed inactivity rule alone: not-up has its own tests (tests/test_person.py)
FIXED_ONLY = DetectionConfig.model_validate({"wakeup": {"enabled": False}})


class Run:
    def __init__(
        self,
        config: DetectionConfig | None = None,
        detectors: list[type[Detector]] | None = None,
        registry: bool = False,
    ) -> None:
        self.clock = SimClock(TZ)
        self.alerts: list[AlertMessage] = []
        self.engine = Engine(
            "h-test",
            self.clock,
            HOME,
            config or FIXED_ONLY,
            self.alerts.append,
            detectors=None if registry else (detectors or [HelpButton, PersonWatch]),
        )

    def feed(self, *events: SensorEvent, until: str | None = None) -> list[AlertMessage]:
        feed(self.engine, self.clock, events, ts(until) if until else None)
        return self.alerts

    def until(self, local: str) -> list[AlertMessage]:
        advance(self.engine, self.clock, ts(local))
        return self.alerts


def test_quiet_in_the_kitchen_by_day_raises_after_the_day_limit_and_resolves_on_movement() -> None:
    run = Run()
    run.feed(ev("2026-11-10T09:00:00", "kitchen-motion"), until="2026-11-10T12:59:59")
    assert run.alerts == []
    alerts = run.until("2026-11-10T13:00:00")
    assert len(alerts) == 1
    raised = alerts[0]
    assert (raised.kind, raised.state, raised.severity) == ("inactivity", "raised", "urgent")
    assert raised.room == "Kitchen"
    assert raised.since == datetime(2026, 11, 10, 9, 0, tzinfo=TZ)
    assert raised.at == datetime(2026, 11, 10, 13, 0, tzinfo=TZ)
    assert raised.evidence == {"quiet_min": 240, "limit_min": 240}
    assert "4 h" in raised.summary
    run.feed(ev("2026-11-10T13:20:00", "living-motion"))
    resolved = run.alerts[-1]
    assert resolved.state is AlertState.RESOLVED and resolved.id == raised.id
    assert resolved.evidence == {"quiet_min": 260}
    assert "Living" in resolved.summary
    assert [a.seq for a in run.alerts] == [1, 2]


def test_a_night_in_bed_is_sleep_not_silence() -> None:
    run = Run()
    run.feed(ev("2026-11-10T23:00:00", "bed"), until="2026-11-11T10:30:00")
    assert run.alerts == []  # 11.5 h in bed: under the night limit of 14 h
    run.until("2026-11-11T13:00:00")
    assert [a.evidence["quiet_min"] for a in run.alerts] == [14 * 60]


def test_the_limit_is_never_shorter_than_where_the_quiet_began() -> None:
    # 20:00 in the living room: the day limit (4 h) would end at midnight, inside the night,
    # whose limit (10 h) applies; the alert comes at 06:00, 10 h after.
    run = Run()
    run.feed(ev("2026-11-10T20:00:00", "living-motion"), until="2026-11-11T05:59:00")
    assert run.alerts == []
    run.until("2026-11-11T06:00:00")
    assert len(run.alerts) == 1 and run.alerts[0].evidence["limit_min"] == 600


def test_getting_out_of_bed_moves_the_person_to_the_bedroom() -> None:
    run = Run()
    run.feed(ev("2026-11-10T07:00:00", "bed", 1), ev("2026-11-10T07:05:00", "bed", 0))
    run.until("2026-11-10T12:05:00")
    assert [a.evidence["limit_min"] for a in run.alerts] == [300]  # bedroom by day: 5 h
    assert run.alerts[0].room == "Bedroom"


def test_measurements_and_sensors_clearing_are_not_activity() -> None:
    run = Run()
    run.feed(
        ev("2026-11-10T09:00:00", "kitchen-motion", 1),
        ev("2026-11-10T09:01:30", "kitchen-motion", 0),  # the PIR clears: not a person
        *[ev(f"2026-11-10T{h:02d}:00:00", "living-temp", 19.5) for h in range(10, 14)],
        until="2026-11-10T13:00:30",
    )
    assert [a.state for a in run.alerts] == [AlertState.RAISED]


def test_fall_back_to_winter_time_counts_real_hours() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET. Seen at 21:00 in the living room: night limit
    # 10 h of real time ends at 06:00 CET, which is 07:00 by summer time.
    run = Run()
    run.feed(ev("2026-10-24T21:00:00", "living-motion"), until="2026-10-25T07:30:00")
    assert len(run.alerts) == 1
    alert = run.alerts[0]
    assert alert.evidence["quiet_min"] == 600
    assert alert.at.isoformat() == "2026-10-25T06:00:00+01:00"


def test_spring_forward_counts_real_hours() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST. Seen at 21:00 (day, 4 h): the night (10 h) holds
    # the alert back until 07:00 CEST, when the day limit applies again: that night had
    # only 9 real hours, and the alert says so.
    run = Run()
    run.feed(ev("2026-03-28T21:00:00", "living-motion"), until="2026-03-29T06:59:00")
    assert run.alerts == []
    run.until("2026-03-29T09:00:00")
    assert len(run.alerts) == 1
    assert run.alerts[0].evidence["quiet_min"] == 540
    assert run.alerts[0].at.isoformat() == "2026-03-29T07:00:00+02:00"


def test_help_button_is_urgent_at_once_and_counts_presses() -> None:
    run = Run()
    run.feed(ev("2026-11-10T10:00:00", "help-button"), ev("2026-11-10T10:00:40", "help-button", 2))
    raised, updated = run.alerts
    assert (raised.kind, raised.state, raised.severity) == ("help_button", "raised", "urgent")
    assert raised.room == "Living" and raised.at == datetime(2026, 11, 10, 10, 0, tzinfo=TZ)
    assert updated.state is AlertState.UPDATED and updated.id == raised.id
    assert updated.evidence == {"presses": 2} and "long-pressed" in updated.summary
    # it stays open until acknowledged
    run.until("2026-11-10T11:00:00")
    assert len([a for a in run.alerts if a.kind == "help_button"]) == 2
    assert run.engine.acknowledge(raised.id)
    assert run.alerts[-1].state is AlertState.RESOLVED and run.alerts[-1].id == raised.id
    assert not run.engine.acknowledge(raised.id)  # nothing open any more


def test_help_button_can_resolve_by_itself() -> None:
    config = DetectionConfig(help_button=HelpButtonConfig(resolve_after=600))
    run = Run(config)
    run.feed(ev("2026-11-10T10:00:00", "help-button"), until="2026-11-10T10:09:59")
    assert [a.state for a in run.alerts] == [AlertState.RAISED]
    run.until("2026-11-10T10:10:00")
    assert [a.state for a in run.alerts] == [AlertState.RAISED, AlertState.RESOLVED]


def test_alert_ids_are_stable_and_distinct() -> None:
    def alerts() -> list[AlertMessage]:
        run = Run()
        run.feed(
            ev("2026-11-10T10:00:00", "help-button"),
            ev("2026-11-10T10:00:00", "kitchen-motion"),
            until="2026-11-10T15:00:00",
        )
        return run.alerts

    first, second = alerts(), alerts()
    assert [a.model_dump_json() for a in first] == [a.model_dump_json() for a in second]
    assert len({a.id for a in first}) == 2
    assert first[0].id == "help_button-20261110T090000Z"


@pytest.mark.parametrize("disabled", ["inactivity", "help_button"])
def test_a_disabled_detector_stays_silent(disabled: str) -> None:
    config = DetectionConfig.model_validate(
        {disabled: {"enabled": False}, "sensor_health": {"enabled": False}}
    )
    run = Run(config, registry=True)
    run.feed(ev("2026-11-10T10:00:00", "help-button"), until="2026-11-11T10:00:00")
    kinds = {a.kind for a in run.alerts}
    assert disabled not in kinds and kinds
    assert all(a.severity is Severity.URGENT for a in run.alerts)
