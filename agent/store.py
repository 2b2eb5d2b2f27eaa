"""The local event store: the raw record of the home, which never leaves it.

Events are buffered in memory and written in one transaction every ``flush_interval``
(or every few thousand events), so that an SD card is written in few, large batches.
Rows older than ``keep_days`` are pruned once a day. A database that SQLite cannot read
is moved aside and a new one started; a failed write (a full disk) keeps the buffer, up
to a bound, and tries again at the next flush.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from agent.events import SensorEvent

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_FLUSH_EVERY = 4096
_MAX_BUFFER = 200_000  # about 20 MB of events; beyond it the oldest are dropped
_DAY = 86400.0


class EventStore:
    def __init__(self, path: Path, keep_days: int, flush_interval: float) -> None:
        self.path = path
        self.keep_s = keep_days * _DAY
        self.flush_interval = flush_interval
        self.buffer: list[tuple[float, str, str, float]] = []
        self.dropped = 0
        self.written = 0
        self._last_flush_mono: float | None = None
        self._last_prune_wall = 0.0
        self.db = self._open()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (wall REAL NOT NULL,"
                " sensor TEXT NOT NULL, kind TEXT NOT NULL, value REAL NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS events_wall ON events(wall)")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"unknown schema version {version}")
        db.execute("SELECT count(*) FROM events").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as err:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "event store %s is unreadable (%s): moved aside to %s, starting a new one",
                self.path,
                err,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            return self._connect()

    def add(self, event: SensorEvent) -> None:
        self.buffer.append((event.wall, event.sensor, event.kind.value, event.value))
        if self._last_flush_mono is None:
            self._last_flush_mono = event.mono
        if (
            len(self.buffer) >= _FLUSH_EVERY
            or event.mono - self._last_flush_mono >= self.flush_interval
        ):
            self._last_flush_mono = event.mono
            self.flush()

    def flush(self) -> bool:
        """Write the buffer in one transaction; False (buffer kept) when the write failed."""
        if not self.buffer:
            return True
        rows = self.buffer
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
                newest = rows[-1][0]
                if newest - self._last_prune_wall >= _DAY:
                    self.db.execute("DELETE FROM events WHERE wall < ?", (newest - self.keep_s,))
                    self._last_prune_wall = newest
        except sqlite3.Error as err:
            log.error("event store write failed (%s); keeping %d events for later", err, len(rows))
            if len(rows) > _MAX_BUFFER:
                cut = len(rows) - _MAX_BUFFER
                del rows[:cut]
                self.dropped += cut
            return False
        self.written += len(rows)
        self.buffer = []
        return True

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self.flush()
        self.db.close()
