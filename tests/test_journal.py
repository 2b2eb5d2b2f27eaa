"""Logging to the journal: the native protocol on a real Unix datagram socket, the fall-back
to stderr, the choice ``hub`` makes, and what may never be in the log.

The journal's side is a datagram socket bound by the test where journald's would be; the
test reads the fields back as journald parses them (``KEY=value`` lines, or ``KEY``, a
64-bit little-endian length and the bytes for a value with a newline).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent import journal
from agent.devtools.broker import BrokerTls, Mosquitto, find_mosquitto
from agent.journal import JournalHandler, handler_for_stderr, stderr_is_journal
from agent.traces.format import write_trace
from agent.traces.simulate import parse_incident, simulate
from tests.conftest import ROOT

Fields = list[tuple[str, str]]


def parse(datagram: bytes) -> Fields:
    """The fields of one native-protocol datagram, as journald reads them."""
    out: Fields = []
    i = 0
    while i < len(datagram):
        end = datagram.index(b"\n", i)
        line = datagram[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            out.append((key.decode(), value.decode()))
            i = end + 1
        else:
            (size,) = struct.unpack("<Q", datagram[end + 1 : end + 9])
            start = end + 9
            assert datagram[start + size : start + size + 1] == b"\n"
            out.append((line.decode(), datagram[start : start + size].decode()))
            i = start + size + 1
    return out


def one(fields: Fields, name: str) -> str:
    [value] = [v for k, v in fields if k == name]
    return value


class Journal:
    """journald's socket, played by the test; it can go away and come back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = self._bind()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(str(self.path))
        return sock

    def restart(self) -> None:
        self.sock.close()
        self.path.unlink()
        self.sock = self._bind()

    def raw(self, timeout: float = 10.0) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(8 * 1024 * 1024)

    def receive(self, timeout: float = 10.0) -> Fields:
        return parse(self.raw(timeout))

    def drain(self) -> list[Fields]:
        out: list[Fields] = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(parse(self.sock.recv(8 * 1024 * 1024)))
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jnl-", dir="/tmp"))  # sun_path is 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def journal_side(short_dir: Path) -> Iterator[Journal]:
    side = Journal(short_dir / "socket")
    yield side
    side.close()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    journal.set_hub_id(None)  # a runtime made by an earlier test named its hub
    log = logging.getLogger("tests.journal")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True
    journal.set_hub_id(None)


# ---- the protocol ----------------------------------------------------------------------------
def test_a_record_arrives_with_its_fields(journal_side: Journal, logger: logging.Logger) -> None:
    logger.addHandler(JournalHandler(journal_side.path))
    logger.warning("before the configuration is read")
    journal.set_hub_id("h-0412")
    logger.error("alert %s not stored", "help_button-1", extra={"alert_id": "help_button-1"})
    logger.critical("two alerts lost", extra={"alert_id": ["a-1", "a-2"]})

    first = journal_side.receive()
    assert one(first, "MESSAGE") == "before the configuration is read"
    assert one(first, "PRIORITY") == "4"
    assert not any(k in ("HUB_ID", "ALERT_ID") for k, _ in first)

    fields = journal_side.receive()
    assert one(fields, "MESSAGE") == "alert help_button-1 not stored"
    assert one(fields, "PRIORITY") == "3"
    assert one(fields, "SYSLOG_IDENTIFIER") == "leefsamen-hub"
    assert one(fields, "LOGGER") == "tests.journal"
    assert one(fields, "CODE_FILE") == __file__
    assert one(fields, "CODE_FUNC") == "test_a_record_arrives_with_its_fields"
    assert int(one(fields, "CODE_LINE")) > 0
    assert one(fields, "HUB_ID") == "h-0412"
    assert one(fields, "ALERT_ID") == "help_button-1"

    last = journal_side.receive()
    assert one(last, "PRIORITY") == "2"
    assert [v for k, v in last if k == "ALERT_ID"] == ["a-1", "a-2"]


def test_a_message_with_newlines_uses_the_length_prefixed_form(
    journal_side: Journal, logger: logging.Logger
) -> None:
    logger.addHandler(JournalHandler(journal_side.path))
    try:
        raise ValueError("the broken part")
    except ValueError:
        logger.exception("it failed")
    raw = journal_side.raw()
    assert b"\nMESSAGE\n" in raw or raw.startswith(b"MESSAGE\n")
    message = one(parse(raw), "MESSAGE")
    assert message.startswith("it failed\nTraceback") and "ValueError: the broken part" in message


def test_a_long_message_is_cut_short(
    journal_side: Journal, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger.addHandler(JournalHandler(journal_side.path))
    logger.warning("x" * (journal.MAX_MESSAGE + 5000))
    message = one(journal_side.receive(), "MESSAGE")
    assert message.endswith(" [cut short]") and len(message) < journal.MAX_MESSAGE + 20
    # larger than the socket can send at all: the kernel says EMSGSIZE, the message is cut
    # to a short one and sent again
    monkeypatch.setattr(journal, "MAX_MESSAGE", 64 * 1024 * 1024)
    logger.warning("y" * (8 * 1024 * 1024))
    message = one(journal_side.receive(), "MESSAGE")
    assert message == "y" * journal.SHORT_MESSAGE + " [cut short]"


def test_no_journal_means_stderr_for_that_record_never_an_error(
    short_dir: Path, logger: logging.Logger
) -> None:
    err = io.StringIO()
    handler = JournalHandler(short_dir / "absent", fallback=err)
    logger.addHandler(handler)
    logger.warning("first")
    logger.error("second")
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("WARNING agent.journal: the journal at ")
    assert "cannot take log records" in lines[0]
    assert lines[1:] == ["WARNING tests.journal: first", "ERROR tests.journal: second"]
    assert handler.fallbacks == 2


def test_a_journal_that_restarts_is_found_again(
    journal_side: Journal, logger: logging.Logger
) -> None:
    err = io.StringIO()
    logger.addHandler(JournalHandler(journal_side.path, fallback=err))
    logger.warning("one")
    assert one(journal_side.receive(), "MESSAGE") == "one"
    journal_side.restart()  # the old socket is gone: that record goes to stderr
    logger.warning("two")
    logger.warning("three")
    assert "WARNING tests.journal: two" in err.getvalue()
    assert one(journal_side.receive(), "MESSAGE") == "three"


def test_a_socket_nobody_reads_falls_back_too(short_dir: Path, logger: logging.Logger) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(short_dir / "dead"))
    dead.close()  # the file stays, nobody listens: ECONNREFUSED
    err = io.StringIO()
    logger.addHandler(JournalHandler(short_dir / "dead", fallback=err))
    logger.warning("lost?")
    assert "WARNING tests.journal: lost?" in err.getvalue()


