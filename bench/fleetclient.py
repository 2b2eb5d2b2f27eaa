"""Simulated hubs for ``bench/fleet.py``: thousands of MQTT 5 sessions on one asyncio loop.

A ``SimHub`` does upstream what the agent's ``MqttUplink`` does, with the same bytes:

- CONNECT, MQTT 5: the hub id as client id, clean start off, session expiry and will
  delay of ``[uplink] will_delay``, maximum packet size ``MAX_INBOUND``, the configured
  keepalive, and the retained QoS 1 Will "offline" on ``<prefix>/<hub_id>/status``;
- after the CONNACK: SUBSCRIBE to ``<prefix>/<hub_id>/cmd/#`` (QoS 1, no local, retained
  messages not sent), the retained "online" status, then its queue, one message at a
  time, each waiting for its PUBACK: alerts in order, then the newest heartbeat (which
  carries the message expiry property); a new heartbeat replaces one still waiting;
- a PINGREQ when the link has been idle for a keepalive, as paho does; a link whose
  PINGRESP, CONNACK or PUBACK does not come within the real timeout is dropped;
- after a lost connection: ``agent.uplink.retry_delay`` with the configured bounds
  (full jitter, a window that doubles per failure), or a fixed delay for the baseline.

Payloads are the agent's own models (``HeartbeatMessage``, ``AlertMessage``,
``StatusMessage``) encoded by ``agent.messages.encode``, so their sizes are true.
``record_agent`` runs a real ``MqttUplink`` through a recording relay; ``bench/fleet.py``
checks that a SimHub's first packets are byte for byte the same.

Why not paho: ``bench/fleet.py`` measures paho, driven as the uplink drives it, against
this module on the same broker in every run (``--no-compare`` skips it). At 1,000 hubs
paho took about twice the CPU per connection and per heartbeat and twice the memory per
hub, and each client's once-a-second ``loop_misc`` costs CPU even when all are idle
(2 % of a core per 1,000). paho also sends its PINGREQ after the CONNECT's keepalive, so
compressing time would change the CONNECT and make the broker drop hubs after 1.5 times a
compressed keepalive; here the PINGREQ alone is compressed and the CONNECT stays real.

Time compression: with ``scale`` S the heartbeat interval and the idle time before a
PINGREQ are divided by S and the alert rate multiplied by S; timeouts stay real.
TLS (``FleetSpec.tls``): as the uplink sets it up, a full handshake on every connection.

As a process, ``python bench/fleetclient.py SPEC_JSON`` runs one part of a fleet (or the
single-client baseline, or one side of the comparison) and takes commands on stdin,
one JSON object a line, answering each on stdout (see ``_serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import random
import resource
import socket
import ssl
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent import __version__  # noqa: E402
from agent.clock import LiveClock  # noqa: E402
from agent.config import HeartbeatConfig, MqttUplinkConfig  # noqa: E402
from agent.messages import (  # noqa: E402
    AlertMessage,
    AlertState,
    HeartbeatMessage,
    Mode,
    OutboxHealth,
    ReplyMessage,
    SensorCounts,
    Severity,
    StatusMessage,
    encode,
)
from agent.outbox.memory import MemoryOutbox  # noqa: E402
from agent.uplink import MAX_INBOUND, MqttUplink, retry_delay  # noqa: E402

UPLINK: Final = MqttUplinkConfig()  # the defaults a provisioned hub runs with
HEARTBEAT_INTERVAL: Final = HeartbeatConfig().interval
TZ: Final = ZoneInfo("Europe/Amsterdam")
PINGREQ: Final = b"\xc0\x00"
KINDS: Final = ("status", "heartbeat", "alert")

AlertTemplate = tuple[str, Severity, AlertState, str | None, str, dict[str, int], int]
#: an alert message as the engine writes them: (kind, severity, state, room, summary,
#: evidence, weight). The weights follow the recorded Kasteren home over 27.8 days: 44
#: urgent, 15 maintenance and 5 info messages (raised and resolved each count).
ALERTS: Final[tuple[AlertTemplate, ...]] = (
    ("bathroom_overstay", Severity.URGENT, AlertState.RAISED, "bathroom",
     "In the bathroom for 1 h; the longest usual stay with margin is 1 h.",
     {"stay_min": 60, "limit_min": 60}, 11),
    ("bathroom_overstay", Severity.URGENT, AlertState.RESOLVED, "bathroom",
     "Seen moving again in bathroom after 2 h 27 min without activity.",
     {"quiet_min": 147}, 11),
    ("inactivity", Severity.URGENT, AlertState.RAISED, "living",
     "No movement for 2 h 32 min; at this hour it is usually at most 1 h 10 min.",
     {"quiet_min": 152, "usual_max_min": 70}, 5),
    ("inactivity", Severity.URGENT, AlertState.RESOLVED, "kitchen",
     "Seen moving again in kitchen after 2 h 40 min without activity.",
     {"quiet_min": 160}, 5),
    ("not_up", Severity.URGENT, AlertState.RAISED, "bedroom",
     "Not up by 09:40; usually up by 08:40 at the latest.",
     {"late_min": 60}, 6),
    ("not_up", Severity.URGENT, AlertState.RESOLVED, "bedroom",
     "Seen moving again in bedroom after 1 h 12 min without activity.",
     {"quiet_min": 72}, 6),
    ("sensor_silent", Severity.MAINTENANCE, AlertState.RAISED, None,
     "Sensor bathroom-motion has sent nothing for 26 h.",
     {"silent_h": 26}, 8),
    ("sensor_silent", Severity.MAINTENANCE, AlertState.RESOLVED, None,
     "Sensor bathroom-motion is heard again.",
     {}, 7),
    ("away_long", Severity.INFO, AlertState.RAISED, None,
     "Away since the front door closed 26 h ago.",
     {"away_h": 26}, 3),
    ("away_long", Severity.INFO, AlertState.RESOLVED, None,
     "Back home after 30 h.",
     {"away_h": 30}, 2),
)  # fmt: skip
ALERT_WEIGHTS: Final = tuple(a[-1] for a in ALERTS)


# -- MQTT 5 packets, encoded as paho encodes them ------------------------------------


def varint(n: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(data: str | bytes) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return len(raw).to_bytes(2, "big") + raw


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def props(*pairs: tuple[int, int]) -> bytes:
    """Properties that are all four-byte integers: (identifier, value) pairs."""
    body = b"".join(bytes([ident]) + value.to_bytes(4, "big") for ident, value in pairs)
    return varint(len(body)) + body


def connect_packet(client_id: str, will_topic: str, will_payload: bytes) -> bytes:
    """The CONNECT ``MqttUplink`` sends, with the default ``[uplink]`` settings."""
    will_delay = math.ceil(UPLINK.will_delay)
    flags = 0x04 | (1 << 3) | 0x20  # Will, Will QoS 1, Will retained; clean start off
    body = (
        mqtt_str("MQTT")
        + bytes([5, flags])
        + int(UPLINK.keepalive).to_bytes(2, "big")
        + props((0x11, will_delay), (0x27, MAX_INBOUND))  # session expiry, max packet
        + mqtt_str(client_id)
        + props((0x18, will_delay))  # Will delay interval
        + mqtt_str(will_topic)
        + mqtt_str(will_payload)
    )
    return packet(0x10, body)


def publish_packet(topic: bytes, payload: bytes, mid: int, retain: bool, expiry: int) -> bytes:
    """A QoS 1 PUBLISH; ``expiry`` > 0 adds the message expiry interval."""
    properties = props((0x02, expiry)) if expiry > 0 else b"\x00"
    body = topic + mid.to_bytes(2, "big") + properties + payload
    return packet(0x32 | (1 if retain else 0), body)


def subscribe_packet(mid: int, topic_filter: str) -> bytes:
    """SUBSCRIBE at QoS 1, no local, retained messages not sent (options 0x25)."""
    return packet(0x82, mid.to_bytes(2, "big") + b"\x00" + mqtt_str(topic_filter) + b"\x25")


def split_packets(data: bytes) -> list[bytes]:
    """Whole packets out of a byte stream (a torn last packet is left out)."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        length, shift, i = 0, 0, pos + 1
        while i < len(data):
            byte = data[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        else:
            break
        if i + length > len(data):
            break
        out.append(data[pos : i + length])
        pos = i + length
    return out


# -- payloads, from the agent's models -----------------------------------------------


def hub_name(index: int) -> str:
    return f"h-{index:06d}"


def status_payload(state: str, synced: bool) -> bytes:
    at = datetime.now(TZ).replace(microsecond=0) if synced else None
    return encode(
        StatusMessage(
            state="online" if state == "online" else "offline", at=at, version=__version__
        )
    )


def heartbeat_message(hub: str, uptime_s: int, at: datetime | None = None) -> HeartbeatMessage:
    """A typical hub's heartbeat as the runtime builds it: 12 sensors and 3 drivers, all well.

    (Zigbee2MQTT, GPIO and radar, running without a restart: counted in ``drivers_ok``;
    only drivers that are not well are listed.)
    """
    return HeartbeatMessage(
        hub=hub,
        at=(at or datetime.now(TZ)).replace(microsecond=0),
        version=__version__,
        uptime_s=uptime_s,
        clock_synced=True,
        mode=Mode.NORMAL,
        sensors=SensorCounts(ok=12),
        outbox=OutboxHealth(depth=0, oldest_s=0, dropped=0),
        disk_free_mb=5120,
        drivers_ok=3,
    )


def alert_payload(hub: str, seq: int, rng: random.Random) -> bytes:
    kind, severity, state, room, summary, evidence, _ = rng.choices(ALERTS, ALERT_WEIGHTS)[0]
    at = datetime.now(TZ).replace(microsecond=0)
    since = at - timedelta(minutes=60)
    message = AlertMessage(
        hub=hub,
        id=f"{kind}-{since.astimezone(UTC).strftime('%Y%m%dT%H%M%S')}Z",  # as the engine names them
        seq=seq,
        kind=kind,
        severity=severity,
        state=state,
        since=since,
        at=at,
        room=room,
        clock_synced=True,
        summary=summary,
        evidence=evidence,
    )
    return encode(message)


# -- one hub -------------------------------------------------------------------------


@dataclass
class Counters:
    """What a fleet (or one publisher) did; summed over processes by ``bench/fleet.py``."""

    attempts: int = 0  # TCP connects tried
    failed: int = 0  # refused, timed out, or closed before the CONNACK
    lost: int = 0  # established sessions that ended
    pings: int = 0
    ping_timeouts: int = 0
    refused: int = 0  # PUBACKs with a failure reason code
    timeouts: int = 0  # PUBACKs that did not come in time
    sent: Counter[str] = field(default_factory=Counter)  # PUBLISH packets, by kind
    acked: Counter[str] = field(default_factory=Counter)  # of those, acknowledged
    payload_bytes: Counter[str] = field(default_factory=Counter)  # acknowledged payload
    packet_bytes: Counter[str] = field(default_factory=Counter)  # MQTT bytes written, by type
    bytes_in: int = 0  # MQTT bytes read
    connects: list[float] = field(default_factory=list)  # monotonic time of each CONNACK

    def snapshot(self, since: int) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "connects"}
        out["connects"] = self.connects[since:]
        out["connects_total"] = len(self.connects)
        return out


