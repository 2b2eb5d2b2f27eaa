"""Upstream: the bytes a hub sends and receives per day, on the wire to the centre.

What goes upstream is only alerts, heartbeats and the hub's status (online/offline), so a
day's traffic is the sum of a few kinds of exchange. Each is measured on a real
connection: the hub's own ``Runtime`` and MQTT uplink, through a byte-counting TCP proxy,
to a real Mosquitto, with TLS (client certificates, as in the field) and, in the same run,
without it (the MQTT bytes alone):

- the connection: TCP and TLS handshake, CONNECT with the Will, the subscription to
  commands, the retained "online" status and the first heartbeat, each with its reply;
- one heartbeat (PUBLISH with its message expiry and the PUBACK), the payload as the
  agent builds it for a home of 20 sensors;
- one alert (a help-button alert: PUBLISH and PUBACK);
- one keepalive (PINGREQ and PINGRESP), sent when nothing else went for ``keepalive``.

A day is then: one connection, ``86400 / heartbeat interval`` heartbeats, the alert
messages of a simulated busy home's average day (raised, updated and resolved, every
severity), and a keepalive for every idle ``keepalive`` interval, all at the defaults of
``[heartbeat]`` and ``[uplink]``. TCP/IP headers (about 52 bytes a segment) are not
counted: they depend on how the kernel packs segments. Baseline, in the same run: the raw
record of the same home per day (its trace's bytes), which never leaves the home.
Goal: <= 50 KB a day.

    .venv/bin/python bench/upstream.py [--samples 40] [--days 28]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import LiveClock  # noqa: E402
from agent.config import Config, validate_config  # noqa: E402
from agent.devtools.broker import Mosquitto  # noqa: E402
from agent.devtools.pki import TestPki  # noqa: E402
from agent.events import EventKind, SensorEvent  # noqa: E402
from agent.messages import AlertMessage  # noqa: E402
from agent.replay import replay_runtime  # noqa: E402
from agent.runtime import Runtime  # noqa: E402
from agent.traces.format import read_header  # noqa: E402
from bench.common import Figure, busy_home  # noqa: E402

HUB = "h-0412"
TZ = ZoneInfo("Europe/Amsterdam")
DAY = 86400.0
KB = 1000


class CountingProxy:
    """A TCP proxy that counts the bytes each way (the hub's side of the wire)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0  # hub -> centre
        self.down = 0  # centre -> hub
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def total(self) -> int:
        return self.up + self.down

    async def _serve(self, hub_r: asyncio.StreamReader, hub_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        with contextlib.suppress(asyncio.CancelledError):  # the proxy stops with the run
            await asyncio.gather(pipe(hub_r, broker_w, True), pipe(broker_r, hub_w, False))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Costs:
    """Bytes (both ways) of each kind of exchange, on one kind of connection."""

    connect: float
    heartbeat: float
    alert: float
    keepalive: float
    heartbeat_payload: float
    alert_payload: float


def alerts_per_day(trace: Path, days: int) -> tuple[float, Counter[str]]:
    """Alert messages a day (every state and severity) of the replayed home."""
    kinds: Counter[str] = Counter()

    def seen(message: AlertMessage) -> None:
        kinds[f"{message.kind}:{message.state.value}"] += 1

    runtime = replay_runtime(trace, None, "max", seen)
    asyncio.run(runtime.run())
    return sum(kinds.values()) / days, kinds


@dataclass(frozen=True)
class Hub:
    """A typical hub's drivers (their health is in every heartbeat): Zigbee2MQTT on the
    local broker, the help button on GPIO (gpiozero's mock pins) and a fall radar on a
    pseudo-terminal."""

    local_port: int
    radar_tty: str
    home: Any


def _config(hub: Hub, port: int, tls: Any, heartbeat: float, keepalive: float) -> Config:
    uplink: dict[str, Any] = {"host": "127.0.0.1", "port": port, "keepalive": keepalive}
    if tls is not None:
        uplink["tls"] = tls.model_dump(mode="json")
    home = hub.home.model_dump(mode="json")
    home["sensors"]["bed-radar"] = {"room": "Bedroom", "role": "bedroom", "kind": "presence"}
    return validate_config(
        {
            "hub": {"id": HUB, "timezone": "Europe/Amsterdam"},
            "uplink": uplink,
            "heartbeat": {"interval": heartbeat},
            "home": home,
            "drivers": [
                {"type": "zigbee2mqtt", "host": "127.0.0.1", "port": hub.local_port},
                {
                    "type": "gpio",
                    "inputs": [{"sensor": "help-button", "pin": 22, "kind": "button"}],
                    "led": {"pin": 5},
                    "pin_factory": "mock",
                },
                {"type": "radar", "model": "mr60fda2", "port": hub.radar_tty,
                 "sensor": "bed-radar"},
            ],
        },
        "<bench>",
    )  # fmt: skip


async def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the uplink did not get there in time")
        await asyncio.sleep(0.01)


async def measure(hub: Hub, broker_port: int, tls: Any, samples: int) -> Costs:
    """Each exchange's bytes, on a fresh connection through a counting proxy."""
    proxy = CountingProxy(broker_port)
    port = await proxy.start()
    clock = LiveClock(TZ, synced=True)
    try:
        # 1. connection and first heartbeat; then heartbeats only, every 0.2 s
        runtime = Runtime(_config(hub, port, tls, 0.2, 60.0), clock=clock)
        task = asyncio.create_task(runtime.run())
        stats = runtime.uplink.stats
        await _until(lambda: stats.acked >= 1)  # "online" and the first heartbeat
        await asyncio.sleep(0.05)
        connect = proxy.total
        acked, total = stats.acked, proxy.total
        await _until(lambda: stats.acked >= acked + samples)
        await asyncio.sleep(0.05)
        beats = stats.acked - acked
        heartbeat = (proxy.total - total) / beats
        beat = runtime.heartbeat_message().model_dump_json(exclude_none=True)
        heartbeat_payload = len(beat)
        if '"drivers":[{' in beat:
            raise RuntimeError(f"a driver of the typical hub is not running: {beat}")
        runtime.request_stop()
        await task
        if proxy.connections != 1:
            raise RuntimeError(f"{proxy.connections} connections where one was expected")

        # 2. alerts: help-button presses, with no heartbeat due meanwhile
        proxy.up = proxy.down = 0
        sizes: list[int] = []
        runtime = Runtime(
            _config(hub, port, tls, 3600.0, 60.0),
            clock=clock,
            alert_hook=lambda m: sizes.append(len(m.model_dump_json(exclude_none=True))),
        )
        task = asyncio.create_task(runtime.run())
        stats = runtime.uplink.stats
        await _until(lambda: stats.acked >= 1)
        await asyncio.sleep(0.05)
        acked, total, first = stats.acked, proxy.total, len(sizes)
        for _ in range(samples):
            now = clock.wall(), clock.monotonic()
            runtime.emit(SensorEvent("help-button", EventKind.BUTTON, 1.0, *now))
            await asyncio.sleep(0.02)
        await _until(lambda: stats.acked >= acked + len(sizes) - first)
        await asyncio.sleep(0.05)
        alerts = stats.acked - acked
        if alerts == 0:
            raise RuntimeError("no alert was published")
        alert = (proxy.total - total) / alerts
        alert_payload = sum(sizes[first:]) / max(1, len(sizes) - first)
        runtime.request_stop()
        await task

        # 3. keepalives: an idle connection with a 1 s keepalive
        proxy.up = proxy.down = 0
        runtime = Runtime(_config(hub, port, tls, 3600.0, 1.0), clock=clock)
        task = asyncio.create_task(runtime.run())
        stats = runtime.uplink.stats
        await _until(lambda: stats.acked >= 1)
        await asyncio.sleep(0.5)
        total = proxy.total
        window = max(4.0, samples / 4)
        await asyncio.sleep(window)
        keepalive = (proxy.total - total) / window  # one PINGREQ/PINGRESP a second
        runtime.request_stop()
        await task
    finally:
        await proxy.stop()
    return Costs(connect, heartbeat, alert, keepalive, heartbeat_payload, alert_payload)


def day_bytes(costs: Costs, alerts: float, heartbeat: float, keepalive: float) -> float:
    """A day: one connection, the heartbeats, the alerts, a keepalive per idle interval."""
    beats = DAY / heartbeat
    idle = max(0.0, DAY / keepalive - beats - alerts)  # intervals with nothing else sent
    return costs.connect + beats * costs.heartbeat + alerts * costs.alert + idle * costs.keepalive


def run(quick: bool, samples: int = 40, days: int = 28) -> list[Figure]:
    logging.basicConfig(level=logging.ERROR)
    if quick:
        samples = 10
    trace = busy_home(days)
    home = read_header(trace).home
    per_day, kinds = alerts_per_day(trace, days)
    raw = trace.stat().st_size / days
    defaults = validate_config({"hub": {"id": HUB}}, "<defaults>")
    interval, keepalive = defaults.heartbeat.interval, defaults.uplink.keepalive
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        pki = TestPki(Path(tmp))
        pki.ca()
        server = pki.server()
        client = pki.issue("hub", "ca", HUB)
        broker = Mosquitto(tls=server).start()
        radar, radar_side = os.openpty()  # the radar's side stays silent: no fall
        hub = Hub(broker.port, os.ttyname(radar_side), home)
        try:
            assert broker.tls_port is not None
            plain = asyncio.run(measure(hub, broker.port, None, samples))
            tls = asyncio.run(measure(hub, broker.tls_port, client, samples))
        finally:
            broker.stop()
            os.close(radar)
            os.close(radar_side)
    print(f"alert messages a day in the simulated busy home: {per_day:.2f} ({dict(kinds)})")
    print(f"defaults: heartbeat every {interval:g} s, keepalive {keepalive:g} s")
    print(f"{'bytes, both ways':<22}{'MQTT':>10}{'MQTT+TLS':>10}")
    for name in ("connect", "heartbeat", "alert", "keepalive"):
        print(f"{name:<22}{getattr(plain, name):>10.0f}{getattr(tls, name):>10.0f}")
    print(f"{'payload: heartbeat':<22}{plain.heartbeat_payload:>10.0f}")
    print(f"{'payload: alert':<22}{plain.alert_payload:>10.0f}")
    mqtt_day = day_bytes(plain, per_day, interval, keepalive)
    tls_day = day_bytes(tls, per_day, interval, keepalive)
    share = (DAY / keepalive - DAY / interval) * tls.keepalive / tls_day
    at_60 = day_bytes(tls, per_day, interval, 60.0)
    print(f"the same hub with a 60 s keepalive: {at_60 / KB:.1f} KB a day with TLS")
    print(f"a day: MQTT {mqtt_day / KB:.1f} KB, with TLS {tls_day / KB:.1f} KB "
          f"(keepalives {share:.0%} of it); raw record {raw / KB:.0f} KB (never sent)")  # fmt: skip
    note = (
        f"per exchange, measured (TLS): connect {tls.connect:.0f} B, heartbeat "
        f"{tls.heartbeat:.0f} B, alert {tls.alert:.0f} B, keepalive {tls.keepalive:.0f} B; "
        f"{DAY / interval:.0f} heartbeats, {per_day:.1f} alerts a day"
    )
    return [
        Figure(
            "upstream bytes a day (TLS)",
            f"{tls_day / KB:.1f} KB/day",
            f"MQTT alone {mqtt_day / KB:.1f} KB/day; with a 60 s keepalive "
            f"{at_60 / KB:.1f} KB/day; raw record of the home {raw / KB:.0f} KB/day (never sent)",
            "<= 50 KB/day",
            tls_day <= 50 * KB,
            note,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="exchanges of each kind")
    parser.add_argument("--days", type=int, default=28, help="days of the simulated home")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for fig in run(args.quick, args.samples, args.days):
        print(f"{fig.name}: {fig.value} (goal {fig.goal}: {'met' if fig.met else 'MISSED'})")


if __name__ == "__main__":
    main()
