"""An outbox held in memory: for tests, benchmarks and hubs configured without a file.

It loses everything at a restart; the SQLite backend is the durable one. Both follow the
same rules (see ``agent.outbox``) and pass the same test suite.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from agent.messages import AlertMessage, HeartbeatMessage
from agent.outbox import HEARTBEAT, OutboxItem, check_end, prepare


class MemoryOutbox:
    """Alerts in order, at most one waiting heartbeat, bounded by ``max_bytes`` of payload."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._max_bytes = max_bytes
        self._next_id = 1
        self._alerts: dict[int, OutboxItem] = {}  # waiting, in id order
        self._resolved: set[int] = set()  # ids of resolved alerts, waiting or in flight
        self._heartbeat: OutboxItem | None = None  # the one waiting heartbeat
        self._in_flight: dict[int, OutboxItem] = {}
        self._bytes = 0  # payload bytes waiting or in flight
        self._dropped = 0
        self._closed = False

    def add(self, message: AlertMessage | HeartbeatMessage, now: float) -> int:
        prepared = prepare(message)
        self._check_open()
        item = OutboxItem(self._next_id, prepared.topic, prepared.payload, now)
        self._next_id += 1
        if item.topic == HEARTBEAT:
            if self._heartbeat is not None:
                self._bytes -= len(self._heartbeat.payload)
            self._heartbeat = item
        else:
            self._alerts[item.id] = item
            if prepared.resolved:
                self._resolved.add(item.id)
        self._bytes += len(item.payload)
        self._enforce_bound()
        return item.id

    def take(self, limit: int) -> list[OutboxItem]:
        self._check_open()
        if limit <= 0:
            return []
        batch = [self._alerts.pop(i) for i in list(islice(self._alerts, limit))]
        if len(batch) < limit and self._heartbeat is not None:
            batch.append(self._heartbeat)
            self._heartbeat = None
        for item in batch:
            self._in_flight[item.id] = item
        return batch

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        self._check_open()
        acc, rej = check_end(self._in_flight, accepted, rejected)
        for item_id in acc:
            self._forget(self._in_flight.pop(item_id))
        back = sorted((self._in_flight.pop(i) for i in rej), key=lambda it: it.id)
        alerts = [it for it in back if it.topic != HEARTBEAT]
        for beat in (it for it in back if it.topic == HEARTBEAT):
            if self._heartbeat is None or self._heartbeat.id < beat.id:
                if self._heartbeat is not None:
                    self._forget(self._heartbeat)
                self._heartbeat = beat
            else:  # a newer heartbeat is waiting: the old one is coalesced away
                self._forget(beat)
        if alerts:
            self._alerts = _merge(alerts, self._alerts)

    def depth(self) -> int:
        return len(self._alerts) + len(self._in_flight) + (self._heartbeat is not None)

    def oldest(self) -> float | None:
        candidates = [next(iter(self._alerts.values()), None), self._heartbeat]
        if self._in_flight:
            candidates.append(self._in_flight[min(self._in_flight)])
        present = [it for it in candidates if it is not None]
        return min(present, key=lambda it: it.id).created if present else None

    def dropped(self) -> int:
        return self._dropped

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the outbox is closed")

    def _forget(self, item: OutboxItem) -> None:
        self._bytes -= len(item.payload)
        self._resolved.discard(item.id)

    def _enforce_bound(self) -> None:
        """Drop waiting items, least important first, until the payload fits the bound.

        In-flight items are never dropped: the uplink is about to settle them. When they
        alone exceed the bound, the store stays over it until they are settled.
        """
        while self._bytes > self._max_bytes:
            if self._heartbeat is not None:
                victim, self._heartbeat = self._heartbeat, None
            else:
                resolved = next((i for i in self._alerts if i in self._resolved), None)
                first = resolved if resolved is not None else next(iter(self._alerts), None)
                if first is None:
                    return
                victim = self._alerts.pop(first)
            self._forget(victim)
            self._dropped += 1


def _merge(back: list[OutboxItem], waiting: dict[int, OutboxItem]) -> dict[int, OutboxItem]:
    """Waiting alerts with rejected ones put back, all in id order (both inputs are)."""
    if not waiting or back[-1].id < next(iter(waiting)):
        merged = {it.id: it for it in back}
        merged.update(waiting)
        return merged
    return dict(sorted([*((it.id, it) for it in back), *waiting.items()]))
