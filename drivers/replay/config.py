"""Configuration of the replay driver."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.config import DriverConfig


class ReplayConfig(DriverConfig):
    type: Literal["replay"] = "replay"
    path: Path
    speed: float | Literal["max"] = Field(
        default="max", description='"max" as fast as possible, or N times real time'
    )
    on_malformed: Literal["skip", "stop"] = Field(
        default="skip",
        description="a malformed line is reported; then skipped, or the replay stops",
    )

    @field_validator("speed")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and value <= 0:
            raise ValueError('speed must be "max" or a positive number')
        return value
