"""An outbox held in memory: for tests, benchmarks and hubs configured without a file.

It loses everything at a restart, its state records too; the SQLite backend is the
durable one. Both keep the same queue (``agent.outbox.queue``) and pass the same test
suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.messages import AlertMessage, HeartbeatMessage
from agent.outbox import HEARTBEAT, OutboxItem, prepare
from agent.outbox.queue import QueuedOutbox, Row


class MemoryOutbox(QueuedOutbox):
    """Alerts in order, at most one waiting heartbeat, bounded by ``max_bytes`` of payload."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._next_id = 1
        self._state: dict[str, bytes] = {}

    def add(
        self,
        message: AlertMessage | HeartbeatMessage,
        now: float,
        state: Mapping[str, bytes | None] | None = None,
    ) -> int:
        prepared = prepare(message)
        self._check_open()
        queue = self._queue
        payload = prepared.payload
        row = Row(self._next_id, prepared.topic, len(payload), now, prepared.resolved, payload)
        self._next_id += 1
        replaced = queue.heartbeat if row.topic == HEARTBEAT else None
        queue.apply_add(row, replaced, queue.victims(row))
        if state:
            self._put(state)
        return row.id

    def get_state(self, key: str) -> bytes | None:
        self._check_open()
        return self._state.get(key)

    def put_state(self, records: Mapping[str, bytes | None]) -> None:
        self._check_open()
        self._put(records)

    def _put(self, records: Mapping[str, bytes | None]) -> None:
        for key, value in records.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = bytes(value)

    def take(self, limit: int) -> list[OutboxItem]:
        self._check_open()
        batch = []
        for r in self._queue.take(limit):
            assert r.payload is not None  # this backend keeps every payload in its row
            batch.append(OutboxItem(r.id, r.topic, r.payload, r.created))
        return batch

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        self._check_open()
        self._queue.settle(accepted, rejected)

    def close(self) -> None:
        self._closed = True
