"""Configuration of the GPIO driver: inputs on the Pi's pins, a status LED and a buzzer."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agent.config import DriverConfig
from agent.homemap import SensorId
from agent.units import Duration
from drivers.gpio.pins import (
    DEFAULT_LONG_PRESS,
    DEFAULT_WIRING,
    FIXED_PULL_UP,
    InputKind,
    Level,
    Pull,
    Wiring,
    parse_pin,
    pin_name,
)

#: A pin as written (17, "GPIO17", "BCM17", "BOARD11"), kept as its BCM number.
BcmPin = Annotated[int, BeforeValidator(parse_pin)]

MAX_DEBOUNCE = 1.0  # longer hides real presses and door movements
MAX_LONG_PRESS = 30.0

PinFactoryName = Literal["auto", "lgpio", "rpigpio", "pigpio", "native", "mock"]


class InputConfig(BaseModel):
    """One sensor wired to one pin."""

    model_config = ConfigDict(extra="forbid")

    sensor: SensorId = Field(description="the sensor's id in the home map")
    pin: BcmPin = Field(description="BCM number (17 or 'GPIO17') or header pin ('BOARD11')")
    kind: InputKind = Field(
        description="motion (a PIR), contact (a reed switch: door, window) or button"
    )
    pull: Pull | None = Field(
        default=None,
        description='the internal resistor: "up", "down" or "none" (an external one); '
        "by default down for motion, up for contact and button",
    )
    active_when: Level | None = Field(
        default=None,
        description="the level that means motion / open / pressed; by default high for "
        "motion and contact (a normally-open reed to ground reads high when the door is "
        "open), low for button",
    )
    debounce: Duration | None = Field(
        default=None,
        ge=0,
        le=MAX_DEBOUNCE,
        description="this input's own debounce time; by default the driver's",
    )
    long_press: Duration | None = Field(
        default=None,
        gt=0,
        le=MAX_LONG_PRESS,
        description="button only: held this long also reports a long press (value 2); default 2s",
    )

    @property
    def wiring(self) -> Wiring:
        default = DEFAULT_WIRING[self.kind]
        return Wiring(
            pull=self.pull or default.pull, active_when=self.active_when or default.active_when
        )

    @property
    def hold_time(self) -> float | None:
        """Seconds a button must be held for a long press; None for other kinds."""
        if self.kind != "button":
            return None
        return DEFAULT_LONG_PRESS if self.long_press is None else self.long_press

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.long_press is not None and self.kind != "button":
            raise ValueError(f"long_press is for buttons only, not for a {self.kind} input")
        if self.pin in FIXED_PULL_UP and self.wiring.pull != "up":
            raise ValueError(
                f'{pin_name(self.pin)} has a pull-up resistor on the board: use pull = "up" '
                "or another pin"
            )
        return self


class OutputConfig(BaseModel):
    """A status LED or a buzzer on one pin."""

    model_config = ConfigDict(extra="forbid")

    pin: BcmPin = Field(description="BCM number (5 or 'GPIO5') or header pin ('BOARD29')")
    active_high: bool = Field(
        default=True,
        description="true: the pin drives it high (to ground through it); false: it is "
        "wired from 3.3 V to the pin",
    )


class GpioConfig(DriverConfig):
    #: the pin libraries share their pins across the process: one gpio driver per hub
    single_instance: ClassVar[bool] = True

    type: Literal["gpio"] = "gpio"
    inputs: list[InputConfig] = Field(
        default_factory=list, description="the sensors wired to the Pi's pins"
    )
    debounce: Duration = Field(
        default=0.05,
        ge=0,
        le=MAX_DEBOUNCE,
        description="a level must hold this long before it counts (contact bounce, noise)",
    )
    led: OutputConfig | None = Field(default=None, description="the status LED, if fitted")
    buzzer: OutputConfig | None = Field(default=None, description="the buzzer, if fitted")
    pin_factory: PinFactoryName = Field(
        default="auto",
        description='gpiozero\'s pin library: "auto" tries lgpio, then rpigpio; "mock" '
        "gives simulated pins (tests, demonstrations)",
    )

    @model_validator(mode="after")
    def _pins_and_sensors_once(self) -> Self:
        users: dict[int, str] = {}
        sensors: dict[str, str] = {}
        places: list[tuple[str, int]] = [
            (f"inputs[{i}].pin", inp.pin) for i, inp in enumerate(self.inputs)
        ]
        if self.led is not None:
            places.append(("led.pin", self.led.pin))
        if self.buzzer is not None:
            places.append(("buzzer.pin", self.buzzer.pin))
        for where, pin in places:
            if pin in users:
                raise ValueError(f"{where}: {pin_name(pin)} is already used by {users[pin]}")
            users[pin] = where
        for i, inp in enumerate(self.inputs):
            key = inp.sensor
            if key in sensors:
                raise ValueError(f"inputs[{i}].sensor: {inp.sensor!r} is already on {sensors[key]}")
            sensors[key] = f"inputs[{i}]"
        if not self.inputs and self.led is None and self.buzzer is None:
            raise ValueError("nothing to do: give inputs, a led or a buzzer")
        return self