class Link(asyncio.Protocol):
    """One TCP connection of one hub: splits the stream into packets for the hub."""

    __slots__ = ("buf", "closed", "hub", "transport")

    def __init__(self, hub: SimHub) -> None:
        self.hub = hub
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        hub = self.hub
        hub.fleet.counters.bytes_in += len(data)
        buf = self.buf
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < size:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or i + length > size:
                break
            hub.on_packet(buf[pos], bytes(buf[i : i + length]))
            pos = i + length
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.hub.on_lost(self)

    def write(self, data: bytes, what: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            counters = self.hub.fleet.counters
            counters.packet_bytes[what] += len(data)
            self.hub.last_out = time.monotonic()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class SimHub:
    """One simulated hub: the uplink's connection loop, its publish queue and keepalive."""

    def __init__(self, fleet: Fleet, hub_id: str, rng: random.Random) -> None:
        self.fleet = fleet
        self.id = hub_id
        self.rng = rng
        base = f"{fleet.prefix}/{hub_id}"
        self.topics = {kind: mqtt_str(f"{base}/{kind}") for kind in KINDS}
        self.command_filter = f"{base}/cmd/#"
        self.connect = connect_packet(
            hub_id, f"{base}/status", status_payload("offline", synced=False)
        )
        self.mid = 0
        self.seq = 0
        self.uptime0 = rng.randrange(3600, 30 * 86400)  # hubs have been up for a while
        self.started = time.monotonic()
        self.alerts: deque[bytes] = deque()
        self.heartbeat: bytes | None = None
        self.link: Link | None = None
        self.online = False  # CONNACK received on the current link
        self.wake = asyncio.Event()
        self.connack: asyncio.Future[bool] | None = None
        self.waiting: asyncio.Future[bool] | None = None
        self.waiting_mid = 0
        self.last_in = self.last_out = 0.0
        self.ping_sent = 0.0
        self.ping_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1  # paho's counter: 1 .. 65535, for the client's life
        return self.mid

    # -- what the home produces

    def heartbeat_due(self) -> None:
        elapsed = (time.monotonic() - self.started) * self.fleet.scale
        message = heartbeat_message(self.id, self.uptime0 + int(elapsed))
        self.heartbeat = encode(message)  # the newest replaces one still waiting
        self.wake.set()

    def alert_due(self) -> None:
        self.seq += 1
        self.alerts.append(alert_payload(self.id, self.seq, self.rng))
        self.wake.set()

    # -- the connection loop

    async def run(self) -> None:
        attempt = 0
        while True:
            lost = await self._connect_once()
            if lost:
                await self._session()
            delay, attempt = self.fleet.delay(attempt, lost, bool(self.alerts), self.rng)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> bool:
        fleet = self.fleet
        counters = fleet.counters
        counters.attempts += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(UPLINK.publish_timeout):
                _, link = await loop.create_connection(
                    lambda: Link(self), fleet.host, fleet.port, ssl=fleet.ssl,
                    server_hostname="localhost" if fleet.ssl else None,
                )  # fmt: skip
        except (OSError, TimeoutError):
            counters.failed += 1
            return False
        self.link = link
        self.connack = loop.create_future()
        link.write(self.connect, "connect")
        try:
            async with asyncio.timeout(UPLINK.publish_timeout):
                accepted = await self.connack
        except TimeoutError:
            accepted = False
            link.abort()
        finally:
            self.connack = None
        if not accepted:
            counters.failed += 1
            if not link.closed:
                link.abort()
            return False
        self.online = True
        if fleet.ssl is not None and not fleet.tls_version and link.transport is not None:
            fleet.tls_version = link.transport.get_extra_info("ssl_object").version()
        self.last_in = self.last_out = time.monotonic()
        self.ping_sent = 0.0
        self.ping_timer = loop.call_at(self.last_in + fleet.ping_idle, self.keepalive)
        counters.connects.append(time.monotonic())
        fleet.connected += 1
        link.write(subscribe_packet(self.next_mid(), self.command_filter), "subscribe")
        return True

    async def _session(self) -> None:
        """Birth, then the queue, until the link is lost."""
        try:
            if not await self._publish("status", self.fleet.online_payload, retain=True):
                return
            while self.link is not None:
                if self.alerts:
                    if not await self._publish("alert", self.alerts[0]):
                        return
                    self.alerts.popleft()
                elif self.heartbeat is not None:
                    payload, self.heartbeat = self.heartbeat, None
                    if not await self._publish("heartbeat", payload):
                        if self.heartbeat is None:
                            self.heartbeat = payload
                        return
                else:
                    self.wake.clear()
                    await self.wake.wait()
        finally:
            self.fleet.connected -= 1
            self.online = False

    async def _publish(self, kind: str, payload: bytes, retain: bool = False) -> bool:
        link = self.link
        if link is None:
            return False
        counters = self.fleet.counters
        mid = self.next_mid()
        expiry = math.ceil(UPLINK.heartbeat_expiry) if kind == "heartbeat" else 0
        waiting: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting, self.waiting_mid = waiting, mid
        link.write(publish_packet(self.topics[kind], payload, mid, retain, expiry), "publish")
        counters.sent[kind] += 1
        try:
            async with asyncio.timeout(UPLINK.publish_timeout):
                acked = await waiting
        except TimeoutError:
            counters.timeouts += 1
            link.abort()
            return False
        finally:
            self.waiting = None
        if acked:
            counters.acked[kind] += 1
            counters.payload_bytes[kind] += len(payload)
        return acked

    # -- from the link

    def on_packet(self, first: int, body: bytes) -> None:
        self.last_in = time.monotonic()
        kind = first & 0xF0
        if kind == 0x40:  # PUBACK: mid, then a reason code when not plain success
            mid = int.from_bytes(body[:2], "big")
            waiting = self.waiting
            if waiting is not None and mid == self.waiting_mid and not waiting.done():
                ok = len(body) < 3 or body[2] < 0x80
                if not ok:
                    self.fleet.counters.refused += 1
                waiting.set_result(ok)
        elif kind == 0xD0:  # PINGRESP
            self.ping_sent = 0.0
        elif kind == 0x20:  # CONNACK: flags, reason code
            if self.connack is not None and not self.connack.done():
                self.connack.set_result(len(body) >= 2 and body[1] < 0x80)
        elif kind == 0x30 and self.link is not None:  # a command: acknowledged, not run
            qos = (first >> 1) & 3
            if qos == 1:
                topic_len = int.from_bytes(body[:2], "big")
                mid_bytes = body[2 + topic_len : 4 + topic_len]
                self.link.write(b"\x40\x02" + mid_bytes, "puback")
        elif kind == 0xE0 and self.link is not None:  # DISCONNECT from the broker
            self.link.abort()

    def on_lost(self, link: Link) -> None:
        if self.link is not link:
            return
        self.link = None
        if self.online:
            self.fleet.counters.lost += 1
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.connack is not None and not self.connack.done():
            self.connack.set_result(False)
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(False)
        self.wake.set()

    def keepalive(self) -> None:
        """paho's ``loop_misc``: ping when idle, drop when a ping stays unanswered.

        Runs when the link may have become idle and schedules its next run; the idle time
        is compressed, the time a PINGRESP may take is the real keepalive.
        """
        self.ping_timer = None
        link = self.link
        if link is None or not self.online:
            return
        now = time.monotonic()
        idle = self.fleet.ping_idle
        due = min(self.last_out, self.last_in) + idle
        if self.ping_sent:
            if now - self.ping_sent >= UPLINK.keepalive:
                self.fleet.counters.ping_timeouts += 1
                link.abort()
                return
            due = now + idle
        elif now >= due:
            link.write(PINGREQ, "pingreq")
            self.ping_sent = self.last_in = now
            self.fleet.counters.pings += 1
            due = now + idle
        self.ping_timer = asyncio.get_running_loop().call_at(due, self.keepalive)


# -- a fleet in one process ----------------------------------------------------------


@dataclass(frozen=True)
class FleetSpec:
    """One process's share of a fleet; ``bench/fleet.py`` makes it."""

    host: str
    port: int
    first: int  # index of the first hub of this process
    count: int
    scale: float  # time compression
    alerts_per_day: float  # per hub, real time
    seed: int
    jitter: bool = True
    fixed_delay: float = UPLINK.reconnect_min  # the baseline's delay, when jitter is off
    producing: bool = True  # heartbeats and alerts from the start
    tls: dict[str, str] | None = None  # ca, cert, key: TLS as ``[uplink.tls]`` sets it up
    prefix: str = UPLINK.prefix


class Fleet:
    """Hubs ``first .. first + count - 1``, their heartbeats, alerts and keepalives."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.host, self.port, self.prefix = spec.host, spec.port, spec.prefix
        self.scale = spec.scale
        self.jitter = spec.jitter
        self.producing = spec.producing
        self.ssl = None if spec.tls is None else tls_context(spec.tls)
        self.tls_version = ""
        self.counters = Counters()
        self.connected = 0
        self.rng = random.Random(spec.seed)
        self.online_payload = status_payload("online", synced=True)
        self.hubs = [
            SimHub(self, hub_name(i), random.Random(spec.seed * 1_000_003 + i))
            for i in range(spec.first, spec.first + spec.count)
        ]
        self.heartbeat_interval = HEARTBEAT_INTERVAL / spec.scale
        self.ping_idle = UPLINK.keepalive / spec.scale
        self._tasks: list[asyncio.Task[None]] = []

    def delay(self, attempt: int, lost: bool, alert: bool, rng: random.Random) -> tuple[float, int]:
        """As the uplink chooses it (``retry_delay``): (seconds, the next attempt)."""
        if self.jitter:
            u = UPLINK
            low, high, spread = u.reconnect_min, u.reconnect_max, u.reconnect_spread
            return retry_delay(attempt, lost, alert, low, high, spread, rng)
        return self.spec.fixed_delay, attempt + 1

    def start(self) -> None:
        """Every hub starts connecting now; heartbeats start at random phases."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for hub in self.hubs:
            hub.task = loop.create_task(hub.run())
            first = now + self.rng.uniform(0, self.heartbeat_interval)
            loop.call_at(first, self._heartbeat, hub, first)
        self._tasks = [loop.create_task(self._alerts())]

    def _heartbeat(self, hub: SimHub, due: float) -> None:
        if self.producing:
            hub.heartbeat_due()
        following = due + self.heartbeat_interval
        asyncio.get_running_loop().call_at(following, self._heartbeat, hub, following)

    async def _alerts(self) -> None:
        """One Poisson process for the whole fleet: each alert goes to a random hub."""
        rate = self.spec.alerts_per_day * len(self.hubs) * self.scale / 86400
        if rate <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            if self.producing:
                self.rng.choice(self.hubs).alert_due()

    def busy(self) -> int:
        """Hubs with something queued or waiting for a PUBACK."""
        return sum(
            1 for h in self.hubs if h.alerts or h.heartbeat is not None or h.waiting is not None
        )

    def drop_all(self) -> None:
        for hub in self.hubs:
            if hub.link is not None:
                hub.link.abort()


def tls_context(files: dict[str, str]) -> ssl.SSLContext:
    """As the uplink's: trust only the CA, present the hub's certificate, TLS 1.2 or newer.

    One context for all hubs of a process (the uplink makes one per connection; that
    costs the hub, not the broker). No session is resumed: every handshake is a full one,
    as the uplink's are.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files["ca"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files["cert"], files["key"])
    return context


# -- a single publisher: the baseline ------------------------------------------------


async def single_client(
    host: str, port: int, payloads: list[tuple[str, bytes]], rate: float, seconds: float,
    window: int,
) -> dict[str, Any]:  # fmt: skip
    """One connection publishing ``payloads`` (topic, payload) in turn, QoS 1.

    ``rate`` > 0 paces the publishes (one at a time, as a hub does); 0 publishes as fast
    as the broker acknowledges, with up to ``window`` in flight. Counts like a fleet.
    """
    counters = Counters()
    loop = asyncio.get_running_loop()
    acked = asyncio.Event()
    inflight: dict[int, str] = {}
    buf = bytearray()
    lost = loop.create_future()

    class Proto(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            counters.bytes_in += len(data)
            buf.extend(data)
            for pkt in split_packets(bytes(buf)):
                del buf[: len(pkt)]
                if pkt[0] & 0xF0 == 0x40:
                    body = pkt[2:] if pkt[1] < 128 else pkt[3:]
                    mid = int.from_bytes(body[:2], "big")
                    kind = inflight.pop(mid, None)
                    if kind is not None:
                        counters.acked[kind] += 1
                        acked.set()
                elif pkt[0] & 0xF0 == 0x20:
                    acked.set()

        def connection_lost(self, exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

    transport, _ = await loop.create_connection(Proto, host, port)
    connect = connect_packet("fleet-baseline", f"{UPLINK.prefix}/fleet-baseline/status", b"x")
    transport.write(connect)
    await asyncio.wait_for(acked.wait(), UPLINK.publish_timeout)
    expiry = math.ceil(UPLINK.heartbeat_expiry)
    mid = 0
    started = loop.time()
    deadline = started + seconds
    cpu0 = time.process_time()
    for i in itertools.count():
        now = loop.time()
        if now >= deadline or lost.done():
            break
        if rate > 0:
            due = started + i / rate
            if due > now:
                await asyncio.sleep(due - now)
        while len(inflight) >= (1 if rate > 0 else window):
            acked.clear()
            await asyncio.wait_for(acked.wait(), UPLINK.publish_timeout)
        topic, payload = payloads[i % len(payloads)]
        kind = topic.rsplit("/", 1)[1]
        mid = mid % 65535 + 1
        data = publish_packet(
            mqtt_str(topic), payload, mid, False, expiry if kind == "heartbeat" else 0
        )
        inflight[mid] = kind
        transport.write(data)
        counters.sent[kind] += 1
        counters.payload_bytes[kind] += len(payload)
        counters.packet_bytes["publish"] += len(data)
    while inflight and not lost.done():
        acked.clear()
        await asyncio.wait_for(acked.wait(), UPLINK.publish_timeout)
    took = loop.time() - started
    transport.write(b"\xe0\x00")  # DISCONNECT, normal: no Will
    transport.close()
    out = counters.snapshot(0)
    out.update(seconds=took, cpu=time.process_time() - cpu0)
    return out


def baseline_payloads(count: int, seed: int, alerts_per_day: float) -> list[tuple[str, bytes]]:
    """The fleet's message mix for ``count`` hubs: heartbeats, and alerts in proportion."""
    rng = random.Random(seed)
    per_heartbeat = alerts_per_day * HEARTBEAT_INTERVAL / 86400  # alerts per heartbeat
    out: list[tuple[str, bytes]] = []
    owed = 0.0
    for i in range(count):
        hub = hub_name(i)
        beat = heartbeat_message(hub, rng.randrange(3600, 30 * 86400))
        out.append((f"{UPLINK.prefix}/{hub}/heartbeat", encode(beat)))
        owed += per_heartbeat
        while owed >= 1:
            owed -= 1
            out.append((f"{UPLINK.prefix}/{hub}/alert", alert_payload(hub, i + 1, rng)))
    return out


# -- the real uplink, recorded -------------------------------------------------------


async def record_agent(host: str, port: int, hub: str, heartbeat: HeartbeatMessage) -> bytes:
    """Every byte a real ``MqttUplink`` sends until its first heartbeat is acknowledged.

    It talks to the broker at ``host:port`` through a relay that records the hub's side.
    The clock is "not synchronised", so the birth carries no time and can be compared.
    """
    recorded = bytearray()
    relays: list[asyncio.Task[None]] = []

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if keep:
                    recorded.extend(data)
                dst.write(data)
                await dst.drain()
        dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port)
        relays.append(asyncio.create_task(pump(reader, up_writer, True)))
        relays.append(asyncio.create_task(pump(up_reader, writer, False)))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    config = UPLINK.model_copy(update={"host": "127.0.0.1", "port": relay_port})
    outbox = MemoryOutbox(1 << 20)
    outbox.add(heartbeat, time.time())
    uplink = MqttUplink(config, hub, outbox, LiveClock(TZ, synced=False), __version__)
    uplink.on_command(lambda name, payload: ReplyMessage(outcome="done", at=datetime.now(TZ)))
    await uplink.start()
    try:
        if not await uplink.drain(UPLINK.publish_timeout * 2):
            raise RuntimeError("the real uplink did not get its heartbeat acknowledged")
    finally:
        await uplink.abort()
        server.close()
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    return bytes(recorded)


