"""``hub doctor``: is this hub set up to work? One check after another, each with a fix.

For the installer in the hallway and the centre's support line. Every check ends as PASS,
WARN (works, but look), FAIL (does not work) or SKIP (cannot be checked here, and why),
with a one-line finding and, when not PASS, a hint a person can act on:

- ``config``: the configuration is valid (``load_config``); when it is not, the checks
  that need it are skipped;
- ``clock``: the wall clock is synchronised, as the agent decides it (``LiveClock``);
- ``tls.files``, ``tls.key``, ``tls.identity``, ``tls.chain``, ``tls.dates``: the CA,
  certificate and key of ``[uplink.tls]`` are readable (the key by nobody else), parse,
  belong together, name this hub (CN = hub id), come from the CA, and are in date;
  dates are judged only against a synchronised clock;
- ``broker.dns``, ``broker.tcp``, ``broker.tls``, ``broker.credentials``: the centre's
  broker is found, answers, proves who it is, and accepts the hub. The broker identifies
  a hub by its certificate's CN; with ``use_username_as_clientid`` (deploy/broker/) any
  connection with that certificate takes the hub's session over, so while the running
  agent is connected its connection is the proof and no second session is opened;
  otherwise one MQTT CONNECT as ``<hub>-doctor`` with a clean start, then DISCONNECT;
- ``disk``: free space where the outbox, the event store and the routine live;
- ``devices.<driver>``: each driver's devices are there (the Zigbee2MQTT bridge and its
  paired devices, the radar's serial port, the GPIO chips, the Bluetooth adapter);
- ``service``, ``watchdog``: what systemd says of ``leefsamen-hub.service``;
- ``agent``: the running agent answers on its local socket and reaches the centre.

Each check has its own time limit (``--timeout``), so a broker that is down ends the
run within seconds. Nothing secret is ever printed: no key, no password. The exit code
is 0 when nothing failed (warnings allowed), 3 when a check failed, 2 when the
configuration cannot be read at all or the command line is wrong.

The operating system is reached through a few names that tests may replace:
``agent.clock.kernel_says_synced``, ``DEV``, ``BLUETOOTH``, ``BOARD_MODEL``,
``SERVICE_USER``, and the ``systemctl`` found on ``PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import ipaddress
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    from cryptography import x509
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode
    from rich.console import RenderableType

    from agent.config import Config, DriverConfig, MqttUplinkConfig, TlsConfig

DEFAULT_CONFIG: Final = Path("/etc/leefsamen-hub/hub.toml")
DEFAULT_TIMEOUT: Final = 4.0  # seconds, per check
SERVICE: Final = "leefsamen-hub.service"
DISK_WARN_MB: Final = 200
DISK_FAIL_MB: Final = 20
EXPIRY_WARN_DAYS: Final = 30
DOCTOR_SUFFIX: Final = "-doctor"  # the client id of the test connection: <hub>-doctor

EXIT_OK: Final = 0
EXIT_BAD_INPUT: Final = 2
EXIT_FAILING: Final = 3

# The operating system, as tests may replace it.
SERVICE_USER = "leefsamen-hub"
DEV = Path("/dev")
BLUETOOTH = Path("/sys/class/bluetooth")
BOARD_MODEL = Path("/proc/device-tree/model")

_JOURNAL = "journalctl -u leefsamen-hub -b shows why"


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's outcome: a finding, and what to do about it when it is not a pass."""

    check: str
    status: Status
    finding: str
    hint: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "status": self.status.value,
            "finding": self.finding,
            "hint": self.hint,
        }


def passed(check: str, finding: str) -> Result:
    return Result(check, Status.PASS, finding)


def warn(check: str, finding: str, hint: str) -> Result:
    return Result(check, Status.WARN, finding, hint)


def fail(check: str, finding: str, hint: str) -> Result:
    return Result(check, Status.FAIL, finding, hint)


def skip(check: str, reason: str, hint: str | None = None) -> Result:
    return Result(check, Status.SKIP, reason, hint)


def exit_code(results: list[Result]) -> int:
    """0 when nothing failed (warnings and skips allowed), 3 when something did."""
    return EXIT_FAILING if any(r.status is Status.FAIL for r in results) else EXIT_OK


