"""The runtime: one asyncio process that wires the stages.

    drivers -> SensorEvent -> engine -> AlertMessage -> outbox -> uplink -> broker

Start sinks first (outbox, uplink), then the engine, then the drivers; on stop, stop the
sources first and drain downstream. Live and replay run this same code: only the clock
differs (``LiveClock`` or a ``SimClock`` moved by the replay driver) and who moves time
forward (a timer task, or the replay driver through ``SimControl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import shutil
import signal
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent import __version__, journal
from agent.board import BOARD_VERSION, Board
from agent.clock import Clock, LiveClock, SimClock, local_time
from agent.commands import Commands
from agent.config import Config, DriverConfig
from agent.errors import ConfigError, Problem, TransientError
from agent.events import ACTIVITY_KINDS, SensorEvent
from agent.health import BATTERY_KINDS, SensorHealth
from agent.homemap import HomeMap
from agent.localstatus import StatusServer
from agent.messages import (
    AlertMessage,
    AlertState,
    DriverStatus,
    HeartbeatMessage,
    OutboxHealth,
    Outcome,
    ReplyMessage,
    SensorCounts,
    Severity,
)
from agent.outbox import Outbox, open_outbox
from agent.outbox.sqlite import OutboxFullError
from agent.sdnotify import PINGS_PER_INTERVAL, Liveness, Notifier, State
from agent.store import EventStore
from agent.uplink import Uplink, make_uplink
from detection.engine import Engine
from detection.keeper import RoutineKeeper
from detection.saved import EngineStateKeeper
from drivers import registry
from drivers.base import Driver, DriverContext, DriverHealth, Indication

log = logging.getLogger(__name__)

DRIVER_BACKOFF_MIN = 1.0
DRIVER_BACKOFF_MAX = 300.0
DISK_CHECK_INTERVAL = 60.0
STORE_RETRY = 30  # seconds between tries to store an alert the outbox refused
STORE_WARN_EVERY = 600.0  # and between the messages that say so
SEEN_FLASH_EVERY = 1.0  # at most one "sensor seen" flash a second during hub check
SYSTEMD_STATUS_EVERY = 10.0  # how often systemd's status line is refreshed without a watchdog


class DriverStalled(TransientError):
    """A driver showed no sign of life for its ``stall_after``: it is taken to hang."""


DRIVER_STABLE_AFTER = 60.0  # seconds of running after which a failure backs off from the start


@dataclass
class RunStats:
    events: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    unknown_sensors: Counter[str] = field(default_factory=Counter)
    heartbeats: int = 0
    first_wall: float | None = None
    last_wall: float | None = None


class Runtime:
    """Owns every stage of one hub process."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        home: HomeMap | None = None,
        outbox: Outbox | None = None,
        uplink: Uplink | None = None,
        alert_hook: Callable[[AlertMessage], None] | None = None,
    ) -> None:
        self.config = config
        journal.set_hub_id(config.hub.id)  # every log record from now on names this hub
        self.replay = any(d.type == "replay" for d in config.drivers)
        if self.replay and len(config.drivers) > 1:
            raise ConfigError(
                "drivers",
                [Problem("drivers", "a replay cannot be mixed with live drivers")],
            )
        if clock is None:
            forced = {"auto": None, "synced": True, "unsynced": False}[config.hub.wall_clock]
            clock = SimClock(config.zone) if self.replay else LiveClock(config.zone, forced)
        self.clock = clock
        self.home = home if home is not None else config.home
        self.outbox = (
            outbox
            if outbox is not None
            else open_outbox(config.outbox.path, config.outbox.max_bytes)
        )
        self.uplink = (
            uplink
            if uplink is not None
            else make_uplink(config.uplink, config.hub.id, self.outbox, self.clock, __version__)
        )
        self.alert_hook = alert_hook
        self.stats = RunStats()
        self.health = SensorHealth(self.home)
        self._last_seen = self.health.last_seen
        store = config.store
        self.store = (
            EventStore(store.path, store.keep_days, store.flush_interval)
            if store.path is not None
            else None
        )
        # What the engine promised before a restart (open alerts, numbers, mode) is kept
        # in the outbox, written with every alert: see detection.saved.
        self.state_keeper = EngineStateKeeper(self.outbox)
        saved = self.state_keeper.load(config.hub.mode)
        self.engine = Engine(
            config.hub.id,
            self.clock,
            self.home,
            config.detection,
            self._on_alert,
            mode=saved.mode if saved is not None else config.hub.mode,
            seq_start=saved.seq if saved is not None else 1,
        )
        if saved is not None:
            self.engine.restore(saved)
        self.engine.on_state_change = self._on_engine_state
        self.routine_keeper = RoutineKeeper.for_engine(self.engine, config.detection.routine)
        self.commands = Commands(self.engine, self.clock)
        self.uplink.on_command(self._on_command)
        self.driver_health: dict[str, DriverHealth] = {}
        self._running_drivers: dict[str, Driver] = {}
        # The installer's live view (hub check): in memory, served on a local Unix socket.
        self.board = Board(self.home)
        self.status_server = (
            StatusServer(config.local.socket, self.local_status, self._status_version)
            if config.local.socket is not None and not self.replay
            else None
        )
        self._uplink_shown: bool | None = None
        self._seen_flashed = -math.inf
        self._tasks: list[asyncio.Task[None]] = []
        self._replan = asyncio.Event()
        self._stopping = asyncio.Event()
        self._next_heartbeat = math.inf
        self._due = math.inf  # no timer is due before this (it may be earlier than needed)
        self._sim = self.clock if isinstance(self.clock, SimClock) else None
        self._sensors = self.home.sensors
        self._started_mono = 0.0
        self._disk_free = -1
        self._disk_checked = -math.inf
        self._replay_error: BaseException | None = None
        self._unstored: deque[AlertMessage] = deque()  # alerts the outbox could not take yet
        self._store_retry = -math.inf
        self._store_warned = -math.inf
        self._beat_warned = -math.inf
        # systemd (live only): READY, the status line, STOPPING, and the watchdog's pings
        # while healthy; see agent.sdnotify. Told every real outbox write's outcome.
        self.notifier = Notifier(None) if self.replay else Notifier.from_environ()
        self.liveness = Liveness()

    # ---- the hot path ----------------------------------------------------------------
    def emit(self, event: SensorEvent) -> None:
        """Every live driver's events come through here, in the event loop's thread."""
        if event.sensor not in self._sensors:
            self._unknown(event)
            return
        self._advance(event.mono)
        self._accept(event)

    def step(self, event: SensorEvent, synced: bool) -> None:
        """SimControl: the replay driver's event, at its own moment in simulated time."""
        mono = event.mono
        if mono >= self._due:
            self._advance(mono)
        assert self._sim is not None
        self._sim.set(event.wall, mono, synced)
        if event.sensor in self._sensors:
            self._accept(event)
        else:
            self._unknown(event)

    def _unknown(self, event: SensorEvent) -> None:
        n = self.stats.unknown_sensors[event.sensor]
        self.stats.unknown_sensors[event.sensor] = n + 1
        if n == 0:
            log.warning(
                "events from sensor %r are ignored: it is not in the home map", event.sensor
            )

    def _accept(self, event: SensorEvent) -> None:
        """A known sensor's event: the one path every event takes, kept short on purpose."""
        stats = self.stats
        stats.events += 1
        stats.last_wall = event.wall
        self._last_seen[event.sensor] = event.mono
        if event.kind in BATTERY_KINDS:
            self.health.battery(event)
        if self.store is not None:
            self.store.add(event)
        engine = self.engine
        engine.on_event(event)
        if engine.next_wakeup < self._due:
            self._due = engine.next_wakeup
            self._replan.set()

    def _on_alert(self, message: AlertMessage) -> None:
        self.stats.alerts[f"{message.kind}:{message.state.value}"] += 1
        self._unstored.append(message)
        self._store_alerts()
        if (
            message.severity is Severity.URGENT
            and message.state is AlertState.RAISED
            and self._running_drivers
        ):
            self._indicate(Indication.HELP_RAISED)  # the person hears that help is called
        if self.alert_hook is not None:
            self.alert_hook(message)

    def _store_alerts(self) -> None:
        """Store the alerts not yet stored, in order; a full disk keeps them for later.

        Each goes with the engine's state after it, in the same transaction. An alert the
        outbox refused (a full disk, an unwritable file) stays in memory, ahead of any
        newer one, and is tried again at least every ``STORE_RETRY`` seconds.
        """
        unstored = self._unstored
        stored = False
        while unstored:
            message = unstored[0]
            try:
                state = self.state_keeper.records(self.engine)
                self.outbox.add(message, self.clock.wall(), state)
            except (TransientError, OSError, sqlite3.Error) as err:
                self.liveness.wrote(False, disk_full=isinstance(err, OutboxFullError))
                now = time.monotonic()
                if now - self._store_warned >= STORE_WARN_EVERY:
                    self._store_warned = now
                    log.error(
                        "alert %s not stored (%s); %d alert(s) kept in memory and tried "
                        "again every %d s: free some disk space",
                        message.id,
                        err,
                        len(unstored),
                        STORE_RETRY,
                        extra={"alert_id": message.id},
                    )
                self._store_retry = now + STORE_RETRY
                break
            self.liveness.wrote(True)
            unstored.popleft()
            stored = True
        if stored:
            if not unstored and self._store_warned > -math.inf:
                log.warning("every alert kept in memory is stored now")
                self._store_warned = -math.inf
            self.uplink.notify()

    def _retry_store(self) -> None:
        if self._unstored and time.monotonic() >= self._store_retry:
            self._store_alerts()

    def _on_engine_state(self) -> None:
        """A change no alert carries (the mode): stored at once."""
        self.state_keeper.save(self.engine)

    def _on_command(self, name: str, payload: bytes) -> ReplyMessage:
        """A command from the centre, through the uplink; its reply goes back the same way."""
        reply = self.commands.handle(name, payload)
        if name == "selftest" and reply.outcome is Outcome.DONE:
            self._indicate(Indication.SELF_TEST)
        # A mode's end time, a rule's new wake: plan the timers again.
        self._due = min(self._due, self.engine.next_wakeup, self.commands.next_wakeup)
        self._replan.set()
        return reply

    # ---- time --------------------------------------------------------------------------
    def _advance(self, mono: float) -> None:
        """Fire every timer due up to ``mono``, each at its own moment."""
        engine = self.engine
        commands = self.commands
        sim = self._sim
        if self._unstored:
            self._retry_store()
        while True:
            due = min(engine.next_wakeup, self._next_heartbeat, commands.next_wakeup)
            if due > mono:
                self._due = due
                break
            if sim is not None:
                sim.advance_to(due)
            if commands.next_wakeup <= due:
                commands.fire(due)  # a mode's end time: back to normal before the rules run
            if engine.next_wakeup <= due:
                engine.fire(due)
            if self._next_heartbeat <= due:
                self._heartbeat()
                self._next_heartbeat = due + self.config.heartbeat.interval
        if sim is not None:
            sim.advance_to(mono)

    # SimControl, for the replay driver
    def advance_to(self, mono: float) -> None:
        if math.isinf(self._next_heartbeat):
            self.stats.first_wall = self.clock.wall()
            self._started_mono = self.clock.monotonic()
            self._next_heartbeat = self._started_mono
            self._due = self._started_mono
        self._advance(mono)

    def set_clock(self, wall: float, mono: float, synced: bool) -> None:
        assert self._sim is not None
        self._sim.set(wall, mono, synced)

    async def _timer_loop(self) -> None:
        """Live mode: sleep until the next timer, waking early when a new one is sooner."""
        while True:
            if self._unstored:
                self._retry_store()
            due = min(self.engine.next_wakeup, self._next_heartbeat, self.commands.next_wakeup)
            delay = due - self.clock.monotonic()
            if delay > 0:
                self._replan.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._replan.wait(), timeout=min(delay, 30.0))
                continue
            self._advance(self.clock.monotonic())

    # ---- heartbeat -----------------------------------------------------------------------
    def _disk_free_mb(self) -> int:
        """Free space where the hub writes; asked of the system at most once a minute."""
        now = time.monotonic()  # real time, also in a replay: it is this machine's disk
        if now - self._disk_checked < DISK_CHECK_INTERVAL:
            return self._disk_free
        # the event store, else the outbox; with neither, nothing is written and the
        # working directory (under systemd the runtime directory, in RAM) stands in
        path = self.config.store.path or self.config.outbox.path
        where = path.parent if path is not None else Path.cwd()
        try:
            self._disk_free = int(shutil.disk_usage(where).free // (1024 * 1024))
        except OSError:
            self._disk_free = -1
        self._disk_checked = now
        return self._disk_free

    def heartbeat_message(self) -> HeartbeatMessage:
        now_mono = self.clock.monotonic()
        silent = self.health.silent(now_mono, self._started_mono)
        low = sorted(self.health.battery_low)
        oldest = self.outbox.oldest()
        wall = self.clock.wall()
        unwell = [
            h
            for h in self.driver_health.values()
            if h.state != "running" or h.restarts or h.malformed_count
        ]
        return HeartbeatMessage(
            hub=self.config.hub.id,
            at=datetime.fromtimestamp(int(wall), tz=self.clock.tz),  # seconds are enough
            version=__version__,
            uptime_s=max(0, int(now_mono - self._started_mono)),
            clock_synced=self.clock.wall_synced(),
            mode=self.engine.mode,
            sensors=SensorCounts(
                ok=len(self.home.sensors) - len(set(silent) | set(low)),
                silent=silent[:64],
                battery_low=low[:64],
            ),
            outbox=OutboxHealth(
                depth=self.outbox.depth(),
                oldest_s=0 if oldest is None else max(0, int(wall - oldest)),
                dropped=self.outbox.dropped(),
            ),
            disk_free_mb=self._disk_free_mb(),
            drivers_ok=len(self.driver_health) - len(unwell),
            drivers=[
                DriverStatus(
                    name=h.name[:64],
                    state=h.state,
                    restarts=h.restarts,
                    malformed=h.malformed_count,
                )
                for h in unwell[:16]
            ],
        )

    # ---- the installer's live view ---------------------------------------------------------
    def _status_version(self) -> int:
        return self.board.version * 2 + int(self.uplink.connected)

    def local_status(self) -> dict[str, object]:
        """What ``hub check`` shows: every sensor, every driver, the way to the centre.

        Sensor-level, so it is served only on the local socket, never published.
        """
        now = self.clock.monotonic()
        wall = self.clock.wall()
        stats = self.uplink.stats
        oldest = self.outbox.oldest()
        return {
            "v": BOARD_VERSION,
            "hub": self.config.hub.id,
            "version": __version__,
            "at": local_time(self.clock).isoformat(),
            "clock_synced": self.clock.wall_synced(),
            "mode": self.engine.mode.value,
            "uptime_s": max(0, int(now - self._started_mono)),
            "mode_until": None
            if self.engine.mode_until is None
            else local_time(self.clock, self.engine.mode_until).isoformat(),
            "uplink": {
                "connected": self.uplink.connected,
                "depth": self.outbox.depth(),
                "oldest_s": None if oldest is None else max(0, int(wall - oldest)),
                "dropped": self.outbox.dropped(),
                "last_ack": None
                if stats.last_ack_wall is None
                else local_time(self.clock, stats.last_ack_wall).isoformat(),
            },
            "alerts": [
                {
                    "id": alert.id,
                    "kind": alert.kind,
                    "severity": alert.severity.value,
                    "since": local_time(self.clock, alert.since).isoformat(),
                    "room": alert.room,
                }
                for alert in self.engine.open.values()
            ],
            "health": {
                "silent": self.health.silent(now, self._started_mono),
                "battery_low": sorted(self.health.battery_low),
            },
            "drivers": [
                {
                    "name": h.name,
                    "state": h.state,
                    "restarts": h.restarts,
                    "malformed": h.malformed_count,
                    "last_error": h.last_error,
                    "details": dict(h.details),
                }
                for h in self.driver_health.values()
            ],
            "sensors": self.board.rows(now),
            "strangers": [
                {"id": sid[:64], "events": n}
                for sid, n in self.stats.unknown_sensors.most_common(20)
            ],
        }

    def _heartbeat(self) -> None:
        if self.routine_keeper is not None:
            self.routine_keeper.maybe_save(self.clock.monotonic())
        self.stats.heartbeats += 1
        if self._unstored:
            self._retry_store()
        try:
            self.outbox.add(self.heartbeat_message(), self.clock.wall())
        except (TransientError, OSError, sqlite3.Error) as err:
            self.liveness.wrote(False, disk_full=isinstance(err, OutboxFullError))
            now = time.monotonic()
            if now - self._beat_warned >= STORE_WARN_EVERY:
                self._beat_warned = now
                log.warning("heartbeat not stored (%s); the next ones will be tried", err)
            return
        self.liveness.wrote(True)
        self.uplink.notify()

    # ---- drivers -------------------------------------------------------------------------
    def _make_driver(self, cfg: DriverConfig, health: DriverHealth) -> Driver:
        cls = registry.get(cfg.type).load_driver()
        if self.replay:
            emit: Callable[[SensorEvent], None] = self.emit
        else:
            emit = self._live_emitter(health.name)
        ctx = DriverContext(
            clock=self.clock,
            emit=emit,
            home=self.home,
            health=health,
            log=logging.getLogger(f"drivers.{health.name}"),
            sim=self if self.replay else None,
            signal=self.board.signal,
        )
        return cls(cfg, ctx)

    def _live_emitter(self, name: str) -> Callable[[SensorEvent], None]:
        """A live driver's emit: the board learns which driver serves which sensor."""
        board = self.board
        accept = self.emit

        def emit(event: SensorEvent) -> None:
            board.event(event, name)
            accept(event)
            if (
                event.kind in ACTIVITY_KINDS
                and event.value > 0
                and self.status_server is not None
                and self.status_server.watching
            ):
                now = time.monotonic()
                if now - self._seen_flashed >= SEEN_FLASH_EVERY:
                    self._seen_flashed = now
                    self._indicate(Indication.SENSOR_SEEN)

        return emit

    def _indicate(self, what: Indication, only: Driver | None = None) -> None:
        """Show ``what`` on every running driver's LED or buzzer; a failure is only logged."""
        for name, driver in list(self._running_drivers.items()):
            if only is not None and driver is not only:
                continue
            try:
                driver.indicate(what)
            except Exception as err:
                log.warning("driver %s could not show %s: %s", name, what.value, err)

    def _show_link(self, up: bool) -> None:
        """Tell the drivers' status LEDs whether the centre is reachable, when that changes
        (the uplink calls this; nothing polls)."""
        if self._stopping.is_set() or up == self._uplink_shown:
            return  # a stopping hub does not flash "centre lost" as it says goodbye
        self._uplink_shown = up
        self._indicate(Indication.UPLINK_UP if up else Indication.UPLINK_DOWN)

    async def _run_watched(self, driver: Driver, cfg: DriverConfig, health: DriverHealth) -> None:
        """``driver.run()``; with ``stall_after``, cancelled when it shows no sign of life."""
        health.alive()
        limit = cfg.stall_after
        if limit is None or self.replay:
            await driver.run()
            return
        task = asyncio.create_task(driver.run(), name=f"run-{health.name}")
        try:
            while True:
                await asyncio.wait({task}, timeout=min(limit / 4, 5.0))
                if task.done():
                    task.result()
                    return
                quiet = time.monotonic() - health.last_alive
                if quiet > limit:
                    raise DriverStalled(f"no sign of life for {quiet:.1f} s; taken to hang")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _supervise(self, cfg: DriverConfig, index: int) -> None:
        """Run one driver; a live driver that fails is restarted with backoff and jitter.

        A replay driver runs once: its end is the end of the run, its failure the run's.
        """
        loop = asyncio.get_running_loop()
        delay = DRIVER_BACKOFF_MIN
        name = cfg.name or f"{cfg.type}-{index}"
        health = self.driver_health[name] = DriverHealth(name=name)
        while True:
            error: Exception | None = None
            started = loop.time()
            driver: Driver | None = None
            try:
                driver = self._make_driver(cfg, health)
                for sensor in driver.sensors():
                    self.board.claim(sensor, name)
                health.state = "running"
                self.engine.driver_state(name, up=True)
                self._running_drivers[name] = driver
                if self._uplink_shown is not None:
                    shown = Indication.UPLINK_UP if self._uplink_shown else Indication.UPLINK_DOWN
                    self._indicate(shown, only=driver)
                await self._run_watched(driver, cfg, health)
            except asyncio.CancelledError:
                health.state = "stopped"
                raise
            except Exception as err:
                error = err
                health.last_error = f"{type(err).__name__}: {err}"
            finally:
                self._running_drivers.pop(name, None)
                if driver is not None:
                    try:
                        await driver.close()
                    except Exception as err:
                        log.warning("driver %s did not close cleanly: %s", name, err)
            if self.replay:
                health.state = "stopped" if error is None else "failed"
                if error is not None:
                    self._replay_error = error
                    log.error("replay failed: %s", health.last_error)
                return
            if loop.time() - started > DRIVER_STABLE_AFTER:
                delay = DRIVER_BACKOFF_MIN  # it ran well for a while: start backing off anew
            health.state = "retrying"
            self.engine.driver_state(name, up=False)
            health.restarts += 1
            wait = random.uniform(0, delay)  # full jitter: a fleet does not retry in step
            log.warning(
                "driver %s %s; restart %d in %.1f s",
                name,
                f"failed ({health.last_error})" if error is not None else "ended by itself",
                health.restarts,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, DRIVER_BACKOFF_MAX)

    # ---- systemd ---------------------------------------------------------------------------
    def systemd_status(self) -> str:
        """The line ``systemctl status`` shows: the way to the centre, counts, no sensor data."""
        parts = ["centre connected" if self.uplink.connected else "centre not reachable"]
        parts.append(f"{self.outbox.depth()} waiting in the outbox")
        parts.append(f"{len(self.engine.open)} open alert(s)")
        if self._unstored:
            parts.append(f"{len(self._unstored)} alert(s) held in memory: the outbox refuses them")
        if not self.clock.wall_synced():
            parts.append("clock not synchronised")
        if self.liveness.state in (State.LOOP_LAG, State.WRITES_FAIL):
            parts.append("watchdog pings withheld")
        return "; ".join(parts)

    async def _tell_systemd(self) -> None:
        """Live mode: refresh the status line; ping the watchdog while healthy.

        The lag is this task's own: how much later than due it woke, the due time being set
        when it last woke (so a stall while it pinged counts too). A loop that is blocked
        does not run this task at all, so its pings stop by themselves.
        """
        notifier = self.notifier
        interval = notifier.watchdog
        period = interval / PINGS_PER_INTERVAL if interval else SYSTEMD_STATUS_EVERY
        loop = asyncio.get_running_loop()
        due = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            lag = max(0.0, now - due)
            due = now + period
            if interval:
                verdict = self.liveness.check(lag, interval / 2, len(self._unstored))
                if verdict.ping:
                    notifier.ping()
            notifier.status(self.systemd_status())

    # ---- the whole life ------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self, drain_timeout: float = 30.0) -> RunStats:
        """Run until stopped (live) or until the replay ends; then drain and stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)
        if not self.replay:
            self.uplink.on_link(self._show_link)
        await self.uplink.start()
        if not self.replay:
            self._started_mono = self.clock.monotonic()
            self.stats.first_wall = self.clock.wall()
            self._next_heartbeat = self._started_mono
            self._due = self._started_mono
            self.engine.start()  # silence from now on counts, even if no event ever comes
            self._tasks.append(asyncio.create_task(self._timer_loop(), name="timers"))
            if self.status_server is not None:
                await self.status_server.start()
            # started: the outbox is open and the uplink runs (whether or not it connects)
            if self.notifier.enabled:
                self.notifier.ready(self.systemd_status())
                self._tasks.append(asyncio.create_task(self._tell_systemd(), name="systemd"))
        drivers = [
            asyncio.create_task(self._supervise(cfg, i), name=f"driver-{i}")
            for i, cfg in enumerate(self.config.drivers)
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            if self.replay:
                await asyncio.wait([*drivers, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            else:
                await stop_wait
        finally:
            if not self.replay:
                self.notifier.stopping("stopping: sending what waits in the outbox")
            for task in drivers:
                task.cancel()
            stop_wait.cancel()
            await asyncio.gather(*drivers, stop_wait, return_exceptions=True)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.status_server is not None:
                await self.status_server.stop()
            if self.replay and self._replay_error is None:
                # the last heartbeat says how the replay ended
                self._heartbeat()
            drained = await self.uplink.drain(drain_timeout)
            if not drained:
                log.warning(
                    "stopping with %d message(s) not yet acknowledged by the broker",
                    self.outbox.depth(),
                )
            await self.uplink.stop()
            if self._unstored:
                self._store_retry = -math.inf
                self._store_alerts()
            if self._unstored:
                log.critical(
                    "stopping with %d alert(s) the outbox could not store: %s",
                    len(self._unstored),
                    ", ".join(m.id for m in self._unstored),
                    extra={"alert_id": [m.id for m in self._unstored]},
                )
            self.outbox.close()
            if self.routine_keeper is not None:
                self.routine_keeper.save()
            if self.store is not None:
                self.store.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            self.notifier.close()
        if self._replay_error is not None:
            raise self._replay_error
        return self.stats
