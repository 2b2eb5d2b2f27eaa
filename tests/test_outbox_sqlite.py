"""What the SQLite outbox adds to the shared suite: restarts, crashes, damage, full disks."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.errors import TransientError
from agent.messages import AlertState, HeartbeatMessage, Mode, Severity, encode
from agent.outbox import open_outbox
from agent.outbox.memory import MemoryOutbox
from agent.outbox.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    OutboxFullError,
    OutboxVersionError,
    SqliteOutbox,
)
from detection.engine import EngineState, OpenAlert
from detection.saved import decode_state
from tests.conftest import ROOT
from tests.test_outbox import alert, heartbeat, seq_of

V1_FIXTURE = ROOT / "tests" / "data" / "outbox" / "outbox-v1.db"
#: version 2: alert 1, alert 2 (resolved) and heartbeat 60 waiting, and the engine's state
#: as stored with alert 2 (see ``V2_ENGINE_STATE``)
V2_FIXTURE = ROOT / "tests" / "data" / "outbox" / "outbox-v2.db"


V2_ENGINE_STATE = EngineState(
    seq=3,
    mode=Mode.AWAY,
    mode_until=1795600800.0,
    open=(
        OpenAlert(
            "inactivity-20261122T061500Z",
            "inactivity",
            Severity.URGENT,
            1795328100.0,
            "Living",
            "person",
            "inactivity",
            {"quiet_min": 152, "limit_min": 150},
        ),
        OpenAlert(
            "help_button-20261122T081000Z",
            "help_button",
            Severity.URGENT,
            1795335000.0,
            "Living",
            "help_button",
            "pressed",
            {"presses": 2},
        ),
    ),
)


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a closed outbox file, read by a separate connection."""
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def waiting(box: SqliteOutbox) -> list[tuple[str, int]]:
    """Everything the outbox would hand out now, as (topic, number)."""
    return [(it.topic, seq_of(it)) for it in box.take(1000)]


def test_reopen_gives_the_same_items_in_order_and_new_ids_stay_larger(tmp_path: Path) -> None:
    """After close and open, the same items wait in order; later ids exceed all earlier ones."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 20)
    ids = [box.add(alert(n), now=float(n)) for n in range(3)]
    ids.append(box.add(heartbeat(7), now=9.0))
    box.close()
    box = SqliteOutbox(path, 1 << 20)
    assert box.depth() == 4 and box.oldest() == 0.0
    batch = box.take(10)
    assert [it.id for it in batch] == ids
    assert [(it.topic, seq_of(it)) for it in batch] == [
        ("alert", 0),
        ("alert", 1),
        ("alert", 2),
        ("heartbeat", 7),
    ]
    assert batch[1].payload == encode(alert(1))
    box.end(accepted=[it.id for it in batch], rejected=[])
    box.close()
    box = SqliteOutbox(path, 1 << 20)  # empty now: ids must still not start again
    assert box.depth() == 0
    assert box.add(alert(9), now=10.0) > max(ids)
    box.close()
    assert integrity(path) == "ok"


def test_in_flight_items_wait_again_after_close_without_end(tmp_path: Path) -> None:
    """In-flight is memory only: closed before the broker answered, the items wait again."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 20)
    for n in range(4):
        box.add(alert(n), now=1.0)
    box.take(2)
    box.close()
    box = SqliteOutbox(path, 1 << 20)
    assert waiting(box) == [("alert", n) for n in range(4)]
    box.close()
    assert integrity(path) == "ok"


def test_a_killed_process_loses_nothing_stored(tmp_path: Path) -> None:
    """Killed with items in flight and two heartbeats: the alerts wait in order, the newer beat."""
    path = tmp_path / "outbox.db"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from agent.outbox.sqlite import SqliteOutbox
        from tests.test_outbox import alert, heartbeat
        box = SqliteOutbox(Path({str(path)!r}), 1 << 20)
        for n in range(5):
            box.add(alert(n), now=float(n))
        box.add(heartbeat(10), now=10.0)
        batch = box.take(2)
        box.end(accepted=[batch[0].id], rejected=[])  # alert 0 reached the broker
        box.take(10)  # alerts 2-4 and the heartbeat in flight
        box.add(heartbeat(20), now=20.0)
        os._exit(0)  # no close, no checkpoint: as if the power went
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    box = SqliteOutbox(path, 1 << 20)
    assert box.depth() == 5
    assert waiting(box) == [*(("alert", n) for n in range(1, 5)), ("heartbeat", 20)]
    box.close()
    assert integrity(path) == "ok"


