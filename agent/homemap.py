"""The home map: every sensor has a room and a role. Detectors reason in roles, never in ids."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from agent.events import EventKind


class Role(StrEnum):
    """What a sensor tells about the person, whatever room it hangs in."""

    BEDROOM = "bedroom"  # movement in a bedroom
    BED = "bed"  # a bed pressure mat or bed-exit sensor: lying in bed
    BATHROOM = "bathroom"  # movement or use of the bathroom
    TOILET = "toilet"  # a toilet flush or a toilet-room door
    KITCHEN = "kitchen"  # kitchen movement, fridge, cupboards, appliances
    LIVING = "living"  # living room movement, TV
    SEAT = "seat"  # a chair pressure mat: sitting
    HALLWAY = "hallway"  # passage between rooms
    FRONT_DOOR = "front_door"  # the door the person leaves and returns by
    OUTSIDE_DOOR = "outside_door"  # another door to the outside (garden, balcony)
    WINDOW = "window"  # a window contact
    WEARABLE = "wearable"  # a pendant or watch worn by the person (button, fall)
    OTHER = "other"  # anything else inside the home


#: The place a role puts the person in, for "where is the person" reasoning.
PLACE_OF_ROLE: dict[Role, str] = {
    Role.BEDROOM: "bedroom",
    Role.BED: "bedroom",
    Role.BATHROOM: "bathroom",
    Role.TOILET: "bathroom",
    Role.KITCHEN: "kitchen",
    Role.LIVING: "living",
    Role.SEAT: "living",
    Role.HALLWAY: "hallway",
    Role.FRONT_DOOR: "entrance",
    Role.OUTSIDE_DOOR: "entrance",
    Role.WINDOW: "other",
    Role.WEARABLE: "other",
    Role.OTHER: "other",
}

SensorId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"),
]


class SensorSpec(BaseModel):
    """One sensor of the home."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    room: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    role: Role
    kind: EventKind | None = Field(
        default=None, description="the sensor's main kind, for people reading the map"
    )
    label: str | None = Field(default=None, max_length=128, description="a name for people")
    report_interval_s: float | None = Field(
        default=None,
        gt=0,
        description="longest normal silence of a sensor that reports periodically",
    )
    device: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="the radio device behind this sensor: a Zigbee2MQTT friendly name or "
        "IEEE address (0x00158d...), or a Bluetooth address (A4:C1:38:...); "
        "by default the sensor id itself",
    )


class HomeMap(BaseModel):
    """Sensor id -> room and role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensors: dict[SensorId, SensorSpec] = Field(default_factory=dict)
    _devices: dict[str, str] = PrivateAttr(default_factory=dict)

    def get(self, sensor: str) -> SensorSpec | None:
        return self.sensors.get(sensor)

    def __contains__(self, sensor: object) -> bool:
        return sensor in self.sensors

    def __len__(self) -> int:
        return len(self.sensors)

    def with_role(self, *roles: Role) -> list[str]:
        """Ids of the sensors that have one of ``roles``, sorted."""
        wanted = set(roles)
        return sorted(sid for sid, spec in self.sensors.items() if spec.role in wanted)

    def sensor_for_device(self, address: str) -> str | None:
        """The sensor id whose ``device`` is ``address`` (case does not matter), or the
        sensor whose id is ``address`` when none names it; None for a stranger."""
        return self._devices.get(address.casefold())

    def model_post_init(self, __context: object) -> None:
        index = {sid.casefold(): sid for sid in self.sensors}
        for sid, spec in self.sensors.items():
            if spec.device is not None:
                index[spec.device.casefold()] = sid
        self._devices = index

    @model_validator(mode="after")
    def _one_sensor_per_device(self) -> Self:
        owner: dict[str, str] = {}
        for sid, spec in self.sensors.items():
            if spec.device is None:
                continue
            key = spec.device.casefold()
            if key in owner:
                raise ValueError(
                    f"sensors {owner[key]!r} and {sid!r} both name device {spec.device!r}"
                )
            other = next((o for o in self.sensors if o.casefold() == key and o != sid), None)
            if other is not None:
                raise ValueError(
                    f"sensor {sid!r} names device {spec.device!r}, "
                    f"which is also the id of sensor {other!r}"
                )
            owner[key] = sid
        return self

    def rooms(self) -> list[str]:
        return sorted({spec.room for spec in self.sensors.values()})
