"""The detection engine: runs the detectors and owns the life of every alert.

Detectors are deterministic functions of (events, clock, home map, config). They never
poll: each keeps ``wake`` (monotonic seconds, ``inf`` for never) and the engine calls
``on_wakeup`` when that moment has come. They raise, update and resolve alerts through
the engine by a key of their own; the engine gives each alert a stable id, numbers every
message, and hands them to the sink (the outbox). The same events and clock give the
same messages, byte for byte.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from agent.clock import Clock
from agent.detectconfig import DetectionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, AlertState, Mode, Severity

log = logging.getLogger(__name__)

INF = math.inf


@dataclass
class OpenAlert:
    id: str
    kind: str
    severity: Severity
    since: float
    room: str | None
    owner: str
    key: str


class Detector(ABC):
    """One rule. Subclasses set ``name`` and ``kinds`` and implement the two hooks."""

    name: ClassVar[str]
    #: the event kinds this detector wants to see; others never reach it
    kinds: ClassVar[frozenset[EventKind]]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock = engine.clock
        self.home = engine.home
        self.wake = INF

    @abstractmethod
    def on_event(self, event: SensorEvent) -> None:
        """React to an event of one of ``kinds``; update ``wake`` if needed."""

    def on_wakeup(self, now: float) -> None:  # noqa: B027 - detectors without timers skip it
        """``wake`` has come (``now`` in monotonic seconds)."""

    def on_acknowledged(self, alert: OpenAlert) -> None:
        """The centre acknowledged one of this detector's alerts; by default it resolves."""
        self.engine.resolve(self, alert.key, "Acknowledged by the centre.")

    def on_mode(self, mode: Mode) -> None:  # noqa: B027 - most detectors ignore the mode
        """The home was set to ``mode`` (normal, away, holiday); ``engine.mode`` has it."""

    def on_driver(self, name: str, up: bool) -> None:  # noqa: B027 - most ignore drivers
        """Driver ``name`` came up or went down; ``engine.drivers_down`` has them all."""

    # helpers for subclasses
    def raise_alert(
        self,
        key: str,
        kind: str,
        severity: Severity,
        since: float,
        room: str | None,
        summary: str,
        evidence: dict[str, int | float] | None = None,
    ) -> str:
        return self.engine.raise_alert(self, key, kind, severity, since, room, summary, evidence)


AlertSink = Callable[[AlertMessage], None]


