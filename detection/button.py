"""The help button: urgent at once.

A press raises an urgent alert in the button's room; more presses while it is open
update it with their count. It stays open until the centre acknowledges it, or, when
``resolve_after`` is set, until that long after the last press.

After a restart of the hub an open alert is taken back: more presses update it, counting
on from its last message, and ``resolve_after`` counts from the restart.
"""

from __future__ import annotations

from agent.detectconfig import HelpButtonConfig
from agent.events import EventKind, SensorEvent
from agent.messages import Severity
from detection.engine import INF, Detector, Engine, OpenAlert

_KEY = "pressed"


class HelpButton(Detector):
    name = "help_button"
    kinds = frozenset({EventKind.BUTTON})

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: HelpButtonConfig = engine.config.help_button
        self.presses = 0

    def on_event(self, event: SensorEvent) -> None:
        if event.value <= 0:
            return
        spec = self.home.sensors[event.sensor]
        long_press = event.value >= 2
        how = "long-pressed" if long_press else "pressed"
        if not self.engine.is_open(self, _KEY):
            self.presses = 1
            self.raise_alert(
                _KEY,
                "help_button",
                Severity.URGENT,
                event.wall,
                spec.room,
                f"The help button was {how} ({spec.room}).",
                {"presses": 1},
            )
        else:
            self.presses += 1
            self.engine.update(
                self,
                _KEY,
                f"The help button was {how} again: {self.presses} presses.",
                {"presses": self.presses},
            )
        if self.cfg.resolve_after is not None:
            self.wake = event.mono + self.cfg.resolve_after

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        self.presses = max(1, int(alert.evidence.get("presses", 1)))
        if self.cfg.resolve_after is not None:
            self.wake = self.clock.monotonic() + self.cfg.resolve_after
        return True

    def on_wakeup(self, now: float) -> None:
        if self.engine.is_open(self, _KEY):
            self.engine.resolve(
                self,
                _KEY,
                "Closed by the hub: no further presses and no acknowledgement came.",
                {"presses": self.presses},
            )
        self.wake = INF
