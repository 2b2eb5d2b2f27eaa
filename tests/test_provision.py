"""First-boot provisioning (``hub provision --from FILE``, ``--boot``) with a fake boot
partition folder and real certificates made by the openssl CLI.

Every refusal is checked to change nothing: the configuration folder and the boot file
are compared byte for byte (and by mode) before and after. Failures half-way are real
ones from the kernel: a file size limit (RLIMIT_FSIZE, any user), a full tmpfs (root), a
folder without write permission (not root).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import provision as prov
from agent.cli import main
from agent.config import load_config, validate_config
from agent.devtools.broker import BrokerTls, Mosquitto, find_mosquitto
from agent.devtools.pki import CA_CONF
from tests.test_uplink import _issue, _make_ca, _openssl

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
HUB = str(Path(sys.executable).with_name("hub"))
HUB_ID = "h-0412"
CLIENT = "extendedKeyUsage=clientAuth"


@dataclass(frozen=True)
class Pem:
    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Pki:
    dir: Path
    good: Pem  # CN=h-0412 from the CA
    second: Pem  # another CN=h-0412 certificate and key from the CA
    wrong_cn: Pem
    forged: Pem  # CN=h-0412 from another CA
    expired: Pem
    future: Pem
    server_only: Pem  # extendedKeyUsage=serverAuth
    encrypted_key: str
    broker: BrokerTls  # a broker certificate from the CA, for a real TLS connection


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii")


def _dated(directory: Path, name: str, start: str, end: str) -> tuple[Path, Path]:
    """A CN=h-0412 certificate from the CA with the given dates (``openssl ca``)."""
    (directory / f"{name}.ext").write_text(CLIENT + "\n", encoding="utf-8")
    _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={HUB_ID}")  # fmt: skip
    (directory / "ca.cnf").write_text(CA_CONF, encoding="utf-8")
    (directory / "index.txt").touch()
    if not (directory / "serial").exists():
        (directory / "serial").write_text("2000\n", encoding="utf-8")
    _openssl(directory, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt",
             "-keyfile", "ca.key", "-in", f"{name}.csr", "-out", f"{name}.crt",
             "-startdate", start, "-enddate", end, "-extfile", f"{name}.ext",
             "-notext")  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it makes the test certificates")
    d = tmp_path_factory.mktemp("provision-pki")
    ca = _read(_make_ca(d, "ca"))
    _make_ca(d, "other-ca")

    def issued(name: str, cn: str = HUB_ID, by: str = "ca", ext: str = CLIENT) -> Pem:
        tls = _issue(d, name, by, f"/CN={cn}", ext)
        return Pem(ca, _read(tls.cert), _read(tls.key))

    good = issued("hub")
    expired = _issue(d, "expired", "ca", f"/CN={HUB_ID}", CLIENT, expired=True)
    future_crt, future_key = _dated(d, "future", "20990101000000Z", "20990102000000Z")
    _openssl(d, "pkey", "-in", "hub.key", "-aes256", "-passout", "pass:secret", "-out", "enc.key")
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _issue(d, "broker", "ca", "/CN=localhost", names)
    return Pki(
        dir=d,
        good=good,
        second=issued("hub2"),
        wrong_cn=issued("wrong", cn="h-9999"),
        forged=issued("forged", by="other-ca"),
        expired=Pem(ca, _read(expired.cert), _read(expired.key)),
        future=Pem(ca, _read(future_crt), _read(future_key)),
        server_only=issued("serveronly", ext="extendedKeyUsage=serverAuth"),
        encrypted_key=_read(d / "enc.key"),
        broker=BrokerTls(d / "ca.crt", server.cert, server.key, require_certificate=True),
    )


def boot_text(
    pem: Pem,
    *,
    hub_id: str = HUB_ID,
    top: str = 'timezone = "Europe/Brussels"\n',
    broker: str = 'host = "mqtt.example.org"\nport = 8883\nprefix = "leefsamen"\n',
    key: str | None = None,
) -> str:
    """A leefsamen.toml with the PEM texts inline, indented as a person might paste them."""

    def block(text: str) -> str:
        return '"""\n' + "".join(f"  {line}\n" for line in text.splitlines()) + '"""'

    return (
        f'hub_id = "{hub_id}"\n{top}\n[broker]\n{broker}\n[tls]\n'
        f"ca = {block(pem.ca)}\ncert = {block(pem.cert)}\nkey = {block(key or pem.key)}\n"
    )


@dataclass
class Card:
    """A fake boot partition folder and the hub's configuration folder."""

    boot: Path
    etc: Path

    @property
    def file(self) -> Path:
        return self.boot / prov.BOOT_FILE

    def put(self, text: str | bytes) -> Path:
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.file.write_bytes(data)
        return self.file

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Every file under both folders: content and mode."""
        out = {}
        for base in (self.boot, self.etc):
            for path in sorted(base.rglob("*")) if base.exists() else []:
                if path.is_file():
                    out[str(path)] = (path.read_bytes(), path.stat().st_mode & 0o7777)
        return out


@pytest.fixture
def card(tmp_path: Path) -> Card:
    boot = tmp_path / "boot" / "firmware"
    boot.mkdir(parents=True)
    return Card(boot, tmp_path / "etc" / "leefsamen-hub")


def run_cli(card: Card, *extra: str) -> int:
    return main(["provision", "--from", str(card.file), "--etc", str(card.etc), *extra])


def secret_lines(*pems: str) -> list[str]:
    """The base64 lines of private keys: none of them may ever be printed or logged."""
    return [
        line.strip()
        for pem in pems
        for line in pem.splitlines()
        if line.strip() and not line.startswith("-----")
    ]


def assert_no_secret(text: str, *keys: str) -> None:
    assert "PRIVATE KEY" not in text
    for line in secret_lines(*keys):
        assert line not in text, "a line of the private key was printed or logged"


# ---- a good file ---------------------------------------------------------------------------
def test_first_boot_writes_the_files_and_erases_the_card(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    card.put(boot_text(pki.good))
    size = card.file.stat().st_size
    os.link(card.file, card.boot.parent / "same-inode")  # to see the bytes after the erase
    code = main(["provision", "--boot", "--boot-dir", str(card.boot), "--etc", str(card.etc)])
    out = capsys.readouterr()
    assert code == 0, out.err
    modes = {p.name: p.stat().st_mode & 0o777 for p in card.etc.iterdir()}
    assert modes == {"ca.pem": 0o644, "hub.pem": 0o644, "hub.key": 0o600, "hub.toml": 0o640}
    assert (card.etc / "ca.pem").read_text() == pki.good.ca
    assert (card.etc / "hub.pem").read_text() == pki.good.cert
    config = load_config(card.etc / "hub.toml")
    assert config.hub.id == HUB_ID and config.hub.timezone == "Europe/Brussels"
    uplink = config.uplink
    assert uplink.type == "mqtt"
    assert (uplink.host, uplink.port, uplink.prefix) == ("mqtt.example.org", 8883, "leefsamen")
    assert uplink.tls is not None
    assert uplink.tls.key == card.etc / "hub.key" and uplink.tls.ca == card.etc / "ca.pem"
    # from the example: every setting and driver, but not its made-up home's radio sensors
    assert [d.type for d in config.drivers] == ["zigbee2mqtt", "gpio"]
    assert list(config.home.sensors) == ["help-button"]
    assert config.store.path == Path("/var/lib/leefsamen-hub/events.db")
    # the card: the file is gone, its bytes zeroed first; a note says what happened
    assert not card.file.exists()
    assert (card.boot.parent / "same-inode").read_bytes() == b"\0" * size
    marker = (card.boot / prov.MARKER_FILE).read_text()
    assert HUB_ID in marker and "BEGIN" not in marker
    for line in ("wrote", "erased", "left"):
        assert line in out.out
    assert "CN=h-0412" in out.out
    key = (card.etc / "hub.key").read_text()
    assert_no_secret(out.out + out.err + caplog.text + marker, pki.good.key, key)
    try:
        pwd.getpwnam(prov.SERVICE_USER)
    except KeyError:
        why = "not running as root" if os.geteuid() else f"user {prov.SERVICE_USER} does not exist"
        assert f"hub.key (0600, owner left alone: {why})" in out.out


INSTALLER_TOML = '''\
# the installer's own configuration
[hub]
id = "h-0001"   # set at the factory
timezone = "Europe/Amsterdam"
mode = "away"

[uplink]
host = "old.example.org"
port = 1883
will_delay = "3m"
tls = { ca = "/old/ca.pem", cert = "/old/hub.pem", key = "/old/hub.key" }

[local]
socket = "/run/leefsamen-hub/hub.sock"

[home.sensors.kitchen-motion]
room = "Kitchen"
role = "kitchen"
label = """a sensor
[hub]
id = "not this one"
"""
device = "0x00158d0001a00003"

[home.sensors."front.door"]
room = "Hallway"
role = "front_door"
device = "hallway/front door"

[[drivers]]
type = "zigbee2mqtt"
host = "localhost"
'''


def test_an_existing_hub_toml_keeps_everything_but_the_provisioned_keys(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.etc.mkdir(parents=True)
    config = card.etc / "hub.toml"
    config.write_text(INSTALLER_TOML, encoding="utf-8")
    config.chmod(0o600)
    card.put(boot_text(pki.good, top=""))
    assert run_cli(card) == 0, capsys.readouterr().err
    new = config.read_text()
    assert (card.etc / "hub.toml.bak").read_text() == INSTALLER_TOML
    assert config.stat().st_mode & 0o777 == 0o600  # its mode is kept
    old_data, new_data = tomllib.loads(INSTALLER_TOML), tomllib.loads(new)
    assert new_data["hub"] == {**old_data["hub"], "id": HUB_ID}  # no timezone given: kept
    assert new_data["uplink"] == {
        "host": "mqtt.example.org",
        "port": 8883,
        "prefix": "leefsamen",
        "will_delay": "3m",
        "tls": {
            k: str(card.etc / f)
            for k, f in (("ca", "ca.pem"), ("cert", "hub.pem"), ("key", "hub.key"))
        },
    }
    for table in ("local", "home", "drivers"):
        assert new_data[table] == old_data[table]
    # line by line: only the provisioned keys' lines changed, comments kept
    kept = [line for line in INSTALLER_TOML.splitlines() if line in new.splitlines()]
    gone = [line for line in INSTALLER_TOML.splitlines() if line not in kept]
    assert gone == [
        'id = "h-0001"   # set at the factory',
        'host = "old.example.org"',
        "port = 1883",
        'tls = { ca = "/old/ca.pem", cert = "/old/hub.pem", key = "/old/hub.key" }',
    ]
    assert f'id = "{HUB_ID}"   # set at the factory' in new
    assert 'id = "not this one"' in new  # inside a multi-line string: not a key
    assert "changed: hub.id, uplink.host, uplink.port, uplink.prefix, uplink.tls.ca" in (
        capsys.readouterr().out
    )


def test_the_same_file_twice_gives_the_same_files(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    text = boot_text(pki.good)
    card.put(text)
    assert run_cli(card) == 0
    first = {k: v for k, v in card.snapshot().items() if "/etc/" in k}
    capsys.readouterr()
    card.put(text)
    assert run_cli(card) == 0
    out = capsys.readouterr().out
    assert {k: v for k, v in card.snapshot().items() if "/etc/" in k} == first
    assert out.count("unchanged ") == 4 and "wrote" not in out


def test_a_new_certificate_replaces_the_old_one(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.put(boot_text(pki.good))
    assert run_cli(card) == 0
    card.put(boot_text(pki.second))
    assert run_cli(card) == 0
    out = capsys.readouterr().out
    assert (card.etc / "hub.pem").read_text() == pki.second.cert
    assert "unchanged" in out and "ca.pem" in out.split("unchanged")[1].splitlines()[0]
    assert not (card.etc / "hub.toml.bak").exists()  # hub.toml itself did not change


def test_the_written_files_open_a_tls_session_with_a_real_broker(card: Card, pki: Pki) -> None:
    """The key is re-encoded (PKCS#8) and the PEM texts rebuilt: OpenSSL must take them."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    card.put(boot_text(pki.good))
    assert run_cli(card) == 0
    tls = load_config(card.etc / "hub.toml").uplink.tls  # type: ignore[union-attr]
    assert tls is not None
    with Mosquitto(tls=pki.broker, extra_conf="use_identity_as_username true\n") as broker:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
        client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
        assert broker.tls_port is not None
        client.connect("127.0.0.1", broker.tls_port, keepalive=10)
        client.loop_start()
        try:
            client.publish("x", b"1", qos=1).wait_for_publish(20)
        finally:
            client.disconnect()
            client.loop_stop()
            sock = client.socket()
            if sock is not None:
                sock.close()
        assert f"u'{HUB_ID}'" in broker.log_text()  # the broker took the CN as the user


# ---- refusals ----------------------------------------------------------------------------------
def bad_cases(p: Pki) -> dict[str, tuple[str | bytes, str]]:
    """name -> (file content, what the problem line says)."""
    good = boot_text(p.good)
    return {
        "toml": (good.replace("[broker]", "[broker\n"), "not valid TOML: "),
        "hub id": (boot_text(p.good, hub_id="H_12"), "hub_id: 'H_12' is not a hub id"),
        "cn": (boot_text(p.wrong_cn), "tls.cert: its common name is 'h-9999', not the hub id"),
        "key": (boot_text(p.good, key=p.second.key), "tls.key: does not belong to the certificate"),
        "other ca": (boot_text(p.forged), "tls.cert: not issued by the CA in tls.ca"),
        "expired": (boot_text(p.expired), "tls.cert: expired on 2020-01-02"),
        "future": (boot_text(p.future), "tls.cert: not valid before 2099-01-01"),
        "usage": (boot_text(p.server_only), "tls.cert: its extended key usage"),
        "passphrase": (boot_text(p.good, key=p.encrypted_key), "tls.key: the key is protected"),
        "garbage": (good.replace(p.good.cert.splitlines()[3], "AAAA"), "tls.cert: not a cert"),
        "file name": (
            good.replace('cert = """', 'cert = "/tmp/hub.pem"\nx = """'),
            "tls.cert: expected the PEM text itself",
        ),
        "no broker": (re.sub(r"\[broker\][^\[]*", "", good), "broker: missing"),
        "empty broker": (re.sub(r"\[broker\][^\[]*", "[broker]\n", good), "broker.host: missing"),
        "empty tls": (good.split("[tls]")[0] + "[tls]\n", "tls.key: missing"),
        "port": (boot_text(p.good, broker='host = "h"\nport = 70000\n'), "broker.port: 70000"),
        "prefix": (boot_text(p.good, broker='host = "h"\nprefix = "a//b"\n'), "broker.prefix"),
        "host": (boot_text(p.good, broker='host = "a b"\n'), "broker.host: 'a b' is not a host"),
        "zone": (boot_text(p.good, top='timezone = "Mars/Olympus"\n'), "timezone: unknown"),
        "format": (boot_text(p.good, top="format = 2\n"), "format: this hub reads format 1"),
        "spelling": (boot_text(p.good, top='hubid = "x"\n'), "hubid: unknown key"),
        "not utf-8": (good.encode() + b"# \xff\n", "the file is not UTF-8 text"),
    }


CASES = [
    "toml",
    "hub id",
    "cn",
    "key",
    "other ca",
    "expired",
    "future",
    "usage",
    "passphrase",
    "garbage",
    "file name",
    "no broker",
    "empty broker",
    "empty tls",
    "port",
    "prefix",
    "host",
    "zone",
    "format",
    "spelling",
    "not utf-8",
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_file_is_refused_and_nothing_changes(
    case: str, card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.put(boot_text(pki.second))
    assert prov.provision(card.file, card.etc, keep=True, synced=True) == 0
    capsys.readouterr()
    content, says = bad_cases(pki)[case]
    card.put(content)
    before = card.snapshot()
    code = prov.provision(card.file, card.etc, synced=True)
    err = capsys.readouterr().err
    assert code == 2
    assert f"  - {says}" in err, err
    assert err.rstrip().endswith("nothing was changed")
    assert card.snapshot() == before
    if case == "toml":
        assert "(at line 4, column 8)" in err
    assert_no_secret(err, pki.good.key, pki.second.key)


def test_every_problem_is_listed_at_once(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.put(boot_text(pki.wrong_cn, key=pki.good.key, broker="port = 0\n", top="speed = 3\n"))
    assert prov.provision(card.file, card.etc, synced=True) == 2
    err = capsys.readouterr().err
    assert "5 problem(s)" in err
    for key in ("speed:", "broker.host:", "broker.port:", "tls.cert:", "tls.key:"):
        assert f"  - {key}" in err
    assert not card.etc.exists()


@pytest.mark.parametrize(("kernel", "refused"), [(False, False), (True, True), (None, False)])
def test_by_default_the_kernel_says_whether_dates_can_be_judged(
    kernel: bool | None, refused: bool, card: Card, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock's state is the one thing taken from outside: the kernel's NTP flag. When
    the kernel cannot say (a unit with ProtectClock= may not even read it), the dates are
    not judged."""
    import agent.clock

    monkeypatch.setattr(agent.clock, "kernel_says_synced", lambda: kernel)
    card.put(boot_text(pki.expired))
    assert prov.provision(card.file, card.etc, say=lambda _: None) == (2 if refused else 0)


@pytest.mark.parametrize("which", ["expired", "future"])
def test_dates_are_not_judged_before_the_clock_is_synchronised(
    which: str, card: Card, pki: Pki
) -> None:
    said: list[str] = []
    card.put(boot_text(getattr(pki, which)))
    assert prov.provision(card.file, card.etc, synced=False, say=said.append) == 0
    assert any("the clock is not synchronised yet" in line for line in said)
    assert (card.etc / "hub.pem").read_text() == getattr(pki, which).cert


def test_an_existing_hub_toml_with_problems_is_not_touched(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.etc.mkdir(parents=True)
    broken = INSTALLER_TOML.replace('type = "zigbee2mqtt"', 'type = "teleporter"')
    (card.etc / "hub.toml").write_text(broken, encoding="utf-8")
    card.put(boot_text(pki.good))
    before = card.snapshot()
    assert run_cli(card) == 2
    err = capsys.readouterr().err
    assert "drivers[0].type: unknown driver 'teleporter'" in err
    assert card.snapshot() == before


# ---- --boot ------------------------------------------------------------------------------------
def test_boot_without_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "firmware", tmp_path / "boot"
    a.mkdir()
    code = main(
        [
            "provision",
            "--boot",
            "--boot-dir",
            str(a),
            "--boot-dir",
            str(b),
            "--etc",
            str(tmp_path / "etc"),
        ]
    )
    assert code == 0
    assert f"no leefsamen.toml in {a}, {b}: nothing to provision" in capsys.readouterr().out
    assert not (tmp_path / "etc").exists()


def test_boot_takes_the_first_folder_that_has_the_file(tmp_path: Path, pki: Pki) -> None:
    a, b = tmp_path / "firmware", tmp_path / "boot"
    a.mkdir()
    b.mkdir()
    (b / prov.BOOT_FILE).write_text(boot_text(pki.second), encoding="utf-8")
    etc = tmp_path / "etc"
    argv = ["provision", "--boot", "--boot-dir", str(a), "--boot-dir", str(b), "--etc", str(etc)]
    assert main(argv) == 0
    assert (etc / "hub.pem").read_text() == pki.second.cert
    assert (b / prov.MARKER_FILE).exists()
    (a / prov.BOOT_FILE).write_text(boot_text(pki.good), encoding="utf-8")
    (b / prov.BOOT_FILE).write_text(boot_text(pki.second), encoding="utf-8")
    assert main(argv) == 0
    assert (etc / "hub.pem").read_text() == pki.good.cert
    assert (b / prov.BOOT_FILE).exists() and not (a / prov.BOOT_FILE).exists()


def test_a_bad_file_at_boot_stays_on_the_card(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    card.put(boot_text(pki.forged))
    code = main(["provision", "--boot", "--boot-dir", str(card.boot), "--etc", str(card.etc)])
    assert code == 2
    assert card.file.exists() and not (card.boot / prov.MARKER_FILE).exists()
    assert "not issued by the CA" in capsys.readouterr().err


def test_pair_and_from_do_not_go_together(card: Card, capsys: pytest.CaptureFixture[str]) -> None:
    card.put("")
    assert main(["provision", "pair", "--from", str(card.file)]) == 2
    assert "pair goes without --from" in capsys.readouterr().err


# ---- failures half-way ----------------------------------------------------------------------
def _provisioned(card: Card, pki: Pki) -> dict[str, tuple[bytes, int]]:
    """A hub provisioned with the good certificate; then a file with the second one."""
    card.put(boot_text(pki.good))
    assert prov.provision(card.file, card.etc, say=lambda _: None) == 0
    card.put(boot_text(pki.second, broker='host = "mqtt2.example.org"\n'))
    return card.snapshot()


def _assert_nothing_changed(card: Card, before: dict[str, tuple[bytes, int]]) -> None:
    assert card.snapshot() == before
    leftovers = [p.name for p in card.etc.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_file_size_limit_half_way_leaves_the_old_files(card: Card, pki: Pki) -> None:
    """RLIMIT_FSIZE: the kernel refuses writes past 2000 bytes (EFBIG). The certificate and
    key fit; the configuration does not: the failure comes half-way through."""
    before = _provisioned(card, pki)
    (card.etc / "hub.toml").write_text(
        (card.etc / "hub.toml").read_text() + "# changed by hand\n", encoding="utf-8"
    )
    before = card.snapshot()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    out = subprocess.run(
        [HUB, "provision", "--from", str(card.file), "--etc", str(card.etc)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert "cannot write the files: File too large" in out.stderr
    assert "/hub.toml" in out.stderr  # the configuration, after the certificate and key
    assert "the old files are as they were" in out.stderr
    _assert_nothing_changed(card, before)
    assert_no_secret(out.stdout + out.stderr, pki.good.key, pki.second.key)


def test_a_full_disk_half_way_leaves_the_old_files(
    card: Card, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real full file system: a 64 KB tmpfs holding the configuration folder, with room
    left for the new certificate and key but not for the configuration."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        card = Card(card.boot, mnt / "etc")
        _provisioned(card, pki)
        filler = mnt / "filler"
        with filler.open("wb", buffering=0) as f:  # fill the file system up
            try:
                while True:
                    f.write(b"\0" * 512)
            except OSError:
                pass
        os.truncate(filler, filler.stat().st_size - 8192)  # room for two small files only
        before = card.snapshot()
        code = prov.provision(card.file, card.etc, say=lambda _: None)
        assert code == 1
        err = capsys.readouterr().err
        assert "No space left on device" in err and "hub.toml" in err, err  # after the key
        _assert_nothing_changed(card, before)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_no_permission_leaves_the_old_files(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere; the tmpfs test covers root")
    before = _provisioned(card, pki)
    card.etc.chmod(0o555)
    try:
        assert prov.provision(card.file, card.etc) == 1
        assert "Permission denied" in capsys.readouterr().err
        _assert_nothing_changed(card, before)
    finally:
        card.etc.chmod(0o755)


def test_as_root_the_key_goes_to_the_service_user(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    nobody = pwd.getpwnam("nobody")
    card.put(boot_text(pki.good))
    assert prov.provision(card.file, card.etc, user="nobody") == 0
    key = (card.etc / "hub.key").stat()
    assert (key.st_uid, key.st_gid, key.st_mode & 0o777) == (nobody.pw_uid, nobody.pw_gid, 0o600)
    assert "hub.key (0600, owner nobody)" in capsys.readouterr().out
    cert = (card.etc / "hub.pem").stat()
    assert (cert.st_uid, cert.st_mode & 0o777) == (0, 0o644)


def test_a_card_that_cannot_be_erased_is_reported(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """The boot folder read-only (as a FAT mounted ro would be): provisioned, exit 3."""
    if os.geteuid() == 0:
        pytest.skip("root may remove files from a read-only folder")
    card.put(boot_text(pki.good))
    card.boot.chmod(0o555)
    try:
        assert prov.provision(card.file, card.etc) == 3
    finally:
        card.boot.chmod(0o755)
    assert "could NOT remove" in capsys.readouterr().out
    assert card.file.exists()  # its bytes were zeroed at least
    assert card.file.read_bytes().strip(b"\0") == b""


# ---- the example files ----------------------------------------------------------------------
def test_the_example_boot_file_is_refused_until_filled_in(
    card: Card, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (ROOT / "deploy" / "leefsamen.example.toml").read_text(encoding="utf-8")
    data = tomllib.loads(example)
    assert set(data) == {"format", "hub_id", "timezone", "broker", "tls"}
    card.put(example)
    assert run_cli(card) == 2
    err = capsys.readouterr().err
    for key in ("tls.ca", "tls.cert", "tls.key"):
        assert f"  - {key}: not a" in err
    blocks = re.findall(r'"""\n(.*?)"""', example, flags=re.DOTALL)
    assert len(blocks) == 3
    filled = example.replace('"h-0000"', f'"{HUB_ID}"')
    for placeholder, real in zip(blocks, (pki.good.ca, pki.good.cert, pki.good.key), strict=True):
        filled = filled.replace(placeholder, real)
    card.put(filled)
    assert run_cli(card) == 0, capsys.readouterr().err


def test_the_packaged_example_is_the_deploy_example() -> None:
    packaged = (ROOT / "agent" / prov.EXAMPLE).read_bytes()
    assert packaged == (ROOT / "deploy" / "hub.example.toml").read_bytes()
    assert prov.example_text().encode() == packaged
    fresh = validate_config(tomllib.loads(prov.fresh_config_text()))
    assert all(spec.device is None for spec in fresh.home.sensors.values())


# ---- the line editor --------------------------------------------------------------------------
def test_the_line_editor_adds_missing_tables_and_keys_in_place() -> None:
    text = '# top\n[hub]\nid = "a"\n\n[[drivers]]\ntype = "gpio"\n'
    updates: prov.Updates = {
        ("hub",): {"id": "b", "timezone": "Europe/Paris"},
        ("uplink",): {"host": "x", "port": 8883},
        ("uplink", "tls"): {"ca": "/c"},
    }
    new = prov.apply_updates(text, updates)
    assert new == (
        '# top\n[hub]\nid = "b"\ntimezone = "Europe/Paris"\n\n[uplink]\nhost = "x"\n'
        'port = 8883\n\n[uplink.tls]\nca = "/c"\n\n[[drivers]]\ntype = "gpio"\n'
    )


def test_the_line_editor_refuses_what_it_cannot_edit_by_lines() -> None:
    text = '[hub]\nid = "a"\nuplink.host = "x"\n'  # dotted keys define [hub.uplink]...
    root = 'hub.id = "a"\n'  # ...and a dotted root key defines [hub] implicitly
    with pytest.raises(ValueError):
        prov.apply_updates(root, {("hub",): {"id": "b"}})
    assert tomllib.loads(prov.apply_updates(text, {("hub",): {"id": "b"}}))["hub"]["id"] == "b"
