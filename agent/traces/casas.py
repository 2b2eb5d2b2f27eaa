"""Import CASAS smart-home recordings (Washington State University) into a trace.

A CASAS file has one sensor reading a line, in local wall time with no zone::

    2009-10-16 00:01:04.000059  M017  ON
    2009-10-16 08:42:01.2       D002  OPEN   Leave_Home begin
    2009-10-16 08:42:03         T003  21.5

Columns are separated by tabs or spaces, any number of them; the seconds may have a
fraction of any length (kept to the microsecond, longer ones cut) or none. After the
value an optional activity follows: ``<name> begin`` / ``<name> end`` mark an activity
(a pair becomes one label), anything else is a label of that one line. The area variant
adds a column with the area (room) of the sensor, ``date time area sensor value label``;
files that put it after the sensor, and a ``Control4-...`` sensor-type column after the
value, are read too. Which column is the sensor is decided line by line: the one the
sensor map knows, else the one shaped like a sensor id.

Per-line labels are joined into intervals: a run of consecutive lines with the same label
becomes one label from its first line to its last. ``Other_Activity`` (and ``Other``,
``None``) means no activity.

The file says nothing about where a sensor is; a sensor map (TOML) does. See
``load_sensor_map`` and docs/trace-format.md.

Defined outcomes: a line that does not parse is skipped with a warning naming it; a
sensor the map does not know, and a value word that does not fit the sensor's kind, are
skipped and reported once each with their count; an ``end`` with no ``begin``, a
``begin`` left open, or an activity that ends before it begins, is warned about and
gives no label. A file whose first lines are none of them CASAS lines is a
``TraceError``; so is a file with no CASAS line at all.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.errors import ConfigError, Problem, TraceError
from agent.events import ACTIVITY_KINDS, MEASUREMENT_KINDS, EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.traces.format import Label
from agent.traces.importing import (
    GAP_WARNING,
    LEAVING,
    SHOWERING,
    SLEEPING,
    TOILETING,
    Imported,
    Warnings,
    activity_label,
    finish,
    kebab_case,
    localize,
    snake_case,
)

CITATION = "cook2012"

#: How many non-blank lines at the top may fail before the file is taken as not CASAS.
SNIFF_LINES = 20

# ---------------------------------------------------------------------------------------
# The sensor map


#: The kind a sensor id's letter prefix suggests, used when the map gives no ``kind``.
#: CASAS names sensors by what they are: M motion, MA motion over a whole area, D door,
#: T temperature, L a light switch (on/off, so an appliance), LS a light level sensor
#: (a number, so illuminance), B or BAT... a battery level.
KIND_BY_PREFIX: dict[str, EventKind] = {
    "M": EventKind.MOTION,
    "MA": EventKind.MOTION,
    "D": EventKind.CONTACT,
    "T": EventKind.TEMPERATURE,
    "L": EventKind.APPLIANCE,
    "LS": EventKind.ILLUMINANCE,
    "B": EventKind.BATTERY,
    "BAT": EventKind.BATTERY,
}

_PREFIX = re.compile(r"^([A-Za-z]+)")


def guess_kind(sensor: str) -> EventKind | None:
    """The kind the id's prefix suggests (``KIND_BY_PREFIX``); anything from BAT on is a battery."""
    match = _PREFIX.match(sensor)
    if match is None:
        return None
    prefix = match[1].upper()
    if prefix.startswith("BAT"):
        return EventKind.BATTERY
    return KIND_BY_PREFIX.get(prefix)


class MapSensor(BaseModel):
    """One ``[sensors.<CASAS id>]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    room: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    role: Role
    kind: EventKind | None = Field(default=None, description="default: guessed from the id")
    label: str | None = Field(default=None, max_length=128)


class SensorMap(BaseModel):
    """Where each sensor of a CASAS home is and what it tells."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(
        default=None, description="the trace header's source; by default it names the file"
    )
    sensors: dict[str, MapSensor] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class MappedSensor:
    """A sensor of the map as it goes into the trace."""

    casas_id: str
    trace_id: str
    kind: EventKind
    spec: SensorSpec


_TRACE_ID = re.compile(r"^[a-z0-9][a-z0-9\-]{0,63}$")


def _where(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else part)
    return "".join(parts)


