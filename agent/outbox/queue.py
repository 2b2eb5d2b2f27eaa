"""The queue both outbox backends keep in memory: order, coalescing, the size bound.

A backend decides where payloads live (in the row, or on disk) and when a change is
final (at once, or after its transaction committed); the rules are here, once:

- alerts wait in id order; at most one heartbeat waits, and a newer one replaces it;
- ``take`` hands out alerts first, then the heartbeat; taken rows are in flight until
  ``settle``: accepted ones are gone, rejected ones wait again in id order, and a
  rejected heartbeat loses to a newer one that is waiting;
- over the size bound, the least important waiting rows go first: the heartbeat, the
  oldest resolved alerts, the oldest alerts. In-flight rows are never chosen; when they
  alone exceed the bound, the queue stays over it until they are settled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Final

from agent.outbox import ALERT, HEARTBEAT, check_end

#: the id of a row not yet given one by its backend (SQLite's ids start at 1)
NEW: Final = 0


@dataclass(frozen=True, slots=True)
class Row:
    """One queued item; ``payload`` is None where the backend keeps it elsewhere."""

    id: int
    topic: str
    size: int
    created: float
    resolved: bool
    payload: bytes | None = None


class Queue:
    """The rows of an outbox and its rules; see the module docstring."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.alerts: dict[int, Row] = {}  # waiting, in id order
        self.heartbeat: Row | None = None  # the one waiting heartbeat
        self.in_flight: dict[int, Row] = {}
        self.bytes = 0  # payload bytes waiting or in flight
        self.dropped = 0

    def victims(self, new: Row | None) -> list[Row]:
        """What must go so that ``new`` fits too, least important first (``new`` among them).

        A new heartbeat replaces the waiting one (that is not a drop) and is then the first
        to go. Nothing changes until ``apply_add``.
        """
        total = self.bytes + (new.size if new is not None else 0)
        beat = self.heartbeat
        if new is not None and new.topic == HEARTBEAT:
            if beat is not None:
                total -= beat.size  # replaced, not dropped
            beat = new
        if total <= self.max_bytes:
            return []
        alerts = list(self.alerts.values())
        if new is not None and new.topic == ALERT:
            alerts.append(new)
        order = [beat] if beat is not None else []
        order.extend(r for r in alerts if r.resolved)
        order.extend(r for r in alerts if not r.resolved)
        chosen: list[Row] = []
        for victim in order:
            if total <= self.max_bytes:
                break
            chosen.append(victim)
            total -= victim.size
        return chosen

    def apply_add(self, row: Row | None, replaced: Row | None, victims: list[Row]) -> None:
        """Make an add final: ``row`` queued, ``replaced`` (the old heartbeat) and the
        ``victims`` gone. ``row`` is None when only the bound is enforced (at open)."""
        if replaced is not None:
            self.forget(replaced)
            self.heartbeat = None
        if row is not None:
            self.bytes += row.size
            if row.topic == HEARTBEAT:
                self.heartbeat = row
            else:
                self.alerts[row.id] = row
        for victim in victims:
            dead = row if victim.id == NEW and row is not None else victim
            if dead.topic == HEARTBEAT:
                self.heartbeat = None
            else:
                del self.alerts[dead.id]
            self.forget(dead)
        self.dropped += len(victims)

    def take(self, limit: int) -> list[Row]:
        """Up to ``limit`` waiting rows, alerts first; they are in flight from now on."""
        if limit <= 0:
            return []
        rows = list(islice(self.alerts.values(), limit))
        if len(rows) < limit and self.heartbeat is not None:
            rows.append(self.heartbeat)
        for r in rows:
            if r.topic == HEARTBEAT:
                self.heartbeat = None
            else:
                del self.alerts[r.id]
            self.in_flight[r.id] = r
        return rows

    def settle(self, accepted: Iterable[int], rejected: Iterable[int]) -> list[int]:
        """End a batch; the ids of the rows that are gone (accepted, or coalesced away)."""
        acc, rej = check_end(self.in_flight, accepted, rejected)
        gone = [self.forget(self.in_flight.pop(i)) for i in acc]
        back = sorted((self.in_flight.pop(i) for i in rej), key=lambda r: r.id)
        alerts = [r for r in back if r.topic != HEARTBEAT]
        for beat in (r for r in back if r.topic == HEARTBEAT):
            if self.heartbeat is None or self.heartbeat.id < beat.id:
                if self.heartbeat is not None:
                    gone.append(self.forget(self.heartbeat))
                self.heartbeat = beat
            else:  # a newer heartbeat is waiting: the old one is coalesced away
                gone.append(self.forget(beat))
        if alerts:
            self.alerts = _merge(alerts, self.alerts)
        return gone

    def depth(self) -> int:
        return len(self.alerts) + len(self.in_flight) + (self.heartbeat is not None)

    def alert_count(self) -> int:
        flying = sum(1 for r in self.in_flight.values() if r.topic != HEARTBEAT)
        return len(self.alerts) + flying

    def oldest(self) -> float | None:
        candidates = [next(iter(self.alerts.values()), None), self.heartbeat]
        if self.in_flight:
            candidates.append(self.in_flight[min(self.in_flight)])
        present = [r for r in candidates if r is not None]
        return min(present, key=lambda r: r.id).created if present else None

    def forget(self, row: Row) -> int:
        """Stop counting ``row``'s bytes; its id."""
        self.bytes -= row.size
        return row.id


class QueuedOutbox:
    """What both outbox backends share: the queue's counts, and refusing use once closed."""

    def __init__(self, max_bytes: int) -> None:
        self._queue = Queue(max_bytes)
        self._closed = False

    def depth(self) -> int:
        return self._queue.depth()

    def oldest(self) -> float | None:
        return self._queue.oldest()

    def alerts(self) -> int:
        return self._queue.alert_count()

    def dropped(self) -> int:
        return self._queue.dropped

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the outbox is closed")


def _merge(back: list[Row], waiting: dict[int, Row]) -> dict[int, Row]:
    """Waiting alerts with rejected ones put back, all in id order (both inputs are)."""
    if not waiting or back[-1].id < next(iter(waiting)):
        merged = {r.id: r for r in back}
        merged.update(waiting)
        return merged
    return dict(sorted([*((r.id, r) for r in back), *waiting.items()]))