def simulated_first_packets(hub: str, heartbeat: bytes) -> list[bytes]:
    """What a SimHub sends first, with the real uplink's packet ids and an unsynced clock."""
    base = f"{UPLINK.prefix}/{hub}"
    offline = status_payload("offline", synced=False)
    online = status_payload("online", synced=False)
    expiry = math.ceil(UPLINK.heartbeat_expiry)
    return [
        connect_packet(hub, f"{base}/status", offline),
        subscribe_packet(1, f"{base}/cmd/#"),
        publish_packet(mqtt_str(f"{base}/status"), online, 2, True, 0),
        publish_packet(mqtt_str(f"{base}/heartbeat"), heartbeat, 3, False, expiry),
    ]


# -- paho, driven as the uplink drives it (for the comparison) -----------------------


async def paho_hubs(
    host: str, port: int, count: int, publishes: int, idle: float
) -> dict[str, Any]:
    """``count`` paho clients set up and driven as ``MqttUplink`` does; CPU and memory."""
    from paho.mqtt.enums import MQTTErrorCode
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.pahosocket import PreparedSocketClient

    loop = asyncio.get_running_loop()
    rss0, cpu0 = rss_kb(), time.process_time()
    clients: list[PreparedSocketClient] = []
    waiting: dict[int, asyncio.Future[None]] = {}
    keepalives: list[asyncio.Task[None]] = []

    def make(i: int) -> PreparedSocketClient:
        hub = hub_name(i)
        client = PreparedSocketClient(hub)
        client.max_inflight_messages_set(0)
        will = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will.WillDelayInterval = math.ceil(UPLINK.will_delay)
        client.will_set(
            f"{UPLINK.prefix}/{hub}/status",
            status_payload("offline", synced=False),
            qos=1,
            retain=True,
            properties=will,
        )
        fd_of: dict[str, int] = {}

        def readable() -> None:
            client.loop_read()

        def writable() -> None:
            client.loop_write()

        def opened(c: Any, u: Any, sock: Any) -> None:
            fd_of["fd"] = sock.fileno()
            loop.add_reader(sock.fileno(), readable)

        def register(c: Any, u: Any, sock: Any) -> None:
            loop.add_writer(sock.fileno(), writable)

        def unregister(c: Any, u: Any, sock: Any) -> None:
            loop.remove_writer(sock.fileno())

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            waiting.pop(i).set_result(None)

        def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
            waiting.pop(i).set_result(None)

        client.on_socket_open = opened
        client.on_socket_register_write = register
        client.on_socket_unregister_write = unregister
        client.on_connect = on_connect
        client.on_publish = on_publish
        return client

    async def keepalive(client: PreparedSocketClient) -> None:
        while True:
            await asyncio.sleep(1.0)
            client.loop_misc()

    connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect_props.SessionExpiryInterval = math.ceil(UPLINK.will_delay)
    connect_props.MaximumPacketSize = MAX_INBOUND

    async def connect(i: int) -> None:
        client = clients[i]
        client.connect_async(
            host, port, keepalive=int(UPLINK.keepalive), clean_start=False,
            properties=connect_props,
        )  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.use_socket(sock)
        waiting[i] = loop.create_future()
        done = waiting[i]
        if client.reconnect() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError("paho could not send CONNECT")
        await done
        keepalives.append(loop.create_task(keepalive(client)))
        await publish(i, "status", status_payload("online", synced=True), True)
        client.subscribe(f"{UPLINK.prefix}/{hub_name(i)}/cmd/#", qos=1)

    expiry = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    expiry.MessageExpiryInterval = math.ceil(UPLINK.heartbeat_expiry)

    async def publish(i: int, kind: str, payload: bytes, retain: bool = False) -> None:
        waiting[i] = loop.create_future()
        done = waiting[i]
        clients[i].publish(
            f"{UPLINK.prefix}/{hub_name(i)}/{kind}", payload, qos=1, retain=retain,
            properties=expiry if kind == "heartbeat" else None,
        )  # fmt: skip
        await done

    return await _compare_phases(
        count, publishes, idle, rss0, cpu0,
        make_all=lambda: clients.extend(make(i) for i in range(count)),
        connect=connect,
        publish=lambda i, payload: publish(i, "heartbeat", payload),
        close=lambda: [t.cancel() for t in keepalives],
    )  # fmt: skip