# ---- small helpers ------------------------------------------------------------------------
def _mb(n_bytes: float) -> str:
    mb = n_bytes / (1024 * 1024)
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    from agent.units import format_duration

    return f"{seconds:.0f} s" if seconds < 60 else format_duration(seconds)


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def _user_can(path: Path, user: str, mode: int) -> bool | None:
    """Whether ``user`` may open ``path`` for ``mode`` (os.R_OK | os.W_OK) by its bits;
    None when that user does not exist on this machine."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    st = path.stat()
    if pw.pw_uid == 0:
        return True
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_uid == pw.pw_uid:
        shift = 6
    elif st.st_gid in groups:
        shift = 3
    else:
        shift = 0
    bits = (st.st_mode >> shift) & 0o7
    want = (4 if mode & os.R_OK else 0) | (2 if mode & os.W_OK else 0)
    return bits & want == want


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _device_access(check: str, path: Path, what: str, group_hint: str) -> Result:
    """A present device: can the service user open it for reading and writing?"""
    st = path.stat()
    group = _group_name(st.st_gid)
    can = _user_can(path, SERVICE_USER, os.R_OK | os.W_OK)
    if can is None:
        if os.access(path, os.R_OK | os.W_OK):
            return passed(
                check,
                f"{what} {path} is there (group {group}); the service user {SERVICE_USER} "
                "does not exist here, but this user can open it",
            )
        return warn(
            check,
            f"{what} {path} is there (group {group}), but the service user {SERVICE_USER} "
            "does not exist here and this user cannot open it",
            f"install the hub (deploy/install.sh) so that {SERVICE_USER} is in group {group_hint}",
        )
    if can:
        return passed(check, f"{what} {path} is there; {SERVICE_USER} can open it ({group})")
    return fail(
        check,
        f"{what} {path} is there, but {SERVICE_USER} may not open it "
        f"(owner {st.st_uid}, group {group}, mode {stat.S_IMODE(st.st_mode):04o})",
        f"{SERVICE_USER} must be in group {group_hint} (deploy/install.sh does that) and the "
        "device must belong to it (the udev rule in /etc/udev/rules.d/)",
    )


# ---- MQTT over a socket the doctor opened ------------------------------------------------
class _Session:
    """One short MQTT session over a connected socket, driven by paho's own loop.

    Blocking, with deadlines: a doctor waits for nothing longer than it was told. What paho
    logs as an error (a TLS alert from the broker, say) is kept in ``errors``.
    """

    def __init__(
        self,
        sock: socket.socket,
        client_id: str,
        *,
        v5: bool,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        from paho.mqtt.enums import MQTTProtocolVersion

        from agent.pahosocket import PreparedSocketClient

        protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
        self.v5 = v5
        self.client = PreparedSocketClient(client_id, protocol)
        self.client.use_socket(sock)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_log = self._on_log
        self.connack: ReasonCode | None = None
        self.closed = False
        self.errors: list[str] = []
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: dict[str, bytes] = {}  # the last payload on each topic

    def connect(self, host: str, port: int, deadline: float) -> ReasonCode | None:
        """Send CONNECT (clean, no Will, nothing kept after it) and wait for CONNACK."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self.client.connect_async(host, port, keepalive=30, clean_start=True, properties=props)
        else:
            self.client.connect_async(host, port, keepalive=30)
        self.client.reconnect()
        self.wait(lambda: self.connack is not None or self.closed, deadline)
        return self.connack

    def subscribe(self, topics: list[str], deadline: float) -> bool:
        """Subscribe at QoS 0; True once the broker granted it."""
        _rc, mid = self.client.subscribe([(t, 0) for t in topics])
        if mid is None:
            return False
        return self.wait(lambda: mid in self.subacks or self.closed, deadline) and not any(
            code.is_failure for code in self.subacks.get(mid, [])
        )

    def settle(self, deadline: float) -> None:
        """Wait until the retained messages of the subscriptions so far have arrived.

        A broker answers one client's packets in order, and queues a subscription's
        retained messages before it reads the next packet: once a second subscription
        (to a topic nobody uses) is granted, the first one's messages are in.
        """
        self.subscribe([f"leefsamen-doctor/{uuid.uuid4().hex}"], deadline)

    def wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        from paho.mqtt.enums import MQTTErrorCode

        while not ready():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return ready()
            rc = self.client.loop(timeout=min(0.2, left))
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self.closed = True
        return True

    def close(self, deadline: float) -> None:
        """DISCONNECT (normal: no Will is published) and close the socket."""
        if not self.closed and self.connack is not None and not self.connack.is_failure:
            self.client.disconnect()
            self.wait(lambda: self.closed, deadline)
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _on_connect(
        self, client: Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connack = reason

    def _on_disconnect(
        self, client: Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.closed = True

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        codes: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        self.subacks[mid] = codes

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        with contextlib.suppress(UnicodeDecodeError):
            self.messages[message.topic] = bytes(message.payload)

    def _on_log(self, client: Client, userdata: Any, level: int, text: str) -> None:
        from paho.mqtt.client import MQTT_LOG_ERR

        if level == MQTT_LOG_ERR:
            self.errors.append(text)


def _resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo with a time limit (it has none of its own): ``TimeoutError`` past it."""
    found: list[tuple[Any, ...]] = []
    errors: list[OSError] = []

    def work() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as err:
            errors.append(err)

    worker = threading.Thread(target=work, name="doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer from DNS within {timeout:.0f} s")
    if errors:
        raise errors[0]
    return found


def _numeric(host: str, port: int) -> list[tuple[Any, ...]]:
    """The address of a numeric host, without asking DNS."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


def _connect(infos: list[tuple[Any, ...]], timeout: float) -> socket.socket:
    """A TCP connection to the first address that takes it; the most telling error else."""
    error: OSError = OSError("no address")
    for family, kind, proto, _name, address in infos[:4]:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as err:
            sock.close()
            if not isinstance(error, ConnectionRefusedError | TimeoutError):
                error = err
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


def _describe_tcp_error(err: OSError, where: str, timeout: float) -> tuple[str, str]:
    """The finding and hint for a TCP connection that failed."""
    if isinstance(err, ConnectionRefusedError):
        return (
            f"connection refused at {where}: nothing listens there",
            "the broker is down or the port is wrong: check [uplink] port, then ask the "
            "centre whether its broker runs",
        )
    if isinstance(err, TimeoutError):
        return (
            f"no answer from {where} within {timeout:.0f} s",
            "a firewall drops the connection or the broker is down: check the network "
            "(is port open to the internet?) and ask the centre",
        )
    return (
        f"cannot connect to {where}: {err.strerror or err}",
        "is the hub online? check Wi-Fi or the network cable (ip route shows a default route)",
    )


# the TLS alerts with which a broker refuses the hub's certificate, and what they mean
_CERT_REFUSALS: Final = {
    "UNKNOWN_CA": "it does not trust the CA that signed it",
    "BAD_CERTIFICATE": "it does not accept it",
    "CERTIFICATE_UNKNOWN": "it does not accept it",
    "CERTIFICATE_EXPIRED": "it has expired",
    "CERTIFICATE_REVOKED": "it has been revoked",
    "CERTIFICATE_REQUIRED": "it wants one and got none",
    "UNSUPPORTED_CERTIFICATE": "it cannot use it",
    "ACCESS_DENIED": "access is denied",
    "DECRYPT_ERROR": "the key does not prove the certificate",
}
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def _cert_refusal(reason: str | None) -> str | None:
    """Why the broker refused the hub's certificate, from a TLS alert; None if not that."""
    if not reason or "ALERT" not in reason:
        return None
    for key, meaning in _CERT_REFUSALS.items():
        if key in reason:
            return f"{meaning} ({reason.lower().replace('_', ' ')})"
    return None


_CERT_HINT: Final = (
    "the hub needs a certificate signed by the CA the centre's broker trusts, for its own "
    "hub id (see tls.chain): provision it again (hub provision), or call the centre"
)

# X509_V_ERR_* codes OpenSSL gives for a broker certificate it does not accept
_NOT_YET_VALID: Final = 9
_EXPIRED: Final = 10
_HOST_MISMATCH: Final = frozenset({62, 64})
_UNTRUSTED: Final = frozenset({2, 18, 19, 20, 21})


# ---- the checks ----------------------------------------------------------------------------
@dataclass
class Doctor:
    """Runs the checks for one valid configuration; ``run`` returns them in order."""

    config: Config
    timeout: float = DEFAULT_TIMEOUT
    synced: bool = False
    tls_usable: bool = False
    agent: dict[str, Any] | None = None
    cert_refused: str | None = None  # the broker refused the hub's certificate: why

    def run(self) -> list[Result]:
        # The agent first: whether it is connected decides how credentials are checked.
        agent = self.check_agent()
        clock = self.check_clock()
        tls = self.check_tls_files()
        broker = self.check_broker()
        disk = self.check_disk()
        devices = self.check_devices()
        service = check_service(self.timeout)
        return [clock, *tls, *broker, disk, *devices, *service, agent]

    # -- clock --------------------------------------------------------------------------
    def check_clock(self) -> Result:
        from agent import clock

        forced = {"auto": None, "synced": True, "unsynced": False}[self.config.hub.wall_clock]
        self.synced = clock.LiveClock(self.config.zone, forced).wall_synced()
        now = datetime.now(self.config.zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        setting = f"hub.wall_clock = {self.config.hub.wall_clock!r}"
        if forced:
            return passed("clock", f"{now}; trusted without asking the kernel ({setting})")
        if forced is not None:
            return warn(
                "clock",
                f"{now}; never trusted ({setting}): alerts carry no time of day",
                'remove hub.wall_clock (or set it to "auto") so that NTP decides',
            )
        if self.synced:
            return passed("clock", f"synchronised: {now}")
        return warn(
            "clock",
            f"NOT synchronised yet: the clock says {now}",
            "the hub sets its clock by NTP once it is online: check the network; "
            "timedatectl timesync-status shows the NTP server. Until then alerts carry no "
            "time of day and certificate dates cannot be judged",
        )

    # -- TLS files ----------------------------------------------------------------------
    def check_tls_files(self) -> list[Result]:
        from agent.config import MemoryUplinkConfig

        uplink = self.config.uplink
        if isinstance(uplink, MemoryUplinkConfig):
            return [skip("tls", 'the uplink keeps messages in memory (type = "memory")')]
        if uplink.tls is None:
            return [
                warn(
                    "tls",
                    "no [uplink.tls]: the connection to the centre is not encrypted and the "
                    "hub is not identified by a certificate",
                    "add [uplink.tls] ca, cert and key (hub provision puts them in "
                    "/etc/leefsamen-hub/)",
                )
            ]
        return _TlsFiles(uplink.tls, self.config.hub.id, self.synced).check(self)

    # -- the centre's broker ------------------------------------------------------------
    def check_broker(self) -> list[Result]:
        from agent.config import MemoryUplinkConfig

        uplink = self.config.uplink
        if isinstance(uplink, MemoryUplinkConfig):
            return [skip("broker", 'the uplink keeps messages in memory (type = "memory")')]
        host, port = uplink.host, uplink.port
        dns, infos = self._dns(host, port)
        if not infos:
            unreachable = "the broker's name cannot be looked up"
            return [
                dns,
                skip("broker.tcp", unreachable),
                skip("broker.tls", unreachable),
                skip("broker.credentials", unreachable),
            ]
        where = f"{host}:{port}"
        try:
            sock = _connect(infos, self.timeout)
        except OSError as err:
            finding, hint = _describe_tcp_error(err, where, self.timeout)
            down = "the broker cannot be reached"
            return [
                dns,
                fail("broker.tcp", finding, hint),
                skip("broker.tls", down),
                skip("broker.credentials", down),
            ]
        results = [dns, passed("broker.tcp", f"{where} accepts connections")]
        try:
            if uplink.tls is None:
                results.append(skip("broker.tls", "no [uplink.tls]: plain MQTT"))
                results.append(self._credentials(uplink, sock))
                return results
            if not self.tls_usable:
                sock.close()
                unusable = "the TLS files cannot be used (see tls.*)"
                return [
                    *results,
                    skip("broker.tls", unusable),
                    skip("broker.credentials", unusable),
                ]
            handshake, tls_sock = self._handshake(uplink, sock)
            results.append(handshake)
            if tls_sock is None:
                if self.cert_refused is None:
                    results.append(skip("broker.credentials", "no TLS connection"))
                    return results
                results.append(self._credentials(uplink, None))
                return results
            results.append(self._credentials(uplink, tls_sock))
            return results
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _dns(self, host: str, port: int) -> tuple[Result, list[tuple[Any, ...]]]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            infos = [(family, kind, proto, "", address)
                     for family, kind, proto, _, address in _numeric(host, port)]  # fmt: skip
            return passed("broker.dns", f"{host} is an address: no lookup needed"), infos
        try:
            infos = _resolve(host, port, self.timeout)
        except TimeoutError as err:
            return fail(
                "broker.dns",
                f"{host}: {err}",
                "check the network and its DNS server (resolvectl status, /etc/resolv.conf)",
            ), []
        except socket.gaierror as err:
            if err.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                return fail(
                    "broker.dns",
                    f"the name {host} does not exist ({err.strerror})",
                    "check [uplink] host for spelling: it is the name the centre gave",
                ), []
            return fail(
                "broker.dns",
                f"{host} cannot be looked up now ({err.strerror})",
                "no DNS server answers: is the hub online? check Wi-Fi and resolvectl status",
            ), []
        except OSError as err:
            return fail("broker.dns", f"{host}: {err}", "check [uplink] host"), []
        addresses = sorted({str(info[4][0]) for info in infos})
        return passed("broker.dns", f"{host} is {', '.join(addresses[:3])}"), infos

    def _handshake(
        self, uplink: MqttUplinkConfig, sock: socket.socket
    ) -> tuple[Result, ssl.SSLSocket | None]:
        from agent.uplink import _tls_context

        assert uplink.tls is not None
        where = f"{uplink.host}:{uplink.port}"
        try:
            context = _tls_context(uplink.tls)
        except (OSError, ssl.SSLError) as err:
            return fail("broker.tls", f"the TLS files cannot be loaded: {err}", "see tls.*"), None
        sock.settimeout(self.timeout)
        try:
            tls_sock = context.wrap_socket(sock, server_hostname=uplink.host)
        except ssl.SSLCertVerificationError as err:
            return self._untrusted(err, uplink.host), None
        except ssl.SSLError as err:
            refusal = _cert_refusal(err.reason)
            if refusal is not None:
                self.cert_refused = refusal
                return passed(
                    "broker.tls",
                    "the broker's certificate is trusted; it refused the hub's "
                    "(see broker.credentials)",
                ), None
            return fail(
                "broker.tls",
                f"the TLS handshake with {where} failed ({err.reason or err})",
                f"does port {uplink.port} speak TLS? (8883 is MQTT over TLS, 1883 plain MQTT)",
            ), None
        except TimeoutError:
            return fail(
                "broker.tls",
                f"no TLS answer from {where} within {self.timeout:.0f} s",
                f"does port {uplink.port} speak TLS? ask the centre whether its broker is well",
            ), None
        except OSError as err:
            return fail(
                "broker.tls",
                f"the broker closed the connection during TLS ({err.strerror or err})",
                "ask the centre whether the broker accepts this hub",
            ), None
        peer: dict[str, Any] = dict(tls_sock.getpeercert() or {})
        names = [str(pair[1]) for rdn in peer.get("subject", ()) for pair in rdn
                 if pair[0] == "commonName"]  # fmt: skip
        until = peer.get("notAfter", "?")
        return passed(
            "broker.tls",
            f"the broker ({', '.join(names) or '?'}) is trusted by tls.ca, valid until "
            f"{until}; {tls_sock.version()}",
        ), tls_sock

    def _untrusted(self, err: ssl.SSLCertVerificationError, host: str) -> Result:
        code, why = err.verify_code, err.verify_message
        if code in (_NOT_YET_VALID, _EXPIRED) and not self.synced:
            looks = "not yet valid" if code == _NOT_YET_VALID else "expired"
            return fail(
                "broker.tls",
                f"the clock is not synchronised yet: the broker's certificate looks {looks}",
                "it will work once NTP has set the clock: check the network "
                "(timedatectl timesync-status)",
            )
        if code == _EXPIRED:
            return fail(
                "broker.tls",
                f"the broker's certificate has expired ({why})",
                "the centre must renew its broker's certificate: call the centre",
            )
        if code == _NOT_YET_VALID:
            return fail(
                "broker.tls",
                f"the broker's certificate is not valid yet ({why})",
                "the clock says it is synchronised: check the date (timedatectl), then "
                "call the centre",
            )
        if code in _HOST_MISMATCH:
            return fail(
                "broker.tls",
                f"the broker's certificate is not for {host} ({why})",
                "[uplink] host must be the name the centre gave (the one in its certificate)",
            )
        if code in _UNTRUSTED:
            return fail(
                "broker.tls",
                f"the broker is not trusted: its certificate is not signed by the CA in "
                f"tls.ca ({why})",
                "install the centre's CA certificate as tls.ca (hub provision), or check "
                "[uplink] host: is it the centre's broker?",
            )
        return fail(
            "broker.tls",
            f"the broker's certificate is not accepted ({why})",
            "check tls.ca and [uplink] host; call the centre",
        )

    def _credentials(self, uplink: MqttUplinkConfig, sock: socket.socket | None) -> Result:
        check = "broker.credentials"
        if self.cert_refused is not None:
            return self._credentials_refused_cert(self.cert_refused)
        assert sock is not None
        if self.agent is not None and self.agent.get("uplink", {}).get("connected"):
            sock.close()
            return passed(
                check,
                "accepted: the running agent is connected with them (no second session "
                "was opened: the broker would hand it the agent's session)",
            )
        client_id = (uplink.client_id or self.config.hub.id) + DOCTOR_SUFFIX
        deadline = time.monotonic() + self.timeout
        session = _Session(sock, client_id, v5=True)
        try:
            reason = session.connect(uplink.host, uplink.port, deadline)
        except OSError as err:
            reason = None
            session.errors.append(str(err))
        try:
            return self._judge_connack(reason, session)
        finally:
            session.close(time.monotonic() + min(1.0, self.timeout))

    def _judge_connack(self, reason: ReasonCode | None, session: _Session) -> Result:
        check = "broker.credentials"
        if reason is None:
            said = " ".join(session.errors)
            found = _SSL_REASON.search(said)
            refusal = _cert_refusal(found.group(1) if found else None)
            if refusal is not None:
                self.cert_refused = refusal
                return self._credentials_refused_cert(refusal)
            if session.closed and self.config.uplink.type == "mqtt" and self.config.uplink.tls:
                return fail(
                    check,
                    "the broker closed the connection before accepting it: it does not "
                    "accept the hub's certificate",
                    _CERT_HINT,
                )
            if session.closed:
                return fail(
                    check,
                    "the broker closed the connection before accepting it",
                    "it does not accept this client: the centre's broker wants the hub's "
                    "certificate ([uplink.tls])",
                )
            return fail(
                check,
                f"no answer to CONNECT within {self.timeout:.0f} s",
                "the broker is overloaded or stuck: call the centre",
            )
        if reason.is_failure:
            return fail(
                check,
                f"refused by the broker: {reason} (reason code 0x{reason.value:02X})",
                "the broker does not accept this hub's identity: ask the centre to register "
                f"hub {self.config.hub.id} (its certificate's CN)",
            )
        return passed(check, f"accepted (CONNACK {reason}), then disconnected cleanly")

    def _credentials_refused_cert(self, refusal: str) -> Result:
        return fail(
            "broker.credentials",
            f"the broker does not accept the hub's certificate: {refusal}",
            _CERT_HINT,
        )

    # -- disk ---------------------------------------------------------------------------
    def check_disk(self) -> Result:
        places = {
            "outbox": self.config.outbox.path,
            "store": self.config.store.path,
            "routine": self.config.detection.routine.path,
        }
        kept = {what: path for what, path in places.items() if path is not None}
        if not kept:
            return warn(
                "disk",
                "nothing is kept on disk: without an [outbox] path, alerts waiting for the "
                "centre are lost at a restart",
                'set [outbox] path = "/var/lib/leefsamen-hub/outbox.db"',
            )
        by_device: dict[int, tuple[Path, list[str], int]] = {}
        for what, path in kept.items():
            where = path.parent
            while not where.exists() and where != where.parent:
                where = where.parent
            try:
                device = where.stat().st_dev
                free = shutil.disk_usage(where).free
            except OSError as err:
                return fail("disk", f"cannot look at {where}: {err.strerror}", "run with sudo")
            _, names, _ = by_device.get(device, (where, [], free))
            by_device[device] = (where, [*names, what], free)
        where, names, free = min(by_device.values(), key=lambda item: item[2])
        thresholds = f"warn below {DISK_WARN_MB} MB, fail below {DISK_FAIL_MB} MB"
        finding = f"{_mb(free)} free at {where} ({', '.join(names)}); {thresholds}"
        hint = (
            "free space on the SD card: sudo journalctl --vacuum-size=50M, remove old files "
            "in /var/log and /home, or use a larger card"
        )
        if free < DISK_FAIL_MB * 1024 * 1024:
            return fail("disk", finding, hint)
        if free < DISK_WARN_MB * 1024 * 1024:
            return warn("disk", finding, hint)
        return passed("disk", finding)

    # -- devices ------------------------------------------------------------------------
    def check_devices(self) -> list[Result]:
        drivers = self.config.drivers
        if not drivers:
            return [
                warn(
                    "devices",
                    "no drivers configured: no sensor can report",
                    "add [[drivers]] tables for the sensors of the home (docs/drivers.md)",
                )
            ]
        results = []
        for index, cfg in enumerate(drivers):
            name = cfg.name or f"{cfg.type}-{index}"
            results.append(self._driver_devices(f"devices.{name}", index, cfg))
        return results

    def _driver_devices(self, check: str, index: int, cfg: DriverConfig) -> Result:
        if cfg.type == "radar":
            return _radar(check, str(getattr(cfg, "port", "")))
        if cfg.type == "gpio":
            return _gpio(check, str(getattr(cfg, "pin_factory", "auto")))
        if cfg.type == "bthome":
            return _bluetooth(check, getattr(cfg, "adapter", None))
        if cfg.type == "zigbee2mqtt":
            return _Zigbee(self.config, cfg, self.timeout).check(check)
        if cfg.type == "replay":
            path = Path(getattr(cfg, "path", ""))
            if path.is_file():
                return passed(check, f"replays {path}: no devices")
            return fail(check, f"the trace {path} is not there", f"check drivers[{index}].path")
        return skip(check, f"no check for driver type {cfg.type!r}")

    # -- the running agent --------------------------------------------------------------
    def check_agent(self) -> Result:
        from agent.check import CheckError, snapshots

        path = self.config.local.socket
        if path is None:
            return warn(
                "agent",
                "[local] socket is not set: hub check, hub status and this check cannot "
                "ask the agent",
                'set [local] socket = "/run/leefsamen-hub/hub.sock" and restart the agent',
            )
        stream = cast(Generator[dict[str, Any]], snapshots(path, timeout=self.timeout))
        try:
            snap = next(stream, None)
        except CheckError as err:
            return fail("agent", str(err), "systemctl status leefsamen-hub; " + _JOURNAL)
        finally:
            stream.close()
        if snap is None:
            return fail("agent", f"the agent at {path} closed the connection at once", _JOURNAL)
        self.agent = snap
        uplink = snap.get("uplink", {})
        up = snap.get("uptime_s")
        about = f"running (v{snap.get('version', '?')}"
        about += f", up {_ago(float(up))})" if isinstance(up, int | float) else ")"
        waiting = uplink.get("depth", 0)
        if not uplink.get("connected"):
            oldest = uplink.get("oldest_s")
            since = f", the oldest {_ago(float(oldest))} old" if oldest is not None else ""
            return fail(
                "agent",
                f"{about}, but NOT connected to the centre ({waiting} waiting{since})",
                "see the broker.* checks; the agent keeps trying by itself",
            )
        troubled = [d for d in snap.get("drivers", []) if d.get("state") != "running"]
        if troubled:
            said = ", ".join(
                f"{d.get('name')} {d.get('state')}"
                + (f" ({str(d['last_error'])[:60]})" if d.get("last_error") else "")
                for d in troubled
            )
            return warn(
                "agent",
                f"{about}, connected to the centre; driver trouble: {said}",
                "see the devices.* checks; " + _JOURNAL,
            )
        return passed("agent", f"{about}, connected to the centre, {waiting} waiting")


# ---- TLS files ------------------------------------------------------------------------------
@dataclass
class _TlsFiles:
    """The checks of ``[uplink.tls]``: files, the pair, the identity, the chain, dates."""

    tls: TlsConfig
    hub: str
    synced: bool

    def check(self, doctor: Doctor) -> list[Result]:
        loaded = self._load()
        if isinstance(loaded, Result):
            bad = "the TLS files cannot be used (see tls.files)"
            return [
                loaded,
                skip("tls.key", bad),
                skip("tls.identity", bad),
                skip("tls.chain", bad),
                skip("tls.dates", bad),
            ]
        files, cas, chain, key = loaded
        pair = self._pair(chain[0], key)
        doctor.tls_usable = pair.status is Status.PASS
        return [
            files,
            pair,
            self._identity(chain[0]),
            self._chain(chain, cas),
            self._dates(chain[0], cas),
        ]

    def _load(
        self,
    ) -> Result | tuple[Result, list[x509.Certificate], list[x509.Certificate], Any]:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        texts: dict[str, bytes] = {}
        for label, path in (("tls.ca", self.tls.ca), ("tls.cert", self.tls.cert),
                            ("tls.key", self.tls.key)):  # fmt: skip
            try:
                texts[label] = path.read_bytes()
            except FileNotFoundError:
                return fail(
                    "tls.files",
                    f"{label}: {path} does not exist",
                    "provision the hub (hub provision --from /boot/firmware/leefsamen.toml), "
                    "or correct the path in [uplink.tls]",
                )
            except PermissionError:
                return fail(
                    "tls.files",
                    f"{label}: not allowed to read {path} as this user",
                    "run the doctor with sudo",
                )
            except OSError as err:
                return fail(
                    "tls.files",
                    f"{label}: cannot read {path}: {err.strerror}",
                    "check the path in [uplink.tls] and the SD card (dmesg)",
                )
        try:
            cas = x509.load_pem_x509_certificates(texts["tls.ca"])
        except ValueError:
            return fail(
                "tls.files",
                f"tls.ca: {self.tls.ca} holds no PEM certificate",
                "tls.ca is the centre's CA certificate (-----BEGIN CERTIFICATE-----)",
            )
        try:
            chain = x509.load_pem_x509_certificates(texts["tls.cert"])
        except ValueError:
            return fail(
                "tls.files",
                f"tls.cert: {self.tls.cert} holds no PEM certificate",
                "tls.cert is the hub's certificate (-----BEGIN CERTIFICATE-----)",
            )
        try:
            key = serialization.load_pem_private_key(texts["tls.key"], password=None)
        except TypeError:
            return fail(
                "tls.files",
                f"tls.key: {self.tls.key} is protected by a passphrase",
                "the hub starts unattended: it needs the key without a passphrase "
                "(openssl pkey -in KEY -out KEY.new), kept with mode 0600",
            )
        except (ValueError, UnsupportedAlgorithm):
            return fail(
                "tls.files",
                f"tls.key: {self.tls.key} holds no private key this hub can read",
                "tls.key is the hub's private key in PEM (-----BEGIN PRIVATE KEY-----)",
            )
        mode = stat.S_IMODE(self.tls.key.stat().st_mode)
        if mode & 0o044:
            files = warn(
                "tls.files",
                f"tls.key {self.tls.key} can be read by others (mode {mode:04o})",
                f"chmod 600 {self.tls.key}; chown {SERVICE_USER} {self.tls.key}",
            )
        else:
            files = passed(
                "tls.files",
                f"CA, certificate and key read; the key is private (mode {mode:04o})",
            )
        return files, cas, chain, key

    def _pair(self, cert: x509.Certificate, key: Any) -> Result:
        from cryptography.hazmat.primitives import serialization

        from agent.uplink import _tls_context

        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            return fail(
                "tls.key",
                f"tls.key does not belong to tls.cert ({self.tls.key}, {self.tls.cert})",
                "the key and the certificate must be made together: provision the hub again",
            )
        try:
            _tls_context(self.tls)
        except (OSError, ssl.SSLError) as err:
            return fail(
                "tls.key",
                f"OpenSSL refuses the files: {getattr(err, 'reason', None) or err}",
                "provision the hub again",
            )
        return passed("tls.key", "the key belongs to the certificate")

    def _identity(self, cert: x509.Certificate) -> Result:
        from cryptography.x509.oid import NameOID

        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if not names:
            return fail(
                "tls.identity",
                "tls.cert has no common name (CN)",
                f"the broker knows a hub by its certificate's CN: get one with CN={self.hub}",
            )
        if names[0] != self.hub:
            return fail(
                "tls.identity",
                f"the certificate is for {names[0]!r}, this hub is {self.hub!r}",
                "the broker takes the CN as the hub's identity: get a certificate for "
                f"CN={self.hub}, or correct hub.id",
            )
        return passed("tls.identity", f"CN = {self.hub}, the hub id")

    def _chain(self, chain: list[x509.Certificate], cas: list[x509.Certificate]) -> Result:
        current = chain[0]
        intermediates = chain[1:]
        for _ in range(len(intermediates) + 1):
            for ca in cas:
                if _signed_by(current, ca):
                    return passed(
                        "tls.chain",
                        f"signed by {ca.subject.rfc4514_string()} (tls.ca)",
                    )
            parent = next((c for c in intermediates if _signed_by(current, c)), None)
            if parent is None:
                break
            current = parent
        return warn(
            "tls.chain",
            f"the hub's certificate (issuer {chain[0].issuer.rfc4514_string()}) is not "
            "signed by the CA in tls.ca",
            "the broker refuses it unless it trusts that other CA for hubs (see "
            "broker.credentials); the centre's hub certificates come from its own CA",
        )

    def _dates(self, cert: x509.Certificate, cas: list[x509.Certificate]) -> Result:
        now = datetime.now(UTC)
        spans = [("tls.cert", cert), *(("tls.ca", ca) for ca in cas)]
        valid = ", ".join(
            f"{label} {_day(c.not_valid_before_utc)} to {_day(c.not_valid_after_utc)}"
            for label, c in spans[:2]
        )
        if not self.synced:
            return warn(
                "tls.dates",
                f"the clock is not synchronised, so the dates cannot be judged ({valid}; "
                f"the clock says {_day(now)})",
                "TLS will work once NTP has set the clock: check the network "
                "(timedatectl timesync-status)",
            )
        for label, c in spans:
            if now < c.not_valid_before_utc:
                return fail(
                    "tls.dates",
                    f"{label} is not valid before {_day(c.not_valid_before_utc)}",
                    "the clock is synchronised, so the certificate was made wrong: get a new one",
                )
            if now > c.not_valid_after_utc:
                return fail(
                    "tls.dates",
                    f"{label} expired on {_day(c.not_valid_after_utc)}",
                    "the broker refuses an expired certificate: get a new one from the centre "
                    "and provision the hub again",
                )
        soonest_label, soonest = min(spans, key=lambda item: item[1].not_valid_after_utc)
        left = (soonest.not_valid_after_utc - now).days
        if left < EXPIRY_WARN_DAYS:
            return warn(
                "tls.dates",
                f"{soonest_label} expires on {_day(soonest.not_valid_after_utc)}, in {left} days",
                "ask the centre for a new certificate before then",
            )
        return passed("tls.dates", f"in date ({valid})")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# ---- devices --------------------------------------------------------------------------------
def _radar(check: str, port: str) -> Result:
    path = Path(port)
    if not path.exists():
        return fail(
            check,
            f"the radar's serial port {port} is not there",
            "is the radar plugged in? ls -l /dev/serial/by-id/ lists the USB serial "
            "adapters; the udev rule names it /dev/leefsamen/radar",
        )
    if not stat.S_ISCHR(path.stat().st_mode):
        return fail(
            check,
            f"{port} is not a serial device",
            "drivers[].port names the radar's device, e.g. /dev/leefsamen/radar",
        )
    return _device_access(check, path, "serial port", "dialout")


def _gpio(check: str, pin_factory: str) -> Result:
    if pin_factory == "mock":
        return skip(check, 'pin_factory = "mock": simulated pins, no hardware')
    chips = sorted(DEV.glob("gpiochip*"))
    if chips:
        return _device_access(check, chips[0], f"{len(chips)} GPIO chip(s):", "gpio")
    model = ""
    with contextlib.suppress(OSError):
        model = BOARD_MODEL.read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    if "raspberry pi" in model.lower():
        return fail(
            check,
            f"no /dev/gpiochip* on this {model}",
            "the GPIO devices are missing: update the system (apt full-upgrade) and reboot",
        )
    return skip(check, "not a Raspberry Pi (no /dev/gpiochip*): the GPIO driver cannot run here")


def _bluetooth(check: str, adapter: str | None) -> Result:
    adapters = sorted(p.name for p in BLUETOOTH.glob("hci*"))
    hint = (
        "on a Raspberry Pi the adapter is built in: systemctl status hciuart bluetooth, "
        "rfkill list; or plug in a USB Bluetooth adapter"
    )
    if not adapters:
        return fail(check, "no Bluetooth adapter (nothing in /sys/class/bluetooth)", hint)
    name = adapter or adapters[0]
    if name not in adapters:
        return fail(
            check,
            f"Bluetooth adapter {name} is not there (found: {', '.join(adapters)})",
            "correct drivers[].adapter, or leave it out to use the first adapter",
        )
    for soft in (BLUETOOTH / name).glob("rfkill*/soft"):
        with contextlib.suppress(OSError):
            if soft.read_text(encoding="utf-8").strip() == "1":
                return fail(
                    check, f"Bluetooth adapter {name} is switched off (rfkill)",
                    "rfkill unblock bluetooth",
                )  # fmt: skip
    return passed(check, f"Bluetooth adapter {name} is there")


_BLUETOOTH_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


def zigbee_sensors(config: Config) -> dict[str, str]:
    """The home-map sensors expected on Zigbee: sensor -> device (friendly name or IEEE).

    Every sensor no other configured driver claims: a radar's sensor, a GPIO input's, and
    those whose device is a Bluetooth address (BTHome) belong elsewhere.
    """
    claimed: set[str] = set()
    for cfg in config.drivers:
        if cfg.type == "radar":
            claimed.add(str(getattr(cfg, "sensor", "")))
        elif cfg.type == "gpio":
            claimed.update(str(inp.sensor) for inp in getattr(cfg, "inputs", []))
    return {
        sid: spec.device or sid
        for sid, spec in config.home.sensors.items()
        if sid not in claimed and not _BLUETOOTH_ADDRESS.match(spec.device or sid)
    }


@dataclass
class _Zigbee:
    """The hub's local broker, Zigbee2MQTT's bridge and the paired devices it reports."""

    config: Config
    cfg: Any  # drivers.zigbee2mqtt.config.Zigbee2MqttConfig
    timeout: float

    def check(self, check: str) -> Result:
        from drivers.zigbee2mqtt import decode

        cfg = self.cfg
        where = f"{cfg.host}:{cfg.port}"
        deadline = time.monotonic() + self.timeout
        try:
            sock = _connect(_resolve(cfg.host, cfg.port, self.timeout), self.timeout)
        except OSError as err:
            finding, _ = _describe_tcp_error(err, where, self.timeout)
            return fail(
                check,
                f"the local MQTT broker: {finding}",
                "systemctl status mosquitto (the hub's own broker, on 127.0.0.1:1883)",
            )
        password = cfg.password.get_secret_value() if cfg.password is not None else None
        session = _Session(
            sock, "leefsamen-hub-doctor", v5=False, username=cfg.username, password=password
        )
        try:
            reason = session.connect(cfg.host, cfg.port, deadline)
            if reason is None or reason.is_failure:
                return fail(
                    check,
                    f"the local MQTT broker at {where} did not accept the doctor "
                    f"({reason or 'no answer'})",
                    "check drivers[].username and password against the local broker",
                )
            base = cfg.base_topic
            session.subscribe([f"{base}/bridge/state", f"{base}/bridge/devices"], deadline)
            session.settle(deadline)
            state = session.messages.get(f"{base}/bridge/state")
            listed = session.messages.get(f"{base}/bridge/devices")
            if state is None:
                return fail(
                    check,
                    f"Zigbee2MQTT has published no {base}/bridge/state on {where}",
                    "is Zigbee2MQTT running? systemctl status zigbee2mqtt; is its "
                    "mqtt.base_topic the driver's base_topic?",
                )
            try:
                online = decode.parse_online(state)
            except decode.Malformed:
                online = False
            if not online:
                return fail(
                    check,
                    "Zigbee2MQTT is offline (bridge/state)",
                    "systemctl status zigbee2mqtt; journalctl -u zigbee2mqtt -b shows why "
                    "(is the Zigbee adapter /dev/leefsamen/zigbee plugged in?)",
                )
            if listed is None:
                return fail(
                    check,
                    "Zigbee2MQTT is online but has published no bridge/devices",
                    "restart it: systemctl restart zigbee2mqtt",
                )
            try:
                devices, _ = decode.parse_devices(listed)
            except decode.Malformed as err:
                return fail(check, f"bridge/devices cannot be read: {err}", "restart Zigbee2MQTT")
            return self._judge(check, session, devices, deadline)
        finally:
            session.close(time.monotonic() + min(1.0, self.timeout))

    def _judge(self, check: str, session: _Session, devices: list[Any], deadline: float) -> Result:
        from drivers.zigbee2mqtt import decode

        wanted = zigbee_sensors(self.config)
        known = {d.name.casefold(): d for d in devices if not d.coordinator}
        known.update({d.ieee.casefold(): d for d in devices if not d.coordinator})
        found = {sid: known.get(address.casefold()) for sid, address in wanted.items()}
        missing = sorted(sid for sid, device in found.items() if device is None)
        paired = {sid: device for sid, device in found.items() if device is not None}
        base = self.cfg.base_topic
        topics = {f"{base}/{device.name}/availability": sid for sid, device in paired.items()}
        if topics:
            session.subscribe(list(topics), deadline)
            session.settle(deadline)
        unavailable = []
        for topic, sid in topics.items():
            payload = session.messages.get(topic)
            if payload is None:
                continue
            with contextlib.suppress(decode.Malformed):
                if not decode.parse_online(payload):
                    unavailable.append(sid)
        unfinished = sorted(sid for sid, d in paired.items() if not d.interviewed)
        counted = f"{len(paired)} of {len(wanted)} Zigbee sensor(s) paired"
        if missing:
            return fail(
                check,
                f"bridge online; {counted}; not paired: {', '.join(missing)}",
                "pair them (hub provision, or permit join in Zigbee2MQTT), or correct their "
                "device in the home map (friendly name or IEEE address)",
            )
        if unavailable:
            return fail(
                check,
                f"bridge online; {counted}; unavailable: {', '.join(sorted(unavailable))}",
                "replace the battery, or bring the sensor closer to a mains-powered Zigbee "
                "device (a router)",
            )
        if unfinished:
            return warn(
                check,
                f"bridge online; {counted}; not fully paired: {', '.join(unfinished)}",
                "pair them again: their interview did not complete",
            )
        return passed(check, f"bridge online; {counted}, none unavailable")


# ---- systemd -------------------------------------------------------------------------------
_PROPERTIES: Final = (
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "WatchdogUSec",
    "WatchdogTimestampMonotonic",
    "ExecMainStartTimestamp",
)
_NO_SYSTEMD = ("not been booted with systemd", "Failed to connect to bus", "System has not")
_TIMESPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|µs|ms|s|sec|min|m|h|hr|d|w)?")
_UNIT_SECONDS: Final = {
    None: 1e-6,  # a bare number is microseconds (older systemd)
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def timespan_seconds(text: str) -> float | None:
    """systemd's time span (``30s``, ``1min 30s``, ``500ms``, ``30000000``) in seconds;
    0 for ``0``, None for ``infinity`` or anything else."""
    text = text.strip()
    if not text or text == "infinity":
        return None
    total = 0.0
    at = 0
    for match in _TIMESPAN.finditer(text):
        if text[at : match.start()].strip():
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        at = match.end()
    return total if not text[at:].strip() else None


def systemctl_show(timeout: float) -> dict[str, str] | Result:
    """``systemctl show`` of the service as a dict, or the SKIP/FAIL saying why not."""
    exe = shutil.which("systemctl")
    if exe is None:
        return skip("service", "systemctl is not here: not a systemd system")
    try:
        done = subprocess.run(
            [exe, "show", SERVICE, "--no-pager", "-p", ",".join(_PROPERTIES)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return fail("service", f"systemctl did not answer within {timeout:.0f} s", _JOURNAL)
    except OSError as err:
        return skip("service", f"systemctl cannot be run: {err.strerror}")
    if done.returncode != 0:
        said = done.stderr + done.stdout
        if any(mark in said for mark in _NO_SYSTEMD):
            return skip("service", "systemd is not running here (PID 1 is another init)")
        return fail("service", f"systemctl show failed: {_first_line(said)}", "run with sudo")
    shown: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            shown[key.strip()] = value.strip()
    return shown


def check_service(timeout: float) -> list[Result]:
    """The ``service`` and ``watchdog`` checks, from what systemd says."""
    shown = systemctl_show(timeout)
    if isinstance(shown, Result):
        return [shown, skip("watchdog", "the service cannot be checked")]
    return [judge_service(shown), judge_watchdog(shown, time.monotonic())]


def judge_service(shown: dict[str, str]) -> Result:
    load, active, sub = (shown.get(k, "") for k in ("LoadState", "ActiveState", "SubState"))
    restarts = shown.get("NRestarts", "0")
    n = int(restarts) if restarts.isdigit() else 0
    since = shown.get("ExecMainStartTimestamp") or "?"
    if load == "not-found":
        return fail(
            "service",
            f"{SERVICE} is not installed",
            "install the hub: deploy/install.sh (as root)",
        )
    if active == "active" and sub == "running":
        if n:
            return warn(
                "service",
                f"running since {since}, but restarted {n} time(s) (a crash or the watchdog)",
                _JOURNAL,
            )
        return passed("service", f"running since {since}")
    if active == "activating" and sub == "auto-restart":
        return fail(
            "service",
            f"restarting after a failure ({n} restart(s) so far)",
            _JOURNAL,
        )
    if active == "failed":
        return fail(
            "service",
            f"failed ({shown.get('Result', '?')})",
            f"{_JOURNAL}; then systemctl restart leefsamen-hub",
        )
    return fail(
        "service",
        f"not running ({active or '?'}/{sub or '?'})",
        "systemctl enable --now leefsamen-hub",
    )


def judge_watchdog(shown: dict[str, str], now_mono: float) -> Result:
    if not (shown.get("ActiveState") == "active" and shown.get("SubState") == "running"):
        return skip("watchdog", "the service is not running")
    limit = timespan_seconds(shown.get("WatchdogUSec", "0"))
    if not limit:
        return warn(
            "watchdog",
            "the unit has no watchdog (WatchdogSec=): a hung agent would not be restarted",
            "install the unit from systemd/leefsamen-hub.service (deploy/install.sh)",
        )
    raw = shown.get("WatchdogTimestampMonotonic", "0")
    last = int(raw) / 1e6 if raw.isdigit() else 0.0
    if last <= 0:
        return warn(
            "watchdog",
            f"{limit:.0f} s; the agent has not reported to it yet",
            "it reports once started; if this stays so: " + _JOURNAL,
        )
    age = max(0.0, now_mono - last)
    if age > limit:
        return fail(
            "watchdog",
            f"{limit:.0f} s; no report for {_ago(age)}: systemd will restart the agent",
            _JOURNAL,
        )
    return passed("watchdog", f"{limit:.0f} s; the agent reported {_ago(age)} ago")


# ---- the whole run --------------------------------------------------------------------------
def _unreadable(err: Exception) -> bool:
    """Whether a ConfigError means the file could not be read as TOML at all."""
    from agent.errors import ConfigError

    return isinstance(err, ConfigError) and any(
        p.where == "" and p.message.startswith(("cannot read", "the file is not", "not valid TOML"))
        for p in err.problems
    )


def diagnose(path: Path, timeout: float = DEFAULT_TIMEOUT) -> list[Result]:
    """Every check for the configuration at ``path``, in the order they are shown.

    ``ConfigError`` when the file cannot be read at all (the caller's exit code 2).
    """
    from agent.config import load_config
    from agent.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as err:
        if _unreadable(err):
            raise
        shown = "; ".join(str(p) for p in err.problems[:3])
        more = f" (and {len(err.problems) - 3} more)" if len(err.problems) > 3 else ""
        invalid = "the configuration is not valid"
        return [
            fail(
                "config",
                f"{len(err.problems)} problem(s): {shown}{more}",
                f"hub config check {path} lists them all",
            ),
            skip("clock", invalid),
            skip("tls", invalid),
            skip("broker", invalid),
            skip("disk", invalid),
            skip("devices", invalid),
            *check_service(timeout),
            skip("agent", invalid),
        ]
    drivers = ", ".join(d.name or d.type for d in config.drivers) or "none"
    head = passed(
        "config",
        f"{path}: hub {config.hub.id}, {len(config.home.sensors)} sensor(s), drivers: {drivers}",
    )
    return [head, *Doctor(config, timeout).run()]


_STYLE: Final = {
    Status.PASS: "bold green",
    Status.WARN: "bold yellow",
    Status.FAIL: "bold red",
    Status.SKIP: "dim",
}


def render(results: list[Result]) -> RenderableType:
    """A table for people: check, status, finding, and the fix when it is not a pass."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=True, show_lines=False, pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("finding", ratio=3, overflow="fold")
    table.add_column("what to do", ratio=2, overflow="fold")
    for r in results:
        table.add_row(
            Text(r.check),  # Text, not markup: findings quote "[uplink.tls]" and the like
            Text(r.status.value, style=_STYLE[r.status]),
            Text(r.finding),
            Text(r.hint or ""),
        )
    counts = {s: sum(r.status is s for r in results) for s in Status}
    summary = Text(
        f"{counts[Status.PASS]} passed, {counts[Status.WARN]} warning(s), "
        f"{counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped",
        style="bold red" if counts[Status.FAIL] else "bold green",
    )
    return Group(table, summary)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("a number of seconds") from err
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("between 0 and 120 seconds")
    return value


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.errors import ConfigError

    try:
        results = diagnose(args.config, args.timeout)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        from rich.console import Console

        Console().print(render(results))
    return exit_code(results)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check that this hub can work: clock, certificates, broker, disk, devices, service",
        description="Check, one by one, what this hub needs to work, and say how to fix what "
        f"does not. Exit {EXIT_OK} when nothing failed (warnings allowed), {EXIT_FAILING} "
        f"when a check failed, {EXIT_BAD_INPUT} when the configuration cannot be read.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the hub's configuration (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="a list of {check, status, finding, hint}")
    p.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="the time limit of each check that waits for an answer (default: %(default)s)",
    )
    p.set_defaults(func=cmd_doctor)
