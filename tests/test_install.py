"""deploy/install.sh into a throwaway root, and the udev rules against udev's own rule engine.

The installer runs for real with ``--root DIR``: real ``systemd-sysusers``,
``systemd-tmpfiles`` and ``systemctl --root`` in DIR, a real virtual environment with the
project's wheel (built by the installer from this checkout) and its dependencies from the
package index.
What is proved:

- shellcheck finds nothing in any shell script under deploy/;
- bad options exit 2 with a message, before anything is touched; without root and without
  ``--root`` it refuses (exit 1);
- the layout: every path with its owner and mode (owners only when the suite runs as
  root: an ordinary user cannot give files away), the user and its groups in DIR/etc, the
  units enabled (their symlinks in multi-user.target.wants), the installed ``hub`` runs and
  accepts the installed example configuration;
- run twice, the second run changes nothing: the whole tree (paths, types, modes, owners,
  symlink targets, file contents, and the modification times of files) is the same, the
  virtual environment included, with nothing excluded, and every step says "unchanged".
  Both runs build the wheel from the checkout, so this also shows that the same sources
  give the same wheel;
- then, on the same root (one test, in order, because each step starts from the last):
  an upgrade to a different wheel (``--wheel``), Zigbee2MQTT's first configuration
  (``--with-zigbee2mqtt --no-npm``; the program itself is not fetched in CI) and that a
  second run keeps the home's changes to it, ``--uninstall`` keeping the configuration, the
  data and the users, and ``--uninstall --purge`` leaving nothing of the hub's.

The udev test builds the sysfs entries of a USB serial device (the attributes the kernel
shows) in a private mount namespace and runs ``udevadm test`` on it with only our rules
file: the real rule engine decides which /dev/leefsamen/ names a device gets.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "deploy" / "install.sh"
RULES = ROOT / "deploy" / "udev" / "99-leefsamen-hub.rules"
# The files the installer installs as they are; the installed copy must equal these.
VERBATIM = {
    "/etc/systemd/system/leefsamen-hub.service": ROOT / "systemd" / "leefsamen-hub.service",
    "/etc/systemd/system/leefsamen-hub-provision.service": (
        ROOT / "systemd" / "leefsamen-hub-provision.service"
    ),
    "/etc/udev/rules.d/99-leefsamen-hub.rules": RULES,
    "/etc/mosquitto/conf.d/leefsamen-hub.conf": ROOT
    / "deploy"
    / "mosquitto"
    / "leefsamen-hub.conf",
    "/usr/lib/sysusers.d/leefsamen-hub.conf": ROOT / "deploy" / "sysusers.d" / "leefsamen-hub.conf",
    "/usr/lib/tmpfiles.d/leefsamen-hub.conf": ROOT / "deploy" / "tmpfiles.d" / "leefsamen-hub.conf",
    "/etc/leefsamen-hub/hub.toml": ROOT / "deploy" / "hub.example.toml",
}
HUB_UNITS = ("leefsamen-hub.service", "leefsamen-hub-provision.service")
VENV_HUB = "/opt/leefsamen-hub/venv/bin/hub"
# Directories every Debian system has (or the Debian package that owns them makes); an
# uninstall leaves them, empty, as it found them.
SYSTEM_DIRS = {
    "/etc",
    "/etc/mosquitto",
    "/etc/mosquitto/conf.d",
    "/etc/systemd",
    "/etc/systemd/system",
    "/etc/udev",
    "/etc/udev/rules.d",
    "/opt",
    "/usr",
    "/usr/lib",
    "/usr/lib/sysusers.d",
    "/usr/lib/tmpfiles.d",
    "/usr/local",
    "/usr/local/bin",
    "/var",
    "/var/lib",
}
# The user database; shadow-utils' userdel keeps the previous copy of each as FILE-.
USER_DB = ("passwd", "group", "shadow", "gshadow")
IS_ROOT = os.geteuid() == 0
SLOW = 600  # s: a full dependency install from the package index, on a slow day
Entry = tuple[object, ...]


# ---- helpers ----------------------------------------------------------------------------
def run_install(*args: str | Path, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs install.sh with ARGS; as USER (setpriv) when given. Never raises on failure."""
    if user is None:
        cmd = ["bash", str(INSTALL), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SLOW, check=False)
    # the checkout may sit in a folder only its owner can enter (a CI's mktemp -d): the
    # other user gets its own readable copy of the script
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        script = Path(folder) / INSTALL.name
        shutil.copyfile(INSTALL, script)
        script.chmod(0o644)
        who = pwd.getpwnam(user)
        cmd = [
            "setpriv", f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}", "--clear-groups",
            "bash", str(script), *map(str, args),
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SLOW, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a run that must have succeeded; shows everything when it did not."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def snapshot(root: Path) -> tuple[dict[str, Entry], dict[str, int]]:
    """Every path under ROOT: type, mode, owner and symlink target or content hash; and
    separately the modification time of each file and symlink, to show that a run rewrote
    nothing. Not of directories: systemd-sysusers makes and removes a temporary file in
    /etc on every run, also when it has nothing to change."""
    entries: dict[str, Entry] = {}
    mtimes: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = "/" + str(path.relative_to(root))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path), st.st_uid, st.st_gid)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", oct(mode), st.st_uid, st.st_gid)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[rel] = ("file", oct(mode), st.st_uid, st.st_gid, digest)
            if not stat.S_ISDIR(st.st_mode):
                mtimes[rel] = st.st_mtime_ns
    return entries, mtimes


