"""Inactivity with safe fixed thresholds, by where the person was last seen and the time of day.

The limit depends on the role of the last sensor that saw the person (in bed a long
silence is sleep; in the bathroom it is not) and on whether it is day or night in the
home's time zone. While the quiet lasts, the limit is the larger of the one where it
began and the one of the hour now: a doze in the chair at 20:00 runs into the night
limit, a night in bed does not fall under the shorter daytime limit at 07:00. The alert
is urgent, says how long it has been quiet against which limit, and resolves itself as
soon as the person is seen doing anything again.
"""

from __future__ import annotations

from agent.detectconfig import InactivityConfig
from agent.events import SensorEvent
from agent.homemap import Role
from agent.messages import Severity
from agent.units import format_duration
from detection.activity import PERSON_KINDS, is_person_activity, role_after
from detection.engine import INF, Detector, Engine, OpenAlert
from detection.timeofday import first_crossing, in_window

_KEY = "quiet"


class FixedInactivity(Detector):
    name = "inactivity"
    kinds = PERSON_KINDS

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: InactivityConfig = engine.config.inactivity
        self.last_wall = INF
        self.last_mono = INF
        self.role: Role | None = None
        self.room: str | None = None
        self.limit_s = 0.0
        self.alert_open = False
        self._deadline: float | None = None  # monotonic; None until it is worked out
        self._marks = (self.cfg.night_start, self.cfg.night_end)
        table = self.cfg.thresholds
        self._shortest = {
            role: min(
                table.get(role.value, table["default"]).day,
                table.get(role.value, table["default"]).night,
            )
            for role in Role
        }
        self._shortest_default = min(table["default"].day, table["default"].night)
        self._where = {
            sid: (spec.role, spec.room)
            for sid, spec in self.home.sensors.items()
            if spec.role is not Role.WEARABLE
        }

    def _limit(self, role: Role | None, wall: float) -> float:
        table = self.cfg.thresholds
        pair = table.get(role.value, table["default"]) if role else table["default"]
        local = self.engine._local(wall).time()
        night = in_window(local, self.cfg.night_start, self.cfg.night_end)
        return pair.night if night else pair.day

    def on_event(self, event: SensorEvent) -> None:
        if not is_person_activity(event):
            return
        where = self._where.get(event.sensor)
        if where is not None:  # a pendant says nothing about where one is
            self.role = role_after(where[0], event)
            self.room = where[1]
        if self.alert_open:
            quiet = event.wall - self.last_wall
            self.alert_open = False
            self.engine.resolve(
                self,
                _KEY,
                f"Activity again in {self.room or 'the home'} after "
                f"{format_duration(quiet)} without any.",
                {"quiet_min": round(quiet / 60)},
            )
        self.last_wall = event.wall
        self.last_mono = event.mono
        # Working out the deadline takes time-zone arithmetic; most quiet spells end long
        # before the shortest limit, so wake up then and work it out only if still quiet.
        self._deadline = None
        role = self.role
        self.wake = event.mono + (
            self._shortest[role] if role is not None else self._shortest_default
        )

    def _work_out_deadline(self) -> float:
        role = self.role
        at_start = self._limit(role, self.last_wall)

        def limit_at(t: float) -> float:
            # Never less than the limit where the quiet began: someone who went to bed at
            # night is not overdue at 07:00 because the daytime limit for a nap is shorter.
            return max(at_start, self._limit(role, t))

        deadline = first_crossing(self.last_wall, limit_at, self.clock.tz, self._marks)
        self.limit_s = limit_at(deadline)
        return self.last_mono + (deadline - self.last_wall)

    def on_wakeup(self, now: float) -> None:
        if self._deadline is None:
            self._deadline = self._work_out_deadline()
        if now < self._deadline:
            self.wake = self._deadline
            return
        quiet = now - self.last_mono
        where = f"in {self.room}" if self.room else "in the home"
        self.alert_open = True
        self.raise_alert(
            _KEY,
            "inactivity",
            Severity.URGENT,
            self.last_wall,
            self.room,
            f"No activity for {format_duration(quiet)}, last seen {where}; "
            f"the limit there at this time of day is {format_duration(self.limit_s)}.",
            {"quiet_min": round(quiet / 60), "limit_min": round(self.limit_s / 60)},
        )

    def on_acknowledged(self, alert: OpenAlert) -> None:
        self.alert_open = False
        super().on_acknowledged(alert)
