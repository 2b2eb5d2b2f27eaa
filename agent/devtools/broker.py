"""A private Mosquitto broker, and a subscriber that records what reaches it.

``Mosquitto`` writes its own configuration in a temporary directory, listens on
127.0.0.1 on a free port (and optionally on a second, TLS port), logs to a file and can
be killed, paused and restarted on the same port to play an outage. ``Subscriber`` is a
paho client on its own thread that collects every message under a topic filter; it
reconnects and subscribes again after a broker restart.

Blocking calls only: tests that run an asyncio loop call ``Subscriber.await_for`` (or
wrap other waits in ``asyncio.to_thread``) so that the loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

# ACLs for anonymous clients (lines before any "user" line apply to them).
ACL_OPEN = "topic readwrite #\n"
ACL_READ_ONLY = "topic read #\n"  # subscribers work; every publish is refused (PUBACK 0x87)


def find_mosquitto() -> str | None:
    """The mosquitto binary from PATH or /usr/sbin (where Debian puts it), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    candidate = Path("/usr/sbin/mosquitto")
    return str(candidate) if os.access(candidate, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerError(RuntimeError):
    """The broker did not start or stop as asked; the message includes its log."""


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """Files for the broker's TLS listener; client certificates are checked against ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True


class Mosquitto:
    """One private broker process with its own configuration, port and log file.

    The ports are chosen when the object is made, so a client can be pointed at a broker
    that is not running yet. ``acl`` (the text of an ACL file, see ``ACL_OPEN``) and
    ``allow_anonymous`` may be changed while running (``set_acl``,
    ``set_allow_anonymous``): Mosquitto rereads its configuration on SIGHUP and keeps
    the clients it still allows. ``extra_conf`` is appended to the generated
    configuration, after the last listener, so listener options in it (such as
    ``use_identity_as_username true``) apply to the TLS listener when there is one.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: BrokerTls | None = None,
        acl: str | None = None,
        allow_anonymous: bool = True,
        start_timeout: float = 10.0,
        extra_conf: str | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise BrokerError("mosquitto is not installed (looked in PATH and /usr/sbin)")
        self.binary = found
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.tls_port = free_port(host) if tls is not None else None
        self.start_timeout = start_timeout
        self._acl = acl
        self._allow_anonymous = allow_anonymous
        self._extra_conf = extra_conf
        self._dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.conf_path = self._dir / "mosquitto.conf"
        self.log_path = self._dir / "mosquitto.log"
        self.acl_path = self._dir / "acl"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Write the configuration, run the broker and wait until it accepts connections."""
        if self.running:
            return self
        self._write_conf()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout
        for port in (self.port, self.tls_port):
            if port is not None:
                self._wait_listening(port, deadline)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the broker with SIGTERM (it may write its state); SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.resume()
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """End the broker with SIGKILL, as a crash or power cut would."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        self._paused = False

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port(s)."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        if self._proc is not None and self._proc.poll() is None and not self._paused:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def set_acl(self, acl: str | None) -> None:
        """Replace the ACL; a running broker rereads it (SIGHUP) without dropping clients."""
        self._acl = acl
        self._reload()

    def set_allow_anonymous(self, allow: bool) -> None:
        """Allow or refuse clients without credentials (CONNACK "Not authorized")."""
        self._allow_anonymous = allow
        self._reload()

    def _reload(self) -> None:
        self._write_conf()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        """Everything the broker logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the broker and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_conf(self) -> None:
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'true' if self._allow_anonymous else 'false'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            # Forward every message at once instead of 20 at a time: what the broker has
            # acknowledged is then with the subscribers even if it is killed a moment later.
            "max_inflight_messages 0",
            # Only takes effect when started as root: stay that user, so the log is writable.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {self.host}",
        ]
        if self._acl is not None:
            self.acl_path.write_text(self._acl, encoding="utf-8")
            lines.append(f"acl_file {self.acl_path}")
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
                "tls_version tlsv1.2",
            ]
        if self._extra_conf:
            lines += self._extra_conf.strip().splitlines()
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _wait_listening(self, port: int, deadline: float) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self._proc = None
                raise BrokerError(
                    f"mosquitto exited (status {code}) before listening on {self.host}:{port}\n"
                    f"--- {self.log_path} ---\n{self.log_text()}"
                )
            try:
                with socket.create_connection((self.host, port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto did not listen on {self.host}:{port} within "
                    f"{self.start_timeout} s\n--- {self.log_path} ---\n{self.log_text()}"
                )
            time.sleep(0.02)


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a subscriber saw it; ``properties`` by MQTT 5 name."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    properties: dict[str, Any]


class Subscriber:
    """A paho client on its own thread that records every message under ``topic_filter``.

    It subscribes with "retain as published" and by default QoS 2, so ``Received.qos``
    and ``retain`` are what the publisher sent. After a broker restart it reconnects by
    itself and subscribes again; ``wait_subscribed`` says when it is back.

    To watch a broker that gets killed, subscribe with ``qos=0``: paho closes its socket
    at the first failed write (a PUBACK to the dead broker), dropping messages that had
    already arrived; at QoS 0 it writes nothing and reads everything the broker sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str,
        *,
        client_id: str | None = None,
        qos: int = 2,
        timeout: float = 10.0,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self.host = host
        self.qos = qos
        self.on_receive = on_receive  # called for each message, on the subscriber's thread
        self.port = port
        self.topic_filter = topic_filter
        self.timeout = timeout
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed = False
        self._subscriptions = 0  # successful SUBACKs so far, one per (re)connection
        self._started = False
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"subscriber-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @classmethod
    def on(cls, broker: Mosquitto, topic_filter: str, **kwargs: Any) -> Subscriber:
        """A started subscriber on ``broker``'s plain listener."""
        return cls(broker.host, broker.port, topic_filter, **kwargs).start()

    def start(self) -> Self:
        """Connect, start the network thread and wait until the subscription is active."""
        if not self._started:
            self._client.connect(self.host, self.port, keepalive=10)
            self._client.loop_start()
            self._started = True
        self.wait_subscribed()
        return self

    def stop(self) -> None:
        """Disconnect and end the network thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[Received]:
        """A copy of everything received so far, in order of arrival."""
        with self._cond:
            return list(self._messages)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    @property
    def subscriptions(self) -> int:
        """How many times the subscription became active (once per connection)."""
        with self._cond:
            return self._subscriptions

    def wait_subscribed(self, timeout: float | None = None, after: int = 0) -> None:
        """Block until the subscription is active, on a connection newer than ``after``.

        Pass ``subscriptions`` read before a broker restart to wait for the new one.
        """
        self._wait(
            lambda: self._subscribed and self._subscriptions > after,
            timeout,
            "no active subscription",
        )

    def wait_for(self, n: int, timeout: float | None = None) -> list[Received]:
        """Block until at least ``n`` messages arrived; all of them, or ``TimeoutError``."""
        self._wait(lambda: len(self._messages) >= n, timeout, f"fewer than {n} messages")
        return self.messages

    def wait_until(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float | None = None,
        what: str = "condition",
    ) -> list[Received]:
        """Block until ``predicate(messages)`` is true; the messages, or ``TimeoutError``."""
        self._wait(lambda: bool(predicate(self._messages)), timeout, what)
        return self.messages

    async def await_for(self, n: int, timeout: float | None = None) -> list[Received]:
        """``wait_for`` without blocking the running asyncio loop."""
        return await asyncio.to_thread(self.wait_for, n, timeout)

    async def await_until(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float | None = None,
        what: str = "condition",
    ) -> list[Received]:
        """``wait_until`` without blocking the running asyncio loop."""
        return await asyncio.to_thread(self.wait_until, predicate, timeout, what)

    def _wait(self, ready: Callable[[], bool], timeout: float | None, what: str) -> None:
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(ready, limit):
                last = [(m.topic, m.payload[:60]) for m in self._messages[-5:]]
                raise TimeoutError(
                    f"{what} on {self.topic_filter} after {limit} s; received "
                    f"{len(self._messages)} messages, the last ones: {last}"
                )

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            options = SubscribeOptions(qos=self.qos, retainAsPublished=True)
            client.subscribe(self.topic_filter, options=options)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._subscribed = not any(rc.is_failure for rc in reason_codes)
            self._subscriptions += self._subscribed
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._subscribed = False
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props: dict[str, Any] = {}
        if message.properties is not None:
            props = dict(message.properties.json())  # type: ignore[no-untyped-call]
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), int(message.qos), props
        )
        if self.on_receive is not None:
            try:
                self.on_receive(received)
            except Exception:  # a faulty callback must not stop the recording
                log.exception("subscriber on %s: on_receive failed", self.topic_filter)
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()
