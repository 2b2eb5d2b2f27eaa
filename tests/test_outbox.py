"""One test suite for every outbox backend (add a backend to ``BACKENDS``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import Field

from agent.messages import (
    AlertMessage,
    AlertState,
    HeartbeatMessage,
    Mode,
    OutboxHealth,
    SensorCounts,
    Severity,
    StatusMessage,
    encode,
)
from agent.outbox import Outbox, OutboxItem
from agent.outbox.memory import MemoryOutbox
from agent.outbox.sqlite import SqliteOutbox

MakeOutbox = Callable[[int], Outbox]

# name -> how to open an empty outbox of that kind with a bound, in a fresh directory
BACKENDS: dict[str, Callable[[Path, int], Outbox]] = {
    "memory": lambda _dir, max_bytes: MemoryOutbox(max_bytes),
    "sqlite": lambda directory, max_bytes: SqliteOutbox(directory / "outbox.db", max_bytes),
}

HUB = "h-0412"
T0 = datetime(2026, 11, 22, 9, 10, tzinfo=UTC)


def alert(n: int, state: AlertState = AlertState.RAISED, summary: str = "") -> AlertMessage:
    """Alert number ``n``: its id and seq say which one it is."""
    return AlertMessage(
        hub=HUB,
        id=f"inactivity-{n}",
        seq=n,
        kind="inactivity",
        severity=Severity.URGENT,
        state=state,
        since=T0,
        at=T0 + timedelta(minutes=n),
        room="living",
        clock_synced=True,
        summary=summary or f"No movement for {n} min",
        evidence={"quiet_min": n},
    )


def heartbeat(uptime: int) -> HeartbeatMessage:
    """A heartbeat told apart by its uptime."""
    return HeartbeatMessage(
        hub=HUB,
        at=T0 + timedelta(seconds=uptime),
        version="0.1.0",
        uptime_s=uptime,
        clock_synced=True,
        mode=Mode.NORMAL,
        sensors=SensorCounts(ok=7),
        outbox=OutboxHealth(depth=0, oldest_s=0, dropped=0),
        disk_free_mb=5120,
    )


def seq_of(item: OutboxItem) -> int:
    """The alert number or heartbeat uptime inside an item's payload."""
    data = json.loads(item.payload)
    return int(data["seq"] if item.topic == "alert" else data["uptime_s"])


@pytest.fixture(params=sorted(BACKENDS))
def make_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeOutbox]:
    """Opens outboxes of the backend under test; closes them after the test."""
    opened: list[Outbox] = []

    def make(max_bytes: int = 1 << 20) -> Outbox:
        outbox = BACKENDS[request.param](tmp_path / f"outbox-{len(opened)}", max_bytes)
        opened.append(outbox)
        return outbox

    yield make
    for outbox in opened:
        outbox.close()


def test_alerts_leave_in_the_order_added(make_outbox: MakeOutbox) -> None:
    """A batch holds the oldest alerts first, with the bytes ``encode`` made."""
    box = make_outbox()
    for n in range(5):
        box.add(alert(n), now=100.0 + n)
    batch = box.take(3)
    assert [seq_of(it) for it in batch] == [0, 1, 2]
    assert [it.topic for it in batch] == ["alert"] * 3
    assert batch[0].payload == encode(alert(0))
    assert batch[0].created == 100.0


def test_ids_are_unique_and_increasing(make_outbox: MakeOutbox) -> None:
    """Every add returns a new id, larger than the one before, whatever the kind."""
    box = make_outbox()
    ids = [box.add(alert(n) if n % 3 else heartbeat(n), now=1.0) for n in range(20)]
    assert ids == sorted(set(ids))


def test_heartbeat_comes_after_all_alerts(make_outbox: MakeOutbox) -> None:
    """Alerts first in the order added, then the newest heartbeat."""
    box = make_outbox()
    box.add(heartbeat(1), now=1.0)
    box.add(alert(1), now=2.0)
    box.add(alert(2), now=3.0)
    batch = box.take(10)
    assert [(it.topic, seq_of(it)) for it in batch] == [
        ("alert", 1),
        ("alert", 2),
        ("heartbeat", 1),
    ]


