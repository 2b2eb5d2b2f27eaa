"""The contract between the runtime and a driver.

A driver turns one family's vendor data into ``SensorEvent``s. It is built with its
validated configuration and a ``DriverContext``; it gets the clock and the emitter from
there and keeps no module globals.

A driver **must** override:

- ``run()``: an async method that produces events through ``ctx.emit`` until it is
  cancelled (a live driver) or until its source ends (the replay driver). It raises
  ``TransientError`` when its device is gone; the runtime restarts it with backoff.

A driver **may** override:

- ``close()``: release what ``run()`` opened; called after ``run()`` ends, however it ends.
- ``indicate(what)``: show the hub's state to the people in the home (a status LED, a
  buzzer). Called from the event loop; must return at once and never raise.
- ``sensors()``: the sensor ids this instance serves, for ``hub check`` to name its driver.

What the context offers besides ``emit``:

- ``ctx.health.alive()``: "my transport works" (a frame, a message, an advertisement).
  A driver whose configuration sets ``stall_after`` and that shows no sign of life for
  that long is taken to hang: the runtime cancels it and starts it again with backoff.
- ``ctx.signal(sensor, value, unit)``: a device's link quality (``"lqi"``, 0-255) or
  received signal strength (``"dBm"``), for ``hub check`` only: never stored, never sent.
- ``ctx.home.sensor_for_device(address)``: a radio device's sensor id in the home map.

Decoding (bytes or JSON to readings) belongs in a pure function of its own module, tested
with literal vectors; ``run()`` is the thin transport around it. Malformed vendor data is
counted with ``ctx.health.malformed()``, logged at debug and dropped, never raised.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal, Protocol

from agent.clock import Clock
from agent.config import DriverConfig
from agent.events import SensorEvent
from agent.homemap import HomeMap


class SimControl(Protocol):
    """Given to drivers only in replay: they move simulated time forward."""

    def advance_to(self, mono: float) -> None:
        """Let simulated time pass until ``mono``, firing every timer due on the way."""

    def set_clock(self, wall: float, mono: float, synced: bool) -> None:
        """Put the clock at the moment of the next event."""

    def step(self, event: SensorEvent, synced: bool) -> None:
        """Deliver ``event`` at its own moment: timers due before it fire first."""


DriverState = Literal["starting", "running", "retrying", "stopped", "failed"]


@dataclass
class DriverHealth:
    """What a driver says about itself, for the heartbeat and ``hub check``."""

    name: str
    state: DriverState = "starting"
    events: int = 0
    malformed_count: int = 0
    restarts: int = 0
    last_error: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    last_alive: float = field(default_factory=time.monotonic)

    def malformed(self, what: str, log: logging.Logger | None = None) -> None:
        self.malformed_count += 1
        if log is not None:
            log.debug("%s: dropped malformed data: %s", self.name, what)

    def alive(self) -> None:
        """The driver's transport just worked; see ``stall_after``."""
        self.last_alive = time.monotonic()


class Indication(StrEnum):
    """What the hub shows on a driver's LED or buzzer, if it has one."""

    UPLINK_UP = "uplink_up"  # the centre is reachable
    UPLINK_DOWN = "uplink_down"  # it is not (yet)
    SENSOR_SEEN = "sensor_seen"  # a sensor reported activity: the installer's walk-through
    SELF_TEST = "self_test"  # the centre or the installer asked for a self-test
    HELP_RAISED = "help_raised"  # an urgent alert was raised: tell the person it is heard


def _no_signal(sensor: str, value: float, unit: str) -> None:
    """Default ``signal`` sink: nobody is listening."""


@dataclass
class DriverContext:
    clock: Clock
    emit: Callable[[SensorEvent], None]
    home: HomeMap
    health: DriverHealth
    log: logging.Logger
    sim: SimControl | None = None
    signal: Callable[[str, float, str], None] = _no_signal


class Driver(ABC):
    """Base of every driver; see the module docstring for the contract."""

    #: the configuration model this driver is built with
    config_model: ClassVar[type[DriverConfig]]

    def __init__(self, config: DriverConfig, ctx: DriverContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    async def run(self) -> None:
        """Produce events until cancelled, or until the source ends."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; called after ``run`` ends."""

    def indicate(self, what: Indication) -> None:  # noqa: B027 - optional hook
        """Show ``what`` on the driver's LED or buzzer; most drivers have neither."""

    def sensors(self) -> list[str]:
        """The sensor ids this driver serves, as far as its configuration tells."""
        return []
