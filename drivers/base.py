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

Decoding (bytes or JSON to readings) belongs in a pure function of its own module, tested
with literal vectors; ``run()`` is the thin transport around it. Malformed vendor data is
counted with ``ctx.health.malformed()``, logged at debug and dropped, never raised.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

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


@dataclass
class DriverHealth:
    """What a driver says about itself, for the heartbeat and ``hub check``."""

    name: str
    state: str = "starting"  # starting, running, retrying, stopped, failed
    events: int = 0
    malformed_count: int = 0
    restarts: int = 0
    last_error: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    def malformed(self, what: str, log: logging.Logger | None = None) -> None:
        self.malformed_count += 1
        if log is not None:
            log.debug("%s: dropped malformed data: %s", self.name, what)


@dataclass
class DriverContext:
    clock: Clock
    emit: Callable[[SensorEvent], None]
    home: HomeMap
    health: DriverHealth
    log: logging.Logger
    sim: SimControl | None = None


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