def test_heartbeat_waits_while_a_batch_is_full_of_alerts(make_outbox: MakeOutbox) -> None:
    """A full batch of alerts leaves the heartbeat for the next take."""
    box = make_outbox()
    box.add(heartbeat(1), now=1.0)
    for n in range(2):
        box.add(alert(n), now=2.0)
    assert [it.topic for it in box.take(2)] == ["alert", "alert"]
    assert [it.topic for it in box.take(2)] == ["heartbeat"]


def test_heartbeats_coalesce_to_the_newest(make_outbox: MakeOutbox) -> None:
    """Adding a heartbeat replaces the one still waiting; that is not a drop."""
    box = make_outbox()
    for uptime in (10, 20, 30):
        box.add(heartbeat(uptime), now=float(uptime))
    assert box.depth() == 1
    assert [seq_of(it) for it in box.take(5)] == [30]
    assert box.dropped() == 0


def test_in_flight_heartbeat_is_not_replaced(make_outbox: MakeOutbox) -> None:
    """A heartbeat in flight stays; a newer one waits beside it."""
    box = make_outbox()
    box.add(heartbeat(10), now=1.0)
    (first,) = box.take(5)
    box.add(heartbeat(20), now=2.0)
    assert box.depth() == 2
    box.end(accepted=[first.id], rejected=[])
    assert [seq_of(it) for it in box.take(5)] == [20]


def test_rejected_heartbeat_loses_to_a_newer_one(make_outbox: MakeOutbox) -> None:
    """A rejected heartbeat does not come back when a newer one is waiting."""
    box = make_outbox()
    box.add(heartbeat(10), now=1.0)
    (old,) = box.take(5)
    box.add(heartbeat(20), now=2.0)
    box.end(accepted=[], rejected=[old.id])
    assert [seq_of(it) for it in box.take(5)] == [20]
    assert box.depth() == 1


def test_rejected_heartbeat_comes_back_when_alone(make_outbox: MakeOutbox) -> None:
    """A rejected heartbeat waits again if nothing newer replaced it."""
    box = make_outbox()
    box.add(heartbeat(10), now=1.0)
    (beat,) = box.take(5)
    box.end(accepted=[], rejected=[beat.id])
    assert [it.id for it in box.take(5)] == [beat.id]


def test_in_flight_items_are_not_taken_again(make_outbox: MakeOutbox) -> None:
    """A second take skips what the first one handed out."""
    box = make_outbox()
    for n in range(4):
        box.add(alert(n), now=1.0)
    first = box.take(2)
    second = box.take(10)
    assert [seq_of(it) for it in first] == [0, 1]
    assert [seq_of(it) for it in second] == [2, 3]
    assert box.take(10) == []
    assert box.depth() == 4


def test_accepted_items_are_gone(make_outbox: MakeOutbox) -> None:
    """Accepting a batch deletes it."""
    box = make_outbox()
    for n in range(3):
        box.add(alert(n), now=1.0)
    batch = box.take(3)
    box.end(accepted=[it.id for it in batch], rejected=[])
    assert box.depth() == 0
    assert box.take(10) == []
    assert box.oldest() is None


def test_rejected_items_return_before_newer_ones(make_outbox: MakeOutbox) -> None:
    """Rejected items come back in their order, ahead of what was added since."""
    box = make_outbox()
    for n in range(3):
        box.add(alert(n), now=1.0)
    batch = box.take(3)
    box.add(alert(3), now=2.0)
    box.end(accepted=[], rejected=[it.id for it in reversed(batch)])
    assert [seq_of(it) for it in box.take(10)] == [0, 1, 2, 3]


def test_partly_accepted_batch(make_outbox: MakeOutbox) -> None:
    """The accepted part of a batch is gone; the rejected part is next."""
    box = make_outbox()
    for n in range(5):
        box.add(alert(n), now=1.0)
    batch = box.take(4)
    box.end(accepted=[batch[0].id, batch[1].id], rejected=[batch[2].id, batch[3].id])
    assert [seq_of(it) for it in box.take(10)] == [2, 3, 4]


