"""The ``[detection]`` part of the configuration: one section per rule.

Every rule starts from a safe fixed threshold, taken from products in use (GrandCare,
Rest Assured, Tunstall), and, where it learns, replaces it by the person's own routine
once ``[detection.routine] min_days`` of data exist. Settings are per rule, never per
home: a home differs by what the hub learns, not by hand-tuned numbers.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.messages import Severity
from agent.units import Duration, TimeOfDay

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
UrgentKind = Literal["fall", "smoke", "water_leak"]

H = 3600.0
M = 60.0


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DayNight(Section):
    day: Duration
    night: Duration


def _default_thresholds() -> dict[str, DayNight]:
    h = H
    return {
        "default": DayNight(day=4 * h, night=10 * h),
        "bed": DayNight(day=6 * h, night=14 * h),
        "bedroom": DayNight(day=5 * h, night=14 * h),
        "seat": DayNight(day=5 * h, night=10 * h),
        "bathroom": DayNight(day=3 * h, night=8 * h),
        "toilet": DayNight(day=3 * h, night=8 * h),
        "front_door": DayNight(day=12 * h, night=12 * h),
        "outside_door": DayNight(day=12 * h, night=12 * h),
    }


class RoutineConfig(Section):
    """The learned routine of the home: how it learns, forgets and is kept."""

    path: Path | None = Field(
        default=None, description="file the routine is kept in; none keeps it in memory only"
    )
    min_days: int = Field(default=7, ge=1, description="days of data before rules use it")
    half_life_days: float = Field(
        default=28.0, gt=0, description="an observation this old counts half: old habits fade"
    )
    save_interval: Duration = Field(
        default=12 * H, gt=0, description="how often the file is rewritten (SD card wear)"
    )


class InactivityConfig(Section):
    """No activity for longer than is normal for this person, at this hour, in this place.

    Until the routine is learned, the fixed thresholds by the role of the last sensor that
    saw the person apply (Tunstall-style, day and night).
    """

    enabled: bool = True
    night_start: TimeOfDay = time(22, 0)
    night_end: TimeOfDay = time(7, 0)
    thresholds: dict[str, DayNight] = Field(default_factory=_default_thresholds)
    learned: bool = Field(default=True, description="use the learned routine once it exists")
    method: Literal["start", "now", "both"] = Field(
        default="start",
        description="compare with spells that began at this time, or with the quiet seen so "
        "far at the time it is now, or the later of the two",
    )
    window: Duration = Field(
        default=1.0 * H, description="quiet spells that began this close in time of day compare"
    )
    margin: float = Field(
        default=1.25, ge=1.0, description="the limit is this times the longest comparable spell"
    )
    pad: Duration = Field(default=45 * M, ge=0, description="plus this much")
    min_samples: int = Field(default=4, ge=1, description="fewer comparable spells: pool wider")
    night_learned: bool = Field(
        default=False,
        description="at night, also compare the quiet so far with the longest quiet so far "
        "seen at that hour of the night (off: see docs/detection.md for its measured cost)",
    )
    night_margin: float = Field(default=2.0, ge=1.0, description="that longest quiet times this")
    night_pad: Duration = Field(default=1.0 * H, ge=0, description="plus this much")
    night_window: Duration = Field(
        default=30 * M,
        ge=0,
        description="the longest quiet so far seen up to this long before the hour counts too",
    )
    night_min_days: int = Field(
        default=7, ge=1, description="days seen at that hour before the night rule applies"
    )
    floor: Duration = Field(default=2.0 * H, gt=0, description="a learned limit is never shorter")
    ceiling: Duration = Field(default=16.0 * H, gt=0, description="nor longer")

    @field_validator("thresholds")
    @classmethod
    def _has_default(cls, value: dict[str, DayNight]) -> dict[str, DayNight]:
        from agent.homemap import Role

        known = {r.value for r in Role} | {"default"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known: {sorted(known)}")
        merged = _default_thresholds()
        merged.update(value)
        return merged


class WakeupConfig(Section):
    """Not up by the usual time plus a margin (Rest Assured: no bathroom motion 06-09)."""

    enabled: bool = True
    not_up_by: TimeOfDay = Field(
        default=time(10, 0), description="the fixed limit until the usual time is learned"
    )
    margin: Duration = Field(default=1.0 * H, ge=0, description="after the latest usual get-up")
    earliest: TimeOfDay = Field(
        default=time(4, 0), description="leaving bed before this is a night visit, not getting up"
    )


class BathroomConfig(Section):
    """A stay in the bathroom longer than usual (GrandCare: over 15 min of motion at night)."""

    enabled: bool = True
    limit: Duration = Field(default=1.0 * H, gt=0, description="fixed limit until learned")
    margin: float = Field(default=1.5, ge=1.0)
    pad: Duration = Field(default=20 * M, ge=0)
    floor: Duration = Field(default=30 * M, gt=0)


class NightExitConfig(Section):
    """The front door opened at night and no activity inside afterwards."""

    enabled: bool = True
    start: TimeOfDay = time(0, 0)
    end: TimeOfDay = time(6, 0)
    after: Duration = Field(default=30 * M, gt=0, description="silence after the door")
    severity: Severity = Severity.URGENT


class AwayConfig(Section):
    """Door, then silence: out of the house, and no inactivity alarm while out."""

    after: Duration = Field(
        default=10 * M, gt=0, description="silence after a door that means the person left"
    )
    long_absence: Duration = Field(
        default=36 * H, gt=0, description="an absence this long is reported, as information"
    )


_URGENT_KINDS: tuple[UrgentKind, ...] = ("fall", "smoke", "water_leak")


class EmergencyConfig(Section):
    """Events that are urgent at once: a fall (radar, pendant), smoke, a water leak.

    Smoke and a leak resolve when their sensor clears; a fall when the person is seen
    moving again (see ``detection.emergency``).
    """

    enabled: bool = True
    kinds: list[UrgentKind] = Field(
        default_factory=lambda: list(_URGENT_KINDS),
        description="the event kinds that raise an urgent alert; others are ignored",
    )


class IntrusionConfig(Section):
    """An outside door or window opened while the home is set to away or holiday.

    Only sensors with the role front_door, outside_door or window count; in normal mode
    the rule never fires.
    """

    enabled: bool = True
    exit_delay: Duration = Field(
        default=2 * M, ge=0, description="after the mode is set, time to leave the house"
    )


class TemperatureConfig(Section):
    """The house too cold or too hot for hours (hypothermia and heat risk)."""

    enabled: bool = True
    low: float = Field(default=16.0, description="degrees Celsius")
    high: float = Field(default=28.0, description="degrees Celsius")
    lasting: Duration = Field(
        default=3 * H, gt=0, description="below low (above high) this long raises, per room"
    )
    hysteresis: float = Field(
        default=0.5, ge=0, description="degrees back inside the band before it resolves"
    )
    severity: Severity = Severity.WARNING
    stale_after: Duration = Field(
        default=6 * H,
        gt=0,
        description="a reading older than this no longer counts; for a sensor with a "
        "declared report_interval_s, twice that",
    )


class SensorHealthConfig(Section):
    """A sensor silent or offline, its battery low, a driver down: maintenance.

    A sensor is silent after ``silent_factor`` times its declared report interval, or the
    interval learned from its measurements; a person-activity sensor after
    ``activity_silence`` while the others see the person (see ``detection.sensorhealth``).
    """

    enabled: bool = True
    silent_factor: float = Field(
        default=3.0, gt=1.0, description="silent after this many reporting intervals"
    )
    activity_silence: Duration = Field(
        default=72 * H, gt=0, description="an activity sensor quiet this long while others work"
    )
    battery_low: float = Field(
        default=15.0, ge=0, le=100, description="percent; a new battery is 10 points above"
    )
    driver_down_after: Duration = Field(
        default=5 * M, ge=0, description="a driver down this long raises"
    )
    offline_after: Duration = Field(
        default=5 * M, ge=0, description="a sensor its network reports offline this long raises"
    )


class TrendConfig(Section):
    """Fall-risk signals, once a week: the last 7 days against the 28 days before them.

    Night-time bathroom visits, restlessness at night, the time to walk the hallway and
    the active hours of a day, each by a robust z-score (see ``detection.trend``).
    """

    enabled: bool = True
    weekday: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field(default="monday", description="the day of the weekly check")
    at: TimeOfDay = Field(default=time(10, 0), description="its local time")
    min_days: int = Field(
        default=28, ge=14, description="days with activity in the 35 compared before comparing"
    )
    z: float = Field(default=3.0, gt=0, description="robust z-score that counts as a change")
    night_start: TimeOfDay = Field(
        default=time(23, 0), description="the night of visits and restlessness starts"
    )
    night_end: TimeOfDay = Field(default=time(6, 0), description="and ends; it is the next day's")


class HelpButtonConfig(Section):
    enabled: bool = True
    resolve_after: Duration | None = Field(
        default=None, description="resolve by itself after this long; none waits for an ack"
    )


class DetectionConfig(Section):
    routine: RoutineConfig = Field(default_factory=RoutineConfig)
    inactivity: InactivityConfig = Field(default_factory=InactivityConfig)
    wakeup: WakeupConfig = Field(default_factory=WakeupConfig)
    bathroom: BathroomConfig = Field(default_factory=BathroomConfig)
    night_exit: NightExitConfig = Field(default_factory=NightExitConfig)
    away: AwayConfig = Field(default_factory=AwayConfig)
    help_button: HelpButtonConfig = Field(default_factory=HelpButtonConfig)
    emergency: EmergencyConfig = Field(default_factory=EmergencyConfig)
    intrusion: IntrusionConfig = Field(default_factory=IntrusionConfig)
    temperature: TemperatureConfig = Field(default_factory=TemperatureConfig)
    sensor_health: SensorHealthConfig = Field(default_factory=SensorHealthConfig)
    trend: TrendConfig = Field(default_factory=TrendConfig)