def db_ids(root: Path, db: str) -> dict[str, int]:
    """Name to numeric id in ROOT/etc/passwd or ROOT/etc/group."""
    ids = {}
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        ids[fields[0]] = int(fields[2])
    return ids


def members(root: Path, group: str) -> list[str]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return [m for m in fields[3].split(",") if m]
    raise AssertionError(f"no group {group} in {root}/etc/group")


def source_tree(dest: Path) -> Path:
    """A copy of the checkout's sources (what git tracks or would; else the tree less the
    caches), so a build never writes into the checkout."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout:
        for rel in listed.stdout.decode().split("\0"):
            src = ROOT / rel
            if rel and src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:
        shutil.copytree(
            ROOT,
            dest,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".cache"
            ),
        )
    return dest


def build_wheel(work: Path, version: str | None = None) -> Path:
    """The project's wheel, built as the installer builds it; with VERSION put into
    pyproject.toml when given (a different wheel for the upgrade)."""
    src = source_tree(work / "src")
    if version is not None:
        pyproject = src / "pyproject.toml"
        text, n = re.subn(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text())
        assert n == 1, "pyproject.toml has no version line"
        pyproject.write_text(text)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "-w",
            str(work / "dist"),
            str(src),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=SLOW,
    )
    (wheel,) = (work / "dist").glob("leefsamen_hub-*.whl")
    return wheel


def installed_version(root: Path) -> str:
    result = subprocess.run(
        [str(root) + VENV_HUB, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    return ok(result).strip()


# ---- fixtures ---------------------------------------------------------------------------
@dataclass
class Installed:
    """A root installed twice, with what each run said and the tree after each."""

    root: Path
    first: str
    second: str
    tree1: dict[str, Entry]
    tree2: dict[str, Entry]
    mtimes1: dict[str, int]
    mtimes2: dict[str, int]
    version: subprocess.CompletedProcess[str]
    config_check: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Installed twice the way an installer does it from a checkout: no --wheel, so each
    run builds the wheel; the same sources must give the same wheel, or the second run
    would reinstall."""
    root = tmp_path_factory.mktemp("root")
    first = ok(run_install("--root", root))
    tree1, mtimes1 = snapshot(root)
    second = ok(run_install("--root", root))
    tree2, mtimes2 = snapshot(root)
    hub = str(root) + VENV_HUB
    version = subprocess.run(
        [hub, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    check = subprocess.run(
        [hub, "config", "check", str(root / "etc/leefsamen-hub/hub.toml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    yield Installed(root, first, second, tree1, tree2, mtimes1, mtimes2, version, check)


# ---- static checks and refusals ---------------------------------------------------------
def test_shellcheck_finds_nothing() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (deploy/dev/setup.sh installs it for CI)")
    scripts = sorted(p for p in (ROOT / "deploy").rglob("*.sh"))
    assert INSTALL in scripts
    result = subprocess.run(
        [shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _as_nobody(args: list[str]) -> str | None:
    """A bad-usage run without a throwaway root goes as an ordinary user when the suite is
    root: should a check slip, the script stops at "must run as root" instead of touching
    this machine."""
    if any("{tmp}" in a for a in args) or not IS_ROOT or not shutil.which("setpriv"):
        return None
    return "nobody"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--root"], "option --root needs a value"),
        (["--root", "/nonexistent/leefsamen-root"], "no such directory"),
        (["--root", "/"], "leave --root out"),
        (["--purge", "--root", "{tmp}"], "--purge only goes with --uninstall"),
        (["--wheel", "/nonexistent/x.whl", "--root", "{tmp}"], "no such file"),
        (
            ["--wheel", "{tmp}/other-1.0-py3-none-any.whl", "--root", "{tmp}"],
            "not a wheel of this project",
        ),
        (["--no-npm", "--root", "{tmp}"], "--no-npm only goes with --with-zigbee2mqtt"),
        (
            ["--with-zigbee2mqtt", "--zigbee-adapter", "cc2531", "--root", "{tmp}"],
            "expected zstack, ember, deconz, zigate or zboss",
        ),
        (
            ["--uninstall", "--wheel", "{tmp}/leefsamen_hub-1-py3-none-any.whl", "--root", "{tmp}"],
            "--uninstall goes only with --root and --purge",
        ),
        (["--find-links", "/nonexistent/wheels", "--root", "{tmp}"], "no such directory"),
    ],
)
def test_bad_usage_exits_2_with_a_message(tmp_path: Path, args: list[str], says: str) -> None:
    for name in ("other-1.0-py3-none-any.whl", "leefsamen_hub-1-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    result = run_install(*(a.replace("{tmp}", str(tmp_path)) for a in args), user=_as_nobody(args))
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "--help" in result.stderr
    assert "failed:" not in result.stderr  # a clean refusal, not a command that broke
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["other-1.0-py3-none-any.whl", "leefsamen_hub-1-py3-none-any.whl"]
    ), "a refused run must not touch the root"


def test_help_exits_0() -> None:
    result = run_install("--help")
    assert result.returncode == 0
    assert "--uninstall" in result.stdout and "--root DIR" in result.stdout


def test_refuses_the_real_system_without_root() -> None:
    if not IS_ROOT or not shutil.which("setpriv"):
        pytest.skip("needs to be root to run the script as another user")
    result = run_install("--no-apt", user="nobody")
    assert result.returncode == 1
    assert "must run as root" in result.stderr


# ---- install twice ------------------------------------------------------------------------
@pytest.mark.slow
def test_first_run_installs_everything(installed: Installed) -> None:
    for path in (*VERBATIM, "/opt/leefsamen-hub/venv", "/usr/local/bin/hub", *HUB_UNITS):
        line = next((x for x in installed.first.splitlines() if x.split()[:1] == [path]), None)
        assert line is not None, f"no line for {path} in:\n{installed.first}"
        assert "unchanged" not in line
    assert "Done:" in installed.first and " 0 unchanged" in installed.first


@pytest.mark.slow
def test_second_run_changes_nothing(installed: Installed) -> None:
    assert installed.tree2 == installed.tree1
    assert installed.mtimes2 == installed.mtimes1, "the second run rewrote something"
    steps = [x for x in installed.second.splitlines() if x.startswith("  ")]
    assert len(steps) >= len(VERBATIM) + len(HUB_UNITS) + 2
    for line in steps:
        assert "unchanged" in line, line
    assert "Done: 0 changed" in installed.second


@pytest.mark.slow
def test_layout_modes_and_contents(installed: Installed) -> None:
    tree = installed.tree1
    expected = {
        "/etc/leefsamen-hub": ("dir", "0o750"),
        "/var/lib/leefsamen-hub": ("dir", "0o750"),
        "/etc/leefsamen-hub/hub.toml": ("file", "0o640"),
        "/opt/leefsamen-hub": ("dir", "0o755"),
        "/opt/leefsamen-hub/venv": ("dir", "0o755"),
        VENV_HUB: ("file", "0o755"),
    }
    for path, (kind, mode) in expected.items():
        assert tree[path][:2] == (kind, mode), (path, tree[path])
    for dest, src in VERBATIM.items():
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        assert tree[dest][0] == "file" and tree[dest][4] == digest, f"{dest} differs from {src}"
        if dest != "/etc/leefsamen-hub/hub.toml":
            assert tree[dest][1] == "0o644", (dest, tree[dest])
    assert tree["/usr/local/bin/hub"][:2] == ("link", VENV_HUB)
    # nothing of the program is writable by anyone but its owner
    for path, entry in tree.items():
        if path.startswith("/opt/") and entry[0] != "link":
            assert int(str(entry[1]), 8) & 0o022 == 0, (path, entry)


@pytest.mark.slow
def test_owners(installed: Installed) -> None:
    if not IS_ROOT:
        pytest.skip("owners are set only when the installer runs as root")
    root, tree = installed.root, installed.tree1
    uid = db_ids(root, "passwd")["leefsamen-hub"]
    gid = db_ids(root, "group")["leefsamen-hub"]
    assert tree["/etc/leefsamen-hub"][2:4] == (0, gid)
    assert tree["/etc/leefsamen-hub/hub.toml"][2:4] == (0, gid)
    assert tree["/var/lib/leefsamen-hub"][2:4] == (uid, gid)
    for path, entry in tree.items():
        if path.startswith(("/opt/", "/usr/", "/etc/systemd/", "/etc/udev/", "/etc/mosquitto/")):
            assert entry[2:4] == (0, 0), (path, entry)


@pytest.mark.slow
def test_user_and_groups(installed: Installed) -> None:
    passwd = (installed.root / "etc/passwd").read_text().splitlines()
    (entry,) = [x for x in passwd if x.startswith("leefsamen-hub:")]
    fields = entry.split(":")
    assert fields[5:] == ["/var/lib/leefsamen-hub", "/usr/sbin/nologin"]
    assert int(fields[2]) < 1000, "a system user"
    for group in ("dialout", "gpio", "bluetooth"):
        assert "leefsamen-hub" in members(installed.root, group), group


@pytest.mark.slow
def test_units_are_enabled(installed: Installed) -> None:
    wants = "/etc/systemd/system/multi-user.target.wants"
    for unit in HUB_UNITS:
        assert installed.tree1.get(f"{wants}/{unit}", ())[:2] == (
            "link",
            f"/etc/systemd/system/{unit}",
        ), unit


@pytest.mark.slow
def test_the_installed_hub_runs(installed: Installed) -> None:
    assert ok(installed.version).startswith("hub ")
    out = ok(installed.config_check)
    assert "OK" in out and "hub h-0412" in out


# ---- the rest of its life ---------------------------------------------------------------
def _upgrade(root: Path, tmp_path: Path) -> Path:
    """A different wheel (--wheel) upgrades the environment; the same wheel again does not."""
    new = build_wheel(tmp_path / "new", version="0.1.0.post7")
    out = ok(run_install("--root", root, "--wheel", new))
    assert "upgraded to leefsamen_hub-0.1.0.post7" in out
    assert installed_version(root) == "hub 0.1.0.post7"
    stamp = (root / "opt/leefsamen-hub/venv/.leefsamen-hub-wheel").read_text()
    assert hashlib.sha256(new.read_bytes()).hexdigest() in stamp
    before = snapshot(root)
    out = ok(run_install("--root", root, "--wheel", new))
    assert "unchanged (leefsamen_hub-0.1.0.post7" in out
    assert snapshot(root) == before
    return new


def _zigbee2mqtt(root: Path, wheel: Path) -> None:
    """Zigbee2MQTT's first configuration, without the program (not fetched in CI)."""
    out = ok(
        run_install(
            "--root",
            root,
            "--wheel",
            wheel,
            "--with-zigbee2mqtt",
            "--no-npm",
            "--zigbee-adapter",
            "ember",
        )
    )
    assert "Zigbee2MQTT itself not installed (--no-npm)" in out
    conf = root / "var/lib/zigbee2mqtt/configuration.yaml"
    text = conf.read_text()
    for line in (
        "version: 4",
        "  server: mqtt://127.0.0.1",
        "  port: /dev/leefsamen/zigbee",
        "  adapter: ember",
        "frontend:\n  enabled: false",
        "  network_key: GENERATE",
    ):
        assert line in text, line
    assert "permit_join: true" not in text
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600, "it holds the network key"
    assert (root / "etc/systemd/system/multi-user.target.wants/zigbee2mqtt.service").is_symlink()
    if IS_ROOT:
        uid = db_ids(root, "passwd")["zigbee2mqtt"]
        assert (conf.stat().st_uid, (root / "var/lib/zigbee2mqtt").stat().st_uid) == (uid, uid)
        assert "zigbee2mqtt" in members(root, "dialout")
    conf.write_text(text + "# the home's own change\n")
    again = ok(run_install("--root", root, "--wheel", wheel, "--with-zigbee2mqtt", "--no-npm"))
    assert "configuration.yaml" in again and "unchanged (kept as it is)" in again
    assert conf.read_text().endswith("# the home's own change\n"), "never overwritten"


def _uninstall_keeps_the_data(root: Path) -> None:
    """--uninstall removes the program and its wiring, keeps configuration, data, users."""
    (root / "etc/leefsamen-hub/hub.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot one\n")
    (root / "var/lib/leefsamen-hub/outbox.db").write_bytes(b"SQLite format 3\x00 unsent alerts")
    kept = {
        rel: (root / rel).read_bytes()
        for rel in (
            "etc/leefsamen-hub/hub.toml",
            "etc/leefsamen-hub/hub.key",
            "var/lib/leefsamen-hub/outbox.db",
            "var/lib/zigbee2mqtt/configuration.yaml",
        )
    }
    out = ok(run_install("--root", root, "--uninstall"))
    for rel, data in kept.items():
        assert (root / rel).read_bytes() == data, f"{rel} was not kept"
    for gone in (
        "opt/leefsamen-hub",
        "usr/local/bin/hub",
        "etc/udev/rules.d/99-leefsamen-hub.rules",
        "etc/mosquitto/conf.d/leefsamen-hub.conf",
        "usr/lib/sysusers.d/leefsamen-hub.conf",
        "usr/lib/sysusers.d/zigbee2mqtt.conf",
        "usr/lib/tmpfiles.d/leefsamen-hub.conf",
        *(f"etc/systemd/system/{u}" for u in (*HUB_UNITS, "zigbee2mqtt.service")),
    ):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    assert not list((root / "etc/systemd/system").rglob("*.service")), "enabled links left"
    assert "leefsamen-hub" in db_ids(root, "passwd")
    assert "Kept (remove them with --uninstall --purge):" in out
    assert "/var/lib/leefsamen-hub: unsent alerts" in out


def _purge_leaves_nothing(root: Path) -> None:
    """--uninstall --purge: left are only the directories every Debian system has, empty of
    anything of ours, and the user database without the hub's users. Not counted: the
    previous copies shadow-utils keeps (passwd- and the like, as on every system)."""
    out = ok(run_install("--root", root, "--uninstall", "--purge"))
    assert "user leefsamen-hub" in out and "removed" in out
    for path, entry in snapshot(root)[0].items():
        name = path.removeprefix("/etc/")
        if entry[0] == "dir":
            assert path in SYSTEM_DIRS, f"{path} left behind"
        elif name in USER_DB:
            text = (root / path.lstrip("/")).read_text()
            assert "leefsamen-hub" not in text and "zigbee2mqtt" not in text, path
        else:
            assert name == ".pwd.lock" or name.removesuffix("-") in USER_DB, f"{path} left behind"


@pytest.mark.slow
def test_zigbee2mqtt_upgrade_uninstall_purge(installed: Installed, tmp_path: Path) -> None:
    root = installed.root
    wheel = _upgrade(root, tmp_path)
    _zigbee2mqtt(root, wheel)
    _uninstall_keeps_the_data(root)
    _purge_leaves_nothing(root)


# ---- udev -------------------------------------------------------------------------------
@dataclass(frozen=True)
class UsbSerial:
    """A USB serial device as sysfs shows it: the descriptor strings and the driver's tty."""

    vid: str
    pid: str
    manufacturer: str | None
    product: str | None
    serial: str | None
    tty: str = "ttyUSB0"  # ttyUSB*: a USB-serial bridge driver; ttyACM*: CDC-ACM


def make_usb_tty(sys_root: Path, dev: UsbSerial, port: int = 3) -> str:
    """Writes DEV's sysfs entries under SYS_ROOT; returns the /sys path of its tty."""
    for d in ("bus/usb", "bus/usb-serial", "bus/pci", "class/tty"):
        (sys_root / d).mkdir(parents=True, exist_ok=True)

    def node(path: Path, subsystem: str, uevent: str, attrs: dict[str, str | None]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        depth = len(path.relative_to(sys_root).parts)
        (path / "subsystem").symlink_to("../" * depth + subsystem)
        (path / "uevent").write_text(uevent)
        for key, value in attrs.items():
            if value is not None:
                (path / key).write_text(value + "\n")

    pci = sys_root / "devices/pci0000:00/0000:00:14.0"
    node(pci, "bus/pci", "PCI_SLOT_NAME=0000:00:14.0\n", {})
    usb = pci / "usb1" / f"1-{port}"
    node(
        usb,
        "bus/usb",
        f"DEVTYPE=usb_device\nPRODUCT={dev.vid}/{dev.pid}/100\n",
        {
            "idVendor": dev.vid,
            "idProduct": dev.pid,
            "manufacturer": dev.manufacturer,
            "product": dev.product,
            "serial": dev.serial,
            "bcdDevice": "0100",
            "busnum": "1",
            "devnum": str(port),
            "bDeviceClass": "00",
        },
    )
    intf = usb / f"1-{port}:1.0"
    node(
        intf,
        "bus/usb",
        "DEVTYPE=usb_interface\n",
        {
            "bInterfaceNumber": "00",
            "bInterfaceClass": "ff",
            "bInterfaceSubClass": "00",
            "bInterfaceProtocol": "00",
        },
    )
    major = 166 if dev.tty.startswith("ttyACM") else 188
    parent = intf
    if dev.tty.startswith("ttyUSB"):
        parent = intf / dev.tty
        node(parent, "bus/usb-serial", "", {})
    tty = parent / "tty" / dev.tty
    node(tty, "class/tty", f"MAJOR={major}\nMINOR=0\nDEVNAME={dev.tty}\n", {"dev": f"{major}:0"})
    (sys_root / "class/tty" / dev.tty).symlink_to(Path("../..") / tty.relative_to(sys_root))
    return f"/sys/class/tty/{dev.tty}"


def make_platform_tty(sys_root: Path) -> str:
    """The Pi's own UART as sysfs shows it: a serial port that is not on USB."""
    (sys_root / "bus/platform").mkdir(parents=True)
    (sys_root / "class/tty").mkdir(parents=True)
    plat = sys_root / "devices/platform/serial8250"
    plat.mkdir(parents=True)
    (plat / "subsystem").symlink_to("../../../bus/platform")
    (plat / "uevent").write_text("DRIVER=serial8250\n")
    tty = plat / "tty/ttyS0"
    tty.mkdir(parents=True)
    (tty / "subsystem").symlink_to("../../../../../class/tty")
    (tty / "uevent").write_text("MAJOR=4\nMINOR=64\nDEVNAME=ttyS0\n")
    (tty / "dev").write_text("4:64\n")
    (sys_root / "class/tty/ttyS0").symlink_to("../../devices/platform/serial8250/tty/ttyS0")
    return "/sys/class/tty/ttyS0"


# Inside a private mount namespace: the made-up sysfs on /sys, empty /dev and /run (udevadm
# test makes the symlinks and its database there), and only our rules file.
UDEV_SANDBOX = r"""
set -e
mount --make-rprivate /
mount --bind "$1" /sys
mount -t tmpfs tmpfs /dev
mount -t tmpfs tmpfs /run
for d in /etc/udev/rules.d /usr/lib/udev/rules.d /lib/udev/rules.d; do
  if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
done
cp "$2" /etc/udev/rules.d/
SYSTEMD_DEVICE_VERIFY_SYSFS=0 udevadm test --action=add "$3" 2>&1
"""


def udev_test(
    tmp_path: Path, device: UsbSerial | Callable[[Path], str]
) -> tuple[set[str], dict[str, str], str]:
    """Our rules applied by udev to a made-up device: its /dev/leefsamen/ links, its
    LEEFSAMEN_* properties and the whole log."""
    if shutil.which("udevadm") is None:
        pytest.skip("udevadm is not installed (deploy/dev/setup.sh installs udev for CI)")
    if not IS_ROOT or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace")
    sys_root = tmp_path / "sys"
    sys_root.mkdir()
    syspath = make_usb_tty(sys_root, device) if isinstance(device, UsbSerial) else device(sys_root)
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", UDEV_SANDBOX, "sh", str(sys_root), str(RULES), syspath],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    log = result.stdout + result.stderr
    if result.returncode != 0 and "mount" in log and "permission denied" in log.lower():
        pytest.skip(f"no private mount namespace here: {log[-200:]}")
    assert result.returncode == 0, log
    props = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    assert props.get("SUBSYSTEM") == "tty", log
    links = {x for x in props.get("DEVLINKS", "").split() if x.startswith("/dev/leefsamen/")}
    ours = {k: v for k, v in props.items() if k.startswith("LEEFSAMEN_")}
    return links, ours, log


ZIGBEE = "/dev/leefsamen/zigbee"
RADAR = "/dev/leefsamen/radar"
CH340_PORT = "/dev/leefsamen/radar-pci-0000_00_14_0-usb-0_3_1_0"

UDEV_CASES = {
    "sonoff-zbdongle-p": (
        UsbSerial("10c4", "ea60", "ITead", "Sonoff Zigbee 3.0 USB Dongle Plus", "b8b49abd27a6"),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "zstack"},
    ),
    "sonoff-zbdongle-e": (
        UsbSerial(
            "1a86",
            "55d4",
            "ITEAD",
            "SONOFF Zigbee 3.0 USB Dongle Plus V2",
            "20240122184111",
            tty="ttyACM0",
        ),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "ember"},
    ),
    "sonoff-dongle-plus-mg24": (
        UsbSerial("10c4", "ea60", "SONOFF", "SONOFF Dongle Plus MG24", "b023a583a66b"),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "ember"},
    ),
    "skyconnect": (
        UsbSerial("10c4", "ea60", "Nabu Casa", "SkyConnect v1.0", "3abe54797c91"),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "ember", "LEEFSAMEN_ZIGBEE_RTSCTS": "1"},
    ),
    "conbee-ii": (
        UsbSerial(
            "1cf1",
            "0030",
            "dresden elektronik ingenieurtechnik GmbH",
            "ConBee II",
            "DE2132111",
            tty="ttyACM0",
        ),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "deconz"},
    ),
    "cp2102-radar": (
        UsbSerial("10c4", "ea60", "Silicon Labs", "CP2102 USB to UART Bridge Controller", "0001"),
        {RADAR, "/dev/leefsamen/radar-0001"},
        {},
    ),
    "ch340-radar-without-serial": (
        UsbSerial("1a86", "7523", None, "USB Serial", None),
        {RADAR, CH340_PORT},
        {},
    ),
    "ft232r-radar": (
        UsbSerial("0403", "6001", "FTDI", "FT232R USB UART", "A10KXYZ9"),
        {RADAR, "/dev/leefsamen/radar-A10KXYZ9"},
        {},
    ),
    "slaesh-cc2652rb": (
        UsbSerial(
            "10c4",
            "ea60",
            "Silicon Labs",
            "slae.sh cc2652rb stick - slaesh's iot stuff",
            "00_12_4B_00_21_A8_EC_79",
        ),
        {ZIGBEE},
        {"LEEFSAMEN_ZIGBEE_ADAPTER": "zstack"},
    ),
    "cp2102-with-its-own-name": (
        UsbSerial("10c4", "ea60", "Acme", "Acme Thermostat Link", "7"),
        set(),
        {},
    ),
    "unknown-usb-serial": (
        UsbSerial("2341", "0043", "Arduino (www.arduino.cc)", "Arduino Uno", "75735", "ttyACM0"),
        set(),
        {},
    ),
    "uart-not-on-usb": (make_platform_tty, set(), {}),
}


@pytest.mark.parametrize("case", list(UDEV_CASES))
def test_udev_names_the_radios(tmp_path: Path, case: str) -> None:
    device, want_links, want_props = UDEV_CASES[case]
    links, props, log = udev_test(tmp_path, device)
    assert links == want_links, log
    assert props == want_props, log
    if want_links:
        assert re.search(r"MODE 0660", log), log
        assert re.search(rf"GROUP {grp.getgrnam('dialout').gr_gid}\b", log), log


def test_udev_rules_are_all_reached_and_commented() -> None:
    """Every GOTO has its LABEL and every LABEL a GOTO; every device match (ATTRS) has a
    comment above its group of rule lines saying which adapter it is."""
    text = RULES.read_text()
    assert set(re.findall(r'GOTO="([^"]+)"', text)) == set(re.findall(r'LABEL="([^"]+)"', text))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "ATTRS{" not in line:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip() and not lines[j].startswith("#"):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"line {i + 1} has no comment: {line}"
