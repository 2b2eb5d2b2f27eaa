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
#: seconds of reports gathered per wake-up by default: the LD2410's ten a second cost
#: more CPU than the rest of a hub; a fall (MR60FDA2) is read the moment it comes
DEFAULT_READ_EVERY: dict[str, float] = {"ld2410": 2.0, "mr60fda2": 0.0}


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

    read_every: Duration | None = Field(
        default=None,
        ge=0,
        le=5,
        description="read the port at most this often, taking the reports gathered "
        "meanwhile at once (a streaming radar would otherwise wake the hub ten times a "
        "second); by default 2 s for the LD2410, 0 (every report at once) for the MR60FDA2",
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
        if self.read_every is None:
            self.read_every = DEFAULT_READ_EVERY[self.model]
            if self.stall_after is not None:  # a short stall limit: gather less
                self.read_every = min(self.read_every, self.stall_after / 3)
        elif self.stall_after is not None and self.read_every * 3 > self.stall_after:
            raise ValueError(
                f"read_every ({self.read_every:g} s) must be at most a third of stall_after "
                f"({self.stall_after:g} s), or a healthy radar would be taken for lost"
            )
        return self
