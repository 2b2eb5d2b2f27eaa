"""``hub doctor`` against real Mosquitto brokers, real certificates and a real agent.

The centre's broker runs the settings of deploy/broker/ (TLS, client certificate required,
the CN as user name and as client id, the example ACL); the hub's local broker is a plain
Mosquitto on which the test publishes what Zigbee2MQTT would (retained). Certificates are
made with the openssl CLI (``agent.devtools.pki``). What the operating system cannot give
a test is replaced at its boundary only: the kernel's clock flag
(``agent.clock.kernel_says_synced``), ``systemctl`` (a script first on PATH), the disk's
free space and the board's /dev and /sys folders.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import doctor
from agent.cli import main
from agent.clock import LiveClock
from agent.config import MqttUplinkConfig, TlsConfig, load_config
from agent.devtools.broker import BrokerTls, Mosquitto, find_mosquitto, free_port
from agent.devtools.pki import PkiError, TestPki
from agent.outbox.memory import MemoryOutbox
from agent.runtime import Runtime
from agent.uplink import MqttUplink
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(60)

HUB = "h-0412"
WAIT = 20.0  # generous: every wait ends on an event, this only bounds a failure
HALL = "0x00158d0001a2b3c4"  # the IEEE address of the hall's Zigbee motion sensor
DOOR = "0x00158d0001a2b3c5"


# ---- certificates and the centre's broker ------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server: BrokerTls
    hub: TlsConfig  # CN = HUB, from the broker's CA
    wrong_cn: TlsConfig  # CN = h-9999, from the broker's CA
    stranger: TlsConfig  # CN = HUB, from another CA (and trusting that one)
    expired: TlsConfig  # CN = HUB, valid in 2020 only
    future: TlsConfig  # CN = HUB, valid from tomorrow
    soon: TlsConfig  # CN = HUB, expires in ten days
    future_server: BrokerTls  # the broker's, valid from tomorrow


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    try:
        made = TestPki(tmp_path_factory.mktemp("doctor-pki"), days=400)
    except PkiError as err:
        pytest.skip(str(err))
    ca, other = made.ca("ca"), made.ca("other-ca")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    future_server = made.issue(
        "future-broker", "ca", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth", not_before=tomorrow, not_after=tomorrow + timedelta(days=2)
    )  # fmt: skip
    return Pki(
        ca=ca,
        other_ca=other,
        server=made.server(),
        hub=made.issue("hub", "ca", HUB),
        wrong_cn=made.issue("wrong-cn", "ca", "h-9999"),
        stranger=made.issue("stranger", "other-ca", HUB),
        expired=made.issue(
            "expired",
            "ca",
            HUB,
            not_before=datetime(2020, 1, 1, tzinfo=UTC),
            not_after=datetime(2020, 1, 2, tzinfo=UTC),
        ),
        future=made.issue(
            "future", "ca", HUB, not_before=tomorrow, not_after=tomorrow + timedelta(days=2)
        ),
        soon=made.issue(
            "soon",
            "ca",
            HUB,
            not_before=datetime.now(UTC) - timedelta(days=1),
            not_after=datetime.now(UTC) + timedelta(days=10),
        ),
        future_server=BrokerTls(ca, future_server.cert, future_server.key),
    )


def deploy_identity_settings() -> str:
    """The listener settings of deploy/broker/mosquitto.conf that say who a client is."""
    text = (ROOT / "deploy" / "broker" / "mosquitto.conf").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("use_")]
    assert "use_identity_as_username true" in lines, lines
    return "\n".join(lines) + "\n"


def centre_broker(tls: BrokerTls) -> Mosquitto:
    """The centre's broker as deploy/broker/ sets it up: certificate CN = identity, ACL."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (looked in PATH and /usr/sbin)")
    return Mosquitto(
        tls=tls,
        acl=(ROOT / "deploy" / "broker" / "acl").read_text(encoding="utf-8"),
        allow_anonymous=False,
        extra_conf=deploy_identity_settings(),
    )