def parse_sensor_map(text: str, source: str) -> SensorMap:
    """A sensor map from TOML text; ``ConfigError`` lists every problem with its key path."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [Problem("", f"not valid TOML: {err}")]) from err
    problems: list[Problem] = []
    parsed: SensorMap | None = None
    try:
        parsed = SensorMap.model_validate(raw)
    except ValidationError as err:
        problems.extend(Problem(_where(e["loc"]), e["msg"]) for e in err.errors())
    problems.extend(_id_problems(raw.get("sensors")))
    if problems or parsed is None:
        raise ConfigError(source, problems)
    return parsed


def _id_problems(sensors: Any) -> list[Problem]:
    """What pydantic cannot see: ids that give no trace id, clash, or have no kind."""
    if not isinstance(sensors, dict):
        return []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for casas_id, entry in sensors.items():
        where = f"sensors.{casas_id}"
        trace_id = kebab_case(casas_id)
        if not _TRACE_ID.match(trace_id):
            problems.append(Problem(where, "the id gives no usable sensor id (letters and digits)"))
        elif trace_id in seen:
            problems.append(
                Problem(where, f"the same sensor id {trace_id!r} as sensors.{seen[trace_id]}")
            )
        else:
            seen[trace_id] = casas_id
        if isinstance(entry, dict) and entry.get("kind") is None and guess_kind(casas_id) is None:
            problems.append(
                Problem(
                    f"{where}.kind",
                    "not given, and the id's prefix suggests none (known prefixes: "
                    f"{', '.join(KIND_BY_PREFIX)}, and anything starting with BAT)",
                )
            )
    return problems


def load_sensor_map(path: Path) -> SensorMap:
    """Read and check a sensor map file; ``ConfigError`` when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), [Problem("", f"cannot read: {err.strerror or err}")]) from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), [Problem("", f"not UTF-8 text: {err.reason}")]) from err
    return parse_sensor_map(text, str(path))


def mapped_sensors(sensor_map: SensorMap) -> dict[str, MappedSensor]:
    """The map's sensors keyed by their CASAS id in upper case (files are matched so)."""
    out: dict[str, MappedSensor] = {}
    for casas_id, entry in sensor_map.sensors.items():
        kind = entry.kind or guess_kind(casas_id)
        if kind is None:  # parse_sensor_map rejects this; kept for maps built in code
            raise ConfigError("sensor map", [Problem(f"sensors.{casas_id}.kind", "unknown")])
        spec = SensorSpec(
            room=entry.room, role=entry.role, kind=kind, label=entry.label or casas_id
        )
        out[casas_id.upper()] = MappedSensor(casas_id, kebab_case(casas_id), kind, spec)
    return out


# ---------------------------------------------------------------------------------------
# Lines


_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_SENSOR_SHAPE = re.compile(r"^[A-Za-z]{1,5}\d+[A-Za-z0-9_\-]*$")
ON_WORDS = frozenset({"ON", "OPEN", "OPENED"})
OFF_WORDS = frozenset({"OFF", "CLOSE", "CLOSED"})
NO_ACTIVITY = frozenset({"other_activity", "other", "none"})


def parse_time(date: str, clock: str) -> datetime:
    """``2009-10-16`` and ``00:03:50.209589`` (any fraction, or none) as a naive datetime."""
    d = _DATE.match(date)
    c = _CLOCK.match(clock)
    if d is None or c is None:
        raise ValueError(f"not a date and time: {date!r} {clock!r}")
    micro = int((c[4] or "")[:6].ljust(6, "0"))
    return datetime(int(d[1]), int(d[2]), int(d[3]), int(c[1]), int(c[2]), int(c[3]), micro)


def is_value_word(token: str) -> bool:
    """True for the words a CASAS value column holds: ON/OFF, OPEN/CLOSE, numbers."""
    return token.upper() in ON_WORDS or token.upper() in OFF_WORDS or bool(_NUMBER.match(token))


@dataclass(frozen=True, slots=True)
class CasasLine:
    """One parsed line. ``marker`` is ``"begin"``/``"end"`` with ``activity`` its name;
    ``label`` is a per-line label; ``area`` the area column of the area variant."""

    line: int
    when: datetime
    sensor: str
    value: str
    area: str | None = None
    activity: str | None = None
    marker: str | None = None
    label: str | None = None


