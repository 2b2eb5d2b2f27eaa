"""The example central broker (deploy/broker/) against real Mosquitto and real TLS clients.

Each hub's certificate CN is its hub id; with the ACL from deploy/broker/acl a hub may
write only its own uplink topics and read only its own commands. The platform consumer
is the ACL's commented example, enabled here by removing the leading "#" of its lines.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import TlsConfig
from agent.devtools.broker import BrokerTls, Mosquitto, find_mosquitto, free_port
from tests.test_uplink import _issue, _make_ca

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
BROKER_DIR = ROOT / "deploy" / "broker"
WAIT = 20.0  # generous: every wait ends on an event, this only bounds a failure
NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # PUBACK "Success", "No matching subscribers"
HUB_A, HUB_B, CONSUMER = "h-a", "h-b", "platform-ingest"
UPLINK = ("status", "heartbeat", "alert", "reply")
CLIENT_AUTH = "extendedKeyUsage=clientAuth"


@dataclass(frozen=True)
class Pki:
    server: BrokerTls
    certs: dict[str, TlsConfig]  # by CN, all from the broker's CA
    forged: TlsConfig  # CN=h-a, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA with the broker's, two hubs' and the consumer's certificates."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it makes the test certificates")
    directory = tmp_path_factory.mktemp("broker-pki")
    ca = _make_ca(directory, "ca")
    _make_ca(directory, "rogue-ca")
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _issue(directory, "broker", "ca", "/CN=localhost", names)
    certs = {cn: _issue(directory, cn, "ca", f"/CN={cn}", CLIENT_AUTH)
             for cn in (HUB_A, HUB_B, CONSUMER)}  # fmt: skip
    forged = _issue(directory, "forged", "rogue-ca", f"/CN={HUB_A}", CLIENT_AUTH)
    return Pki(
        server=BrokerTls(ca, server.cert, server.key, require_certificate=True),
        certs=certs,
        forged=TlsConfig(ca=ca, cert=forged.cert, key=forged.key),
    )


def acl_with_consumer() -> str:
    """deploy/broker/acl with its commented platform consumer example enabled."""
    text = (BROKER_DIR / "acl").read_text(encoding="utf-8")
    enabled, count = re.subn(r"^#((?:user|topic) )", r"\1", text, flags=re.MULTILINE)
    assert f"user {CONSUMER}" in enabled and count > 1, "the consumer example is missing"
    return enabled


def need_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (looked in PATH and /usr/sbin)")


@pytest.fixture(scope="module")
def broker(pki: Pki) -> Iterator[Mosquitto]:
    """Mosquitto with the example ACL, on a TLS listener that takes the CN as user name."""
    need_mosquitto()
    with Mosquitto(
        tls=pki.server,
        acl=acl_with_consumer(),
        allow_anonymous=False,
        extra_conf="use_identity_as_username true\n",
    ) as running:
        yield running


class Client:
    """A paho client over TLS whose CONNACK, SUBACK, PUBACK and messages can be awaited."""

    def __init__(
        self, host: str, port: int, tls: TlsConfig | None, *,
        ca: Path | None = None, client_id: str | None = None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    ) -> None:  # fmt: skip
        self.host, self.port, self.protocol = host, port, protocol
        self._cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.disconnects = 0
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
        )
        cafile = ca if tls is None else tls.ca
        if cafile is not None:
            self.paho.tls_set(
                ca_certs=str(cafile),
                certfile=None if tls is None else str(tls.cert),
                keyfile=None if tls is None else str(tls.key),
            )
        self.paho.reconnect_delay_set(1, 2)
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_publish = self._on_publish
        self.paho.on_message = self._on_message

    def connect(self) -> Client:
        """Connect and wait for a successful CONNACK."""
        self.paho.connect(self.host, self.port, keepalive=10)
        self.paho.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        assert self.connack is not None and not self.connack.is_failure, self.connack
        return self

    def close(self) -> None:
        """Disconnect, end the network thread and let paho close its sockets."""
        self.paho.disconnect()
        self.release()

    def release(self) -> None:
        """Stop the thread and drop the callbacks, so paho is freed (and closes) at once."""
        self.paho.loop_stop()
        self.paho.on_connect = self.paho.on_disconnect = self.paho.on_message = None
        self.paho.on_subscribe = self.paho.on_publish = None

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code for ``topic`` (QoS 1 asked)."""
        _, mid = self.paho.subscribe(topic, qos=1)
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        (code,) = self.subacks[mid]
        return int(code.value)

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK's reason code (always 0 before MQTT 5)."""
        info = self.paho.publish(topic, payload, qos=1)
        self.wait(lambda: info.mid in self.pubacks, f"PUBACK for {topic}")
        return int(self.pubacks[info.mid].value)

    def wait_message(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Block until ``(topic, payload)`` arrived; everything received up to then."""
        self.wait(lambda: (topic, payload) in self.messages, f"{payload!r} on {topic}")
        with self._cond:
            return list(self.messages)

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, WAIT):
                pytest.fail(f"{what}: not within {WAIT} s; received {self.messages}")

    def _on_connect(self, c: Any, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_disconnect(self, c: Any, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _on_subscribe(
        self, c: Any, u: Any, mid: int, codes: list[ReasonCode], p: Properties | None
    ) -> None:
        with self._cond:
            self.subacks[mid] = codes
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        with self._cond:
            self.pubacks[mid] = rc
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()


@pytest.fixture
def connect(broker: Mosquitto, pki: Pki) -> Iterator[Callable[..., Client]]:
    """Connected TLS clients by certificate CN, closed after the test."""
    made: list[Client] = []

    def make(cn: str, **kwargs: Any) -> Client:
        assert broker.tls_port is not None
        client = Client(broker.host, broker.tls_port, pki.certs[cn], **kwargs)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.close()


def marker() -> bytes:
    return f"marker-{uuid.uuid4().hex}".encode()


def test_hub_publishes_under_its_own_id(connect: Callable[..., Client]) -> None:
    """Hub A's status, heartbeat, alert and reply reach the consumer's shared subscription."""
    consumer = connect(CONSUMER)
    for kind in UPLINK:
        assert consumer.subscribe(f"$share/ingest/leefsamen/+/{kind}") == 1  # granted QoS 1
    hub = connect(HUB_A)
    sent = [(f"leefsamen/{HUB_A}/{kind}", marker()) for kind in UPLINK]
    for topic, payload in sent:
        assert hub.publish(topic, payload) == 0
    for topic, payload in sent:
        consumer.wait_message(topic, payload)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_hub_cannot_publish_under_another_id(
    connect: Callable[..., Client], protocol: mqtt.MQTTProtocolVersion
) -> None:
    """Hub A writing hub B's topics (or its own cmd) is refused and never delivered."""
    consumer = connect(CONSUMER)
    for kind in UPLINK:
        assert consumer.subscribe(f"leefsamen/+/{kind}") == 1
    hub_b = connect(HUB_B)
    assert hub_b.subscribe(f"leefsamen/{HUB_B}/cmd/#") == 1
    hub_a = connect(HUB_A, protocol=protocol)
    forbidden = [f"leefsamen/{HUB_B}/{kind}" for kind in UPLINK] + [
        f"leefsamen/{HUB_B}/cmd/acknowledge",
        f"leefsamen/{HUB_A}/cmd/acknowledge",
        f"leefsamen/{HUB_A}/events",
        "leefsamen/other",
    ]
    for topic in forbidden:
        code = hub_a.publish(topic, b"forged")
        if protocol == mqtt.MQTTv5:
            assert code == NOT_AUTHORIZED, topic
    # Barriers: what the broker took after the refusals reaches each observer after them.
    own = marker()
    hub_a.publish(f"leefsamen/{HUB_A}/alert", own)
    seen = consumer.wait_message(f"leefsamen/{HUB_A}/alert", own)
    cmd = marker()
    assert connect(CONSUMER).publish(f"leefsamen/{HUB_B}/cmd/self-test", cmd) == 0
    seen_b = hub_b.wait_message(f"leefsamen/{HUB_B}/cmd/self-test", cmd)
    assert all(payload != b"forged" for _, payload in seen + seen_b)
    assert hub_a.disconnects == 0


def test_hub_cannot_read_other_hubs(connect: Callable[..., Client]) -> None:
    """Hub B's commands and uplink, the whole tree: refused or, in Mosquitto, never sent.

    Mosquitto's acl_file does not check a SUBSCRIBE (the SUBACK grants it); it checks
    "read" for every message it would deliver. Either way hub A gets nothing of hub B.
    """
    hub_a = connect(HUB_A)
    hub_b = connect(HUB_B)
    for topic in (
        f"leefsamen/{HUB_B}/cmd/#",
        f"leefsamen/{HUB_B}/cmd/acknowledge",
        "leefsamen/#",
        "leefsamen/+/cmd/#",
        "#",
        f"leefsamen/{HUB_B}/alert",
        f"$share/x/leefsamen/{HUB_B}/cmd/#",
    ):
        assert hub_a.subscribe(topic) in (1, NOT_AUTHORIZED), topic
    platform = connect(CONSUMER)
    assert platform.publish(f"leefsamen/{HUB_B}/cmd/acknowledge", b"for-b") == 0
    assert hub_b.publish(f"leefsamen/{HUB_B}/alert", b"from-b") == 0
    # Barrier: the broker routed both messages above before this one.
    own = marker()
    assert hub_a.subscribe(f"leefsamen/{HUB_A}/cmd/#") == 1
    assert platform.publish(f"leefsamen/{HUB_A}/cmd/acknowledge", own) == 0
    seen = hub_a.wait_message(f"leefsamen/{HUB_A}/cmd/acknowledge", own)
    # Several of hub A's filters match its own command; each may deliver a copy.
    assert set(seen) == {(f"leefsamen/{HUB_A}/cmd/acknowledge", own)}


def test_hub_receives_its_own_commands(connect: Callable[..., Client]) -> None:
    """Hub A subscribes to its cmd tree (granted QoS 1) and gets the platform's commands."""
    hub_a = connect(HUB_A)
    assert hub_a.subscribe(f"leefsamen/{HUB_A}/cmd/#") == 1
    platform = connect(CONSUMER)
    sent = [(f"leefsamen/{HUB_A}/cmd/{name}", marker()) for name in ("acknowledge", "mode")]
    for topic, payload in sent:
        assert platform.publish(topic, payload) == 0
    for topic, payload in sent:
        hub_a.wait_message(topic, payload)


def refused(host: str, port: int, tls: TlsConfig | None, ca: Path | None = None) -> None:
    """Fail the test unless the broker drops the client before any CONNACK.

    With TLS 1.2 the handshake itself fails; with TLS 1.3 the client finishes its side
    first and the broker's alert ends the connection right after.
    """
    client = Client(host, port, tls, ca=ca)
    try:
        client.paho.connect(host, port, keepalive=10)
    except (ssl.SSLError, OSError):
        client.release()
        return
    client.paho.loop_start()
    try:
        client.wait(lambda: client.connack is not None or client.disconnects > 0, "refusal")
        assert client.connack is None, f"the broker answered CONNECT: {client.connack}"
    finally:
        client.release()


@pytest.mark.parametrize("case", ["no certificate", "certificate from another CA", "plain"])
def test_client_without_a_valid_certificate_is_refused(
    broker: Mosquitto, pki: Pki, case: str
) -> None:
    """No certificate, a CN=h-a certificate from another CA, or no TLS: dropped at TLS."""
    assert broker.tls_port is not None
    ca = None if case == "plain" else pki.server.cafile
    refused(broker.host, broker.tls_port, pki.forged if "another" in case else None, ca=ca)


# -- The example mosquitto.conf ------------------------------------------------------


def example_conf(pki: Pki, port: int, state: Path) -> str:
    """deploy/broker/mosquitto.conf with its placeholders pointed at the test's files."""
    text = (BROKER_DIR / "mosquitto.conf").read_text(encoding="utf-8")
    replacements = {
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "/etc/mosquitto/certs/ca.crt": str(pki.server.cafile),
        "/etc/mosquitto/certs/broker.crt": str(pki.server.certfile),
        "/etc/mosquitto/certs/broker.key": str(pki.server.keyfile),
        "/etc/mosquitto/acl": str(BROKER_DIR / "acl"),
        "/var/lib/mosquitto/": f"{state}/",
        "/var/log/mosquitto/mosquitto.log": str(state / "mosquitto.log"),
    }
    for placeholder, value in replacements.items():
        assert text.count(placeholder) == 1, f"{placeholder!r} once in the example"
        text = text.replace(placeholder, value)
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "/etc/" in line or "/var/" in line], settings
    # Started as root, mosquitto would become user "mosquitto", who cannot read tmp files.
    return text + f"user {pwd.getpwuid(os.getuid()).pw_name}\n"


def wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        if proc.poll() is not None:
            log_text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"mosquitto exited ({proc.returncode}) with the example:\n{log_text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mosquitto did not listen on {port} within {WAIT} s")
        time.sleep(0.02)


def test_example_mosquitto_conf_runs(pki: Pki, tmp_path: Path) -> None:
    """Mosquitto starts on the example; TLS, CN user names, the ACL, persistence work."""
    need_mosquitto()
    binary = find_mosquitto()
    assert binary is not None
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(example_conf(pki, port, tmp_path), encoding="utf-8")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    clients: list[Client] = []
    try:
        wait_listening(proc, port, tmp_path / "mosquitto.log")
        hub_b = Client("127.0.0.1", port, pki.certs[HUB_B], client_id=HUB_B)
        hub_a = Client("127.0.0.1", port, pki.certs[HUB_A], client_id=HUB_B)
        clients += [hub_b.connect(), hub_a.connect()]
        assert hub_a.subscribe(f"leefsamen/{HUB_A}/cmd/#") == 1
        assert hub_a.publish(f"leefsamen/{HUB_A}/alert", b"mine") in ACCEPTED
        assert hub_a.publish(f"leefsamen/{HUB_B}/alert", b"forged") == NOT_AUTHORIZED
        # Hub A asked for hub B's client id; it got its CN instead, so B stays connected.
        assert hub_b.publish(f"leefsamen/{HUB_B}/status", b"online") in ACCEPTED
        assert hub_b.disconnects == 0
        refused("127.0.0.1", port, None, ca=pki.server.cafile)
    finally:
        for client in clients:
            client.close()
        proc.terminate()
        output, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, output
    assert (tmp_path / "mosquitto.db").is_file()  # persistence wrote its state on stop
