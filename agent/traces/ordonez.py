"""Import the Ordóñez homes ("ADLs Recognition Using Binary Sensors", UCI) into a trace.

Each home has ``<Home>_Sensors.txt`` (one row per sensor interval: start, end, sensor,
type, room) and ``<Home>_ADLs.txt`` (start, end, activity). The files are Latin-1 with
CRLF line ends, two header lines, and columns separated by one or more tabs. Times are
local wall times with no zone.

Defined outcomes for what the files can hold:

- header lines (``Start time ...`` and the dashes) are skipped wherever they are;
- blank lines and trailing whitespace are ignored;
- a row whose end is before its start, a row that does not parse, and an activity row
  with a blank name are skipped, each with a warning naming its line;
- a sensor of a type not in ``TYPE_KINDS`` is skipped with one warning and its count.

Parsing (``parse_sensor_rows``, ``parse_activity_rows``) is pure and apart from the file
handling in ``import_ordonez``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.errors import TraceError
from agent.events import EventKind
from agent.homemap import HomeMap, Role, SensorSpec
from agent.traces.format import Label
from agent.traces.importing import (
    GAP_WARNING,
    LEAVING,
    SHOWERING,
    SLEEPING,
    TOILETING,
    Imported,
    Interval,
    Warnings,
    activity_label,
    finish,
    interval_events,
    kebab_case,
    localize_span,
    read_text,
    snake_case,
    split_lines,
)

ENCODING = "latin-1"
CITATION = "ordonez2013"

#: The "Type" column to the kind of event.
TYPE_KINDS: dict[str, EventKind] = {
    "pir": EventKind.MOTION,
    "magnetic": EventKind.CONTACT,
    "flush": EventKind.FLUSH,
    "pressure": EventKind.PRESSURE,
    "electric": EventKind.APPLIANCE,
}

#: Sensors of home A by name (snake_case). Sensors not listed get a role from the rules
#: in ``_role``, so home B and other homes in this layout import too.
SENSOR_ROLES: dict[str, Role] = {
    "bed": Role.BED,  # pressure mat: lying in bed
    "seat": Role.SEAT,  # pressure mat on the living room seat: sitting
    "maindoor": Role.FRONT_DOOR,
    "toilet": Role.TOILET,  # the flush
    "shower": Role.BATHROOM,  # PIR over the shower
    "basin": Role.BATHROOM,  # PIR at the wash basin
    "cabinet": Role.BATHROOM,  # bathroom cabinet door
    "cooktop": Role.KITCHEN,  # PIR at the cooktop
    "fridge": Role.KITCHEN,
    "cupboard": Role.KITCHEN,
    "microwave": Role.KITCHEN,
    "toaster": Role.KITCHEN,
}

#: The "Place" column (snake_case) to the role of a sensor that says no more than that.
PLACE_ROLES: dict[str, Role] = {
    "bedroom": Role.BEDROOM,
    "bathroom": Role.BATHROOM,
    "kitchen": Role.KITCHEN,
    "living": Role.LIVING,
    "entrance": Role.HALLWAY,
}

#: Activity names (snake_case of the original) to the common vocabulary. Others
#: (breakfast, lunch, dinner, snack, grooming, spare_time_tv) keep their snake_case name.
ACTIVITIES: dict[str, str] = {
    "leaving": LEAVING,
    "sleeping": SLEEPING,
    "toileting": TOILETING,
    "showering": SHOWERING,
}


@dataclass(frozen=True, slots=True)
class SensorRow:
    """One row of a ``_Sensors.txt`` file; ``place`` is empty when the column is blank."""

    line: int
    start: datetime
    end: datetime
    name: str
    type: str
    place: str


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One row of an ``_ADLs.txt`` file."""

    line: int
    start: datetime
    end: datetime
    name: str


_TIME = r"(\d{4}-\d{1,2}-\d{1,2}[ T]\d{1,2}:\d{2}:\d{2})"
_ROW = re.compile(rf"^\s*{_TIME}\s+{_TIME}(.*)$")
# Columns are split by tabs (any number) or, for a hand-edited row, two or more spaces;
# a single space stays inside a name.
_COLUMNS = re.compile(r"\s*\t\s*|\s{2,}")