@pytest.fixture(scope="module")
def central(pki: Pki) -> Iterator[Mosquitto]:
    with centre_broker(pki.server) as broker:
        yield broker


# ---- the operating system's boundary -------------------------------------------------------
@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel says NTP has synchronised the clock."""
    monkeypatch.setattr("agent.clock.kernel_says_synced", lambda: True)


@pytest.fixture
def unsynced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel says the clock is not synchronised (a Pi just booted, offline)."""
    monkeypatch.setattr("agent.clock.kernel_says_synced", lambda: False)


def fake_systemctl(
    monkeypatch: pytest.MonkeyPatch, folder: Path, stdout: str, stderr: str = "", code: int = 0
) -> None:
    """A ``systemctl`` first on PATH that answers ``show`` as told."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "systemctl"
    script.write_text(
        f"#!/bin/sh\ncat <<'EOF'\n{stdout}EOF\ncat >&2 <<'EOF'\n{stderr}EOF\nexit {code}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def running_service(watchdog_age: float = 2.0, restarts: int = 0) -> str:
    """What ``systemctl show`` says of a healthy service whose watchdog was just fed."""
    fed = int((time.monotonic() - watchdog_age) * 1_000_000)
    return (
        "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\n"
        f"NRestarts={restarts}\nWatchdogUSec=30s\nWatchdogTimestampMonotonic={fed}\n"
        "ExecMainStartTimestamp=Sun 2026-11-22 10:00:00 CET\n"
    )


@pytest.fixture(autouse=True)
def no_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default this machine has no systemd as PID 1 (a test may install its own)."""
    fake_systemctl(
        monkeypatch,
        tmp_path / "no-systemd",
        "",
        "System has not been booted with systemd as init system (PID 1). Can't operate.\n",
        1,
    )


# ---- configuration and running the doctor ---------------------------------------------------
def write_config(
    folder: Path,
    *,
    port: int,
    tls: TlsConfig | None,
    host: str = "localhost",
    extra: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        f'[hub]\nid = "{HUB}"\n'
        f'[uplink]\nhost = "{host}"\nport = {port}\nreconnect_min = "0.1s"\n'
        'reconnect_max = "1s"\npublish_timeout = "5s"\n'
    )
    if tls is not None:
        text += f'[uplink.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
    text += f'[outbox]\npath = "{folder / "outbox.db"}"\n' + extra
    path = folder / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def doctor_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run ``hub doctor --json`` in this process; the exit code and the checks by name."""
    code = main(["doctor", "--config", str(config), "--json", "--timeout", "5"])
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == {"check", "status", "finding", "hint"}, row
        assert row["status"] in {"PASS", "WARN", "FAIL", "SKIP"}
        if row["status"] == "PASS":
            assert row["hint"] is None, row
        elif row["status"] in {"WARN", "FAIL"}:
            assert isinstance(row["hint"], str) and row["hint"], row
    by_name = {row["check"]: row for row in rows}
    assert len(by_name) == len(rows), "check names are unique"
    return code, by_name


# ---- the whole hub well ---------------------------------------------------------------------
def retain(broker: Mosquitto, messages: dict[str, bytes]) -> None:
    """Publish retained messages on the plain listener, as Zigbee2MQTT does."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="z2m-test")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages.items():
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


def bridge(*devices: tuple[str, str], online: str = '{"state":"online"}') -> dict[str, bytes]:
    listed = [{"ieee_address": "0x00124b0000000001", "friendly_name": "Coordinator",
               "type": "Coordinator"}]  # fmt: skip
    listed += [
        {
            "ieee_address": ieee,
            "friendly_name": name,
            "type": "EndDevice",
            "interview_completed": True,
            "supported": True,
        }
        for name, ieee in devices
    ]
    return {
        "zigbee2mqtt/bridge/state": online.encode(),
        "zigbee2mqtt/bridge/devices": json.dumps(listed).encode(),
    }


