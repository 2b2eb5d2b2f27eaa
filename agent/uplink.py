"""The uplink: what the outbox holds, published to the central MQTT broker.

paho-mqtt is wrapped here and nowhere else in the hub. Everything runs on the one asyncio
loop; the uplink starts no threads:

- the socket is opened through the loop (its name lookup, a non-blocking TCP connect and
  TLS handshake) and handed to paho, which then speaks MQTT over it;
- paho's socket is registered with the loop: readable -> ``loop_read``, writable while
  paho has bytes queued -> ``loop_write``, and every quarter keepalive (at most 15 s)
  ``loop_misc`` (PINGREQ when idle);
- each QoS 1 publish gets a future keyed by message id, resolved in ``on_publish``
  (the PUBACK) and always removed on timeout, disconnect or cancellation.

A pump task takes batches from the outbox and publishes one item at a time, waiting for
its PUBACK: an acknowledged item is deleted, anything else goes back, so alerts reach the
broker at least once and in order. Topics are ``<prefix>/<hub_id>/{status,heartbeat,
alert}``; ``status`` is retained, "online" on every connection (the birth) and
"offline" as the Last Will (after ``will_delay``, so a Wi-Fi blip is not an outage) and
on a clean stop. Reconnection backs off exponentially with full jitter, and the first
retry after a lost connection is spread over ``reconnect_spread``, so that a fleet does
not return in lockstep after a broker restart; an alert waiting does not wait for that.

Commands: once the runtime has registered a handler (``on_command``), every connection
subscribes at QoS 1 to ``<prefix>/<hub_id>/cmd/#`` (retained messages are not sent to
it, and one that arrives anyway is dropped). ``on_message`` runs inside paho's read, on
the loop's thread: it only puts the command name and payload in a bounded queue (a
command that finds it full is dropped and counted; the centre retries). A task hands
each one to the handler and queues the reply it returns; the pump publishes replies on
``<prefix>/<hub_id>/reply``, QoS 1, before the next outbox batch. Replies are kept in
memory only: one lost to a restart is a command the centre sends again. The CONNECT
asks the broker for no packet over ``MAX_INBOUND`` bytes, so a huge command never
reaches the hub's memory.

Only payloads that are exactly an outbound model's encoding are ever published; logs
name the hub and the item, never the contents of an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from agent.clock import Clock, local_time
from agent.config import MemoryUplinkConfig, MqttUplinkConfig, TlsConfig, UplinkConfig
from agent.errors import HubError
from agent.messages import AlertMessage, HeartbeatMessage, ReplyMessage, StatusMessage, encode
from agent.outbox import ALERT, HEARTBEAT, Outbox, OutboxItem
from agent.pahosocket import PreparedSocketClient, misc_every

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

log = logging.getLogger(__name__)

BATCH: Final = 32
_IDLE_RECHECK: Final = 30.0  # seconds; a safety net should a notify() ever be missed
_MODELS: Final[dict[str, type[AlertMessage] | type[HeartbeatMessage]]] = {
    ALERT: AlertMessage,
    HEARTBEAT: HeartbeatMessage,
}
COMMAND_QUEUE: Final = 32  # commands read but not yet handled; more are dropped
REPLY_QUEUE: Final = 64  # replies not yet acknowledged by the broker; the oldest go first
MAX_INBOUND: Final = 64 * 1024  # bytes; the largest packet the broker may send the hub

#: handles one command: the name after ``cmd/`` and the payload in, the reply out
CommandHandler = Callable[[str, bytes], ReplyMessage]
#: told whether the centre is reachable (True) or not, each time that changes
LinkCallback = Callable[[bool], None]


class RefusedPayload(HubError):
    """An outbox item is not exactly an outbound message; it is never published."""


class _TlsFilesError(Exception):
    """The CA, certificate or key could not be loaded (the cause says why)."""


@dataclass(slots=True)
class UplinkStats:
    """Counters for the heartbeat and for people looking at a hub."""

    published: int = 0  # outbox items sent to the broker (each retry counts)
    acked: int = 0  # of those, acknowledged by the broker
    failures: int = 0  # not acknowledged: timeout, lost connection, refused by the broker
    reconnects: int = 0  # connections made after the first one
    refused: int = 0  # outbox items that were not an outbound model (dropped unpublished)
    last_ack_wall: float | None = None  # wall time of the last acknowledgement
    last_retry_delay: float | None = None  # seconds chosen before the last reconnect
    subscriptions: int = 0  # command subscriptions the broker granted (once per connection)
    commands: int = 0  # commands received and queued for the handler
    commands_dropped: int = 0  # commands dropped unhandled (queue full, retained)
    replies: int = 0  # replies acknowledged by the broker
    replies_dropped: int = 0  # replies given up: refused by the broker, or queue full


class Uplink(Protocol):
    """What the runtime needs from an uplink."""

    async def start(self) -> None:
        """Begin; returns at once, connecting goes on in the background."""
        ...

    def notify(self) -> None:
        """The outbox has new items."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight; False on timeout."""
        ...

    async def stop(self) -> None:
        """Say goodbye to the broker (where there is one) and stop."""
        ...

    def on_command(self, handler: CommandHandler) -> None:
        """Hand every command from the centre to ``handler``; publish the reply it returns."""
        ...

    def on_link(self, callback: LinkCallback) -> None:
        """Call ``callback`` with whether the centre is reachable: at once, and again each
        time that changes (so the status LED needs no polling)."""
        ...

    @property
    def connected(self) -> bool: ...

    @property
    def stats(self) -> UplinkStats: ...