# ---- the choice -------------------------------------------------------------------------------
def test_stderr_is_the_journal_only_when_journal_stream_names_fd_2(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream, (tmp_path / "other").open("w") as other:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, stream.fileno())
        assert not stderr_is_journal(env, other.fileno())
        assert not stderr_is_journal({}, stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream.fileno())
    assert isinstance(handler_for_stderr({}), logging.StreamHandler)


# ---- the agent, logging: no sensor timelines, no secrets -----------------------------------------
RUN_WITH_SOCKET = (
    "import sys; from pathlib import Path; import agent.journal as j; "
    "j.JOURNAL_SOCKET = Path(sys.argv[1]); from agent.cli import main; "
    "sys.exit(main(sys.argv[2:]))"
)


def _pki(folder: Path) -> tuple[BrokerTls, Path, Path, Path]:
    from tests.test_uplink import _issue, _make_ca

    ca = _make_ca(folder, "ca")
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _issue(folder, "broker", "ca", "/CN=localhost", names)
    client = _issue(folder, "hub", "ca", "/CN=h-0412", "extendedKeyUsage=clientAuth")
    return BrokerTls(ca, server.cert, server.key), client.cert, client.key, ca


def _key_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: what must never be seen anywhere."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("-----")]


def _run_logged(journal_path: Path, args: list[str], folder: Path) -> tuple[list[Fields], str, int]:
    """``hub ARGS`` with stderr connected to the test's journal, as systemd connects it."""
    side = Journal(journal_path)
    received: list[Fields] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                received.append(side.receive(timeout=0.2))
            except TimeoutError:
                continue

    reader = threading.Thread(target=read)
    reader.start()
    stderr_path = folder / "stderr.txt"
    try:
        with stderr_path.open("w", encoding="utf-8") as err:
            st = os.fstat(err.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            run = subprocess.run(
                [sys.executable, "-c", RUN_WITH_SOCKET, str(journal_path), *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=300,
                check=False,
            )
    finally:
        done.set()
        reader.join()
        received.extend(side.drain())
        side.close()
        journal_path.unlink()
    return received, stderr_path.read_text(encoding="utf-8"), run.returncode


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_the_log_holds_no_sensor_timeline_and_no_key_at_default_level_and_verbose(
    short_dir: Path,
) -> None:
    tz = ZoneInfo("Europe/Amsterdam")
    start = date(2026, 11, 2)
    incidents = [parse_incident(s, start, tz) for s in ("help_button@d8T11:00", "fall@d9T16:00")]
    sim = simulate(10, 5, start, tz, "typical", incidents)
    trace = short_dir / "home.jsonl"
    write_trace(trace, sim.header, sim.events)
    sensors = set(sim.header.home.sensors)
    tls, cert, key, ca = _pki(short_dir)
    secret = _key_lines(key) + _key_lines(tls.keyfile) + _key_lines(short_dir / "ca.key")
    assert len(secret) >= 6

    with Mosquitto(tls=tls) as broker:
        config = short_dir / "hub.toml"
        config.write_text(
            f'[hub]\nid = "h-0412"\ntimezone = "Europe/Amsterdam"\n[uplink]\n'
            f'host = "127.0.0.1"\nport = {broker.tls_port}\nprefix = "lfs"\n'
            f'[uplink.tls]\nca = "{ca}"\ncert = "{cert}"\nkey = "{key}"\n',
            encoding="utf-8",
        )
        for verbose in ([], ["-v"]):
            args = [*verbose, "replay", str(trace), "--config", str(config)]
            records, stderr, code = _run_logged(short_dir / "journal", args, short_dir)
            assert code == 0, stderr
            messages = [one(fields, "MESSAGE") for fields in records]
            everything = "\n".join([*messages, stderr])
            if verbose:
                # it does log to the journal, with the hub's id, and says what it does
                assert any("connected to 127.0.0.1" in m for m in messages), messages
                assert any(("HUB_ID", "h-0412") in fields for fields in records)
                alert_lines = [m for m in messages if m.startswith("alert ")]
                assert len(alert_lines) >= 2
            # nothing per event: a handful of lines for thousands of events
            assert len(sim.events) > 5000 and len(records) < 50, messages
            # no sensor named, so no sensor with a time of use
            for message in messages:
                named = [s for s in sensors if re.search(rf"\b{re.escape(s)}\b", message)]
                assert not named, message
            # no key material, anywhere it could have gone
            assert "PRIVATE KEY" not in everything
            assert not [line for line in secret if line in everything]