def test_dropped_count_survives_a_restart(tmp_path: Path) -> None:
    """The next heartbeat after a restart can still say how much the bound dropped."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, len(encode(alert(0))) * 2)
    for n in range(5):
        box.add(alert(n), now=1.0)
    assert box.dropped() == 3
    box.close()
    box = SqliteOutbox(path, len(encode(alert(0))) * 2)
    assert box.dropped() == 3
    assert waiting(box) == [("alert", 3), ("alert", 4)]
    box.close()
    assert integrity(path) == "ok"


def test_a_smaller_bound_at_open_drops_in_the_usual_order(tmp_path: Path) -> None:
    """Reopened with a smaller bound, the least important stored items go and are counted."""
    path = tmp_path / "outbox.db"
    size = len(encode(alert(0)))
    box = SqliteOutbox(path, 1 << 20)
    box.add(alert(0), now=1.0)
    box.add(alert(1, AlertState.RESOLVED), now=1.0)
    box.add(alert(2), now=1.0)
    box.add(heartbeat(5), now=1.0)
    box.close()
    box = SqliteOutbox(path, size * 2)
    assert box.dropped() == 2
    assert waiting(box) == [("alert", 0), ("alert", 2)]
    box.close()
    assert integrity(path) == "ok"


def test_version_1_fixture_opens_with_its_items_in_order(tmp_path: Path) -> None:
    """A version-1 file kept in the repo: 2 alerts and 1 heartbeat come back in order."""
    path = tmp_path / "outbox.db"
    shutil.copyfile(V1_FIXTURE, path)
    box = SqliteOutbox(path, 1 << 20)
    batch = box.take(10)
    assert [(it.topic, seq_of(it)) for it in batch] == [
        ("alert", 1),
        ("alert", 2),
        ("heartbeat", 60),
    ]
    assert [it.payload for it in batch[:2]] == [
        encode(alert(1)),
        encode(alert(2, AlertState.RESOLVED)),
    ]
    # Kept byte for byte as written then (before heartbeats named the drivers), and
    # still a valid heartbeat now: the uplink can publish it.
    assert b'"drivers"' not in batch[2].payload
    assert HeartbeatMessage.model_validate_json(batch[2].payload) == heartbeat(60)
    box.close()
    assert integrity(path) == "ok"


def test_version_1_fixture_gains_an_empty_state_table(tmp_path: Path) -> None:
    """Migrated from version 1: no state yet; a record stored then survives a reopen."""
    path = tmp_path / "outbox.db"
    shutil.copyfile(V1_FIXTURE, path)
    box = SqliteOutbox(path, 1 << 20)
    assert box.get_state("engine") is None
    box.put_state({"engine": b"kept"})
    assert waiting(box) == [("alert", 1), ("alert", 2), ("heartbeat", 60)]
    box.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    box = SqliteOutbox(path, 1 << 20)
    assert box.get_state("engine") == b"kept"
    box.close()
    assert integrity(path) == "ok"


def test_version_2_fixture_opens_with_its_items_and_state(tmp_path: Path) -> None:
    """A version-2 file kept in the repo: its items in order and its state record, as stored."""
    path = tmp_path / "outbox.db"
    shutil.copyfile(V2_FIXTURE, path)
    box = SqliteOutbox(path, 1 << 20)
    assert waiting(box) == [("alert", 1), ("alert", 2), ("heartbeat", 60)]
    record = box.get_state("engine")
    box.close()
    assert record is not None
    assert decode_state(record) == V2_ENGINE_STATE
    assert integrity(path) == "ok"


def test_a_state_record_given_with_an_alert_is_stored_with_it_or_not_at_all(
    tmp_path: Path,
) -> None:
    """Disk full: neither the alert nor its record is stored; the older record stays."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 24)
    box.add(alert(0), now=1.0, state={"engine": b"after alert 0"})
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(OutboxFullError):
        for n in range(1, 200):
            box.add(alert(n, summary="y" * 300), now=1.0, state={"engine": b"z" * 2000})
    stored = box.depth()
    with pytest.raises(OutboxFullError):
        box.put_state({"engine": b"w" * 100_000})
    box.close()
    box = SqliteOutbox(path, 1 << 24)
    assert len(waiting(box)) == stored
    record = box.get_state("engine")
    assert record == (b"after alert 0" if stored == 1 else b"z" * 2000)
    box.close()
    assert integrity(path) == "ok"


