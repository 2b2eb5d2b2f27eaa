"""The detection engine: runs the detectors and owns the life of every alert.

Detectors are deterministic functions of (events, clock, home map, config). They never
poll: each keeps ``wake`` (monotonic seconds, ``inf`` for never) and the engine calls
``on_wakeup`` when that moment has come. They raise, update and resolve alerts through
the engine by a key of their own; the engine gives each alert a stable id, numbers every
message, and hands them to the sink (the outbox). The same events and clock give the
same messages, byte for byte.

Across a restart the engine keeps its word: ``snapshot`` gives what must outlive the
process (the open alerts, the next sequence number, the mode), the runtime stores it with
every alert (``detection.saved``), and ``restore`` opens those alerts again under their
ids. Each rule is offered its own back (``Detector.adopt``); an alert no rule takes back
is the engine's: an alert about the person (quiet, not up, bathroom, door at night,
monitoring lost) ends when the person is seen moving again, ``away_long`` when they are
seen inside, and any other stays open until the centre acknowledges it.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ClassVar, Final

from agent.clock import Clock
from agent.detectconfig import DetectionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role
from agent.messages import AlertMessage, AlertState, Mode, Severity
from agent.units import format_duration
from detection.activity import is_person_activity

log = logging.getLogger(__name__)

INF = math.inf

#: kinds of alert about the person that the engine itself ends, when their rule did not
#: take them back after a restart, once the person is seen moving again
ENDED_BY_MOVEMENT: Final = frozenset(
    {"inactivity", "not_up", "bathroom_overstay", "door_night", "monitoring_lost"}
)
#: ... and once the person is seen inside (not at a door to the outside)
ENDED_BY_COMING_HOME: Final = frozenset({"away_long"})
_OUTSIDE_DOORS: Final = frozenset({Role.FRONT_DOOR, Role.OUTSIDE_DOOR})


@dataclass
class OpenAlert:
    id: str
    kind: str
    severity: Severity
    since: float  # wall seconds
    room: str | None
    owner: str  # the detector's name
    key: str  # the detector's own key
    #: the evidence of its last message: what a rule taking it back after a restart knows
    evidence: dict[str, int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineState:
    """What of the engine outlives a restart (``Engine.snapshot``, ``Engine.restore``).

    Not the rules' own state: each starts afresh and arms its timers from new events; the
    learned routine has its own file (``detection.keeper``).
    """

    seq: int  # the number of the next message
    mode: Mode
    mode_until: float | None  # wall seconds when the mode ends by itself; None: it does not
    open: tuple[OpenAlert, ...]  # in the order they were raised


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

    def on_start(self, now: float) -> None:  # noqa: B027 - most detectors wait for events
        """A live hub started at ``now`` (monotonic), before any event: nothing seen yet."""

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        """Take back ``alert``, raised by this rule before a restart and open again.

        Called once, at the first event or timer after the restart (the clock is known
        then), before any event reaches the rule. ``since_mono`` is the alert's ``since``
        on this run's monotonic clock (the restart itself when the wall clock is not
        synchronised). Return True when this rule now treats it as its own (updates,
        resolves, no second raise); False leaves it to the engine (see the module
        docstring). The alert stays open under its id either way.
        """
        return False

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
        #: wall seconds at which the mode goes back to normal by itself; None: it does not
        self.mode_until: float | None = None
        #: called after a change of state that no alert message carries (the mode), so
        #: that it can be stored; the state is ``snapshot()``
        self.on_state_change: Callable[[], None] | None = None
        #: names of drivers that are down now, with the monotonic time they went down
        self.drivers_down: dict[str, float] = {}
        self._ids: set[str] = set()
        self._pending: list[OpenAlert] = []  # restored, not yet offered to their rules
        self._orphans: set[tuple[str, str]] = set()  # restored, no rule took them back
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
        if self._pending:
            self._take_back()
        if self._orphans:
            self._orphans_see(event)
        wanted = self._by_kind[event.kind]
        if not wanted:
            return
        # Only the detectors that saw the event can have moved their wake. When the one
        # whose wake was next moved it later, every wake is scanned again; otherwise the
        # earliest is kept, which is cheaper than a scan of every detector per event.
        nxt = self.next_wakeup
        rescan = False
        for det in wanted:
            before = det.wake
            det.on_event(event)
            wake = det.wake
            if wake < nxt:
                nxt = wake
            elif before <= nxt < wake:
                rescan = True
        if rescan:
            self._recompute()
        else:
            self.next_wakeup = nxt

    def fire(self, now: float) -> None:
        """Run every detector whose ``wake`` is due at ``now``; the clock is at ``now``."""
        if self._pending:
            self._take_back()
        for det in self.detectors:
            if det.wake <= now:
                det.wake = INF
                det.on_wakeup(now)
        self._recompute()

    def start(self) -> None:
        """A live hub starts: the rules that measure silence begin measuring it now.

        Without it, a hub restarted (a power cut) while the person lies on the floor would
        wait for an event that does not come. A replay does not call it: its first event
        comes at once.
        """
        if self._pending:
            self._take_back()
        now = self.clock.monotonic()
        for det in self.detectors:
            det.on_start(now)
        self._recompute()

    def set_mode(self, mode: Mode, until: float | None = None) -> None:
        """The home was set to normal, away or holiday (a command from the centre).

        ``until``: wall seconds at which it goes back to normal by itself. Whoever sets
        it keeps that timer; the engine keeps the moment, so that it outlives a restart.
        """
        if self._pending:
            self._take_back()
        if mode is Mode.NORMAL:
            until = None
        if mode is self.mode and until == self.mode_until:
            return
        self.mode_until = until
        if mode is not self.mode:
            self.mode = mode
            for det in self.detectors:
                det.on_mode(mode)
            self._recompute()
        if self.on_state_change is not None:
            self.on_state_change()

    def driver_state(self, name: str, up: bool) -> None:
        """The runtime reports a driver going down or coming back."""
        if up == (name not in self.drivers_down):
            return
        if up:
            del self.drivers_down[name]
        else:
            self.drivers_down[name] = self.clock.monotonic()
        if self._pending:
            self._take_back()
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
        alert.evidence = dict(evidence) if evidence else {}
        log.info(
            "alert %s %s (%s): %s",
            alert.id,
            state.value,
            alert.severity.value,
            summary,
            extra={"alert_id": alert.id},
        )
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
        self._orphans.discard((owner.name, key))
        self._emit(alert, AlertState.RESOLVED, summary, evidence)

    def is_open(self, owner: Detector, key: str) -> bool:
        return (owner.name, key) in self.open

    def acknowledge(self, alert_id: str) -> bool:
        """The centre acknowledged ``alert_id``; False when no such alert is open."""
        if self._pending:
            self._take_back()
        for alert in list(self.open.values()):
            if alert.id == alert_id:
                for det in self.detectors:
                    if det.name == alert.owner:
                        det.on_acknowledged(alert)
                        self._recompute()
                        return True
                if (alert.owner, alert.key) in self._orphans:  # its rule no longer runs
                    self._close((alert.owner, alert.key), "Acknowledged by the centre.", None)
                    return True
        return False

    # ---- across a restart ----------------------------------------------------------------
    def snapshot(self) -> EngineState:
        """What must outlive the process, as it is now (a copy)."""
        return EngineState(
            seq=self.seq,
            mode=self.mode,
            mode_until=self.mode_until,
            open=tuple(replace(a, evidence=dict(a.evidence)) for a in self.open.values()),
        )

    def restore(self, state: EngineState) -> None:
        """Open again what was open before a restart, and go on numbering after it.

        Call it before the first event, on an engine built with ``mode=state.mode`` (the
        rules read the mode when they are built). Each alert is open again at once under
        its id and key, so no rule raises it a second time; it is offered to its rule at
        the first event or timer (``Detector.adopt``), or else kept by the engine.
        """
        if self.open or self._ids:
            raise RuntimeError("restore() is for an engine that has not raised anything yet")
        if state.mode is not self.mode:
            raise ValueError(f"build the engine with the saved mode {state.mode.value!r}")
        self.seq = max(self.seq, state.seq)
        self.mode_until = state.mode_until
        for saved in state.open:
            alert = replace(saved, evidence=dict(saved.evidence))
            self.open[(alert.owner, alert.key)] = alert
            self._ids.add(alert.id)
            self._pending.append(alert)

    def _mono_at(self, wall: float) -> float:
        """``wall`` (a moment past) on this run's monotonic clock; now, if the wall clock
        is not synchronised."""
        now = self.clock.monotonic()
        if not self.clock.wall_synced():
            return now
        return now - max(0.0, self.clock.wall() - wall)

    def _take_back(self) -> None:
        """Offer each restored alert to its rule; the engine keeps those none takes."""
        pending, self._pending = self._pending, []
        rules = {det.name: det for det in self.detectors}
        for alert in pending:
            slot = (alert.owner, alert.key)
            if self.open.get(slot) is not alert:
                continue  # already resolved
            rule = rules.get(alert.owner)
            taken = False
            if rule is not None:
                try:
                    taken = rule.adopt(alert, self._mono_at(alert.since))
                except Exception:  # the alert stays open and the hub keeps running
                    log.exception("%s could not take back alert %s", alert.owner, alert.id)
            if taken or slot not in self.open:
                continue
            self._orphans.add(slot)
            if alert.kind in ENDED_BY_MOVEMENT or alert.kind in ENDED_BY_COMING_HOME:
                ends = "when the person is seen moving again"
            else:
                ends = "when the centre acknowledges it"
            log.info(
                "alert %s (%s) is still open after the restart; it ends %s",
                alert.id,
                alert.kind,
                ends,
                extra={"alert_id": alert.id},
            )
        self._recompute()

    def _orphans_see(self, event: SensorEvent) -> None:
        """An event while the engine keeps restored alerts: does the person move again?"""
        if not is_person_activity(event):
            return
        spec = self.home.sensors.get(event.sensor)
        if spec is None:
            return
        at_door = spec.role in _OUTSIDE_DOORS
        synced = self.clock.wall_synced()
        for slot, alert in list(self.open.items()):  # in the order raised
            if slot not in self._orphans:
                continue
            gone = event.wall - alert.since
            known = synced and gone >= 0
            if alert.kind in ENDED_BY_MOVEMENT:
                after = f", {format_duration(gone)} after it began" if known else ""
                summary = f"Seen moving again in {spec.room}{after} (the hub restarted meanwhile)."
                evidence: dict[str, int | float] = {"quiet_min": round(gone / 60)} if known else {}
            elif alert.kind in ENDED_BY_COMING_HOME and not at_door:
                after = f" after {format_duration(gone)} away" if known else ""
                summary = f"Home again: seen in {spec.room}{after} (the hub restarted meanwhile)."
                evidence = {"away_h": round(gone / 3600, 1)} if known else {}
            else:
                continue
            self._close(slot, summary, evidence)

    def _close(
        self,
        slot: tuple[str, str],
        summary: str,
        evidence: dict[str, int | float] | None,
    ) -> None:
        """Resolve an alert the engine keeps itself."""
        alert = self.open.pop(slot)
        self._orphans.discard(slot)
        self._emit(alert, AlertState.RESOLVED, summary, evidence)
