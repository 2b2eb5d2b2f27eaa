"""The serial radar driver: an HLK-LD2410 or a Seeed MR60FDA2 on a serial port.

The radar's readings become events for one home-map sensor (``sensor``):

- **presence** 1 as soon as the radar sees someone, 0 only after ``presence_hold``
  without anyone (both models); sent on change, never per frame.
- **motion** (LD2410, ``motion = true``): 1 when a moving target appears, repeated at
  most every ``motion_interval`` while the person keeps moving, 0 after
  ``motion_interval`` without movement. Presence alone rises once for a long stay; this
  makes the person's moving about count as activity, as a PIR sensor's would.
- **fall** (MR60FDA2): 1 when the radar reports a fall, 0 when it reports it cleared.

Distances and energies are not events (the LD2410 sends ten reports a second): the
latest are kept in the health details for ``hub check``. Every good frame is a sign of
life (``ctx.health.alive()``); with ``stall_after`` set (by default for the LD2410, which
never stops sending) a port that stays silent that long means the radar is lost, and
the driver ends with ``TransientError`` so that the port is opened again.
"""

from __future__ import annotations

import logging
import math

from agent.errors import TransientError
from agent.events import EventKind, SensorEvent
from drivers.base import Driver, DriverContext
from drivers.radar import Frame, FrameParser, Junk, ld2410, mr60fda2
from drivers.radar.config import RadarConfig
from drivers.radar.transport import SerialTransport

#: no byte for this long in the middle of a frame: the rest is not coming
QUIET_GAP = 0.5
#: while nothing else is due, look this often whether the device node is still there
PRESENT_CHECK = 5.0


class PresenceHold:
    """Presence that rises at once and falls only after ``hold`` seconds without anyone."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.state: bool | None = None  # unknown until the first report
        self._absent_since: float | None = None

    def update(self, present: bool, now: float) -> bool | None:
        """The new state if it changed with this report, else ``None``."""
        if present:
            self._absent_since = None
            if self.state is not True:
                self.state = True
                return True
            return None
        if self._absent_since is None:
            self._absent_since = now
        return self.tick(now)

    def tick(self, now: float) -> bool | None:
        if self.state is not False and now >= self.due():
            self.state = False
            return False
        return None

    def due(self) -> float:
        """When presence would fall to 0 if nobody shows up; infinity if it is not pending."""
        if self._absent_since is None or self.state is False:
            return math.inf
        return self._absent_since + self.hold


class MotionGate:
    """Motion from the LD2410's moving target, at most one event per ``interval``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.on = False
        self._sent = -math.inf
        self._moved = -math.inf

    def update(self, moving: bool, now: float) -> bool | None:
        if moving:
            self._moved = now
            if not self.on or now - self._sent >= self.interval:
                self.on = True
                self._sent = now
                return True
            return None
        return self.tick(now)

    def tick(self, now: float) -> bool | None:
        if self.on and now >= self.due():
            self.on = False
            return False
        return None

    def due(self) -> float:
        return self._moved + self.interval if self.on else math.inf


