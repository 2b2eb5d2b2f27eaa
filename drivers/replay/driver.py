"""The replay driver: a trace file becomes events, and the trace's time becomes the clock.

At ``speed = "max"`` simulated time jumps from event to event (timers due on the way fire
at their own moments), so a year replays in seconds with the same alerts as live. At
``speed = N`` it sleeps ``gap / N`` of real time between events, moving the clock in steps
of at most a second of real time so that heartbeats and alerts come out as they would.
After the last event, time advances to the trace's declared end: silence is data too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.errors import TraceError
from agent.traces.format import iter_trace, read_header
from drivers.base import Driver, DriverContext
from drivers.replay.config import ReplayConfig

# Hand the event loop back this often at full speed, so the uplink can publish meanwhile.
_YIELD_EVERY = 2048


class ReplayStopped(TraceError):
    """The replay ended early at a malformed line (``on_malformed = "stop"``)."""


class ReplayDriver(Driver):
    config_model = ReplayConfig

    def __init__(self, config: ReplayConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.malformed_lines: list[TraceError] = []

    def _on_error(self, err: TraceError) -> None:
        self.malformed_lines.append(err)
        self.ctx.health.malformed(str(err))
        self.ctx.log.error("%s", err)
        if self.cfg.on_malformed == "stop":
            raise ReplayStopped(err.path, err.line, err.reason)

    async def run(self) -> None:
        sim = self.ctx.sim
        if sim is None:
            raise RuntimeError("the replay driver needs a simulated clock (hub replay)")
        path = Path(self.cfg.path)
        header = read_header(path)
        step = sim.step
        health = self.ctx.health
        clock = self.ctx.clock
        speed = None if self.cfg.speed == "max" else float(self.cfg.speed)
        loop = asyncio.get_running_loop()
        points = iter_trace(path, self._on_error)
        first = next(points, None)
        if first is None:
            return
        ev, synced, _line = first
        sim.set_clock(ev.wall, ev.mono, synced)
        sim.advance_to(ev.mono)  # simulated time starts here, with the first heartbeat
        step(ev, synced)
        n = 1
        if speed is None:
            for ev, synced, _line in points:
                step(ev, synced)
                n += 1
                if not n % _YIELD_EVERY:
                    health.events = n
                    await asyncio.sleep(0)
        else:
            for ev, synced, _line in points:
                await self._pace(clock.monotonic(), ev.mono, speed, loop)
                step(ev, synced)
                n += 1
        health.events = n
        if header.end is not None:
            last_mono = clock.monotonic()
            end_mono = last_mono + (header.end.timestamp() - clock.wall())
            if speed is not None:
                await self._pace(last_mono, end_mono, speed, loop)
            sim.advance_to(end_mono)

    async def _pace(
        self, start: float, target: float, speed: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Sleep ``(target - start) / speed`` of real time, moving simulated time along."""
        sim = self.ctx.sim
        assert sim is not None
        t0_real = loop.time()
        while True:
            elapsed_sim = (loop.time() - t0_real) * speed
            now = start + elapsed_sim
            if now >= target:
                return
            sim.advance_to(now)
            await asyncio.sleep(min((target - now) / speed, 1.0))
