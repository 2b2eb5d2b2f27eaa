"""Sensor health for the heartbeat: low batteries and sensors gone silent."""

from __future__ import annotations

from agent.events import EventKind, SensorEvent
from agent.health import SensorHealth
from agent.homemap import HomeMap, Role, SensorSpec

HOME = HomeMap(
    sensors={
        "door": SensorSpec(room="Hallway", role=Role.FRONT_DOOR),
        "temp": SensorSpec(room="Living", role=Role.LIVING, report_interval_s=600),
    }
)


def ev(sensor: str, kind: EventKind, value: float, t: float = 0.0) -> SensorEvent:
    return SensorEvent(sensor, kind, value, t, t)


def test_a_battery_is_low_until_it_reports_well_again() -> None:
    health = SensorHealth(HOME)
    health.battery(ev("door", EventKind.BATTERY, 9))
    health.battery(ev("temp", EventKind.BATTERY_LOW, 1))
    assert health.battery_low == {"door", "temp"}
    health.battery(ev("door", EventKind.BATTERY, 80))
    health.battery(ev("temp", EventKind.BATTERY_LOW, 0))
    assert health.battery_low == set()


def test_only_sensors_with_a_declared_interval_can_be_silent() -> None:
    health = SensorHealth(HOME)
    assert health.silent(now_mono=599, started_mono=0) == []
    assert health.silent(now_mono=601, started_mono=0) == ["temp"]  # never heard since start
    health.last_seen["temp"] = 500
    assert health.silent(now_mono=1000, started_mono=0) == []
    assert health.silent(now_mono=1101, started_mono=0) == ["temp"]