def _is_header(line: str) -> bool:
    text = line.strip()
    return text.lower().startswith("start time") or (bool(text) and set(text) <= set("-\t "))


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text.replace("T", " "), "%Y-%m-%d %H:%M:%S")


def _split_row(
    line: str, lineno: int, source: str, warn: Warnings
) -> tuple[datetime, datetime, list[str]] | None:
    """Start, end and the other columns of a data row, or None (warned) when it is not one."""
    match = _ROW.match(line)
    if match is None:
        warn.line(source, lineno, f"not a row that starts with two times; skipped: {line!r}")
        return None
    try:
        start = _parse_time(match[1])
        end = _parse_time(match[2])
    except ValueError as err:
        warn.line(source, lineno, f"bad time ({err}); skipped")
        return None
    if end < start:
        warn.line(source, lineno, f"ends ({match[2]}) before it starts ({match[1]}); skipped")
        return None
    columns = [c for c in _COLUMNS.split(match[3].strip()) if c]
    return start, end, columns


def parse_sensor_rows(lines: Sequence[str], source: str, warn: Warnings) -> list[SensorRow]:
    """The sensor intervals of a ``_Sensors.txt`` file given as lines (line 1 first)."""
    rows: list[SensorRow] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or _is_header(line):
            continue
        parts = _split_row(line, lineno, source, warn)
        if parts is None:
            continue
        start, end, columns = parts
        if len(columns) < 2:
            warn.line(source, lineno, "needs a sensor name and a sensor type; skipped")
            continue
        if len(columns) > 3:
            warn.line(source, lineno, f"extra columns ignored: {columns[3:]}")
        place = columns[2] if len(columns) > 2 else ""
        rows.append(SensorRow(lineno, start, end, columns[0], columns[1], place))
    return rows


def parse_activity_rows(lines: Sequence[str], source: str, warn: Warnings) -> list[ActivityRow]:
    """The activity labels of an ``_ADLs.txt`` file given as lines (line 1 first)."""
    rows: list[ActivityRow] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or _is_header(line):
            continue
        parts = _split_row(line, lineno, source, warn)
        if parts is None:
            continue
        start, end, columns = parts
        if not columns:
            warn.line(source, lineno, "blank activity name; skipped")
            continue
        rows.append(ActivityRow(lineno, start, end, " ".join(columns)))
    return rows


def _role(name: str, kind: EventKind, place: str) -> Role | None:
    """The role of a sensor: by name for the known ones, else by what and where it is."""
    role = SENSOR_ROLES.get(snake_case(name))
    if role is not None:
        return role
    where = snake_case(place)
    if kind is EventKind.PRESSURE and where == "bedroom":
        return Role.BED
    if kind is EventKind.PRESSURE and where == "living":
        return Role.SEAT
    if kind is EventKind.FLUSH:
        return Role.TOILET
    if kind is EventKind.CONTACT and where == "entrance":
        return Role.FRONT_DOOR
    return PLACE_ROLES.get(where)


def build(
    sensor_rows: Sequence[SensorRow],
    activity_rows: Sequence[ActivityRow],
    tz: ZoneInfo,
    warn: Warnings,
    *,
    source: str,
    files: Sequence[str] = (),
    sensor_file: str = "sensors",
    activity_file: str = "adls",
) -> Imported:
    """Rows to a trace: one sensor id per name, an on and an off event per interval."""
    specs: dict[str, SensorSpec] = {}
    skipped: dict[str, list[int]] = {}
    intervals: list[Interval] = []
    for row in sensor_rows:
        sid = kebab_case(row.name)
        spec = specs.get(sid)
        if spec is None:
            kind = TYPE_KINDS.get(row.type.lower())
            if kind is None or not sid:
                skipped.setdefault(f"{row.name!r} of type {row.type!r}", []).append(row.line)
                continue
            role = _role(row.name, kind, row.place)
            if role is None:
                warn.note(
                    f"sensor {row.name!r} in {row.place or 'no room'!r}: role unknown, "
                    "using 'other'"
                )
                role = Role.OTHER
            spec = SensorSpec(
                room=snake_case(row.place) or "unknown", role=role, kind=kind, label=row.name
            )
            specs[sid] = spec
        elif spec.kind is not TYPE_KINDS.get(row.type.lower()):
            warn.line(
                sensor_file,
                row.line,
                f"sensor {row.name!r} has type {row.type!r} here and another one before; "
                "the first is kept",
            )
        assert spec.kind is not None
        start, end, moved = localize_span(row.start, row.end, tz)
        if moved:
            warn.line(sensor_file, row.line, GAP_WARNING)
        intervals.append(Interval(sid, spec.kind, start.timestamp(), end.timestamp(), row.line))
    for what, lines in skipped.items():
        warn.note(
            f"sensor {what} is not known: {len(lines)} row(s) skipped (first on line {lines[0]})"
        )

    labels: list[Label] = []
    for act in activity_rows:
        label, moved = activity_label(act.name, act.start, act.end, tz, ACTIVITIES)
        if moved:
            warn.line(activity_file, act.line, GAP_WARNING)
        labels.append(label)
    labels.sort(key=lambda label: label.start)
    events = interval_events(intervals)
    home = HomeMap(sensors=dict(sorted(specs.items())))
    return finish(
        "ordonez", tz, home, events, labels, len(intervals), warn, source=source, files=files
    )