ZIGBEE_HOME = f"""
[[drivers]]
type = "zigbee2mqtt"
host = "127.0.0.1"
port = {{port}}
[home.sensors.hall_pir]
room = "Hallway"
role = "hallway"
kind = "motion"
[home.sensors.front_door]
room = "Hallway"
role = "front_door"
kind = "contact"
device = "{DOOR}"
"""


def socket_path(folder: Path) -> Path:
    """A Unix socket path short enough for sun_path (108 bytes)."""
    path = folder / "hub.sock"
    if len(str(path)) < 100:
        return path
    return Path("/tmp") / f"doctor-{os.getpid()}-{time.monotonic_ns()}.sock"


@pytest.mark.usefixtures("synced")
def test_a_hub_in_good_order_passes_every_check_without_disturbing_the_agent(
    pki: Pki,
    central: Mosquitto,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    retain(
        mosquitto,
        {
            **bridge(("hall_pir", HALL), ("front door", DOOR)),
            "zigbee2mqtt/hall_pir/availability": b'{"state":"online"}',
        },
    )
    sock = socket_path(tmp_path)
    extra = f'[local]\nsocket = "{sock}"\n' + ZIGBEE_HOME.format(port=mosquitto.port)
    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.hub, extra=extra)
    fake_systemctl(monkeypatch, tmp_path / "bin", running_service())
    runtime = Runtime(load_config(config))
    found: dict[str, Any] = {}

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=2.0))
        deadline = time.monotonic() + WAIT
        while not (
            runtime.uplink.connected
            and sock.exists()
            and runtime.driver_health.get("zigbee2mqtt-0") is not None
            and runtime.driver_health["zigbee2mqtt-0"].state == "running"
        ):
            assert time.monotonic() < deadline, "the agent did not come up"
            await asyncio.sleep(0.02)
        code, rows = await asyncio.to_thread(doctor_json, config, capsys)
        found.update(rows=rows, code=code, reconnects=runtime.uplink.stats.reconnects)
        found["still"] = runtime.uplink.connected
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    rows = found["rows"]
    assert [r["status"] for r in rows.values()] == ["PASS"] * len(rows), rows
    assert found["code"] == 0
    assert list(rows) == [
        "config", "clock", "tls.files", "tls.key", "tls.identity", "tls.chain", "tls.dates",
        "broker.dns", "broker.tcp", "broker.tls", "broker.credentials", "disk",
        "devices.zigbee2mqtt-0", "service", "watchdog", "agent",
    ]  # fmt: skip
    assert "2 of 2 Zigbee sensor(s) paired" in rows["devices.zigbee2mqtt-0"]["finding"]
    assert "running agent is connected" in rows["broker.credentials"]["finding"]
    assert "connected to the centre" in rows["agent"]["finding"]
    # the broker gives a connection with the hub's certificate the hub's session: the
    # doctor did not open one, so the agent was not thrown off
    assert "closing old connection" not in central.log_text()
    assert found["still"] and found["reconnects"] == 0
    # the private key never appears in what the doctor says
    key_lines = [
        line for line in pki.hub.key.read_text().splitlines() if line and "-----" not in line
    ]
    said = json.dumps(rows)
    assert key_lines and not any(line in said for line in key_lines)


@pytest.mark.usefixtures("synced")
def test_without_a_running_agent_the_credentials_are_tried_with_one_clean_connection(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.hub)
    code, rows = doctor_json(config, capsys)
    assert rows["broker.credentials"]["status"] == "PASS", rows["broker.credentials"]
    assert "disconnected cleanly" in rows["broker.credentials"]["finding"]
    assert f"Received DISCONNECT from {HUB}" in central.log_text()
    # no [local] socket: the agent cannot be asked, which is worth a warning, not a failure
    assert rows["agent"]["status"] == "WARN"
    assert code == 0


