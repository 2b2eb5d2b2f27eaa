"""An outbox in a SQLite file: alerts survive Wi-Fi outages, restarts and power cuts.

The rules are those of ``agent.outbox``, kept by the same queue as ``MemoryOutbox``
(``agent.outbox.queue``), with the payloads in the file; this backend adds durability:

- one transaction per ``add``; an alert is committed with ``synchronous=FULL`` in WAL
  mode (one fsync of the WAL) before ``add`` returns. Heartbeats are committed with
  ``synchronous=NORMAL``: a power cut may lose the newest one, and the next replaces it.
- ``end`` deletes the accepted rows in one transaction, without an fsync of its own: if
  a power cut undoes it, those alerts are sent again with their same alert ids.
- which items are in flight is kept in memory only: after a restart every stored row
  waits again, in id order. A row is deleted only after the broker acknowledged it.
- the dropped count is kept in the ``meta`` table, so the first heartbeat after a
  restart still reports it.
- state records (``put_state``, or ``add`` with ``state``) are rows of the ``state``
  table. Given to ``add``, they are written in the message's own transaction, and the
  commit is synchronous even for a heartbeat: after a power cut the file holds both or
  neither, and never a record older than a message stored with it. ``put_state`` alone
  is one synchronous transaction.
- checkpoints run just before a heartbeat is written (and at close), so that both the
  checkpoint's fsyncs and the fsync of a restarted WAL's header fall on heartbeats and
  an alert costs one fsync. Only after thousands of alerts without any heartbeat is the
  WAL checkpointed inside an alert add.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[n]`` turns version
``n`` into ``n + 1``. A file SQLite cannot read is moved aside as
``<name>.corrupt-<unix time>`` and an empty outbox started; a file from a newer agent
is refused (``OutboxVersionError``), because a person must look at a downgrade.
A full disk makes ``add`` raise ``OutboxFullError`` (a ``TransientError``): that message
is not stored and the outbox is as before, so the caller logs it and keeps running (an
alert can be added again later); everything stored stays, and ``take``/``end`` go on.

Tables (version 2; version 1 had no ``state``)::

    items(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB,
          created REAL, resolved INTEGER)   -- one row per waiting or in-flight item
    meta(key TEXT PRIMARY KEY, value INTEGER) -- 'dropped'; 'opens', for diagnosis
    state(key TEXT PRIMARY KEY, value BLOB)   -- opaque records of the caller's state
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from agent.errors import HubError, TransientError
from agent.messages import AlertMessage, HeartbeatMessage
from agent.outbox import ALERT, HEARTBEAT, OutboxItem, prepare
from agent.outbox.queue import NEW, QueuedOutbox, Row

log = logging.getLogger(__name__)


def _create_v1(db: sqlite3.Connection) -> None:
    """Version 0 (an empty file) to 1: the items and the meta table."""
    db.execute(
        "CREATE TABLE items ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " topic TEXT NOT NULL CHECK (topic IN ('alert', 'heartbeat')),"
        " payload BLOB NOT NULL,"
        " created REAL NOT NULL,"
        " resolved INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta (key, value) VALUES ('dropped', 0)")


def _add_state(db: sqlite3.Connection) -> None:
    """Version 1 to 2: the state records (open alerts and the next sequence number)."""
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")


# version n -> the function that turns a version-n database into version n + 1
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _create_v1,
    1: _add_state,
}
SCHEMA_VERSION: Final = max(MIGRATIONS) + 1

_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_CHECKPOINT_AFTER: Final = 64  # commits; checkpoint at the next heartbeat or end()
_CHECKPOINT_FORCED: Final = 4096  # commits; checkpoint even inside an alert add
_CHUNK: Final = 500  # ids per "IN (...)": under SQLite's limit on host parameters


class OutboxVersionError(HubError):
    """The outbox file was written by a newer agent; a person must decide what to do."""


class OutboxWriteError(TransientError):
    """The outbox could not write (the disk failed); nothing stored was lost, retry later."""


class OutboxReadError(TransientError):
    """The outbox could not read a state record (the disk failed)."""


class OutboxFullError(OutboxWriteError):
    """The disk under the outbox is full: the message was not stored, the rest is intact."""


class _NotAnOutbox(sqlite3.DatabaseError):
    """A readable SQLite file that is not an outbox: treated like a corrupt one."""


class SqliteOutbox(QueuedOutbox):
    """The durable outbox: the rules of ``MemoryOutbox``, with every item in a SQLite file."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        super().__init__(max_bytes)  # the rules; payloads stay in the file
        self.path = path
        self._unsynced_deletes: set[int] = set()  # gone from memory, their delete failed
        self._dropped_unsaved = False  # the dropped count in meta is behind
        self._commits = 0  # since the last checkpoint
        self._sync = ""
        self._db = self._open()
        self._load()

    # -- the Outbox protocol -------------------------------------------------------------

    def add(
        self,
        message: AlertMessage | HeartbeatMessage,
        now: float,
        state: Mapping[str, bytes | None] | None = None,
    ) -> int:
        prepared = prepare(message)
        self._check_open()
        size = len(prepared.payload)
        beat = prepared.topic == HEARTBEAT
        replaced = self._queue.heartbeat if beat else None
        if beat and self._commits >= _CHECKPOINT_AFTER:
            self._checkpoint()  # before the write, so the heartbeat restarts the WAL
        row = Row(NEW, prepared.topic, size, now, prepared.resolved)
        victims = self._queue.victims(row)
        self._set_sync("NORMAL" if beat and not state else "FULL")
        try:
            with self._transaction():
                if state:
                    self._put_state(state)
                cur = self._db.execute(
                    "INSERT INTO items (topic, payload, created, resolved) VALUES (?, ?, ?, ?)",
                    (prepared.topic, prepared.payload, now, int(prepared.resolved)),
                )
                assert cur.lastrowid is not None
                row = Row(cur.lastrowid, row.topic, size, now, row.resolved)
                gone = [row.id if v.id == NEW else v.id for v in victims]
                if replaced is not None:
                    gone.append(replaced.id)
                self._delete(gone)
                if victims or self._dropped_unsaved:
                    self._save_dropped(len(victims))
        except sqlite3.Error as err:
            raise self._write_error(err, prepared.topic) from err
        self._unsynced_deletes.clear()
        self._dropped_unsaved = False
        self._queue.apply_add(row, replaced, victims)
        if not beat and self._commits >= _CHECKPOINT_FORCED:
            self._checkpoint()
        return row.id

    def get_state(self, key: str) -> bytes | None:
        self._check_open()
        try:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as err:
            raise OutboxReadError(f"outbox {self.path}: state {key!r} unreadable ({err})") from err
        return None if row is None else bytes(row[0])

    def put_state(self, records: Mapping[str, bytes | None]) -> None:
        """Store the records in one synchronous transaction; ``OutboxWriteError`` if not."""
        self._check_open()
        if not records:
            return
        self._set_sync("FULL")
        try:
            with self._transaction():
                self._put_state(records)
        except sqlite3.Error as err:
            raise self._write_error(err, "state record") from err

    def take(self, limit: int) -> list[OutboxItem]:
        self._check_open()
        rows = self._queue.take(limit)
        try:
            payloads = self._payloads([r.id for r in rows])
        except sqlite3.Error:
            self._queue.settle([], [r.id for r in rows])  # they wait again, as before
            raise
        return [OutboxItem(r.id, r.topic, payloads[r.id], r.created) for r in rows]

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        self._check_open()
        self._delete_now(self._queue.settle(accepted, rejected))

    def close(self) -> None:
        """Checkpoint and close the file; in-flight items wait again at the next open."""
        if self._closed:
            return
        self._closed = True
        try:
            self._checkpoint()
        finally:
            self._db.close()

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Open, migrate and check the file; move it aside when SQLite cannot read it."""
        try:
            return self._connect(move_aside=True)
        except sqlite3.DatabaseError as err:
            if not _is_corrupt(err):
                raise
            return self._connect(move_aside=False)  # a new, empty file

    def _connect(self, move_aside: bool) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            migrate(db, self.path)  # first: a file that is refused is left as it was
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # we checkpoint outside alert adds
            db.execute("PRAGMA journal_size_limit=1048576")  # a grown WAL shrinks again
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.execute("SELECT id, topic, payload, created, resolved FROM items LIMIT 0")
            db.execute("SELECT key, value FROM state LIMIT 0")
        except BaseException as err:
            try:
                if move_aside and isinstance(err, sqlite3.DatabaseError) and _is_corrupt(err):
                    # while still open: closing would delete the -wal that goes with it
                    self._move_aside(err)
            finally:
                db.close()
            raise
        return db

    def _move_aside(self, err: sqlite3.DatabaseError) -> None:
        """Rename the unreadable file (with its -wal and -shm) for a person to look at."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(Path(f"{aside}{suffix}"))
        log.error(
            "outbox %s is unreadable (%s): moved aside to %s, starting an empty one;"
            " the messages waiting in it are not sent",
            self.path,
            err,
            aside,
        )

    def _load(self) -> None:
        """Read what is stored: everything waits; extra heartbeats and excess bytes go."""
        queue = self._queue
        queue.dropped = int(
            self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        )
        stale: list[int] = []
        for item_id, topic, size, created, resolved in self._db.execute(
            "SELECT id, topic, length(payload), created, resolved FROM items ORDER BY id"
        ):
            row = Row(item_id, topic, size, created, bool(resolved))
            queue.bytes += size
            if topic == ALERT:
                queue.alerts[item_id] = row
            else:
                if queue.heartbeat is not None:
                    stale.append(queue.forget(queue.heartbeat))
                queue.heartbeat = row
        victims = queue.victims(None)
        queue.apply_add(None, None, victims)
        # Always one synced write here: the first commit to a new WAL also syncs its header
        # and the directory; done now, the first alert after a boot costs one fsync.
        self._set_sync("FULL")
        try:
            with self._transaction():
                self._delete([*stale, *(v.id for v in victims)])
                self._save_dropped()
                self._db.execute(  # a real change: SQLite skips writes that change nothing
                    "INSERT INTO meta (key, value) VALUES ('opens', 1)"
                    " ON CONFLICT (key) DO UPDATE SET value = value + 1"
                )
        except sqlite3.Error as err:  # the disk is full or failing: retried with the next add
            self._unsynced_deletes.update([*stale, *(v.id for v in victims)])
            self._dropped_unsaved = True
            log.error("outbox %s could not be tidied at open (%s); will retry", self.path, err)

    # -- writing -------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _set_sync(self, level: str) -> None:
        if self._sync != level:
            self._db.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    def _save_dropped(self, more: int = 0) -> None:
        """Store the dropped count (plus ``more`` about to be dropped) in the transaction."""
        dropped = self._queue.dropped + more
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (dropped,))

    def _put_state(self, records: Mapping[str, bytes | None]) -> None:
        """Write or delete state records inside the current transaction."""
        for key, value in records.items():
            if value is None:
                self._db.execute("DELETE FROM state WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO state (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def _delete(self, ids: Iterable[int]) -> None:
        """Delete rows inside the current transaction, with any earlier failed deletes."""
        todo = sorted({*ids, *self._unsynced_deletes})
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)

    def _delete_now(self, ids: list[int]) -> None:
        """Delete settled rows in one transaction; on failure retry with the next write.

        The broker already has them, so a failure is not the caller's problem: at worst a
        restart sends them again, with their same alert ids.
        """
        if not ids and not self._unsynced_deletes:
            return
        self._set_sync("NORMAL")
        try:
            with self._transaction():
                self._delete(ids)
        except sqlite3.Error as err:
            self._unsynced_deletes.update(ids)
            log.error(
                "outbox %s could not delete %d acknowledged items (%s); will retry",
                self.path,
                len(self._unsynced_deletes),
                err,
            )
            return
        self._unsynced_deletes.clear()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file; a failure only postpones it."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as err:
            log.warning("outbox %s checkpoint failed (%s); will retry", self.path, err)
            return
        self._commits = 0

    def _write_error(self, err: sqlite3.Error, topic: str) -> OutboxWriteError:
        """The error ``add`` raises when its transaction failed."""
        if getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            log.error("outbox full on disk: %s could not store a %s (%s)", self.path, topic, err)
            return OutboxFullError(f"outbox full on disk: {self.path} ({err})")
        log.error("outbox %s could not store a %s (%s)", self.path, topic, err)
        return OutboxWriteError(f"outbox write failed: {self.path} ({err})")

    def _payloads(self, ids: list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(f"SELECT id, payload FROM items WHERE id IN ({marks})", chunk)
            )
        return found


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the body failed."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self._outbox = outbox

    def __enter__(self) -> None:
        self._outbox._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        db = self._outbox._db
        if kind is None:
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._outbox._commits += 1
        elif db.in_transaction:
            db.execute("ROLLBACK")


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring ``db`` to ``SCHEMA_VERSION``, one transaction per step; refuse newer files."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise OutboxVersionError(
            f"outbox {path} has schema version {version}, newer than this agent knows"
            f" ({SCHEMA_VERSION}): was the agent downgraded? The file is left as it is;"
            " move it away to start an empty outbox, or install the newer agent again"
        )
    if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise _NotAnOutbox("a SQLite file with tables but no outbox schema version")
    while version < SCHEMA_VERSION:
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("outbox %s migrated from schema version %d to %d", path, version, version + 1)
        version += 1


def _is_corrupt(err: sqlite3.DatabaseError) -> bool:
    """SQLite cannot read the file (as opposed to: the disk is full or read-only)."""
    return isinstance(err, _NotAnOutbox) or (
        getattr(err, "sqlite_errorcode", None) in _CORRUPT_CODES
        or str(err).startswith("quick_check:")
    )