async def raw_hubs(host: str, port: int, count: int, publishes: int, idle: float) -> dict[str, Any]:
    """The same as ``paho_hubs`` with ``SimHub``; CPU and memory."""
    rss0, cpu0 = rss_kb(), time.process_time()
    spec = FleetSpec(host, port, 0, count, scale=1.0, alerts_per_day=0.0, seed=1)
    fleet: list[Fleet] = []

    async def connect(i: int) -> None:
        hub = fleet[0].hubs[i]
        if not await hub._connect_once():
            raise RuntimeError(f"{hub.id} could not connect")
        if not await hub._publish("status", fleet[0].online_payload, retain=True):
            raise RuntimeError(f"{hub.id}: birth not acknowledged")

    async def publish(i: int, payload: bytes) -> None:
        if not await fleet[0].hubs[i]._publish("heartbeat", payload):
            raise RuntimeError("heartbeat not acknowledged")

    def close() -> None:
        fleet[0].drop_all()

    return await _compare_phases(
        count, publishes, idle, rss0, cpu0,
        make_all=lambda: fleet.append(Fleet(spec)),
        connect=connect, publish=publish, close=close,
    )  # fmt: skip


async def _compare_phases(
    count: int, publishes: int, idle: float, rss0: int, cpu0: float,
    make_all: Callable[[], object], connect: Callable[[int], Any],
    publish: Callable[[int, bytes], Any], close: Callable[[], object],
) -> dict[str, Any]:  # fmt: skip
    """Make, connect (with birth), publish heartbeats, stay idle: CPU and RSS of each."""
    payloads = [encode(heartbeat_message(hub_name(i), 86400 + i)) for i in range(count)]
    make_all()
    cpu_made, rss_made = time.process_time(), rss_kb()
    gate = asyncio.Semaphore(200)  # no more connects in flight than the broker's backlog

    async def gated(i: int) -> None:
        async with gate:
            await connect(i)

    await asyncio.gather(*(gated(i) for i in range(count)))
    cpu_connected, rss_connected = time.process_time(), rss_kb()
    for _ in range(publishes):
        await asyncio.gather(*(publish(i, payloads[i]) for i in range(count)))
    cpu_published = time.process_time()
    await asyncio.sleep(idle)
    cpu_idle = time.process_time()
    close()
    return {
        "make_s": cpu_made - cpu0,
        "connect_s": cpu_connected - cpu_made,
        "publish_s": cpu_published - cpu_connected,
        "idle_s": cpu_idle - cpu_published,
        "rss_made_kb": rss_made - rss0,
        "rss_connected_kb": rss_connected - rss0,
    }