# ---- wrong certificates -----------------------------------------------------------------------
@pytest.mark.usefixtures("synced")
def test_a_broker_not_signed_by_tls_ca_is_not_trusted(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = TlsConfig(ca=pki.other_ca, cert=pki.hub.cert, key=pki.hub.key)
    code, rows = doctor_json(write_config(tmp_path, port=central.tls_port or 0, tls=tls), capsys)
    assert code == 3
    row = rows["broker.tls"]
    assert row["status"] == "FAIL" and "not trusted" in row["finding"], row
    assert "tls.ca" in row["hint"]
    assert rows["broker.credentials"]["status"] == "SKIP"


@pytest.mark.usefixtures("synced")
def test_a_hub_certificate_from_another_ca_is_refused_by_the_broker(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = TlsConfig(ca=pki.ca, cert=pki.stranger.cert, key=pki.stranger.key)
    config = write_config(tmp_path, port=central.tls_port or 0, tls=tls)
    code, rows = doctor_json(config, capsys)
    assert code == 3
    assert rows["tls.chain"]["status"] == "WARN"  # seen before any connection
    assert rows["broker.tls"]["status"] == "PASS"  # the broker itself is trusted
    row = rows["broker.credentials"]
    assert row["status"] == "FAIL", row
    assert "does not accept the hub's certificate" in row["finding"], row
    assert "signed by the CA" in row["hint"]


@pytest.mark.usefixtures("synced")
def test_a_key_that_is_not_the_certificates_fails_before_any_tls_connection(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = central.log_text().count("New client connected")
    tls = TlsConfig(ca=pki.ca, cert=pki.hub.cert, key=pki.wrong_cn.key)
    code, rows = doctor_json(write_config(tmp_path, port=central.tls_port or 0, tls=tls), capsys)
    assert code == 3
    assert rows["tls.key"]["status"] == "FAIL"
    assert "does not belong" in rows["tls.key"]["finding"]
    assert rows["broker.tls"]["status"] == "SKIP" and rows["broker.credentials"]["status"] == "SKIP"
    assert central.log_text().count("New client connected") == before


def test_a_key_others_can_read_is_a_warning_and_one_with_a_passphrase_a_failure(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(pki.hub.key.read_bytes())
    key.chmod(0o644)
    tls = TlsConfig(ca=pki.ca, cert=pki.hub.cert, key=key)
    _code, rows = doctor_json(write_config(tmp_path, port=free_port(), tls=tls), capsys)
    row = rows["tls.files"]
    assert row["status"] == "WARN" and "0644" in row["finding"], row
    assert f"chmod 600 {key}" in row["hint"]
    assert rows["tls.key"]["status"] == "PASS"

    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.hub.key), "-aes256", "-passout", "pass:secret",
         "-out", str(locked)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = TlsConfig(ca=pki.ca, cert=pki.hub.cert, key=locked)
    code, rows = doctor_json(write_config(tmp_path, port=free_port(), tls=tls), capsys)
    assert code == 3
    row = rows["tls.files"]
    assert row["status"] == "FAIL" and "passphrase" in row["finding"], row
    assert rows["tls.key"]["status"] == "SKIP"


@pytest.mark.usefixtures("synced")
def test_a_certificate_for_another_hub_is_named(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.wrong_cn)
    code, rows = doctor_json(config, capsys)
    assert code == 3
    row = rows["tls.identity"]
    assert row["status"] == "FAIL" and "'h-9999'" in row["finding"] and HUB in row["finding"]
    assert f"CN={HUB}" in row["hint"]


@pytest.mark.usefixtures("synced")
def test_an_expired_certificate_fails_when_the_clock_is_synchronised(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.expired)
    code, rows = doctor_json(config, capsys)
    assert code == 3
    assert rows["clock"]["status"] == "PASS"
    row = rows["tls.dates"]
    assert row["status"] == "FAIL" and "expired on 2020-01-02" in row["finding"], row
    assert rows["broker.credentials"]["status"] == "FAIL"  # the broker refuses it too

    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.soon)
    code, rows = doctor_json(config, capsys)
    row = rows["tls.dates"]
    assert row["status"] == "WARN" and "expires on" in row["finding"], row
    assert "new certificate" in row["hint"]


@pytest.mark.usefixtures("unsynced")
def test_with_the_clock_not_synchronised_certificate_dates_are_not_a_failure(
    pki: Pki, central: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=central.tls_port or 0, tls=pki.future)
    _code, rows = doctor_json(config, capsys)
    assert rows["clock"]["status"] == "WARN" and "NTP" in rows["clock"]["hint"]
    row = rows["tls.dates"]
    assert row["status"] == "WARN", row
    assert "cannot be judged" in row["finding"] and "NTP" in row["hint"]


@pytest.mark.usefixtures("unsynced")
def test_a_broker_certificate_not_yet_valid_on_an_unsynchronised_clock_blames_the_clock(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with centre_broker(pki.future_server) as broker:
        config = write_config(tmp_path, port=broker.tls_port or 0, tls=pki.hub)
        code, rows = doctor_json(config, capsys)
        assert code == 3
        row = rows["broker.tls"]
        assert row["status"] == "FAIL", row
        assert "clock is not synchronised" in row["finding"] and "NTP" in row["hint"]

        # the agent's own log says the same
        cfg = MqttUplinkConfig(host="localhost", port=broker.tls_port or 0, tls=pki.hub)
        clock = LiveClock(ZoneInfo("Europe/Amsterdam"), synced=False)
        uplink = MqttUplink(cfg, HUB, MemoryOutbox(1 << 20), clock, "0.1.0")

        async def attempt() -> None:
            await uplink.start()
            deadline = time.monotonic() + WAIT
            while not any("clock is not synchronised" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "no log about the clock"
                await asyncio.sleep(0.02)
            await uplink.stop()

        asyncio.run(attempt())
    said = [r.getMessage() for r in caplog.records if "clock is not synchronised" in r.getMessage()]
    assert "looks not yet valid; it will work once NTP has set the clock" in said[0]


# ---- the way to the broker --------------------------------------------------------------------
def test_a_broker_that_is_down_is_refused_and_the_run_ends_without_trying_further(
    pki: Pki, tmp_path: Path
) -> None:
    with centre_broker(pki.server) as broker:
        port = broker.tls_port or 0
        broker.kill()
        config = write_config(tmp_path, port=port, tls=pki.hub)
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "doctor", "--config", str(config), "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    rows = {row["check"]: row for row in json.loads(done.stdout)}
    row = rows["broker.tcp"]
    assert row["status"] == "FAIL" and "connection refused" in row["finding"], row
    assert "broker is down" in row["hint"]
    assert rows["broker.tls"]["status"] == "SKIP" and rows["broker.credentials"]["status"] == "SKIP"


def test_a_broker_name_that_does_not_resolve_fails_the_lookup(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=8883, tls=pki.hub, host="broker.leefsamen.invalid")
    code, rows = doctor_json(config, capsys)
    assert code == 3
    row = rows["broker.dns"]
    assert row["status"] == "FAIL" and "broker.leefsamen.invalid" in row["finding"], row
    assert row["hint"]
    assert all(rows[c]["status"] == "SKIP" for c in ("broker.tcp", "broker.tls"))


# ---- devices ------------------------------------------------------------------------------------
def test_a_missing_radar_port_fails_and_a_present_one_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    radar = """
[[drivers]]
type = "radar"
model = "ld2410"
port = "{port}"
sensor = "radar1"
[home.sensors.radar1]
room = "Living"
role = "living"
"""
    config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1",
                          extra=radar.format(port="/dev/leefsamen/radar-absent"))  # fmt: skip
    code, rows = doctor_json(config, capsys)
    assert code == 3
    row = rows["devices.radar-0"]
    assert row["status"] == "FAIL" and "/dev/leefsamen/radar-absent" in row["finding"], row
    assert "plugged in" in row["hint"]

    leader, follower = os.openpty()  # a real terminal device, as a USB serial port is
    try:
        config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1",
                              extra=radar.format(port=os.ttyname(follower)))  # fmt: skip
        _code, rows = doctor_json(config, capsys)
    finally:
        os.close(leader)
        os.close(follower)
    assert rows["devices.radar-0"]["status"] == "PASS", rows["devices.radar-0"]


def test_zigbee_devices_not_paired_or_unavailable_and_the_bridge_offline_fail(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1",
                          extra=ZIGBEE_HOME.format(port=mosquitto.port))  # fmt: skip

    def zigbee() -> dict[str, Any]:
        _code, rows = doctor_json(config, capsys)
        return dict(rows["devices.zigbee2mqtt-0"])

    row = zigbee()
    assert row["status"] == "FAIL" and "no zigbee2mqtt/bridge/state" in row["finding"], row
    retain(mosquitto, bridge(("hall_pir", HALL)))
    row = zigbee()
    assert row["status"] == "FAIL" and "not paired: front_door" in row["finding"], row
    retain(
        mosquitto,
        {
            **bridge(("hall_pir", HALL), ("front door", DOOR)),
            "zigbee2mqtt/hall_pir/availability": b'{"state":"offline"}',
        },
    )
    row = zigbee()
    assert row["status"] == "FAIL" and "unavailable: hall_pir" in row["finding"], row
    assert "battery" in row["hint"]
    retain(mosquitto, {"zigbee2mqtt/hall_pir/availability": b"online"})
    assert zigbee()["status"] == "PASS"
    retain(mosquitto, bridge(("hall_pir", HALL), ("front door", DOOR), online="offline"))
    row = zigbee()
    assert row["status"] == "FAIL" and "offline" in row["finding"], row


def test_a_local_broker_that_refuses_the_password_says_so_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    with Mosquitto(allow_anonymous=False) as local:
        extra = ZIGBEE_HOME.format(port=local.port).replace(
            'type = "zigbee2mqtt"\n',
            'type = "zigbee2mqtt"\nusername = "z"\npassword = "s3cret-pw"\n',
        )
        config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1", extra=extra)
        code, rows = doctor_json(config, capsys)
        assert main(["doctor", "--config", str(config)]) == 3
        table = capsys.readouterr().out
    assert code == 3
    row = rows["devices.zigbee2mqtt-0"]
    assert row["status"] == "FAIL" and "did not accept" in row["finding"], row
    assert "password" in row["hint"]
    assert "s3cret-pw" not in json.dumps(rows) and "s3cret-pw" not in table


def test_bluetooth_and_gpio_are_looked_for_where_the_kernel_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_bt, dev, model = tmp_path / "bluetooth", tmp_path / "dev", tmp_path / "model"
    sys_bt.mkdir()
    dev.mkdir()
    monkeypatch.setattr(doctor, "BLUETOOTH", sys_bt)
    monkeypatch.setattr(doctor, "DEV", dev)
    monkeypatch.setattr(doctor, "BOARD_MODEL", model)
    extra = """
[[drivers]]
type = "bthome"
[[drivers]]
type = "gpio"
inputs = [{ sensor = "pendant", pin = 17, kind = "button" }]
[home.sensors.pendant]
room = "Living"
role = "wearable"
"""
    config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1", extra=extra)
    _code, rows = doctor_json(config, capsys)
    assert rows["devices.bthome-0"]["status"] == "FAIL"
    assert "no Bluetooth adapter" in rows["devices.bthome-0"]["finding"]
    assert rows["devices.gpio-1"]["status"] == "SKIP"  # not a Raspberry Pi
    (sys_bt / "hci0").mkdir()
    model.write_text("Raspberry Pi 4 Model B Rev 1.5\x00")
    _code, rows = doctor_json(config, capsys)
    assert rows["devices.bthome-0"]["status"] == "PASS"
    assert rows["devices.gpio-1"]["status"] == "FAIL"  # a Pi without its GPIO devices
    assert "Raspberry Pi 4" in rows["devices.gpio-1"]["finding"]


# ---- disk, service and watchdog --------------------------------------------------------------
class Usage(NamedTuple):
    total: int
    used: int
    free: int


@pytest.mark.parametrize(("free_mb", "status"), [(5000, "PASS"), (150, "WARN"), (10, "FAIL")])
def test_free_disk_space_is_judged_by_the_stated_thresholds(
    free_mb: int,
    status: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _p: Usage(1 << 40, 0, free_mb << 20))
    config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1")
    _code, rows = doctor_json(config, capsys)
    assert rows["disk"]["status"] == status
    assert "warn below 200 MB, fail below 20 MB" in rows["disk"]["finding"]


def test_the_service_and_its_watchdog_as_systemd_reports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, port=free_port(), tls=None, host="127.0.0.1")

    def service(stdout: str, stderr: str = "", code: int = 0) -> tuple[dict[str, Any], ...]:
        fake_systemctl(monkeypatch, tmp_path / f"bin{time.monotonic_ns()}", stdout, stderr, code)
        _code, rows = doctor_json(config, capsys)
        return rows["service"], rows["watchdog"]

    svc, dog = service(running_service(restarts=2))
    assert svc["status"] == "WARN" and "restarted 2 time(s)" in svc["finding"]
    assert dog["status"] == "PASS" and "30 s" in dog["finding"]
    svc, dog = service(running_service(watchdog_age=95.0))
    assert dog["status"] == "FAIL" and "no report for" in dog["finding"], dog
    failed = running_service().replace("ActiveState=active", "ActiveState=failed")
    failed = failed.replace("SubState=running", "SubState=failed").replace(
        "Result=success", "Result=watchdog"
    )
    svc, dog = service(failed)
    assert svc["status"] == "FAIL" and "watchdog" in svc["finding"]
    assert "journalctl" in svc["hint"] and dog["status"] == "SKIP"
    svc, _ = service("LoadState=not-found\nActiveState=inactive\nSubState=dead\n")
    assert svc["status"] == "FAIL" and "not installed" in svc["finding"]
    svc, dog = service(
        "", "System has not been booted with systemd as init system (PID 1). Can't operate.\n", 1
    )
    assert svc["status"] == "SKIP" and "systemd is not running" in svc["finding"]
    assert dog["status"] == "SKIP"


def test_systemd_time_spans_are_read() -> None:
    assert doctor.timespan_seconds("30s") == 30
    assert doctor.timespan_seconds("1min 30s") == 90
    assert doctor.timespan_seconds("500ms") == 0.5
    assert doctor.timespan_seconds("30000000") == 30  # older systemd: microseconds
    assert doctor.timespan_seconds("0") == 0
    assert doctor.timespan_seconds("infinity") is None
    assert doctor.timespan_seconds("soon") is None


# ---- the command line ------------------------------------------------------------------------
def test_configuration_problems_and_an_unreadable_file_have_their_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[hub]\nid = "h 1"\n[uplink]\nport = 0\n', encoding="utf-8")
    code, rows = doctor_json(bad, capsys)
    assert code == 3
    assert rows["config"]["status"] == "FAIL" and "2 problem(s)" in rows["config"]["finding"]
    assert "hub config check" in rows["config"]["hint"]
    assert rows["broker"]["status"] == "SKIP" and rows["agent"]["status"] == "SKIP"
    with pytest.raises(SystemExit) as usage:
        main(["doctor", "--timeout", "-1"])
    assert usage.value.code == 2
    assert "between 0 and 120" in capsys.readouterr().err


def test_the_table_for_people_names_each_check_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, tls=None, host="127.0.0.1")
    code = main(["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 3
    assert "broker.tcp" in out and "FAIL" in out and "connection refused" in out
    assert "failed" in out.splitlines()[-1]


def test_the_table_prints_bracketed_names_as_written() -> None:
    """Findings and hints quote configuration tables ("[uplink.tls]"): printed, not taken
    for the table renderer's markup."""
    from rich.console import Console

    result = doctor.Result(
        "tls.files", doctor.Status.FAIL, "[uplink.tls] ca is missing", "correct [uplink.tls]"
    )
    console = Console(record=True, width=200)
    console.print(doctor.render([result]))
    text = console.export_text()
    assert "[uplink.tls] ca is missing" in text and "correct [uplink.tls]" in text