def test_a_killed_process_keeps_the_state_stored_with_its_last_alert(tmp_path: Path) -> None:
    """SIGKILL right after an add: the alert and the record given with it are both there."""
    path = tmp_path / "outbox.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from agent.outbox.sqlite import SqliteOutbox
        from tests.test_outbox import alert
        box = SqliteOutbox(Path({str(path)!r}), 1 << 20)
        for n in range(3):
            box.add(alert(n), now=float(n), state={{"engine": b"after %d" % n}})
        box.put_state({{"mode": b"away"}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False, timeout=60)
    assert run.returncode == -9
    box = SqliteOutbox(path, 1 << 20)
    assert waiting(box) == [("alert", 0), ("alert", 1), ("alert", 2)]
    assert (box.get_state("engine"), box.get_state("mode")) == (b"after 2", b"away")
    box.close()
    assert integrity(path) == "ok"


def test_migrations_lead_to_the_current_version(tmp_path: Path) -> None:
    """One step per version, from an empty file up to ``SCHEMA_VERSION``."""
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))
    path = tmp_path / "outbox.db"
    SqliteOutbox(path, 1000).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file from a newer agent is a downgrade: a clear error, the file untouched."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 20)
    box.add(alert(1), now=1.0)
    box.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    newer = rf"schema version {SCHEMA_VERSION + 1}, newer than .* \({SCHEMA_VERSION}\).* downgraded"
    with pytest.raises(OutboxVersionError, match=newer):
        SqliteOutbox(path, 1 << 20)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert integrity(path) == "ok"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_an_unreadable_file_is_moved_aside(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage, a cut-off file or another program's database: moved aside, a new outbox works."""
    path = tmp_path / "outbox.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database, it is what a bad SD card returns" * 100)
        Path(f"{path}-wal").write_bytes(b"\x00garbage wal")
    elif damage == "truncated":
        box = SqliteOutbox(path, 1 << 24)
        for n in range(300):
            box.add(alert(n, summary="x" * 300), now=1.0)
        box.close()
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 3)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE photos (id INTEGER)")
        db.close()
    original = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="agent.outbox.sqlite"):
        box = SqliteOutbox(path, 1 << 20)
    assert any(
        r.levelno == logging.ERROR and "moved aside" in r.getMessage() for r in caplog.records
    )
    found = tmp_path.glob("outbox.db.corrupt-*")
    aside = [p for p in found if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].name.split("corrupt-")[1].isdigit()
    assert aside[0].read_bytes() == original
    if damage == "garbage":
        assert Path(f"{aside[0]}-wal").read_bytes() == b"\x00garbage wal"
    assert box.depth() == 0
    box.add(alert(1), now=1.0)
    assert waiting(box) == [("alert", 1)]
    box.close()
    assert integrity(path) == "ok"


