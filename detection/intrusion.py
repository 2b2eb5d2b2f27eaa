"""Intrusion: a door or window to the outside opened while the home is set to away.

The centre sets the home to away or holiday when the person is out for a while (a
hospital stay, a holiday with family). From then on, after ``exit_delay`` for whoever set
it to leave the house, a contact sensor with the role ``front_door``, ``outside_door`` or
``window`` opening (value 1) raises an urgent ``intrusion`` alert, naming the room and
the door or window. Further openings update it with their count. Setting the home back
to normal resolves it, as does an acknowledgement. In normal mode this rule never fires:
the person opening their own door is daily life.

The exit delay is counted on the monotonic clock from the moment the mode changed.
Switching between away and holiday keeps the home armed as it was. A hub that starts in
away mode (it restarted while the home was empty) is armed at once, and an intrusion
alert open before the restart is taken back: further openings update it.
"""

from __future__ import annotations

from agent.detectconfig import IntrusionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import Role
from agent.messages import Mode, Severity
from detection.engine import INF, Detector, Engine, OpenAlert

_KEY = "intrusion"
_ARMED_MODES = frozenset({Mode.AWAY, Mode.HOLIDAY})
_OUTSIDE = {
    Role.FRONT_DOOR: "front door",
    Role.OUTSIDE_DOOR: "outside door",
    Role.WINDOW: "window",
}


class Intrusion(Detector):
    name = "intrusion"
    kinds = frozenset({EventKind.CONTACT})

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: IntrusionConfig = engine.config.intrusion
        #: monotonic moment from which an opening is an intrusion (INF: not armed)
        self.armed_at = -INF if engine.mode in _ARMED_MODES else INF
        self.openings = 0
        self._watched = {
            sid: (spec.room, _OUTSIDE[spec.role], spec.label)
            for sid, spec in self.home.sensors.items()
            if spec.role in _OUTSIDE
        }

    def on_mode(self, mode: Mode) -> None:
        if mode in _ARMED_MODES:
            if self.armed_at == INF:  # away <-> holiday keeps the moment it was armed
                self.armed_at = self.clock.monotonic() + self.cfg.exit_delay
            return
        self.armed_at = INF
        if self.engine.is_open(self, _KEY):
            self.engine.resolve(
                self,
                _KEY,
                f"The home was set to {mode.value}; {self.openings} opening(s) while away.",
                {"openings": self.openings},
            )
        self.openings = 0

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        self.openings = max(1, int(alert.evidence.get("openings", 1)))
        return True

    def on_event(self, event: SensorEvent) -> None:
        if event.value <= 0 or event.mono < self.armed_at:
            return
        where = self._watched.get(event.sensor)
        if where is None:
            return
        room, what, label = where
        if label and label.lower() != what:
            what = f"{what} ({label[:48]})"
        mode = self.engine.mode.value
        if not self.engine.is_open(self, _KEY):
            self.openings = 1
            self.raise_alert(
                _KEY,
                "intrusion",
                Severity.URGENT,
                event.wall,
                room,
                f"The {what} in {room} was opened while the home is set to {mode}.",
                {"openings": 1},
            )
            return
        self.openings += 1
        self.engine.update(
            self,
            _KEY,
            f"Another opening while the home is set to {mode}: the {what} in {room}; "
            f"{self.openings} openings.",
            {"openings": self.openings},
        )

    def on_acknowledged(self, alert: OpenAlert) -> None:
        self.openings = 0
        super().on_acknowledged(alert)