def checked_reply(reply: ReplyMessage) -> bytes:
    """The reply's encoding, once it is proven to be exactly a ``ReplyMessage``.

    The same gate as ``checked_payload``: the exact type (a subclass could carry more),
    and bytes that parse back as the model and re-encode the same. ``RefusedPayload``
    otherwise.
    """
    if type(reply) is not ReplyMessage:
        raise RefusedPayload(f"a reply must be a ReplyMessage, not {type(reply).__name__}")
    payload = encode(reply)
    try:
        again = ReplyMessage.model_validate_json(payload)
    except ValidationError as err:
        raise RefusedPayload(f"not a valid ReplyMessage ({err.error_count()} errors)") from err
    if encode(again) != payload:
        raise RefusedPayload("not the exact encoding of a ReplyMessage")
    return payload


def checked_payload(item: OutboxItem) -> bytes:
    """The item's payload if it is exactly the encoding of an alert or heartbeat.

    The last gate before bytes leave the home: whatever put them in the outbox, they
    must parse as the model for their topic (no extra fields) and re-encode to the same
    bytes. ``RefusedPayload`` otherwise.
    """
    model = _MODELS.get(item.topic)
    if model is None:
        raise RefusedPayload(f"{item.topic!r} is not an outbound topic")
    try:
        message = model.model_validate_json(item.payload)
    except ValidationError as err:
        raise RefusedPayload(f"not a valid {model.__name__} ({err.error_count()} errors)") from err
    if encode(message) != item.payload:
        raise RefusedPayload(f"not the exact encoding of a {model.__name__}")
    return item.payload


