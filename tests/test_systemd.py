"""The units, the service users and the hub's own broker, checked with the real tools.

``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` (systemd 252, as
in Debian 12) read the units in a throwaway root: a copy of this system's unit directory,
the units under test in its /etc/systemd/system and an executable placeholder at each
ExecStart path (verify insists the program exists). ``systemd-sysusers --root`` applies
the sysusers.d files to an empty root; a real Mosquitto reads the broker configuration.
Each is skipped, saying why, where its tool is absent.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devtools.broker import find_mosquitto, free_port
from tests.conftest import ROOT

UNITS = ["leefsamen-hub.service", "leefsamen-hub-provision.service", "zigbee2mqtt.service"]
SYSTEM_UNITS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]
SYSUSERS = ROOT / "deploy" / "sysusers.d"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "leefsamen-hub.conf"

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    """Sections and their ``Key=value`` lines, in order (a key may repeat)."""
    unit: Unit = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    """Every value of ``key``, space-separated lists split, as systemd joins them."""
    return [word for k, v in unit.get(section, []) if k == key for word in v.split()]


def value(unit: Unit, section: str, key: str) -> str:
    [found] = [v for k, v in unit.get(section, []) if k == key]
    return found


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def analyze_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway root with this system's units, ours, and their programs as placeholders."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package has it)")
    system = next((p for p in SYSTEM_UNITS if (p / "sysinit.target").is_file()), None)
    if system is None:
        pytest.skip("no systemd unit directory with sysinit.target to verify against")
    root = tmp_path_factory.mktemp("analyze-root")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    ours = root / "etc/systemd/system"
    ours.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(ROOT / "systemd" / name, ours / name)
        program = Path(values(parse_unit(ours / name), "Service", "ExecStart")[0])
        placeholder = root / program.relative_to("/")
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        placeholder.chmod(0o755)
    return root


def security(root: Path, name: str) -> tuple[float, list[dict[str, object]]]:
    """The overall exposure and the items that add to it."""
    table = analyze("security", "--offline=true", f"--root={root}", name)
    assert table.returncode == 0, table.stderr
    found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d)", table.stdout)
    assert found, table.stdout
    listed = analyze("security", "--offline=true", f"--root={root}", "--json=short", name)
    items = json.loads(listed.stdout)
    exposed = [i for i in items if i["exposure"] is not None and float(i["exposure"]) > 0]
    return float(found.group(1)), exposed


# ---- verify -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", UNITS)
def test_each_unit_verifies_clean(analyze_root: Path, name: str) -> None:
    run = analyze("verify", f"--root={analyze_root}", f"/etc/systemd/system/{name}")
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_verify_in_this_root_does_see_a_mistake(analyze_root: Path) -> None:
    """The check above can fail: a misspelt value and a missing program are reported."""
    broken = analyze_root / "etc/systemd/system/broken.service"
    text = (ROOT / "systemd" / UNITS[0]).read_text(encoding="utf-8")
    text = text.replace("ProtectSystem=strict", "ProtectSystem=stricter")
    broken.write_text(text.replace("/venv/bin/hub", "/venv/bin/absent"), encoding="utf-8")
    try:
        run = analyze("verify", f"--root={analyze_root}", "/etc/systemd/system/broken.service")
    finally:
        broken.unlink()
    assert run.returncode != 0
    assert "stricter" in run.stderr and "absent" in run.stderr


# ---- security -----------------------------------------------------------------------------------
def test_the_agent_unit_exposure_is_at_most_1_5(analyze_root: Path) -> None:
    exposure, _ = security(analyze_root, "leefsamen-hub.service")
    assert exposure <= 1.5
    # the tool's own gate agrees (its threshold is in tenths)
    gate = analyze(
        "security", "--offline=true", f"--root={analyze_root}", "--threshold=15",
        "leefsamen-hub.service",
    )  # fmt: skip
    assert gate.returncode == 0, gate.stdout


@pytest.mark.parametrize("name", UNITS[1:])
def test_the_other_units_stay_hardened(analyze_root: Path, name: str) -> None:
    exposure, _ = security(analyze_root, name)
    assert exposure <= 2.0


@pytest.mark.parametrize("name", UNITS)
def test_every_point_of_exposure_kept_says_why(analyze_root: Path, name: str) -> None:
    """Each item systemd-analyze counts against a unit has an "Exposure kept" comment that
    names the setting, or stands right above it."""
    lines = (ROOT / "systemd" / name).read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[str, str]] = []  # (comment text, the first setting after it)
    comment: list[str] = []
    for line in lines:
        if line.startswith("#"):
            comment.append(line)
        elif comment:
            blocks.append((" ".join(comment), line.partition("=")[0]))
            comment = []
    kept = [(text, after) for text, after in blocks if "Exposure kept" in text]
    _, exposed = security(analyze_root, name)
    assert exposed
    for item in exposed:
        setting = re.split(r"[=/]", str(item["name"]))[0]
        assert any(setting in text or after == setting for text, after in kept), setting


@pytest.mark.parametrize("name", UNITS)
def test_every_setting_has_a_comment_above_its_group(name: str) -> None:
    """Settings come in groups under a comment that says why (a blank line ends a group)."""
    lines = (ROOT / "systemd" / name).read_text(encoding="utf-8").splitlines()
    section = ""
    for number, line in enumerate(lines):
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#"):
            continue
        above = number - 1
        while above >= 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"{name}: {line} has no comment"


# ---- what the issue asks of the agent's unit ----------------------------------------------------
def test_the_agent_unit_has_the_required_settings() -> None:
    unit = parse_unit(ROOT / "systemd" / "leefsamen-hub.service")
    service = {key: value(unit, "Service", key) for key in (
        "Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "ExecStart", "User",
        "Group", "ProtectSystem", "StateDirectory", "ConfigurationDirectory",
        "ConfigurationDirectoryMode", "RuntimeDirectory", "RuntimeDirectoryMode",
        "DevicePolicy", "MemoryDenyWriteExecute", "NoNewPrivileges", "CapabilityBoundingSet",
    )}  # fmt: skip
    assert service == {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30s",
        "Restart": "always",
        "RestartSec": "5s",
        "ExecStart": "/opt/leefsamen-hub/venv/bin/hub run --config /etc/leefsamen-hub/hub.toml",
        "User": "leefsamen-hub",
        "Group": "leefsamen-hub",
        "ProtectSystem": "strict",
        "StateDirectory": "leefsamen-hub",
        "ConfigurationDirectory": "leefsamen-hub",
        "ConfigurationDirectoryMode": "0750",
        "RuntimeDirectory": "leefsamen-hub",
        "RuntimeDirectoryMode": "0750",
        "DevicePolicy": "closed",
        "MemoryDenyWriteExecute": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }
    assert value(unit, "Unit", "StartLimitIntervalSec") == "0"
    after = values(unit, "Unit", "After")
    assert {"time-set.target", "mosquitto.service", "zigbee2mqtt.service",
            "leefsamen-hub-provision.service"} <= set(after)  # fmt: skip
    pulled = values(unit, "Unit", "Wants") + values(unit, "Unit", "Requires")
    assert "network-online.target" not in after + pulled
    assert "zigbee2mqtt.service" not in values(unit, "Unit", "Requires")
    assert set(values(unit, "Service", "SupplementaryGroups")) == {"dialout", "gpio", "bluetooth"}
    assert set(values(unit, "Service", "RestrictAddressFamilies")) == {
        "AF_UNIX", "AF_INET", "AF_INET6"
    }  # fmt: skip
    assert "PrivateDevices" not in dict(unit["Service"])  # it would hide the serial ports
    # the drain on stop (30 s) fits in the stop timeout
    assert int(value(unit, "Service", "TimeoutStopSec").removesuffix("s")) > 30
    # the clock cannot be touched, not even read through adjtimex: the agent learns whether
    # NTP has synchronised from systemd-timesyncd's file instead (tests/test_clock.py)
    assert value(unit, "Service", "ProtectClock") == "yes"


def test_no_clock_call_gets_through_the_agent_units_filter(analyze_root: Path) -> None:
    """As systemd merges the filter lines (a later "~" line takes calls out of an earlier
    allow list), not as they read: an allowed adjtimex would show as @clock exposed."""
    _, exposed = security(analyze_root, "leefsamen-hub.service")
    assert not [i["name"] for i in exposed if "clock" in str(i["name"]).lower()]


def test_the_provisioning_unit_runs_once_before_the_agent_when_there_is_a_file() -> None:
    unit = parse_unit(ROOT / "systemd" / "leefsamen-hub-provision.service")
    assert value(unit, "Service", "Type") == "oneshot"
    assert "leefsamen-hub.service" in values(unit, "Unit", "Before")
    assert values(unit, "Unit", "ConditionPathExists") == [
        "|/boot/firmware/leefsamen.toml", "|/boot/leefsamen.toml"
    ]  # fmt: skip
    assert value(unit, "Service", "ExecStart") == (
        "/opt/leefsamen-hub/venv/bin/hub provision --boot"
    )
    assert "User" not in dict(unit["Service"])  # root
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_zigbee2mqtt_unit() -> None:
    unit = parse_unit(ROOT / "systemd" / "zigbee2mqtt.service")
    assert value(unit, "Service", "User") == "zigbee2mqtt"
    assert "ZIGBEE2MQTT_DATA=/var/lib/zigbee2mqtt" in values(unit, "Service", "Environment")
    assert "mosquitto.service" in values(unit, "Unit", "After")
    assert value(unit, "Service", "Restart") == "always"
    assert value(unit, "Service", "MemoryDenyWriteExecute") == "no"  # Node.js's JIT
    assert values(unit, "Service", "SupplementaryGroups") == ["dialout"]


# ---- the service users --------------------------------------------------------------------------
@pytest.fixture
def sysusers_root(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers is not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = root / "usr/lib/sysusers.d"
    conf.mkdir(parents=True)
    basic = Path("/usr/lib/sysusers.d/basic.conf")
    if basic.is_file():  # Debian's own groups (dialout = 20), as on a real system
        shutil.copy(basic, conf)
    for path in SYSUSERS.glob("*.conf"):
        shutil.copy(path, conf)
    yield root


def _sysusers(root: Path) -> dict[str, bytes]:
    run = subprocess.run(
        ["systemd-sysusers", f"--root={root}"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    # the shadow files are mode 0000: only root reads them back
    names = ("passwd", "group", "shadow", "gshadow") if os.geteuid() == 0 else ("passwd", "group")
    return {name: (root / "etc" / name).read_bytes() for name in names}


def test_the_service_users_are_made_once_with_the_units_groups(sysusers_root: Path) -> None:
    first = _sysusers(sysusers_root)
    assert _sysusers(sysusers_root) == first  # applied again: not a byte changes
    passwd = {line.split(":")[0]: line.split(":") for line in first["passwd"].decode().splitlines()}
    members = {
        line.split(":")[0]: set(filter(None, line.split(":")[3].split(",")))
        for line in first["group"].decode().splitlines()
    }
    assert passwd["leefsamen-hub"][5:] == ["/var/lib/leefsamen-hub", "/usr/sbin/nologin"]
    assert passwd["zigbee2mqtt"][5:] == ["/var/lib/zigbee2mqtt", "/usr/sbin/nologin"]
    assert int(passwd["leefsamen-hub"][2]) < 1000  # a system user
    # every user, group and supplementary group the units name exists, with its members
    for name in ("leefsamen-hub.service", "zigbee2mqtt.service"):
        unit = parse_unit(ROOT / "systemd" / name)
        user = value(unit, "Service", "User")
        assert user in passwd and value(unit, "Service", "Group") in members
        for group in values(unit, "Service", "SupplementaryGroups"):
            assert user in members[group], (user, group)


# ---- the hub's own broker -----------------------------------------------------------------------
def _listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text(encoding="utf-8").splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_the_hub_broker_listens_on_loopback_only_and_takes_local_clients(tmp_path: Path) -> None:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    listeners = re.findall(r"^listener .*$", text, flags=re.MULTILINE)
    assert listeners == ["listener 1883 127.0.0.1"]
    # the same file, on a free port, included as Debian's mosquitto.conf includes it
    port = free_port()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "leefsamen-hub.conf").write_text(
        text.replace("listener 1883 ", f"listener {port} "), encoding="utf-8"
    )
    main = tmp_path / "mosquitto.conf"
    main.write_text(
        f"persistence false\nlog_dest file {tmp_path / 'log'}\n"
        # started as root, Mosquitto would become its own user, who cannot write the log
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"include_dir {tmp_path / 'conf.d'}\n",
        encoding="utf-8",
    )
    broker = subprocess.Popen([binary, "-c", str(main)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        connack = b""
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    # MQTT 3.1.1 CONNECT, clean session, no user name: an anonymous client
                    sock.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test")
                    connack = sock.recv(4)
                break
            except ConnectionRefusedError:
                assert broker.poll() is None, (tmp_path / "log").read_text()
                time.sleep(0.05)
        assert connack == bytes.fromhex("20020000")  # CONNACK: accepted
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        broker.terminate()
        broker.wait(timeout=10)
