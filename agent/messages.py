"""Outbound messages: the only things that leave the home.

Every outbound model forbids extra fields and carries conclusions and a few derived
numbers, never event sequences or timelines. The uplink refuses anything that is not one
of ``OUTBOUND`` (see ``agent.uplink``). Version 1; a breaking change makes version 2.
The commands that come in from the centre are models too, in ``agent.commands``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

HubId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
AlertId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,96}$")]
EvidenceKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Short = Annotated[str, StringConstraints(max_length=64)]
#: the id the centre gives a command, echoed in its reply
CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Severity(StrEnum):
    URGENT = "urgent"
    WARNING = "warning"
    MAINTENANCE = "maintenance"
    TREND = "trend"
    INFO = "info"


class AlertState(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    RESOLVED = "resolved"


class Mode(StrEnum):
    NORMAL = "normal"
    AWAY = "away"
    HOLIDAY = "holiday"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1


class AlertMessage(_Out):
    """One step in the life of one alert."""

    TOPIC: ClassVar[str] = "alert"

    hub: HubId
    id: AlertId
    seq: int = Field(ge=0)
    kind: Short
    severity: Severity
    state: AlertState
    since: AwareDatetime
    at: AwareDatetime
    room: Short | None = None
    clock_synced: bool
    summary: Annotated[str, StringConstraints(max_length=300)]
    evidence: Annotated[dict[EvidenceKey, int | float], Field(max_length=8)] = Field(
        default_factory=dict
    )


class SensorCounts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: int = Field(ge=0)
    silent: Annotated[list[Short], Field(max_length=64)] = Field(default_factory=list)
    battery_low: Annotated[list[Short], Field(max_length=64)] = Field(default_factory=list)


class OutboxHealth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: int = Field(ge=0)
    oldest_s: int = Field(ge=0)
    dropped: int = Field(ge=0)


class DriverStatus(BaseModel):
    """One driver's state: running, retrying (and how often it had to restart)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Short
    state: Literal["starting", "running", "retrying", "stopped", "failed"]
    restarts: int = Field(ge=0)
    malformed: int = Field(ge=0)


class HeartbeatMessage(_Out):
    """Periodic health of the hub; the newest replaces older ones still queued."""

    TOPIC: ClassVar[str] = "heartbeat"

    hub: HubId
    at: AwareDatetime
    version: Short
    uptime_s: int = Field(ge=0)
    clock_synced: bool
    mode: Mode
    sensors: SensorCounts
    outbox: OutboxHealth
    disk_free_mb: int = Field(ge=-1)
    #: drivers running with no restart and no malformed data since the hub started; the
    #: others are listed in ``drivers`` (as ``sensors`` counts the well and names the rest):
    #: every heartbeat listing every well driver cost a hub a fifth of its daily bytes
    drivers_ok: int = Field(default=0, ge=0)
    drivers: Annotated[list[DriverStatus], Field(max_length=16)] = Field(default_factory=list)


class StatusMessage(_Out):
    """Retained online / offline state (the Last Will carries "offline")."""

    TOPIC: ClassVar[str] = "status"

    state: Literal["online", "offline"]
    at: AwareDatetime | None = None
    version: Short


class Outcome(StrEnum):
    DONE = "done"
    REJECTED = "rejected"


class ReplyMessage(_Out):
    """The outcome of one command from the centre: its id, done or rejected and why.

    Nothing about the home: the reason says what was wrong with the command or why it
    could not be carried out (``no open alert <id>``), never what the sensors saw.
    """

    TOPIC: ClassVar[str] = "reply"

    id: CommandId | None = None  # absent when the command was too broken to name one
    outcome: Outcome
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    at: AwareDatetime


Outbound = AlertMessage | HeartbeatMessage | StatusMessage | ReplyMessage

OUTBOUND: tuple[type[BaseModel], ...] = (
    AlertMessage,
    HeartbeatMessage,
    StatusMessage,
    ReplyMessage,
)


def encode(message: Outbound) -> bytes:
    """The exact bytes that go on the wire."""
    return message.model_dump_json(exclude_none=True).encode("utf-8")


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")