def parse_line(text: str, line: int, known: Container[str] = ()) -> CasasLine:
    """One CASAS line; ``known`` holds the sensor ids (upper case) the map knows.

    ValueError says what is wrong.
    """
    tokens = text.split()
    if len(tokens) < 4:
        raise ValueError("needs at least a date, a time, a sensor and a value")
    when = parse_time(tokens[0], tokens[1])
    body = tokens[2:]
    sensor_at, value_at, area_at = _layout(body, known)
    rest = body[value_at + 1 :]
    if area_at is not None and rest and rest[0].lower().startswith("control4-"):
        rest = rest[1:]  # the sensor-type column some area-variant files carry
    activity: str | None = None
    marker: str | None = None
    label: str | None = None
    if rest and rest[-1].lower() in ("begin", "end"):
        marker = rest[-1].lower()
        activity = " ".join(rest[:-1])
        if not activity:
            raise ValueError(f"{rest[-1]!r} with no activity name")
    elif rest:
        label = " ".join(rest)
    return CasasLine(
        line=line,
        when=when,
        sensor=body[sensor_at],
        value=body[value_at],
        area=body[area_at] if area_at is not None else None,
        activity=activity,
        marker=marker,
        label=label,
    )


def _layout(body: Sequence[str], known: Container[str]) -> tuple[int, int, int | None]:
    """(sensor, value, area) positions in the columns after the time.

    Three layouts: sensor value ..., area sensor value ..., sensor area value .... Each
    scores 2 when the map knows its sensor, 1 when its value column holds a value word,
    1 when its sensor column looks like an id (M003, LS012); the first best one wins.
    """

    def score(sensor: str, value: str) -> int:
        return (
            2 * (sensor.upper() in known) + is_value_word(value) + bool(_SENSOR_SHAPE.match(sensor))
        )

    best: tuple[int, tuple[int, int, int | None]] = (score(body[0], body[1]), (0, 1, None))
    if len(body) >= 3:
        for sensor_at, area_at in ((1, 0), (0, 1)):
            points = score(body[sensor_at], body[2])
            if points > best[0]:
                best = (points, (sensor_at, 2, area_at))
    return best[1]


def event_value(kind: EventKind, word: str) -> float | None:
    """The trace value of a CASAS value word for a sensor of ``kind``; None if it does not fit.

    Measurements take numbers (temperature in °C as recorded, battery in percent);
    every other kind takes ON/OPEN(ED) as 1 and OFF/CLOSE(D) as 0.
    """
    if kind in MEASUREMENT_KINDS:
        return float(word) if _NUMBER.match(word) else None
    upper = word.upper()
    if upper in ON_WORDS:
        return 1.0
    if upper in OFF_WORDS:
        return 0.0
    return None


#: Activity names (snake_case of the original) to the common vocabulary. Others keep
#: their snake_case name (meal_preparation, bed_to_toilet, r1_sleep, ...): a label about
#: one of two residents, or a night-time toilet trip from bed, is a different fact.
ACTIVITIES: dict[str, str] = {
    "leave_home": LEAVING,
    "leave_house": LEAVING,
    "leaving": LEAVING,
    "sleep": SLEEPING,
    "sleeping": SLEEPING,
    "sleeping_in_bed": SLEEPING,
    "toilet": TOILETING,
    "toileting": TOILETING,
    "use_toilet": TOILETING,
    "shower": SHOWERING,
    "showering": SHOWERING,
    "take_shower": SHOWERING,
}


# ---------------------------------------------------------------------------------------
# Building the trace


@dataclass
class _Tally:
    """Lines skipped for one reason, reported once with their count and first line."""

    count: int = 0
    first: int = 0

    def add(self, line: int) -> None:
        if not self.count:
            self.first = line
        self.count += 1


@dataclass
class _Run:
    name: str
    start: datetime
    end: datetime
    line: int