def test_two_batches_rejected_in_any_order(make_outbox: MakeOutbox) -> None:
    """Overlapping batches rejected out of order still restore the original order."""
    box = make_outbox()
    for n in range(6):
        box.add(alert(n), now=1.0)
    first = box.take(2)
    second = box.take(2)
    box.end(accepted=[], rejected=[it.id for it in second])
    box.end(accepted=[], rejected=[it.id for it in first])
    assert [seq_of(it) for it in box.take(10)] == [0, 1, 2, 3, 4, 5]


def test_end_refuses_ids_not_in_flight(make_outbox: MakeOutbox) -> None:
    """Settling an item that is not in flight, or twice, is a caller's bug."""
    box = make_outbox()
    waiting = box.add(alert(1), now=1.0)
    with pytest.raises(ValueError, match="not in flight"):
        box.end(accepted=[waiting], rejected=[])
    (item,) = box.take(1)
    with pytest.raises(ValueError, match="twice"):
        box.end(accepted=[item.id], rejected=[item.id])
    box.end(accepted=[item.id], rejected=[])
    with pytest.raises(ValueError, match="not in flight"):
        box.end(accepted=[item.id], rejected=[])


def test_depth_and_oldest_count_in_flight_items(make_outbox: MakeOutbox) -> None:
    """Depth and age cover everything not yet acknowledged."""
    box = make_outbox()
    assert box.depth() == 0
    assert box.oldest() is None
    box.add(alert(1), now=50.0)
    box.add(alert(2), now=60.0)
    box.add(heartbeat(1), now=70.0)
    assert box.depth() == 3
    assert box.oldest() == 50.0
    box.take(1)
    assert box.depth() == 3
    assert box.oldest() == 50.0


def test_alerts_counts_alerts_waiting_or_in_flight_and_no_heartbeat(
    make_outbox: MakeOutbox,
) -> None:
    """What the uplink asks before it waits out a reconnect spread: does an alert wait?"""
    box = make_outbox()
    box.add(heartbeat(1), now=10.0)
    assert box.alerts() == 0
    box.add(alert(1), now=20.0)
    box.add(alert(2), now=30.0)
    assert box.alerts() == 2
    batch = box.take(3)
    assert box.alerts() == 2  # in flight still counts
    box.end([batch[0].id], [b.id for b in batch[1:]])
    assert box.alerts() == 1
    (rest,) = (b for b in box.take(3) if b.topic == "alert")
    box.end([rest.id], [])
    assert box.alerts() == 0


def test_non_models_are_refused(make_outbox: MakeOutbox) -> None:
    """Only alerts and heartbeats may enter: not dicts, bytes, other models or subclasses."""

    class Sneaky(AlertMessage):
        events: list[str] = Field(default_factory=list)

    box = make_outbox()
    status = StatusMessage(state="online", version="0.1.0")
    sneaky = Sneaky(**alert(1).model_dump(), events=["kitchen 07:02", "bathroom 07:10"])
    for thing in (
        {"v": 1, "kind": "motion"},
        b'{"events": []}',
        "text",
        None,
        status,
        sneaky,
    ):
        with pytest.raises(TypeError):
            box.add(thing, now=1.0)  # type: ignore[arg-type]
    assert box.depth() == 0


def test_bound_drops_heartbeat_before_any_alert(make_outbox: MakeOutbox) -> None:
    """When full, the waiting heartbeat goes first, and the drop is counted."""
    size, beat = len(encode(alert(0))), len(encode(heartbeat(1)))
    box = make_outbox(max(size * 3 + beat, size * 4))  # room for 4 alerts, not 4 and the beat
    box.add(heartbeat(1), now=1.0)
    for n in range(3):
        box.add(alert(n), now=1.0)
    assert box.dropped() == 0
    box.add(alert(3), now=1.0)
    assert box.dropped() == 1
    assert [(it.topic, seq_of(it)) for it in box.take(10)] == [("alert", n) for n in range(4)]


