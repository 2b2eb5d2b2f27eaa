"""Commands from the centre: validated models, parsed apart from any I/O, then applied.

The centre publishes on ``<prefix>/<hub_id>/cmd/<name>``; the hub answers every command
it reads on ``<prefix>/<hub_id>/reply`` with a ``ReplyMessage`` (``agent.messages``):
``done``, or ``rejected`` and why. Three commands exist, one model each, version 1, no
extra fields, strict types:

- ``cmd/ack`` (``Acknowledge``): the centre has seen an alert; the detector that raised
  it decides what that means (most resolve it, see ``Detector.on_acknowledged``).
  An alert id that is not open is rejected: ``no open alert <id>``.
- ``cmd/mode`` (``SetMode``): normal, away or holiday, with an optional end time
  (``until``), required for holiday and refused for normal, in the future and at most
  ``MAX_MODE_AHEAD`` ahead. When it comes, the home goes back to normal by itself.
- ``cmd/selftest`` (``SelfTest``): one ``self_test`` alert (severity info), raised and
  resolved at once, through the same outbox and uplink as every alert; at most one per
  ``SELFTEST_MIN_INTERVAL``.

Anything else (an unknown name, a payload over ``MAX_PAYLOAD`` bytes, not JSON, a
missing, extra or mistyped field) is rejected with a short reason and never executed.
Rejections are logged as warnings, at most ``LOG_LIMIT`` per ``LOG_WINDOW``; the rest
are counted and the count is logged when the next window begins. Payloads are never
logged.

``parse_command`` is a pure function of (name, bytes, now). ``Commands`` applies what it
returns to the engine and is one of the runtime's timers: ``next_wakeup`` is the moment
the current mode ends, on the monotonic clock, so that the end comes at the same point
in a replay as live. The engine keeps the end time itself (``Engine.mode_until``, wall
seconds), so that it outlives a restart with the rest of the engine's saved state;
``Commands`` turns it into a monotonic deadline when the command arrives, or, for an end
time restored at start, once the wall clock can be trusted. A command with an end time
needs a synchronised wall clock: without one it is refused.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.clock import Clock, local_time
from agent.messages import AlertId, CommandId, Mode, Outcome, ReplyMessage
from detection import selftest
from detection.engine import Engine

log = logging.getLogger(__name__)

MAX_PAYLOAD: Final = 4096  # bytes; a real command is well under 200
MAX_MODE_AHEAD: Final = timedelta(days=60)
SELFTEST_MIN_INTERVAL: Final = 60.0  # seconds between two self-tests
LOG_LIMIT: Final = 10  # rejected commands logged per window; the rest are counted
LOG_WINDOW: Final = 60.0  # seconds
_REASON_MAX: Final = 200  # ReplyMessage.reason's limit
_NAME_SHOWN: Final = 40  # characters of an unknown command name echoed back

#: who acknowledged, as the centre names them: printable, no line breaks
Actor = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    NAME: ClassVar[str]

    v: Literal[1]
    id: CommandId

    @field_validator("v", mode="before")
    @classmethod
    def _exactly_one(cls, value: Any) -> Any:
        if type(value) is not int:  # 1.0 and true equal 1 in Python, but are not the version
            raise ValueError("Input should be 1")
        return value


class Acknowledge(_Command):
    """The centre has seen alert ``alert`` (``by``: who, as the centre names them)."""

    NAME: ClassVar[str] = "ack"

    alert: AlertId
    by: Actor | None = None


class SetMode(_Command):
    """Set the home to ``mode``; with ``until``, back to normal by itself at that moment."""

    NAME: ClassVar[str] = "mode"

    mode: Mode
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _until_fits_mode(self) -> Self:
        if self.mode is Mode.NORMAL and self.until is not None:
            raise ValueError("normal mode takes no end time (until)")
        if self.mode is Mode.HOLIDAY and self.until is None:
            raise ValueError("holiday mode needs an end time (until)")
        return self


class SelfTest(_Command):
    """Raise and resolve one ``self_test`` alert."""

    NAME: ClassVar[str] = "selftest"


Command = Acknowledge | SetMode | SelfTest

#: the last level of the topic after ``cmd/``, and its model
COMMANDS: Final[dict[str, type[Acknowledge] | type[SetMode] | type[SelfTest]]] = {
    model.NAME: model for model in (Acknowledge, SetMode, SelfTest)
}

_COMMAND_ID: Final = TypeAdapter(CommandId)


def _shown(text: str, limit: int = _NAME_SHOWN) -> str:
    """Text from the centre, shortened and without control characters, to echo or log."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return clean if len(clean) <= limit else clean[:limit] + "…"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command that is not carried out: why, and its id where one could be read."""

    reason: str
    id: str | None = None