def retry_delay(
    attempt: int,
    lost: bool,
    alert: bool,
    low: float,
    high: float,
    spread: float,
    rng: random.Random,
) -> tuple[float, int]:
    """(seconds to wait, the next attempt's number) before reconnect attempt ``attempt``.

    ``lost``: an established connection has just ended. A broker restart ends every
    hub's connection in the same second; if each retried within ``backoff_delay``'s first
    window (``low`` to twice that) the whole fleet would be back in the same second too.
    So the first wait after a loss is uniform over ``low`` .. ``spread`` (at most
    ``high``), and the windows after it go on from twice that width. ``alert``: an alert
    waits in the outbox; it does not wait for the fleet: the usual windows, from the
    first, at most ``spread`` wide.
    """
    spread = max(low, min(spread, high))
    if lost:
        attempt = 0
        if not alert and spread > 2 * low:
            after = math.ceil(math.log2(spread / max(low, 0.05)))
            return rng.uniform(low, spread), after
    if alert:
        high = spread
    return backoff_delay(attempt, low, high, rng), attempt + 1


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry).

    Full jitter over a window that doubles with every failure: uniform between ``low``
    and ``min(high, low * 2 ** (attempt + 1))``. Even the first retry is spread out,
    so hubs dropped together by a broker restart do not all come back at once.
    """
    low = max(0.0, low)
    high = max(low, high)
    base = max(low, 0.05)  # a zero minimum must not make a busy loop
    window = min(high, base * 2.0 ** min(attempt + 1, 60))
    return rng.uniform(low, max(low, window))


class MemoryUplink:
    """Publishes into ``sent`` at once: takes batches and accepts them. For benchmarks and tests.

    ``command`` plays a command from the centre: the handler's reply goes into ``sent``
    (as ``reply``) through the same gate as on a broker.
    """

    def __init__(
        self,
        outbox: Outbox,
        clock: Clock | None = None,
        batch_size: int = BATCH,
        keep: int | None = None,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._batch_size = batch_size
        self._stats = UplinkStats()
        self._started = False
        self._handler: CommandHandler | None = None
        self._links: list[LinkCallback] = []
        #: (topic suffix, payload) in publish order: the last ``keep`` (None: all of them)
        self.sent: deque[tuple[str, bytes]] = deque(maxlen=keep)

    def on_command(self, handler: CommandHandler) -> None:
        self._handler = handler

    def command(self, name: str, payload: bytes) -> bytes:
        """The command ``cmd/<name>`` arrives; the reply's bytes, as published."""
        if self._handler is None:
            raise RuntimeError("no command handler is registered")
        self._stats.commands += 1
        reply = checked_reply(self._handler(name, payload))
        self.sent.append((ReplyMessage.TOPIC, reply))
        self._stats.replies += 1
        return reply

    @property
    def connected(self) -> bool:
        return self._started

    @property
    def stats(self) -> UplinkStats:
        return self._stats

    def on_link(self, callback: LinkCallback) -> None:
        self._links.append(callback)
        callback(self._started)

    async def start(self) -> None:
        self._started = True
        for callback in self._links:
            callback(True)
        self._publish_all()

    def notify(self) -> None:
        if self._started:
            self._publish_all()

    async def drain(self, timeout: float) -> bool:
        self.notify()
        return self._outbox.depth() == 0

    async def stop(self) -> None:
        self._started = False
        for callback in self._links:
            callback(False)

    def _publish_all(self) -> None:
        while batch := self._outbox.take(self._batch_size):
            for item in batch:
                try:
                    payload = checked_payload(item)
                except RefusedPayload as err:
                    self._stats.refused += 1
                    log.error("outbox item %d refused, dropped unpublished: %s", item.id, err)
                    continue
                self.sent.append((item.topic, payload))
                self._stats.published += 1
                self._stats.acked += 1
            # Refused items are settled as accepted too: deleted, never published.
            self._outbox.end(accepted=[it.id for it in batch], rejected=[])
            if self._clock is not None:
                self._stats.last_ack_wall = self._clock.wall()


class _Result(enum.Enum):
    ACKED = "acknowledged"
    REFUSED = "refused by the broker"
    TIMEOUT = "not acknowledged in time"
    LOST = "connection lost"


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Trust only the given CA, present the hub's certificate, TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