class RadarDriver(Driver):
    config_model = RadarConfig

    def __init__(self, config: RadarConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.presence = PresenceHold(config.presence_hold)
        self.motion = MotionGate(config.motion_interval) if config.motion else None
        self.fall: bool | None = None
        self.parser: FrameParser = (
            ld2410.parser() if config.model == "ld2410" else mr60fda2.parser()
        )
        self.frames = 0
        self.other_frames = 0
        self.junk_bytes = 0
        self._transport: SerialTransport | None = None
        self._known = False
        self._quiet_types: set[int] = set()

    def sensors(self) -> list[str]:
        return [self.cfg.sensor]

    # ---- events -------------------------------------------------------------------------
    def _emit(self, kind: EventKind, value: bool) -> None:
        if not self._known:
            return
        clock = self.ctx.clock
        self.ctx.emit(
            SensorEvent(
                self.cfg.sensor, kind, 1.0 if value else 0.0, clock.wall(), clock.monotonic()
            )
        )
        self.ctx.health.events += 1

    def _presence(self, present: bool, now: float) -> None:
        changed = self.presence.update(present, now)
        if changed is not None:
            self._emit(EventKind.PRESENCE, changed)
        self.ctx.health.details["presence"] = "yes" if self.presence.state else "no"

    def _tick(self, now: float) -> None:
        changed = self.presence.tick(now)
        if changed is not None:
            self._emit(EventKind.PRESENCE, changed)
            self.ctx.health.details["presence"] = "no"
        if self.motion is not None and (moved := self.motion.tick(now)) is not None:
            self._emit(EventKind.MOTION, moved)

    def _due(self) -> float:
        due = self.presence.due()
        if self.motion is not None:
            due = min(due, self.motion.due())
        return due

    # ---- frames -------------------------------------------------------------------------
    def _on_junk(self, junk: Junk) -> None:
        self.junk_bytes += junk.size
        if junk.leading:
            # the port was opened in the middle of a frame: expected, not the radar's fault
            self.ctx.log.debug("skipped %d byte(s) before the first frame", junk.size)
            return
        self.ctx.health.malformed(f"{junk.size} byte(s) dropped: {junk.reason}", self.ctx.log)

    def _on_ld2410(self, frame: bytes, now: float) -> None:
        try:
            report = ld2410.decode(frame)
        except ld2410.MalformedReport as err:
            self.ctx.health.malformed(f"{err}: {frame.hex(' ')}", self.ctx.log)
            return
        self.ctx.health.alive()
        if report is None:
            self.other_frames += 1
            return
        self.frames += 1
        details = self.ctx.health.details
        details["target"] = report.target()
        details["energy"] = report.energy()
        details["mode"] = "engineering" if report.engineering else "basic"
        self._presence(report.presence, now)
        if (
            self.motion is not None
            and (moved := self.motion.update(report.moving, now)) is not None
        ):
            self._emit(EventKind.MOTION, moved)

    def _on_mr60fda2(self, frame: bytes, now: float) -> None:
        try:
            report = mr60fda2.decode(frame)
        except mr60fda2.MalformedReport as err:
            self.ctx.health.malformed(f"{err}: {frame.hex(' ')}", self.ctx.log)
            return
        self.ctx.health.alive()
        kind = report.kind
        if kind is None or report.state is None:
            self.other_frames += 1
            if report.frame_type not in self._quiet_types:
                self._quiet_types.add(report.frame_type)
                self.ctx.log.debug(
                    "%s frames (type 0x%04x) are valid but not used",
                    mr60fda2.type_name(report.frame_type),
                    report.frame_type,
                )
            return
        self.frames += 1
        if kind == "presence":
            self._presence(report.state, now)
        elif report.state != self.fall:
            self.fall = report.state
            self._emit(EventKind.FALL, report.state)
            self.ctx.health.details["fall"] = "yes" if report.state else "no"

    def _handle(self, results: list[Frame | Junk], now: float) -> None:
        on_frame = self._on_ld2410 if self.cfg.model == "ld2410" else self._on_mr60fda2
        for item in results:
            if isinstance(item, Junk):
                self._on_junk(item)
            else:
                on_frame(item.data, now)
        details = self.ctx.health.details
        details["frames"] = str(self.frames)
        if self.other_frames:
            details["other frames"] = str(self.other_frames)

    # ---- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        cfg = self.cfg
        ctx = self.ctx
        clock = ctx.clock
        details = ctx.health.details
        self._known = cfg.sensor in ctx.home
        if not self._known:
            # said at info once; a restart (the device replugged) repeats it at debug
            ctx.log.log(
                logging.INFO if ctx.health.restarts == 0 else logging.DEBUG,
                "radar sensor %r is not in the home map: its readings are not sent "
                "(add it to [home.sensors] with a room and a role)",
                cfg.sensor,
            )
        # both filled in by the configuration model
        assert cfg.baudrate is not None and cfg.read_every is not None
        transport = SerialTransport(cfg.port, cfg.baudrate, ctx.log, read_every=cfg.read_every)
        # with reads gathered, the rest of a frame may come with the next gathered read
        quiet_gap = QUIET_GAP + cfg.read_every
        try:
            transport.open()
        except TransientError as err:
            details["link"] = str(err)
            raise
        self._transport = transport
        details["link"] = f"open at {transport.opened_at} baud"
        ctx.health.alive()
        stall = cfg.stall_after
        now = clock.monotonic()
        last_frame = last_data = last_check = now
        while True:
            due = self._due()
            if self.parser.pending or self.parser.unreported:
                due = min(due, last_data + quiet_gap)
            if stall is not None:
                due = min(due, last_frame + stall)
            timeout = min(max(due - now, 0.0), PRESENT_CHECK)
            data = await transport.read(timeout)
            now = clock.monotonic()
            if data:
                last_data = now
                results = self.parser.feed(data)
            elif (self.parser.pending or self.parser.unreported) and now - last_data >= quiet_gap:
                results = self.parser.abandon()
            else:
                results = []
            if results:
                before = self.frames + self.other_frames
                self._handle(results, now)
                if self.frames + self.other_frames > before:
                    last_frame = now
            self._tick(now)
            if not data and now - last_check >= PRESENT_CHECK:
                last_check = now
                transport.check_present()
            if stall is not None and now - last_frame >= stall:
                self.junk_bytes += self.parser.unreported + self.parser.pending
                hint = (
                    f"; {self.junk_bytes} byte(s) not understood: is the baud rate right?"
                    if self.junk_bytes
                    else ""
                )
                raise TransientError(f"no frame from the radar at {cfg.port} for {stall:g} s{hint}")

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self.ctx.health.details["link"] = "closed"
