"""Configuration of the serial radar driver."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from agent.config import DriverConfig
from agent.homemap import SensorId
from agent.units import Duration

#: the rate each radar leaves the factory with
DEFAULT_BAUDRATE: dict[str, int] = {"ld2410": 256000, "mr60fda2": 115200}
#: the LD2410 reports about ten times a second: silence this long means it is lost
LD2410_STALL_AFTER = 10.0


class RadarConfig(DriverConfig):
    type: Literal["radar"] = "radar"
    model: Literal["ld2410", "mr60fda2"] = Field(
        description="ld2410: HLK-LD2410 presence radar; mr60fda2: Seeed MR60FDA2 fall radar"
    )
    port: str = Field(
        min_length=1,
        description="the serial device, e.g. /dev/ttyUSB0; a /dev/serial/by-id/... path "
        "stays the same when the adapter is plugged into another USB port",
    )
    baudrate: int | None = Field(
        default=None,
        gt=0,
        le=4_000_000,
        description="bits per second; by default the radar's factory rate "
        "(LD2410 256000, MR60FDA2 115200)",
    )
    sensor: SensorId = Field(
        description="the home-map sensor whose presence, motion and fall this radar reports"
    )
    presence_hold: Duration = Field(
        default=10.0,
        description="presence goes to 0 only after this long without any target, so that "
        "a person sitting very still does not flap in and out",
    )
    motion: bool = Field(
        default=True,
        description="LD2410 only: a moving target is also reported as motion 1 (activity), "
        "and motion 0 after motion_interval without one",
    )
    motion_interval: Duration = Field(
        default=60.0,
        gt=0,
        description="LD2410 only: motion 1 is repeated at most this often while the person "
        "keeps moving, and cleared after this long without movement",
    )

    @model_validator(mode="after")
    def _per_model(self) -> Self:
        if self.model != "ld2410":
            for key in ("motion", "motion_interval"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key} applies to model ld2410 only")
        if self.baudrate is None:
            self.baudrate = DEFAULT_BAUDRATE[self.model]
        if self.model == "ld2410" and "stall_after" not in self.model_fields_set:
            self.stall_after = LD2410_STALL_AFTER
        return self