class Engine:
    """Runs detectors over events and time; see the module docstring."""

    def __init__(
        self,
        hub_id: str,
        clock: Clock,
        home: HomeMap,
        config: DetectionConfig,
        sink: AlertSink,
        seq_start: int = 1,
        detectors: Iterable[type[Detector]] | None = None,
        mode: Mode = Mode.NORMAL,
    ) -> None:
        self.hub_id = hub_id
        self.clock = clock
        self.home = home
        self.config = config
        self.sink = sink
        self.seq = seq_start
        self.open: dict[tuple[str, str], OpenAlert] = {}
        self.mode = mode
        #: names of drivers that are down now, with the monotonic time they went down
        self.drivers_down: dict[str, float] = {}
        self._ids: set[str] = set()
        if detectors is None:
            from detection.registry import enabled_detectors

            detectors = enabled_detectors(config)
        self.detectors: list[Detector] = [cls(self) for cls in detectors]
        self._by_kind: dict[EventKind, list[Detector]] = {k: [] for k in EventKind}
        for det in self.detectors:
            for kind in det.kinds:
                self._by_kind[kind].append(det)
        self.next_wakeup = INF

    # ---- time and events -------------------------------------------------------------
    def _recompute(self) -> None:
        nxt = INF
        for det in self.detectors:
            if det.wake < nxt:  # noqa: PLR1730 - a comparison is cheaper than min() per event
                nxt = det.wake
        self.next_wakeup = nxt

    def on_event(self, event: SensorEvent) -> None:
        """An event from a known sensor; timers due before it must have fired already."""
        wanted = self._by_kind[event.kind]
        if not wanted:
            return
        # Only the detectors that saw the event can have moved their wake. One that moved
        # it later leaves ``next_wakeup`` early: fire() then finds nothing due and works
        # the true next moment out. Cheaper than a scan of every detector per event.
        nxt = self.next_wakeup
        for det in wanted:
            det.on_event(event)
            if det.wake < nxt:  # noqa: PLR1730 - a comparison is cheaper than min() per event
                nxt = det.wake
        self.next_wakeup = nxt

    def fire(self, now: float) -> None:
        """Run every detector whose ``wake`` is due at ``now``; the clock is at ``now``."""
        for det in self.detectors:
            if det.wake <= now:
                det.wake = INF
                det.on_wakeup(now)
        self._recompute()

    def set_mode(self, mode: Mode) -> None:
        """The home was set to normal, away or holiday (a command from the centre)."""
        if mode is self.mode:
            return
        self.mode = mode
        for det in self.detectors:
            det.on_mode(mode)
        self._recompute()

    def driver_state(self, name: str, up: bool) -> None:
        """The runtime reports a driver going down or coming back."""
        if up == (name not in self.drivers_down):
            return
        if up:
            del self.drivers_down[name]
        else:
            self.drivers_down[name] = self.clock.monotonic()
        for det in self.detectors:
            det.on_driver(name, up)
        self._recompute()

    # ---- the alert lifecycle ---------------------------------------------------------
    def _local(self, wall: float) -> datetime:
        """Wall seconds as local time, to the second: what people read in an alert."""
        return datetime.fromtimestamp(round(wall), tz=self.clock.tz)

    def _new_id(self, kind: str, since: float) -> str:
        stamp = datetime.fromtimestamp(since, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{kind}-{stamp}"
        candidate, n = base, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{base}-{n}"
        self._ids.add(candidate)
        return candidate

    def _emit(
        self,
        alert: OpenAlert,
        state: AlertState,
        summary: str,
        evidence: dict[str, int | float] | None,
    ) -> None:
        msg = AlertMessage(
            hub=self.hub_id,
            id=alert.id,
            seq=self.seq,
            kind=alert.kind,
            severity=alert.severity,
            state=state,
            since=self._local(alert.since),
            at=self._local(self.clock.wall()),
            room=alert.room,
            clock_synced=self.clock.wall_synced(),
            summary=summary,
            evidence=evidence or {},
        )
        self.seq += 1
        log.info("alert %s %s (%s): %s", alert.id, state.value, alert.severity.value, summary)
        self.sink(msg)

    def raise_alert(
        self,
        owner: Detector,
        key: str,
        kind: str,
        severity: Severity,
        since: float,
        room: str | None,
        summary: str,
        evidence: dict[str, int | float] | None = None,
    ) -> str:
        slot = (owner.name, key)
        if slot in self.open:
            raise RuntimeError(f"{owner.name}: alert {key!r} is already open")
        alert = OpenAlert(self._new_id(kind, since), kind, severity, since, room, owner.name, key)
        self.open[slot] = alert
        self._emit(alert, AlertState.RAISED, summary, evidence)
        return alert.id

    def update(
        self,
        owner: Detector,
        key: str,
        summary: str,
        evidence: dict[str, int | float] | None = None,
        severity: Severity | None = None,
    ) -> None:
        alert = self.open[(owner.name, key)]
        if severity is not None:
            alert.severity = severity
        self._emit(alert, AlertState.UPDATED, summary, evidence)

    def resolve(
        self,
        owner: Detector,
        key: str,
        summary: str,
        evidence: dict[str, int | float] | None = None,
    ) -> None:
        alert = self.open.pop((owner.name, key))
        self._emit(alert, AlertState.RESOLVED, summary, evidence)

    def is_open(self, owner: Detector, key: str) -> bool:
        return (owner.name, key) in self.open

    def acknowledge(self, alert_id: str) -> bool:
        """The centre acknowledged ``alert_id``; False when no such alert is open."""
        for alert in list(self.open.values()):
            if alert.id == alert_id:
                for det in self.detectors:
                    if det.name == alert.owner:
                        det.on_acknowledged(alert)
                        self._recompute()
                        return True
        return False