def test_a_full_disk_refuses_the_new_message_and_keeps_the_rest(tmp_path: Path) -> None:
    """Disk full: ``add`` raises a transient "outbox full on disk"; stored alerts stay."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 24)
    box.add(alert(0), now=1.0)
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk is full"
    stored = 1
    with pytest.raises(OutboxFullError, match="outbox full on disk") as caught:
        for n in range(1, 200):
            box.add(alert(n, summary="y" * 300), now=1.0)
            stored += 1
    assert isinstance(caught.value, TransientError)  # the runtime retries later
    assert box.depth() == stored
    batch = box.take(1)  # sending and settling still work while the disk is full
    box.end(accepted=[batch[0].id], rejected=[])
    box.add(heartbeat(5), now=2.0)  # a delete made room for a small row
    box._db.execute("PRAGMA max_page_count=1000000")  # space again
    box.add(alert(500), now=3.0)
    box.close()
    box = SqliteOutbox(path, 1 << 24)
    assert waiting(box) == [
        *(("alert", n) for n in range(1, stored)),
        ("alert", 500),
        ("heartbeat", 5),
    ]
    box.close()
    assert integrity(path) == "ok"


def test_a_failed_delete_is_retried_with_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``end`` does not fail when its delete does; the next add deletes the accepted rows."""
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, 1 << 20)
    box.add(alert(0), now=1.0)
    (item,) = box.take(1)

    def failing(ids: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(box, "_delete", failing)
        box.end(accepted=[item.id], rejected=[])  # logged, not raised
    assert box.depth() == 0
    box.add(alert(1), now=2.0)
    box.close()
    box = SqliteOutbox(path, 1 << 20)
    assert waiting(box) == [("alert", 1)]
    box.close()
    assert integrity(path) == "ok"


def test_open_outbox_picks_the_backend(tmp_path: Path) -> None:
    """A path gives the durable outbox, no path the one in memory."""
    durable = open_outbox(tmp_path / "outbox.db", 1000)
    assert isinstance(durable, SqliteOutbox)
    durable.close()
    assert isinstance(open_outbox(None, 1000), MemoryOutbox)


FSYNC_PROBE = """
import os, sys
from pathlib import Path
from agent.outbox.sqlite import SqliteOutbox
from tests.test_outbox import alert, heartbeat
box = SqliteOutbox(Path(sys.argv[1]), 1 << 24)
for kind in ("alert", "heartbeat"):
    messages = [alert(n) if kind == "alert" else heartbeat(n) for n in range(200)]
    os.write(2, f"START {kind}\\n".encode())
    for n, message in enumerate(messages):
        # with "state", each alert carries the engine's record, as the runtime adds it
        state = {"engine": b"x" * 400} if sys.argv[2] == "state" and kind == "alert" else None
        box.add(message, now=float(n), state=state)
    os.write(2, f"END {kind}\\n".encode())
box.close()
"""


@pytest.mark.parametrize("with_state", ["plain", "state"])
def test_an_alert_costs_at_most_one_fsync(tmp_path: Path, with_state: str) -> None:
    """Counted by strace: 200 alert adds make at most 200 fsyncs, 200 heartbeats far fewer;
    a state record given with each alert costs no fsync of its own."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: install the 'strace' package to count fsyncs")
    trace = tmp_path / "trace"
    command = [strace, "-f", "-o", str(trace), "-e", "trace=fsync,fdatasync,write"]
    run = subprocess.run(
        [*command, sys.executable, "-c", FSYNC_PROBE, str(tmp_path / "outbox.db"), with_state],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0 and b"ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.decode(errors='replace')[:200]}")
    assert run.returncode == 0, run.stderr
    counts: dict[str, int] = {}
    current: str | None = None
    for line in trace.read_text().splitlines():
        for kind in ("alert", "heartbeat"):
            if f'"START {kind}' in line:
                current, counts[kind] = kind, 0
            elif f'"END {kind}' in line:
                current = None
        if current is not None and ("fsync(" in line or "fdatasync(" in line):
            counts[current] += 1
    assert 0 < counts["alert"] <= 200  # really synced, and at most once per alert
    assert counts["heartbeat"] <= 200 // 4  # only checkpoints, every few dozen heartbeats
    assert integrity(tmp_path / "outbox.db") == "ok"


def test_close_is_safe_twice_and_use_after_close_fails(tmp_path: Path) -> None:
    """Closing twice is harmless; taking after close is an error."""
    box = SqliteOutbox(tmp_path / "outbox.db", 1000)
    box.close()
    box.close()
    with pytest.raises(RuntimeError):
        box.take(1)
