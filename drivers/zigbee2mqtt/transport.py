"""The subscriber on the home's local MQTT broker, run by the asyncio loop itself.

Why on the loop and not on paho's own thread: the driver's handler calls ``ctx.emit``,
which must run on the loop's thread, in order. With paho's thread every message would
cross over through ``call_soon_threadsafe`` and closing would mean joining a thread that
may sit in a blocking connect. Here no thread exists at all (the uplink to the centre
works the same way):

- the socket is opened through the loop (name lookup and a non-blocking TCP connect,
  bounded by ``connect_timeout``) and handed to paho, which speaks MQTT over it;
- paho's socket callbacks register it with the loop: readable -> ``loop_read``,
  writable while paho has bytes queued -> ``loop_write``, and a task calls
  ``loop_misc`` every quarter keepalive, at most 15 s (PINGREQ when idle; a broker
  that leaves it unanswered for a keepalive loses the connection);
- messages are handed to the handler inside ``loop_read``, on the loop's thread, one at
  a time and in the broker's order.

The subscriber connects once. It does not reconnect by itself: ``connect`` raises
``TransientError`` when the broker cannot be reached or refuses, and ``wait_lost``
returns when the connection ends; the driver then raises and the runtime starts it
again with backoff, so every new connection begins from a fresh start (the retained
messages come again and are read as the baseline). ``close`` always leaves no socket,
reader, writer or task behind.

MQTT 3.1.1 with a clean session: Zigbee2MQTT publishes at QoS 0 by default, and a broker
does not queue QoS 0 messages for a client that is away, so a persistent session would
bring nothing back. A retained message arrives with its retain flag only when the
broker sends it because of the new subscription: that is how "from before" is told
from "now".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import TransientError
from agent.pahosocket import PreparedSocketClient, misc_every

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

#: called with (topic, payload, retained); topic None when it is not UTF-8
MessageHandler = Callable[[str | None, bytes, bool], None]

_CLOSE_WAIT = 2.0  # seconds a clean DISCONNECT may take before the socket is cut


class LocalSubscriber:
    """One connection to the local broker, subscribed to ``topics``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topics: list[str],
        on_message: MessageHandler,
        on_alive: Callable[[], None],
        log: logging.Logger,
        username: str | None = None,
        password: str | None = None,
        keepalive: float = 60.0,
        timeout: float = 10.0,
        stall_after: float | None = None,
    ) -> None:
        self.where = f"{host}:{port}"
        self._host = host
        self._port = port
        self._topics = topics
        self._on_message_cb = on_message
        self._on_alive = on_alive
        self._log = log
        self._keepalive = max(5, round(keepalive))
        self._misc_every = misc_every(self._keepalive, stall_after)
        self._timeout = timeout
        self._client = PreparedSocketClient(client_id, MQTTProtocolVersion.MQTTv311)
        self._client.enable_logger(logging.getLogger(f"{log.name}.paho"))
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[ReasonCode | None] | None = None
        self._suback: asyncio.Future[list[ReasonCode] | None] | None = None
        self._lost = asyncio.Event()
        self._lost_reason = "closed"
        self._connected = False
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- the life of the connection ---------------------------------------------------

    async def connect(self) -> None:
        """Connect, subscribe, and return; ``TransientError`` saying why if it cannot."""
        self._loop = asyncio.get_running_loop()
        where = self.where
        try:
            async with asyncio.timeout(self._timeout):
                sock = await self._open_socket()
        except TimeoutError:
            raise TransientError(
                f"the local MQTT broker at {where} did not answer within {self._timeout:g} s"
            ) from None
        except OSError as err:
            why = os.strerror(err.errno) if err.errno else str(err)
            raise TransientError(
                f"the local MQTT broker at {where} cannot be reached ({why}); is mosquitto running?"
            ) from err
        loop = self._loop
        self._connack = loop.create_future()
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.use_socket(sock)
        try:
            rc = self._client.reconnect()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransientError(f"could not start MQTT with {where}: {mqtt.error_string(rc)}")
            async with asyncio.timeout(self._timeout):
                reason = await self._connack
            if reason is None:
                raise TransientError(
                    f"the local MQTT broker at {where} closed the connection before accepting it"
                )
            if reason.is_failure:
                raise TransientError(
                    f"the local MQTT broker at {where} refused the connection ({reason}); "
                    "check username and password"
                )
            self._suback = loop.create_future()
            rc, _mid = self._client.subscribe([(topic, 1) for topic in self._topics])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransientError(f"could not subscribe at {where}: {mqtt.error_string(rc)}")
            async with asyncio.timeout(self._timeout):
                granted = await self._suback
            if granted is None:
                raise TransientError(f"the connection to {where} ended while subscribing")
            refused = [str(code) for code in granted if code.is_failure]
            if refused:
                raise TransientError(
                    f"the local MQTT broker at {where} refused the subscription to "
                    f"{', '.join(self._topics)} ({', '.join(refused)}); check its ACL"
                )
        except TimeoutError:
            self._cut()
            raise TransientError(
                f"the local MQTT broker at {where} did not answer within {self._timeout:g} s"
            ) from None
        except OSError as err:
            self._cut()
            raise TransientError(f"MQTT with {where} failed: {err}") from err
        except BaseException:
            self._cut()
            raise
        finally:
            self._connack = None
            self._suback = None

    async def wait_lost(self) -> str:
        """Wait until the connection ends; why it ended."""
        await self._lost.wait()
        return self._lost_reason

    async def close(self) -> None:
        """Disconnect cleanly if connected; always leave nothing open behind."""
        self._closing = True
        if self._connected:
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await self._lost.wait()
        self._cut()
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None

    async def _open_socket(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {self._host}")
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as err:
                sock.close()
                error = err
            except BaseException:
                sock.close()
                raise
        raise error

    def _cut(self) -> None:
        """Close the socket now, through paho's own path so that its callbacks run."""
        sock = self._client.socket()
        if sock is None:
            return
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        try:
            self._client.loop_read()  # reads the end of the stream: paho closes the socket
        except Exception:
            self._log.debug("error while closing the connection to %s", self.where, exc_info=True)
        if self._client.socket() is not None:  # paho did not close it: do it ourselves
            self._client._sock_close()

    # ---- paho's callbacks: on the loop's thread, inside loop_read/loop_write/loop_misc ---

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self._connected = True
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if self._suback is not None and not self._suback.done():
            self._suback.set_result(list(reason_codes))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        self._lost_reason = "closed by the hub" if self._closing else str(reason_code)
        self._lost.set()
        for waiter in (self._connack, self._suback):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        try:
            self._on_message_cb(topic, bytes(message.payload), bool(message.retain))
        except Exception:  # a bug in the handler must not end the connection
            self._log.exception("a message on %r could not be handled", topic)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        loop = self._require_loop()
        loop.add_reader(sock.fileno(), self._readable)
        if self._misc is None or self._misc.done():
            self._misc = loop.create_task(self._keepalive_loop(), name=f"z2m-mqtt-{self.where}")

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        loop = self._require_loop()
        fd = sock.fileno()
        if fd >= 0:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if self._misc is not None and self._misc is not asyncio.current_task(loop):
            self._misc.cancel()
        self._connected = False
        self._lost.set()

    def _on_socket_register_write(
        self, client: mqtt.Client, userdata: Any, sock: SocketLike
    ) -> None:
        self._require_loop().add_writer(sock.fileno(), self._writable)

    def _on_socket_unregister_write(
        self, client: mqtt.Client, userdata: Any, sock: SocketLike
    ) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self._require_loop().remove_writer(fd)

    def _readable(self) -> None:
        try:
            self._client.loop_read()
        except Exception:
            self._log.exception("reading from %s failed; dropping the connection", self.where)
            self._cut()

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception:
            self._log.exception("writing to %s failed; dropping the connection", self.where)
            self._cut()

    async def _keepalive_loop(self) -> None:
        """paho's timers (see ``misc_every``); an open session is a sign of life."""
        while True:
            await asyncio.sleep(self._misc_every)
            try:
                rc = self._client.loop_misc()
            except Exception:
                self._log.exception("keepalive with %s failed; dropping the connection", self.where)
                self._cut()
                return
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if self._connected:
                self._on_alive()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the subscriber is not connected")
        return self._loop
