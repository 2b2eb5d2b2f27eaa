"""The local event store: batched writes, bounded, survives a corrupt file and a full disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.events import EventKind, SensorEvent
from agent.store import EventStore


def events(n: int, start: float = 1_790_000_000.0, step: float = 1.0) -> list[SensorEvent]:
    return [
        SensorEvent("hall", EventKind.MOTION, float(i % 2), start + i * step, start + i * step)
        for i in range(n)
    ]


def test_events_are_written_in_batches(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", keep_days=90, flush_interval=30.0)
    for e in events(20):  # 20 s of events: under the flush interval
        store.add(e)
    assert store.count() == 0 and len(store.buffer) == 20
    store.add(events(1, start=1_790_000_040.0)[0])  # 40 s after the first: flush
    assert store.count() == 21 and store.buffer == []
    store.close()
    reopened = EventStore(tmp_path / "events.db", keep_days=90, flush_interval=30.0)
    assert reopened.count() == 21


def test_old_rows_are_pruned(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", keep_days=1, flush_interval=3600.0)
    for e in events(100, step=3600.0):  # 100 hours, one event an hour
        store.add(e)
    store.close()
    db = sqlite3.connect(tmp_path / "events.db")
    oldest, newest = db.execute("SELECT min(wall), max(wall) FROM events").fetchone()
    assert newest - oldest <= 2 * 86400  # pruned once a day to the last day or so
    assert newest - oldest >= 86400


def test_a_corrupt_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database" * 100)
    store = EventStore(path, keep_days=90, flush_interval=0.0)
    store.add(events(1)[0])
    assert store.count() == 1
    aside = list(tmp_path.glob("events.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_a_full_disk_keeps_the_buffer_and_retries(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", keep_days=90, flush_interval=1e9)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages + 2}")  # SQLite's own "disk is full"
    for e in events(5000):
        store.add(e)
    assert not store.flush()
    assert len(store.buffer) > 0  # nothing accepted was thrown away
    store.db.execute("PRAGMA max_page_count=1000000")  # space again
    assert store.flush()
    assert store.count() == 5000 and store.dropped == 0
