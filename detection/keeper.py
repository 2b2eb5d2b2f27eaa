"""Keeps the learned routine on disk, so a restart does not forget the person.

Loaded when the hub starts; saved every ``save_interval`` (from the heartbeat timer) and
when the hub stops. The file is written atomically (``Routine.save``). A file that cannot
be read is moved aside as ``<name>.corrupt-<n>`` and reported; the hub starts with an
empty routine (the safe fixed thresholds) instead of stopping. A failed save is logged
and retried at the next interval: the hub keeps running and keeps what it learned in
memory.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from agent.detectconfig import RoutineConfig
from detection.engine import Engine
from detection.person import PersonWatch
from detection.routine import Routine, RoutineFileError

log = logging.getLogger(__name__)


def move_aside(path: Path) -> Path:
    """Rename a damaged file out of the way, never overwriting an earlier one."""
    n = 1
    while True:
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists():
            path.rename(target)
            return target
        n += 1


class RoutineKeeper:
    def __init__(self, routine: Routine, path: Path, interval: float) -> None:
        self.routine = routine
        self.path = path
        self.interval = interval
        self.last_save = -math.inf
        self.failures = 0

    @classmethod
    def for_engine(cls, engine: Engine, config: RoutineConfig) -> RoutineKeeper | None:
        """The keeper of the engine's routine, loaded from ``config.path``; None without one."""
        if config.path is None:
            return None
        watch = next((d for d in engine.detectors if isinstance(d, PersonWatch)), None)
        if watch is None:
            return None
        keeper = cls(watch.routine, config.path, config.save_interval)
        keeper.load()
        keeper.last_save = engine.clock.monotonic()
        return keeper

    def load(self) -> None:
        if not self.path.exists():
            log.info("no learned routine at %s yet: starting from the fixed thresholds", self.path)
            return
        try:
            self.routine.load(self.path)
        except RoutineFileError as err:
            try:
                aside = move_aside(self.path)
            except OSError as move_err:
                log.error("learned routine unreadable (%s) and not movable: %s", err, move_err)
                return
            log.error(
                "learned routine unreadable (%s); moved to %s, starting from the fixed thresholds",
                err,
                aside,
            )
            return
        log.info("learned routine loaded from %s: %d day(s)", self.path, self.routine.days_seen)

    def maybe_save(self, now: float) -> None:
        if now - self.last_save >= self.interval:
            self.last_save = now
            self.save()

    def save(self) -> bool:
        try:
            self.routine.save(self.path)
        except OSError as err:
            self.failures += 1
            log.error("could not save the learned routine to %s: %s", self.path, err)
            return False
        return True
