"""A full disk while alerts are raised: the runtime keeps them, in order, and stores them
when there is room again; it says so, and keeps running."""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import agent.runtime as runtime_module
from agent.messages import AlertMessage
from agent.outbox.sqlite import OutboxFullError, SqliteOutbox
from agent.replay import replay_runtime
from agent.traces.format import write_trace
from agent.traces.simulate import parse_incident, simulate
from agent.uplink import MemoryUplink

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days with three help-button presses on the last two: three alert messages."""
    presses = ("help_button@d2T09:00", "help_button@d2T15:00", "help_button@d3T11:00")
    sim = simulate(3, 4, START, TZ, "sparse", [parse_incident(p, START, TZ) for p in presses])
    path = tmp_path_factory.mktemp("disk-full") / "home.jsonl"
    write_trace(path, sim.header, sim.events)
    return path


def _config(folder: Path) -> Path:
    path = folder / "hub.toml"
    path.write_text(
        '[hub]\nid = "h-0412"\ntimezone = "Europe/Amsterdam"\n[uplink]\ntype = "memory"\n'
        f'[outbox]\npath = "{folder / "outbox.db"}"\n',
        encoding="utf-8",
    )
    return path


class FullDisk:
    """The outbox's own answer to a full disk (``OutboxFullError``, as the SQLite outbox
    raises it: tests/test_outbox_sqlite.py), switched on and off by the test."""

    def __init__(self, box: SqliteOutbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.refused = 0
        real = box.add

        def add(message: Any, now: float, state: Any = None) -> int:
            if self.full:
                self.refused += 1
                what = type(message).__name__
                raise OutboxFullError(f"outbox {box.path}: full on disk, {what} refused")
            return real(message, now, state)

        monkeypatch.setattr(box, "add", add)


def test_alerts_refused_by_a_full_disk_are_kept_and_stored_in_order_later(
    trace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "STORE_RETRY", 0)  # retry at the next moment
    made: list[AlertMessage] = []
    runtime = replay_runtime(trace, _config(tmp_path), "max", None)
    box = runtime.outbox
    assert isinstance(box, SqliteOutbox)

    disk = FullDisk(box, monkeypatch)
    disk.full = True  # the disk is full from the start

    def hook(message: AlertMessage) -> None:
        made.append(message)
        if len(made) == 2:
            disk.full = False  # and has room again after the second alert

    runtime.alert_hook = hook
    with caplog.at_level(logging.WARNING, logger="agent.runtime"):
        asyncio.run(runtime.run())
    # raised, then updated by each press (the button waits for the centre)
    assert [m.state.value for m in made] == ["raised", "updated", "updated"]
    refused = [r for r in caplog.records if r.getMessage().startswith("alert ")]
    assert disk.refused > 2  # the two alerts at least once each, and heartbeats
    beats = [r for r in caplog.records if r.getMessage().startswith("heartbeat not stored")]
    assert len(beats) == 1  # said once, not at every heartbeat
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR  # said once
    assert "kept in memory" in refused[0].getMessage()
    assert any("is stored now" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.CRITICAL for r in caplog.records)
    # every alert reached the centre once, in the order it was made
    uplink = runtime.uplink
    assert isinstance(uplink, MemoryUplink)
    sent = [AlertMessage.model_validate_json(p) for t, p in uplink.sent if t == "alert"]
    assert [(m.id, m.seq) for m in sent] == [(m.id, m.seq) for m in made]


def test_alerts_still_refused_at_the_stop_are_named_in_a_critical_message(
    trace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[AlertMessage] = []
    runtime = replay_runtime(trace, _config(tmp_path), "max", None)
    box = runtime.outbox
    assert isinstance(box, SqliteOutbox)

    FullDisk(box, monkeypatch).full = True
    runtime.alert_hook = made.append
    with caplog.at_level(logging.WARNING, logger="agent.runtime"):
        asyncio.run(runtime.run())  # the agent runs to the end: nothing raised out of it
    [critical] = [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    text = critical.getMessage()
    assert len(made) == 3 and "3 alert(s) the outbox could not store" in text
    assert made[0].id in text