# -- the process ---------------------------------------------------------------------


def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise the soft limit on open files towards ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def _serve(fleet: Fleet) -> None:
    """Answer the commands on stdin until ``stop``: one JSON object a line each way.

    ``{"cmd": "stats", "since": N}`` the counters (and CONNACK times from the N-th on);
    ``{"cmd": "jitter", "on": bool}``; ``{"cmd": "produce", "on": bool}``;
    ``{"cmd": "quiet", "on": bool}`` (no messages, no pings); ``{"cmd": "stop"}``.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fleet.start()
    reply({"ready": True, "pid": os.getpid(), "started": time.monotonic()})
    while line := await reader.readline():
        order = json.loads(line)
        cmd = order["cmd"]
        if cmd == "stats":
            out = fleet.counters.snapshot(int(order.get("since", 0)))
            out.update(
                connected=fleet.connected, busy=fleet.busy(), cpu=time.process_time(),
                rss_kb=rss_kb(), now=time.monotonic(), tls_version=fleet.tls_version,
            )  # fmt: skip
            reply(out)
        elif cmd == "jitter":
            fleet.jitter = bool(order["on"])
            reply({"jitter": fleet.jitter})
        elif cmd == "produce":
            fleet.producing = bool(order["on"])
            reply({"producing": fleet.producing})
        elif cmd == "quiet":  # nothing sent at all: no messages, a PINGREQ only after a real
            quiet = bool(order["on"])  # keepalive (none within a short window)
            fleet.producing = not quiet
            fleet.ping_idle = UPLINK.keepalive / (1 if quiet else fleet.scale)
            reply({"quiet": quiet})
        elif cmd == "stop":
            fleet.drop_all()
            reply({"stopped": True})
            return


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    logging.basicConfig(level=logging.WARNING)
    mode = spec.pop("mode")
    raise_nofile(spec.pop("nofile", 1024))
    if mode == "fleet":
        asyncio.run(_serve(Fleet(FleetSpec(**spec))))
    elif mode == "single":
        payloads = baseline_payloads(spec["hubs"], spec["seed"], spec["alerts_per_day"])
        result = asyncio.run(
            single_client(
                spec["host"], spec["port"], payloads, spec["rate"], spec["seconds"], spec["window"]
            )
        )
        reply(result)
    elif mode in ("compare-paho", "compare-raw"):
        run = paho_hubs if mode == "compare-paho" else raw_hubs
        reply(
            asyncio.run(
                run(spec["host"], spec["port"], spec["count"], spec["publishes"], spec["idle"])
            )
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