def _id_of(payload: bytes) -> str | None:
    """The command id of a payload that failed validation, when it still has a valid one."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None
    if not isinstance(data, dict):
        return None
    try:
        return _COMMAND_ID.validate_python(data.get("id"))
    except ValidationError:
        return None


def _summary(name: str, err: ValidationError) -> str:
    """The first problems of a validation error, in a few words each, without the input."""
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return "not valid JSON"
    if first["type"] == "model_type":
        return "the payload must be a JSON object"
    parts = []
    for e in errors[:2]:
        where = ".".join(_shown(str(p)) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            what = "unknown field"
        elif e["type"] == "missing":
            what = "missing"
        else:
            what = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {what}" if where else what)
    more = len(errors) - len(parts)
    text = f"invalid {name} command: {'; '.join(parts)}"
    if more > 0:
        text += f" (and {more} more)"
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def parse_command(name: str, payload: bytes, now: datetime | None) -> Command | Rejected:
    """The command for topic ``cmd/<name>`` with ``payload``, or why it is rejected.

    ``now`` is the hub's wall time, to check an end time against; None when the wall
    clock is not synchronised (the end time is then checked by the caller).
    """
    if len(payload) > MAX_PAYLOAD:
        return Rejected(f"payload too large: {len(payload)} bytes, at most {MAX_PAYLOAD}")
    model = COMMANDS.get(name)
    if model is None:
        known = ", ".join(sorted(COMMANDS))
        return Rejected(f"unknown command {_shown(name)!r} (known: {known})", _id_of(payload))
    try:
        command = model.model_validate_json(payload)
    except ValidationError as err:
        return Rejected(_summary(name, err), _id_of(payload))
    if isinstance(command, SetMode) and command.until is not None and now is not None:
        if command.until <= now:
            return Rejected("until: the end time has already passed", command.id)
        if command.until - now > MAX_MODE_AHEAD:
            return Rejected(f"until: at most {MAX_MODE_AHEAD.days} days ahead", command.id)
    return command


@dataclass(slots=True)
class CommandStats:
    received: int = 0
    done: int = 0
    rejected: int = 0
    unlogged: int = 0  # rejections over the logging limit: counted, not logged


class _RateLimitedWarnings:
    """Warnings about rejected commands: at most ``limit`` per ``window`` seconds."""

    def __init__(self, stats: CommandStats, limit: int, window: float) -> None:
        self._stats = stats
        self._limit = limit
        self._window = window
        self._start = -math.inf
        self._count = 0
        self._skipped = 0

    def warn(self, now: float, msg: str, *args: object) -> None:
        if now - self._start >= self._window:
            if self._skipped:
                log.warning(
                    "%d more rejected command(s) were not logged (at most %d per %.0f s)",
                    self._skipped,
                    self._limit,
                    self._window,
                )
            self._start, self._count, self._skipped = now, 0, 0
        if self._count < self._limit:
            self._count += 1
            log.warning(msg, *args)
        else:
            self._skipped += 1
            self._stats.unlogged += 1


class Commands:
    """Applies the centre's commands to the engine, and ends a mode at its end time."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        log_limit: int = LOG_LIMIT,
        log_window: float = LOG_WINDOW,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.stats = CommandStats()
        self._deadline = math.inf  # monotonic moment the mode ends, worked out for ...
        self._armed_for: float | None = None  # ... this end time (engine.mode_until)
        self._selftest = selftest.SelfTest(engine)
        self._last_selftest = -math.inf
        self._warnings = _RateLimitedWarnings(self.stats, log_limit, log_window)

    def handle(self, name: str, payload: bytes) -> ReplyMessage:
        """Parse and carry out the command on ``cmd/<name>``; the reply to publish."""
        self.stats.received += 1
        now = local_time(self.clock) if self.clock.wall_synced() else None
        parsed = parse_command(name, payload, now)
        if isinstance(parsed, Rejected):
            return self._rejected(name, parsed.id, parsed.reason)
        try:
            problem = self._apply(parsed)
        except Exception:  # a fault of the hub must not end the agent; the centre may retry
            log.exception("command %s (id %s) failed", name, parsed.id)
            problem = "the hub could not carry out the command (an internal error)"
        if problem is not None:
            return self._rejected(name, parsed.id, problem)
        self.stats.done += 1
        log.info("command %s (id %s) done", name, parsed.id)
        return self._reply(parsed.id, Outcome.DONE, None)

    @property
    def next_wakeup(self) -> float:
        """The monotonic moment the current mode ends; ``inf`` when it does not end.

        Worked out again whenever the engine's end time is not the one it was worked out
        for: set by a command, restored at start, or cleared by a return to normal.
        """
        if self.engine.mode_until != self._armed_for:
            self._arm(self.engine.mode_until)
        return self._deadline

    def fire(self, now: float) -> None:
        """The runtime's timer: at the end time, the home goes back to normal."""
        if self.engine.mode_until is None or now < self.next_wakeup:
            return
        log.info("the home's %s mode reached its end time: back to normal", self.engine.mode.value)
        self.engine.set_mode(Mode.NORMAL)  # clears the engine's end time, and so the timer

    def _arm(self, until: float | None) -> None:
        """The deadline for end time ``until`` (wall seconds), from the clocks as they are now.

        Counted on the monotonic clock from here on, so that a later step of the wall
        clock does not move it. Without a synchronised wall clock it waits unarmed (the
        next look tries again).
        """
        if until is None:
            self._deadline, self._armed_for = math.inf, None
        elif self.clock.wall_synced():
            remaining = max(0.0, until - self.clock.wall())
            self._deadline, self._armed_for = self.clock.monotonic() + remaining, until
        else:
            self._deadline = math.inf

    # ---- the commands ----------------------------------------------------------------
    def _apply(self, command: Command) -> str | None:
        """Carry out a valid command; why not, when it cannot be."""
        if isinstance(command, Acknowledge):
            return self._acknowledge(command)
        if isinstance(command, SetMode):
            return self._set_mode(command)
        return self._self_test()

    def _acknowledge(self, command: Acknowledge) -> str | None:
        if not self.engine.acknowledge(command.alert):
            return f"no open alert {command.alert}"
        log.info(
            "alert %s acknowledged by the centre%s",
            command.alert,
            f" ({command.by})" if command.by else "",
        )
        return None

    def _set_mode(self, command: SetMode) -> str | None:
        until: float | None = None
        if command.until is not None:
            if not self.clock.wall_synced():
                return "the hub's clock is not synchronised: it cannot keep an end time"
            until = command.until.timestamp()
        before = self.engine.mode
        self.engine.set_mode(command.mode, until)
        self._arm(self.engine.mode_until)  # from now, the moment the command arrived
        log.info(
            "the home was set to %s (it was %s)%s",
            command.mode.value,
            before.value,
            f" until {command.until.isoformat()}" if command.until is not None else "",
        )
        return None

    def _self_test(self) -> str | None:
        now = self.clock.monotonic()
        if now - self._last_selftest < SELFTEST_MIN_INTERVAL:
            return f"a self-test ran less than {SELFTEST_MIN_INTERVAL:.0f} s ago"
        self._last_selftest = now
        alert_id = self._selftest.run()
        log.info("self-test alert %s raised and resolved", alert_id)
        return None

    # ---- replies -----------------------------------------------------------------------
    def _rejected(self, name: str, command_id: str | None, reason: str) -> ReplyMessage:
        self.stats.rejected += 1
        self._warnings.warn(
            self.clock.monotonic(),
            "command cmd/%s (id %s) rejected: %s",
            _shown(name),
            command_id or "unknown",
            reason,
        )
        return self._reply(command_id, Outcome.REJECTED, reason)

    def _reply(self, command_id: str | None, outcome: Outcome, reason: str | None) -> ReplyMessage:
        return ReplyMessage(
            id=command_id,
            outcome=outcome,
            reason=reason,
            at=local_time(self.clock).replace(microsecond=0),
        )
