"""The outbox: alerts and heartbeats waiting until the broker has acknowledged them.

A transaction interface, so that nothing is forgotten before the broker took it:

- ``add`` accepts one outbound message (in the SQLite backend: on disk when it returns);
- ``take`` hands out a batch; its items are *in flight* and no later ``take`` sees them;
- ``end`` settles a batch: accepted items are deleted, rejected ones go back to where
  they were, before anything added since, so alerts keep their order.

Alerts leave in the order they were added; heartbeats coalesce (a new one replaces one
still waiting) and leave after the alerts. The store is bounded in payload bytes; when
full it drops the least important first (heartbeats, then the oldest resolved alerts,
then the oldest alerts) and counts what it dropped, so the next heartbeat can say so.

Only ``AlertMessage`` and ``HeartbeatMessage`` can enter: anything else is a
``TypeError`` (the privacy guard starts here; the uplink checks again).

Beside the queue, an outbox keeps a few *state records*: opaque bytes by key, which are
never sent. The runtime keeps the detection engine's state there (open alerts, the next
sequence number, the mode), written in the same transaction as each alert, so that what
is on disk never says less than the alerts stored with it (``agent.runtime``,
``detection.saved``).

Backends: ``agent.outbox.memory.MemoryOutbox`` (lost at a restart) and
``agent.outbox.sqlite.SqliteOutbox`` (durable); ``open_outbox`` picks one. All of them
pass the same test suite (``tests/test_outbox.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from agent.messages import AlertMessage, AlertState, HeartbeatMessage, encode

ALERT: Final = "alert"
HEARTBEAT: Final = "heartbeat"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued message: the exact bytes to publish and where they go."""

    id: int
    topic: str  # "alert" | "heartbeat": the last level of the MQTT topic
    payload: bytes
    created: float  # wall seconds when it was added


class Outbox(Protocol):
    """What the uplink and the engine may do with queued messages."""

    def add(
        self,
        message: AlertMessage | HeartbeatMessage,
        now: float,
        state: Mapping[str, bytes | None] | None = None,
    ) -> int:
        """Queue one message and return its id; ``TypeError`` for any other object.

        ``state``: records to keep with the message (see ``put_state``), in the same
        transaction: both are stored, or neither.
        """
        ...

    def get_state(self, key: str) -> bytes | None:
        """The state record stored under ``key``; None when there is none."""
        ...

    def put_state(self, records: Mapping[str, bytes | None]) -> None:
        """Store records (``None`` deletes one) at once, without a message."""
        ...

    def take(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` waiting items, alerts first in the order added, then the heartbeat."""
        ...

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        """Settle in-flight items: accepted are deleted, rejected wait again."""
        ...

    def depth(self) -> int:
        """Items not yet accepted (waiting or in flight)."""
        ...

    def oldest(self) -> float | None:
        """``created`` of the oldest item not yet accepted; None when empty."""
        ...

    def alerts(self) -> int:
        """Alert messages not yet accepted (waiting or in flight): an alert waits."""
        ...

    def dropped(self) -> int:
        """How many items the size bound has dropped so far."""
        ...

    def close(self) -> None:
        """Release the backend; further use is an error."""
        ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message checked and encoded for the outbox, as every backend stores it."""

    topic: str
    payload: bytes
    resolved: bool  # a resolved alert: the first alerts to drop when the store is full


def prepare(message: object) -> Prepared:
    """Encode an outbound alert or heartbeat; ``TypeError`` for anything else.

    The check is on the exact type: a subclass could carry extra fields, and raw events
    must never be queued for the broker, whatever shape they come in.
    """
    if type(message) is AlertMessage:
        return Prepared(ALERT, encode(message), message.state == AlertState.RESOLVED)
    if type(message) is HeartbeatMessage:
        return Prepared(HEARTBEAT, encode(message), False)
    raise TypeError(
        f"the outbox takes only AlertMessage or HeartbeatMessage, not {type(message).__name__}"
    )


def check_end(
    in_flight: Iterable[int], accepted: Iterable[int], rejected: Iterable[int]
) -> tuple[list[int], list[int]]:
    """Validate the ids given to ``end``: each in flight, each settled at most once."""
    acc = list(accepted)
    rej = list(rejected)
    flying = set(in_flight)
    seen: set[int] = set()
    for item_id in (*acc, *rej):
        if item_id not in flying:
            raise ValueError(f"outbox item {item_id} is not in flight")
        if item_id in seen:
            raise ValueError(f"outbox item {item_id} is settled twice")
        seen.add(item_id)
    return acc, rej


def open_outbox(path: Path | None, max_bytes: int) -> Outbox:
    """The durable SQLite outbox at ``path``; an outbox in memory when there is no path."""
    if path is None:
        from agent.outbox.memory import MemoryOutbox

        return MemoryOutbox(max_bytes)
    from agent.outbox.sqlite import SqliteOutbox

    return SqliteOutbox(path, max_bytes)


__all__ = [
    "ALERT",
    "HEARTBEAT",
    "Outbox",
    "OutboxItem",
    "Prepared",
    "check_end",
    "open_outbox",
    "prepare",
]
