"""The engine's state across a restart: the record, and loading and storing it.

What is kept is what the engine promised the centre (``Engine.snapshot``): the alerts
still open, with their ids, the number of the next message, and the mode with its end
time. The record holds nothing the centre was not told already: no events, no times of
use. It lives in the outbox file under the key ``engine`` and is written in the same
transaction as every alert (``Outbox.add`` with ``records(engine)``), so that after a
power cut it is never older than the newest alert stored: an alert stored as raised is
open again after the restart under the same id, and numbers are never given twice. A
change no alert carries (the mode) is stored on its own (``save``).

The record is JSON, version 1::

    {"v": 1, "seq": 1835, "mode": "away", "mode_until": 1795600800.0,
     "open": [{"id": "help_button-20261122T101500Z", "kind": "help_button",
               "severity": "urgent", "since": 1795342500.0, "room": "Living",
               "owner": "help_button", "key": "pressed", "evidence": {"presses": 2}}]}

``load`` at start: nothing stored (a new hub, or an outbox kept in memory) is a fresh
start. A record that cannot be read (damaged, or written by a newer agent) is reported
as an error and moved aside under ``engine.corrupt`` (replacing an earlier one), and the
engine starts afresh: no open alerts, the configured mode, and the numbers going on after
the record's ``seq`` if that much of it can still be read. The hub keeps running.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import HubError, TransientError
from agent.messages import AlertId, Mode, Severity, Short
from detection.engine import Engine, EngineState, OpenAlert

log = logging.getLogger(__name__)

STATE_KEY: Final = "engine"
ASIDE_KEY: Final = "engine.corrupt"
FORMAT_VERSION: Final = 1


class StateStore(Protocol):
    """Where records are kept: the outbox (``agent.outbox.Outbox`` has these)."""

    def get_state(self, key: str) -> bytes | None: ...

    def put_state(self, records: Mapping[str, bytes | None]) -> None: ...


class SavedStateError(HubError):
    """A stored record cannot be used; ``seq`` is its number if that could still be read."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        self.reason = reason
        self.seq = seq
        super().__init__(reason)


class _Saved(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Alert(_Saved):
    id: AlertId
    kind: Short
    severity: Severity
    since: float
    room: Short | None
    owner: str  # a rule's name and its own key: any text it chose
    key: str
    evidence: dict[str, int | float] = Field(default_factory=dict, max_length=8)


class _Record(_Saved):
    v: Literal[1]
    seq: int = Field(ge=0)
    mode: Mode
    mode_until: float | None = None
    open: list[_Alert] = Field(default_factory=list)


def encode_state(state: EngineState) -> bytes:
    """The record of ``state``, as stored."""
    record = _Record(
        v=FORMAT_VERSION,
        seq=state.seq,
        mode=state.mode,
        mode_until=state.mode_until,
        open=[
            _Alert(
                id=a.id,
                kind=a.kind,
                severity=a.severity,
                since=a.since,
                room=a.room,
                owner=a.owner,
                key=a.key,
                evidence=a.evidence,
            )
            for a in state.open
        ],
    )
    return record.model_dump_json().encode("utf-8")


def decode_state(blob: bytes) -> EngineState:
    """The state in a stored record; ``SavedStateError`` saying why it cannot be used."""
    try:
        record = _Record.model_validate_json(blob)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        why = f"{where}: {first['msg']}" if where else first["msg"]
        if first["loc"] == ("v",):
            why += " (written by a newer agent?)"
        raise SavedStateError(why, _salvage_seq(blob)) from err
    return EngineState(
        seq=record.seq,
        mode=record.mode,
        mode_until=record.mode_until,
        open=tuple(
            OpenAlert(a.id, a.kind, a.severity, a.since, a.room, a.owner, a.key, dict(a.evidence))
            for a in record.open
        ),
    )


def _salvage_seq(blob: bytes) -> int | None:
    """The ``seq`` of a record that is otherwise unusable, if it is still there."""
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if type(seq) is int and seq > 0 else None


class EngineStateKeeper:
    """Loads the engine's state at start and gives the record to store with each alert."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.failures = 0  # stores on their own that failed

    def load(self, default_mode: Mode) -> EngineState | None:
        """The stored state; None for a fresh start (see the module docstring)."""
        try:
            blob = self.store.get_state(STATE_KEY)
        except TransientError as err:
            log.error("saved engine state unreadable (%s): starting with no open alerts", err)
            return None
        if blob is None:
            log.info("no saved engine state: starting with no open alerts")
            return None
        try:
            state = decode_state(blob)
        except SavedStateError as err:
            aside = self._move_aside(blob)
            seq = err.seq
            log.error(
                "saved engine state is damaged (%s)%s; starting with no open alerts, "
                "mode %s, message numbers from %s",
                err.reason,
                f", moved aside as {ASIDE_KEY!r} in the outbox" if aside else "",
                default_mode.value,
                seq if seq is not None else "1 (the old ones could not be read)",
            )
            if seq is None:
                return None
            return EngineState(seq=seq, mode=default_mode, mode_until=None, open=())
        log.info(
            "saved engine state loaded: %d open alert(s), mode %s, next message number %d",
            len(state.open),
            state.mode.value,
            state.seq,
        )
        return state

    def records(self, engine: Engine) -> dict[str, bytes | None]:
        """The records for the engine's state now, to store with an alert.

        Empty when the state cannot be written as a record (a fault of the hub): the alert
        is stored all the same, and the stored state catches up with a later one.
        """
        try:
            return {STATE_KEY: encode_state(engine.snapshot())}
        except ValidationError as err:
            log.error("the engine's state cannot be stored (%s); an older one is kept", err)
            return {}

    def save(self, engine: Engine) -> bool:
        """Store the engine's state on its own; a failure is logged (the next alert retries)."""
        records = self.records(engine)
        if not records:
            self.failures += 1
            return False
        try:
            self.store.put_state(records)
        except TransientError as err:
            self.failures += 1
            log.error("could not store the engine's state (%s); the next alert will", err)
            return False
        return True

    def _move_aside(self, blob: bytes) -> bool:
        try:
            self.store.put_state({ASIDE_KEY: blob, STATE_KEY: None})
        except TransientError as err:
            log.error("could not move the damaged engine state aside: %s", err)
            return False
        return True