async def _io_ready(sock: socket.socket, *, write: bool) -> None:
    """Wait until ``sock`` is readable (or writable) without blocking the loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _tls_handshake(sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """Wrap a connected non-blocking socket in TLS, handshaking on the loop."""
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await _io_ready(tls, write=False)
            except ssl.SSLWantWriteError:
                await _io_ready(tls, write=True)
            else:
                return tls
    except BaseException:
        tls.close()
        raise


class MqttUplink:
    """Publishes the outbox to an MQTT 5 broker; one connection, one identity per hub."""

    def __init__(
        self,
        config: MqttUplinkConfig,
        hub_id: str,
        outbox: Outbox,
        clock: Clock,
        version: str,
        *,
        rng: random.Random | None = None,
        batch_size: int = BATCH,
    ) -> None:
        self._config = config
        self._hub = hub_id
        self._outbox = outbox
        self._clock = clock
        self._version = version
        self._rng = rng if rng is not None else random.Random()  # seeded from the OS
        self._batch_size = batch_size
        self._where = f"{config.host}:{config.port}"
        # The broker has this long to answer anything: connect, handshake, CONNACK, PUBACK.
        self._timeout = config.publish_timeout
        base = f"{config.prefix}/{hub_id}"
        self._status_topic = f"{base}/{StatusMessage.TOPIC}"
        self._topics = {ALERT: f"{base}/{ALERT}", HEARTBEAT: f"{base}/{HEARTBEAT}"}
        self._reply_topic = f"{base}/{ReplyMessage.TOPIC}"
        self._command_filter = f"{base}/cmd/#"
        self._command_prefix = f"{base}/cmd/"
        self._stats = UplinkStats()
        self._handler: CommandHandler | None = None
        self._commands: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(COMMAND_QUEUE)
        self._replies: deque[bytes] = deque()
        self._reply_turn = True
        self._dropping = False  # the command queue was full; cleared once it empties

        self._client = PreparedSocketClient(config.client_id or hub_id)
        self._client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        self._client.max_inflight_messages_set(0)  # the pump is the flow control
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write
        will = encode(StatusMessage(state="offline", version=version))
        self._client.will_set(
            self._status_topic, will, qos=1, retain=True, properties=self._will_properties()
        )

        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._misc_task: asyncio.Task[None] | None = None
        self._running = False
        self._connected = asyncio.Event()
        self._links: list[LinkCallback] = []
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._alert_added = asyncio.Event()  # while waiting to reconnect
        self._progress = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode | None] | None = None
        self._pending: dict[int, asyncio.Future[ReasonCode | None]] = {}
        self._early: dict[int, ReasonCode] = {}
        self._generation = 0  # successful connections so far
        self._born = 0  # the connection on which "online" was acknowledged
        self._streak = 0  # failed publishes in a row

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on_link(self, callback: LinkCallback) -> None:
        self._links.append(callback)
        callback(self.connected)

    def _tell_link(self, up: bool) -> None:
        for callback in self._links:
            try:
                callback(up)
            except Exception:  # a status LED must never take the uplink down
                log.exception("hub %s: telling the link state failed", self._hub)

    @property
    def stats(self) -> UplinkStats:
        return self._stats

    @property
    def pending_acks(self) -> int:
        """Publishes waiting for their PUBACK: 0 or 1 (one at a time), never left behind."""
        return len(self._pending)

    async def start(self) -> None:
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._client.connect_async(
            self._config.host,
            self._config.port,
            keepalive=int(self._config.keepalive),
            clean_start=False,  # a clean start would end the old session and fire its Will
            properties=self._connect_properties(),
        )
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name=f"uplink-connect-{self._hub}"),
            asyncio.create_task(self._pump(), name=f"uplink-pump-{self._hub}"),
            asyncio.create_task(self._serve_commands(), name=f"uplink-commands-{self._hub}"),
        ]
        log.info("hub %s: uplink to %s started", self._hub, self._where)

    def notify(self) -> None:
        self._wake.set()
        if not self.connected and self._outbox.alerts() > 0:
            self._alert_added.set()

    def on_command(self, handler: CommandHandler) -> None:
        """Subscribe to the hub's commands (now, if connected, and on every connection)."""
        self._handler = handler
        if self.connected:
            self._subscribe_commands()

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox and the replies are sent; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self._outbox.depth() > 0 or self._replies:
                    self._progress.clear()
                    self._wake.set()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Publish a retained "offline", disconnect cleanly (no Will) and stop."""
        if not self._tasks:
            return
        self._running = False
        await self._cancel_tasks()
        if self.connected:
            result, detail = await self._publish_status("offline")
            if result is not _Result.ACKED:
                log.warning("hub %s: 'offline' not acknowledged (%s)", self._hub, detail)
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._lost.wait()
        self._close_now()
        log.info("hub %s: uplink stopped", self._hub)

    async def abort(self) -> None:
        """Stop at once and drop the connection without a DISCONNECT.

        What a crash or power cut does: the broker publishes the Will ("offline") after
        ``will_delay``. For tests and demonstrations.
        """
        self._running = False
        await self._cancel_tasks()
        self._close_now()

    # -- connection -------------------------------------------------------------------

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # The Will waits will_delay only while the session lives: keep it at least as long.
        props.SessionExpiryInterval = math.ceil(self._config.will_delay)
        # Only commands come in: the broker drops anything bigger rather than send it.
        props.MaximumPacketSize = MAX_INBOUND
        return props

    def _will_properties(self) -> Properties:
        props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        props.WillDelayInterval = math.ceil(self._config.will_delay)
        return props

    def _publish_properties(self, topic: str) -> Properties | None:
        expiry = math.ceil(self._config.heartbeat_expiry)
        if topic != HEARTBEAT or expiry <= 0:
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = expiry
        return props

    async def _connection_loop(self) -> None:
        """Connect, wait for the connection to end, back off, again: until stopped."""
        attempt = 0
        while self._running:
            try:
                connected = await self._connect_once()
            except Exception:  # a bug must not end the uplink: log it and try again
                log.exception("hub %s: connection attempt failed unexpectedly", self._hub)
                self._close_now()
                connected = False
            if connected:
                await self._lost.wait()
                if self._stopped():
                    return
            delay, attempt = self._retry_delay(attempt, lost=connected)
            self._stats.last_retry_delay = delay
            log.info("hub %s: next connection attempt in %.1f s", self._hub, delay)
            await self._retry_wait(delay)

    def _retry_delay(self, attempt: int, lost: bool) -> tuple[float, int]:
        cfg = self._config
        alert = self._outbox.alerts() > 0
        return retry_delay(
            attempt,
            lost,
            alert,
            cfg.reconnect_min,
            cfg.reconnect_max,
            cfg.reconnect_spread,
            self._rng,
        )

    async def _retry_wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds; an alert added meanwhile cuts it to the first window."""
        self._alert_added.clear()
        if self._outbox.alerts() > 0:
            await asyncio.sleep(delay)
            return
        try:
            async with asyncio.timeout(delay):
                await self._alert_added.wait()
        except TimeoutError:
            return
        cfg = self._config
        soon = backoff_delay(0, cfg.reconnect_min, cfg.reconnect_max, self._rng)
        self._stats.last_retry_delay = soon
        log.info("hub %s: an alert waits; connection attempt in %.1f s", self._hub, soon)
        await asyncio.sleep(soon)

    async def _connect_once(self) -> bool:
        """One connection attempt; True once the broker has accepted it."""
        hub, where = self._hub, self._where
        try:
            async with asyncio.timeout(self._timeout):
                sock = await self._open_socket()
        except TimeoutError:
            log.warning(
                "hub %s: no answer from the broker at %s within %.0f s", hub, where, self._timeout
            )
            return False
        except _TlsFilesError as err:
            log.error(
                "hub %s: cannot use the TLS files (tls.ca, tls.cert, tls.key): %s",
                hub,
                err.__cause__,
            )
            return False
        except ssl.SSLCertVerificationError as err:
            # X509_V_ERR_CERT_NOT_YET_VALID (9), X509_V_ERR_CERT_HAS_EXPIRED (10)
            if err.verify_code in (9, 10) and not self._clock.wall_synced():
                log.error(
                    "hub %s: TLS with %s: the clock is not synchronised yet: the "
                    "certificate looks %s; it will work once NTP has set the clock",
                    hub,
                    where,
                    "not yet valid" if err.verify_code == 9 else "expired",
                )
                return False
            log.error(
                "hub %s: TLS: the broker at %s is not trusted (%s); check tls.ca and "
                "the broker's host name",
                hub,
                where,
                err.verify_message,
            )
            return False
        except ssl.SSLError as err:
            log.error(
                "hub %s: TLS handshake with %s failed (%s); check the hub's certificate "
                "and key and the broker's TLS settings",
                hub,
                where,
                err.reason or err,
            )
            return False
        except OSError as err:
            log.warning("hub %s: cannot reach the broker at %s: %s", hub, where, err)
            return False

        connack: asyncio.Future[ReasonCode | None] = asyncio.get_running_loop().create_future()
        self._connack = connack
        self._client.use_socket(sock)
        self._client.drop_out_messages()  # the outbox, not paho, decides what is re-sent
        try:
            rc = self._client.reconnect()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning(
                    "hub %s: could not send CONNECT to %s: %s", hub, where, mqtt.error_string(rc)
                )
                self._close_now()
                return False
            async with asyncio.timeout(self._timeout):
                reason = await connack
        except TimeoutError:
            log.warning(
                "hub %s: the broker at %s did not answer CONNECT within %.0f s",
                hub,
                where,
                self._timeout,
            )
            self._close_now()
            return False
        except OSError as err:  # after TimeoutError, which is one too
            log.warning("hub %s: could not start MQTT with %s: %s", hub, where, err)
            self._close_now()
            return False
        finally:
            self._connack = None
        if reason is None:
            log.warning(
                "hub %s: the broker at %s closed the connection before accepting it (%s)",
                hub,
                where,
                "does it accept the hub's certificate? check tls.cert and tls.key"
                if self._config.tls is not None
                else "does it accept this client id?",
            )
            return False
        if reason.is_failure:
            log.error(
                "hub %s: the broker at %s refused the connection: %s; check the hub's "
                "identity and the broker's configuration",
                hub,
                where,
                reason,
            )
            return False
        log.info("hub %s: connected to %s", hub, where)
        return True

    async def _open_socket(self) -> socket.socket:
        """A connected non-blocking socket to the broker, TLS-wrapped when configured."""
        context = None
        if self._config.tls is not None:
            try:
                context = _tls_context(self._config.tls)
            except (OSError, ssl.SSLError) as err:
                raise _TlsFilesError() from err
        loop = asyncio.get_running_loop()
        host, port = self._config.host, self._config.port
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if context is None:
                    return sock
                return await _tls_handshake(sock, context, host)
            except ssl.SSLError:
                sock.close()
                raise
            except OSError as err:
                sock.close()
                error = err
            except BaseException:
                sock.close()
                raise
        raise error

    def _drop_connection(self) -> None:
        """Cut the connection without a DISCONNECT; paho notices at its next read."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _close_now(self) -> None:
        """Cut the connection and let paho close it through its own path, right now."""
        if self._client.socket() is None:
            return
        self._drop_connection()
        try:
            self._client.loop_read()  # reads the end of the stream: paho closes, callbacks run
        except Exception:
            log.exception("hub %s: error while closing the connection", self._hub)

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- publishing -------------------------------------------------------------------

    async def _pump(self) -> None:
        """Publish the outbox while connected, "online" first on each new connection."""
        while self._running:
            try:
                await self._pump_once()
            except Exception:  # a bug (or a failing outbox) must not end the uplink
                self._streak += 1
                delay = backoff_delay(
                    self._streak, self._config.reconnect_min, self._config.reconnect_max, self._rng
                )
                log.exception(
                    "hub %s: publishing failed unexpectedly; again in %.1f s", self._hub, delay
                )
                await asyncio.sleep(delay)

    async def _pump_once(self) -> None:
        if not self.connected:
            await self._connected.wait()
            return
        generation = self._generation
        if self._born != generation:
            result, detail = await self._publish_status("online")
            if result is _Result.ACKED:
                self._born, self._streak = generation, 0
            else:
                await self._after_failure(result, detail, "status")
            return
        # Replies and outbox batches take turns: a flood of commands cannot hold alerts back.
        if self._replies and self._reply_turn:
            self._reply_turn = False
            await self._send_reply()
            self._progress.set()
            return
        self._reply_turn = True
        batch = self._outbox.take(self._batch_size)
        if not batch and self._replies:
            return  # their turn is next
        if not batch:
            self._progress.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_IDLE_RECHECK):
                    await self._wake.wait()
            return
        failure = await self._send_batch(batch)
        self._progress.set()
        if failure is None:
            self._streak = 0
        else:
            await self._after_failure(*failure)

    async def _send_batch(self, batch: list[OutboxItem]) -> tuple[_Result, str, str] | None:
        """Publish items one by one; after a failure the rest go back, so order holds."""
        accepted: list[int] = []
        rejected: list[int] = []
        failure: tuple[_Result, str, str] | None = None
        try:
            for item in batch:
                if failure is not None:
                    rejected.append(item.id)
                    continue
                try:
                    payload = checked_payload(item)
                except RefusedPayload as err:
                    self._stats.refused += 1
                    log.error(
                        "hub %s: outbox item %d refused, dropped unpublished: %s",
                        self._hub,
                        item.id,
                        err,
                    )
                    accepted.append(item.id)  # settled: deleted, never published
                    continue
                self._stats.published += 1
                result, detail = await self._publish(
                    self._topics[item.topic], payload, False, self._publish_properties(item.topic)
                )
                if result is _Result.ACKED:
                    accepted.append(item.id)
                    self._stats.acked += 1
                    self._stats.last_ack_wall = self._clock.wall()
                    log.debug(
                        "hub %s: %s %d acknowledged (%d bytes)",
                        self._hub,
                        item.topic,
                        item.id,
                        len(payload),
                    )
                else:
                    rejected.append(item.id)
                    self._stats.failures += 1
                    failure = (result, detail, item.topic)
        finally:
            settled = {*accepted, *rejected}
            rejected += [it.id for it in batch if it.id not in settled]
            self._outbox.end(accepted, rejected)
        return failure

    async def _after_failure(self, result: _Result, detail: str, what: str) -> None:
        """React to a failed publish: reconnect, back off, or wait for the connection."""
        streak = self._streak
        self._streak += 1
        if result is _Result.TIMEOUT:
            # MQTT resends only on a new connection; a silent broker is a dead link.
            log.warning("hub %s: %s %s (%s); reconnecting", self._hub, what, result.value, detail)
            self._drop_connection()
        elif result is _Result.REFUSED:
            delay = backoff_delay(
                streak, self._config.reconnect_min, self._config.reconnect_max, self._rng
            )
            log.warning(
                "hub %s: %s %s (%s); retrying in %.1f s",
                self._hub,
                what,
                result.value,
                detail,
                delay,
            )
            await asyncio.sleep(delay)
        else:
            log.debug("hub %s: %s not acknowledged: %s", self._hub, what, detail)

    async def _send_reply(self) -> None:
        """Publish the oldest reply; it waits for the next connection when this one fails."""
        result, detail = await self._publish(self._reply_topic, self._replies[0], False, None)
        if result is _Result.ACKED:
            self._replies.popleft()
            self._stats.replies += 1
            self._streak = 0
        elif result is _Result.REFUSED:
            # Sending it again would be refused again, and hold up the alerts behind it.
            self._replies.popleft()
            self._stats.replies_dropped += 1
            log.warning(
                "hub %s: a reply was refused by the broker (%s), dropped; does the broker "
                "let the hub write its reply topic?",
                self._hub,
                detail,
            )
        else:
            await self._after_failure(result, detail, "reply")

    # -- commands -------------------------------------------------------------------------

    def _subscribe_commands(self) -> None:
        """Subscribe to ``cmd/#`` at QoS 1; the broker keeps retained commands to itself."""
        options = SubscribeOptions(
            qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
        )
        rc, _mid = self._client.subscribe(self._command_filter, options=options)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning(
                "hub %s: could not subscribe to commands: %s", self._hub, mqtt.error_string(rc)
            )

    async def _serve_commands(self) -> None:
        """Hand each queued command to the handler and queue its reply for the pump."""
        while True:
            name, payload = await self._commands.get()
            handler = self._handler
            if handler is None:
                continue
            try:
                reply = checked_reply(handler(name, payload))
            except RefusedPayload as err:
                self._stats.refused += 1
                log.error("hub %s: a reply was refused, not published: %s", self._hub, err)
                continue
            except Exception:  # a bug must not end the command service
                log.exception("hub %s: a command could not be handled", self._hub)
                continue
            finally:
                if self._commands.empty() and self._dropping:
                    self._dropping = False
                    log.warning("hub %s: commands are taken again", self._hub)
            if len(self._replies) >= REPLY_QUEUE:
                self._stats.replies_dropped += 1
                log.warning("hub %s: too many replies waiting; one was dropped", self._hub)
                continue
            self._replies.append(reply)
            self._wake.set()

    async def _publish_status(self, state: str) -> tuple[_Result, str]:
        at: datetime | None = None
        if self._clock.wall_synced():
            at = local_time(self._clock).replace(microsecond=0)
        status = StatusMessage(
            state="online" if state == "online" else "offline", at=at, version=self._version
        )
        return await self._publish(self._status_topic, encode(status), True, None)

    async def _publish(
        self, topic: str, payload: bytes, retain: bool, properties: Properties | None
    ) -> tuple[_Result, str]:
        """Publish at QoS 1 and wait for the PUBACK, at most the configured timeout."""
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return _Result.LOST, mqtt.error_string(info.rc)
        mid = info.mid
        done: asyncio.Future[ReasonCode | None] = asyncio.get_running_loop().create_future()
        # Where paho acknowledges before publish() returns (a PUBACK read during the
        # call), on_publish parked the reason code here; anything else parked is stale.
        early = self._early.pop(mid, None)
        self._early.clear()
        if early is not None:
            done.set_result(early)
        else:
            self._pending[mid] = done
        try:
            async with asyncio.timeout(self._timeout):
                reason = await done
        except TimeoutError:
            return _Result.TIMEOUT, f"no PUBACK within {self._timeout:.0f} s"
        finally:
            if self._pending.get(mid) is done:
                del self._pending[mid]
        if reason is None:
            return _Result.LOST, "connection lost before the PUBACK"
        if reason.is_failure:
            return _Result.REFUSED, str(reason)
        return _Result.ACKED, str(reason)

    # -- paho callbacks (all on the loop's thread, inside loop_read/loop_write/loop_misc)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason_code)
        if reason_code.is_failure:
            return
        if self._generation:
            self._stats.reconnects += 1
        self._generation += 1
        self._lost.clear()
        self._connected.set()
        self._tell_link(True)
        self._wake.set()
        if self._handler is not None:
            self._subscribe_commands()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error(
                "hub %s: the broker refused the subscription to %s (%s): commands from the "
                "centre cannot arrive; check the broker's ACL",
                self._hub,
                self._command_filter,
                ", ".join(refused),
            )
        else:
            self._stats.subscriptions += 1
            log.debug("hub %s: subscribed to %s", self._hub, self._command_filter)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A command: only queued here, inside paho's read; ``_serve_commands`` handles it."""
        try:
            topic = message.topic
        except UnicodeDecodeError:  # paho cannot name it; it cannot be a command of ours
            topic = ""
        if topic == self._command_prefix[:-1]:
            name = ""  # "cmd" itself: an unknown command, answered as such
        elif topic.startswith(self._command_prefix):
            name = topic[len(self._command_prefix) :]
        else:
            self._stats.commands_dropped += 1
            log.warning("hub %s: a message outside %s was dropped", self._hub, self._command_filter)
            return
        if message.retain:
            self._stats.commands_dropped += 1
            log.warning("hub %s: a retained command was dropped, not executed", self._hub)
            return
        try:
            self._commands.put_nowait((name, bytes(message.payload)))
        except asyncio.QueueFull:
            self._stats.commands_dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "hub %s: %d commands wait already; more are dropped until they are handled",
                    self._hub,
                    COMMAND_QUEUE,
                )
            return
        self._stats.commands += 1

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected
        self._connected.clear()
        if was_connected:
            self._tell_link(False)
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_result(None)
        self._early.clear()
        if was_connected and self._running:
            log.warning("hub %s: connection to %s lost (%s)", self._hub, self._where, reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        waiter = self._pending.pop(mid, None)
        if waiter is None:
            self._early[mid] = reason_code
        elif not waiter.done():
            waiter.set_result(reason_code)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        loop = self._require_loop()
        loop.add_reader(sock.fileno(), self._on_readable)
        self._misc_task = loop.create_task(self._keepalive(), name=f"uplink-keepalive-{self._hub}")

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        loop = self._require_loop()
        fd = sock.fileno()
        if fd >= 0:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if self._misc_task is not None:
            self._misc_task.cancel()
            self._misc_task = None

    def _on_socket_register_write(
        self, client: mqtt.Client, userdata: Any, sock: SocketLike
    ) -> None:
        self._require_loop().add_writer(sock.fileno(), self._on_writable)

    def _on_socket_unregister_write(
        self, client: mqtt.Client, userdata: Any, sock: SocketLike
    ) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self._require_loop().remove_writer(fd)

    def _on_readable(self) -> None:
        try:
            while True:
                rc = self._client.loop_read()
                sock = self._client.socket()
                # TLS may hold decrypted bytes the socket no longer signals: read them too.
                if (
                    rc != MQTTErrorCode.MQTT_ERR_SUCCESS
                    or not isinstance(sock, ssl.SSLSocket)
                    or sock.pending() == 0
                ):
                    return
        except Exception:
            log.exception(
                "hub %s: error reading from the broker; dropping the connection", self._hub
            )
            self._drop_connection()

    def _on_writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception:
            log.exception("hub %s: error writing to the broker; dropping the connection", self._hub)
            self._drop_connection()

    async def _keepalive(self) -> None:
        """paho's timers: PINGREQ when idle, and a dead link noticed after keepalive."""
        every = misc_every(self._config.keepalive)
        while True:
            await asyncio.sleep(every)
            try:
                if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
            except Exception:
                log.exception("hub %s: keepalive failed; dropping the connection", self._hub)
                self._drop_connection()
                return

    def _stopped(self) -> bool:
        return not self._running

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the uplink is not started")
        return self._loop


def make_uplink(
    config: UplinkConfig, hub_id: str, outbox: Outbox, clock: Clock, version: str
) -> Uplink:
    """The uplink the configuration asks for."""
    if isinstance(config, MemoryUplinkConfig):
        return MemoryUplink(outbox, clock=clock, keep=config.keep)
    return MqttUplink(config, hub_id, outbox, clock, version)