def test_bound_drops_oldest_resolved_alerts_next(make_outbox: MakeOutbox) -> None:
    """Without heartbeats, the oldest resolved alerts go before any open one."""
    size = len(encode(alert(0)))
    box = make_outbox(size * 4)
    box.add(alert(0), now=1.0)
    box.add(alert(1, AlertState.RESOLVED), now=1.0)
    box.add(alert(2), now=1.0)
    box.add(alert(3, AlertState.RESOLVED), now=1.0)
    box.add(alert(4), now=1.0)
    box.add(alert(5), now=1.0)
    assert box.dropped() == 2
    assert [seq_of(it) for it in box.take(10)] == [0, 2, 4, 5]


def test_bound_drops_oldest_alerts_last(make_outbox: MakeOutbox) -> None:
    """With only open alerts left, the oldest go; counts add up."""
    size = len(encode(alert(0)))
    box = make_outbox(size * 3)
    for n in range(7):
        box.add(alert(n), now=float(n))
    assert box.dropped() == 4
    assert box.depth() == 3
    assert box.oldest() == 4.0
    assert [seq_of(it) for it in box.take(10)] == [4, 5, 6]


def test_bound_never_drops_in_flight_items(make_outbox: MakeOutbox) -> None:
    """Items in flight survive a full store; waiting ones are dropped instead."""
    size = len(encode(alert(0)))
    box = make_outbox(size * 2)
    box.add(alert(0), now=1.0)
    box.add(alert(1), now=1.0)
    batch = box.take(2)
    box.add(alert(2), now=1.0)
    assert box.dropped() == 1  # alert 2 itself: nothing else could go
    box.end(accepted=[], rejected=[it.id for it in batch])
    assert [seq_of(it) for it in box.take(10)] == [0, 1]


def test_heartbeat_is_dropped_when_alerts_fill_the_store(make_outbox: MakeOutbox) -> None:
    """A heartbeat that does not fit beside the alerts is the one dropped."""
    size = len(encode(alert(0)))
    box = make_outbox(size * 2)
    box.add(alert(0), now=1.0)
    box.add(alert(1), now=1.0)
    box.add(heartbeat(5), now=2.0)
    assert box.dropped() == 1
    assert [it.topic for it in box.take(10)] == ["alert", "alert"]


def test_coalesced_heartbeats_free_their_bytes(make_outbox: MakeOutbox) -> None:
    """Replacing heartbeats many times never fills the store."""
    beat = len(encode(heartbeat(100000)))
    box = make_outbox(beat * 2)
    for uptime in range(100000, 100500):
        box.add(heartbeat(uptime), now=1.0)
    assert box.dropped() == 0
    assert box.depth() == 1


def test_closed_outbox_refuses_use(make_outbox: MakeOutbox) -> None:
    """After close, adding is an error rather than a silent loss."""
    box = make_outbox()
    box.close()
    with pytest.raises(RuntimeError):
        box.add(alert(1), now=1.0)


def test_state_records_are_kept_beside_the_queue(make_outbox: MakeOutbox) -> None:
    """Records given with an alert or alone are read back by key; None deletes; never sent."""
    box = make_outbox()
    assert box.get_state("engine") is None
    box.add(alert(1), now=1.0, state={"engine": b"one"})
    assert box.get_state("engine") == b"one"
    box.add(heartbeat(5), now=2.0, state={"engine": b"two", "other": b"x"})
    assert (box.get_state("engine"), box.get_state("other")) == (b"two", b"x")
    box.add(alert(2), now=3.0)  # without state: the records stay as they were
    assert box.get_state("engine") == b"two"
    box.put_state({"engine": b"three", "other": None})
    assert (box.get_state("engine"), box.get_state("other")) == (b"three", None)
    batch = box.take(10)
    assert [(it.topic, seq_of(it)) for it in batch] == [
        ("alert", 1),
        ("alert", 2),
        ("heartbeat", 5),
    ]
    box.end(accepted=[it.id for it in batch], rejected=[])
    assert box.depth() == 0
    assert box.get_state("engine") == b"three"  # records are not items: sending keeps them


def test_a_refused_message_stores_no_state(make_outbox: MakeOutbox) -> None:
    """An add that fails (not a message) leaves the records as they were."""
    box = make_outbox()
    box.put_state({"engine": b"before"})
    with pytest.raises(TypeError):
        box.add("not a message", now=1.0, state={"engine": b"after"})  # type: ignore[arg-type]
    assert box.get_state("engine") == b"before"