@dataclass
class Builder:
    """Turns parsed lines into events and labels, in file order; pure apart from warnings."""

    sensors: Mapping[str, MappedSensor]
    tz: ZoneInfo
    source: str
    warn: Warnings
    events: list[SensorEvent] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    unknown_sensors: dict[str, _Tally] = field(default_factory=dict)
    unknown_values: dict[tuple[str, EventKind], _Tally] = field(default_factory=dict)
    open_activities: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    run: _Run | None = None

    def add(self, parsed: CasasLine) -> None:
        self._label(parsed)
        mapped = self.sensors.get(parsed.sensor.upper())
        if mapped is None:
            self.unknown_sensors.setdefault(parsed.sensor, _Tally()).add(parsed.line)
            return
        value = event_value(mapped.kind, parsed.value)
        if value is None:
            self.unknown_values.setdefault((parsed.value, mapped.kind), _Tally()).add(parsed.line)
            return
        wall = localize(parsed.when, self.tz).timestamp()
        self.events.append(SensorEvent(mapped.trace_id, mapped.kind, value, wall, wall))

    def _label(self, parsed: CasasLine) -> None:
        if parsed.marker is not None and parsed.activity is not None:
            self._marker(parsed.activity, parsed.marker, parsed.when, parsed.line)
        name = parsed.label
        if name is not None and snake_case(name) in NO_ACTIVITY:
            name = None
        if self.run is not None and self.run.name == name:
            self.run.start = min(self.run.start, parsed.when)
            self.run.end = max(self.run.end, parsed.when)
            return
        self._close_run()
        if name is not None:
            self.run = _Run(name, parsed.when, parsed.when, parsed.line)

    def _marker(self, activity: str, marker: str, when: datetime, line: int) -> None:
        if marker == "begin":
            if activity in self.open_activities:
                first = self.open_activities[activity][1]
                self.warn.line(
                    self.source,
                    line,
                    f"{activity!r} begins again (open since line {first}); ignored",
                )
            else:
                self.open_activities[activity] = (when, line)
            return
        opened = self.open_activities.pop(activity, None)
        if opened is None:
            self.warn.line(self.source, line, f"{activity!r} ends but never began; ignored")
        elif when < opened[0]:
            self.warn.line(
                self.source, line, f"{activity!r} ends before it began (line {opened[1]}); ignored"
            )
        else:
            self._add_label(activity, opened[0], when, line)

    def _close_run(self) -> None:
        if self.run is not None:
            self._add_label(self.run.name, self.run.start, self.run.end, self.run.line)
            self.run = None

    def _add_label(self, name: str, start: datetime, end: datetime, line: int) -> None:
        label, moved = activity_label(name, start, end, self.tz, ACTIVITIES)
        if moved:
            self.warn.line(self.source, line, GAP_WARNING)
        self.labels.append(label)

    def finish(self) -> None:
        """Close the last run, report what was skipped, sort events and labels by time."""
        self._close_run()
        for activity, (_, line) in sorted(self.open_activities.items(), key=lambda a: a[1][1]):
            self.warn.line(self.source, line, f"{activity!r} begins but never ends; ignored")
        for sensor, tally in sorted(self.unknown_sensors.items()):
            self.warn.note(
                f"{self.source}: sensor {sensor!r} is not in the sensor map: "
                f"{tally.count} line(s) skipped (first on line {tally.first})"
            )
        for (word, kind), tally in sorted(self.unknown_values.items()):
            self.warn.note(
                f"{self.source}: value {word!r} does not fit a {kind} sensor: "
                f"{tally.count} line(s) skipped (first on line {tally.first})"
            )
        self.events.sort(key=lambda e: e.wall)
        self.labels.sort(key=lambda label: label.start)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a file, streamed; UTF-8 where it decodes, else Latin-1."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                yield lineno, text.rstrip("\r\n")
    except OSError as err:
        raise TraceError(str(path), 0, f"cannot read: {err.strerror or err}") from err


def import_casas(source: Path, tz: ZoneInfo, sensor_map: Path) -> Imported:
    """A CASAS recording as a trace; ``sensor_map`` says where each sensor is.

    Raises ``ConfigError`` for a sensor map that cannot be used and ``TraceError`` for a
    file that is not a CASAS recording; everything else is a warning.
    """
    smap = load_sensor_map(sensor_map)
    sensors = mapped_sensors(smap)
    warn = Warnings()
    builder = Builder(sensors, tz, source.name, warn)
    good = 0
    bad_at_top = 0
    first_error: tuple[int, str] | None = None
    for lineno, text in _lines(source):
        if not text.strip():
            continue
        try:
            parsed = parse_line(text, lineno, sensors)
        except ValueError as err:
            first_error = first_error or (lineno, str(err))
            if not good:
                bad_at_top += 1
                if bad_at_top >= SNIFF_LINES:
                    break
            warn.line(source.name, lineno, f"{err}; skipped")
            continue
        good += 1
        builder.add(parsed)
    if not good:
        line, reason = first_error or (0, "the file is empty")
        raise TraceError(str(source), line, f"not a CASAS recording ({reason})")
    builder.finish()

    events = builder.events
    activations = sum(1 for e in events if e.value == 1.0 and e.kind in ACTIVITY_KINDS)
    home = HomeMap(
        sensors={m.trace_id: m.spec for m in sorted(sensors.values(), key=lambda m: m.trace_id)}
    )
    return finish(
        "casas",
        tz,
        home,
        events,
        builder.labels,
        activations,
        warn,
        source=smap.source or f"CASAS {source.name}, WSU smart home [{CITATION}]",
        files=[source.name, sensor_map.name],
    )