def _which(path: Path) -> str:
    """``"sensors"`` or ``"adls"``, from the file name, else from its header line."""
    name = path.name.lower()
    if "sensors" in name:
        return "sensors"
    if "adl" in name:
        return "adls"
    first = next(iter(split_lines(read_text(path, ENCODING))), "").lower()
    if "location" in first:
        return "sensors"
    if "activity" in first:
        return "adls"
    raise TraceError(
        str(path), 1, "neither a sensors file (start, end, location, type, place) nor an ADLs file"
    )


def find_files(sources: Sequence[Path]) -> tuple[Path, Path | None]:
    """The sensors file and, when given, the ADLs file among folders and files."""
    found: dict[str, list[Path]] = {"sensors": [], "adls": []}
    for src in sources:
        if src.is_dir():
            for path in sorted(src.iterdir()):
                low = path.name.lower()
                if low.endswith("_sensors.txt"):
                    found["sensors"].append(path)
                elif low.endswith("_adls.txt"):
                    found["adls"].append(path)
        elif src.is_file():
            found[_which(src)].append(src)
        else:
            raise TraceError(str(src), 0, "no such file or folder")
    sensors, adls = found["sensors"], found["adls"]
    if not sensors:
        where = ", ".join(str(s) for s in sources) or "(nothing given)"
        raise TraceError(where, 0, "no *_Sensors.txt file found")
    if len(sensors) > 1 or len(adls) > 1:
        names = ", ".join(p.name for p in [*sensors, *adls])
        raise TraceError(
            str(sensors[0].parent), 0, f"more than one home here ({names}); give one home's files"
        )
    return sensors[0], (adls[0] if adls else None)


def _source_name(sensors: Path) -> str:
    match = re.match(r"ordonez([a-z])_", sensors.name.lower())
    home = f"home {match[1].upper()}" if match else sensors.stem.removesuffix("_Sensors")
    return f"Ordóñez {home}, UCI ADLs recognition using binary sensors [{CITATION}]"


def import_ordonez(sources: Sequence[Path], tz: ZoneInfo) -> Imported:
    """An Ordóñez home as a trace, from its folder or its two files (the ADLs optional)."""
    sensors_path, adls_path = find_files(sources)
    warn = Warnings()
    sensor_rows = parse_sensor_rows(
        split_lines(read_text(sensors_path, ENCODING)), sensors_path.name, warn
    )
    if not sensor_rows:
        raise TraceError(str(sensors_path), 0, "no sensor rows: not an Ordóñez sensors file?")
    activity_rows: list[ActivityRow] = []
    files = [sensors_path.name]
    if adls_path is not None:
        files.append(adls_path.name)
        activity_rows = parse_activity_rows(
            split_lines(read_text(adls_path, ENCODING)), adls_path.name, warn
        )
    return build(
        sensor_rows,
        activity_rows,
        tz,
        warn,
        source=_source_name(sensors_path),
        files=files,
        sensor_file=sensors_path.name,
        activity_file=adls_path.name if adls_path else "adls",
    )
