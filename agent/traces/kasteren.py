"""Import the van Kasteren 2008 home ("kasterenDataset") into a trace.

``kasterenSenseData.txt`` holds one row per sensor interval (start, end, sensor id,
value), ``kasterenActData.txt`` one row per activity (start, end, activity id). Both
begin with a header that lists the ids and their names; both end with a footer line
``Length: <rows>``. Times look like ``25-Feb-2008 00:20:14``: local wall time, no zone,
English month names (read from a table here, never from the machine's locale). Lines end
in CRLF.

Defined outcomes:

- the id lists are read from each file's header; ``SENSOR_NAMES`` and
  ``ACTIVITY_NAMES`` (the 2008 house) are used only when a header has no list, with a
  warning;
- a row whose end is before its start, a row that does not parse, and a row with an id
  not in the list are skipped, each with a warning naming its line;
- a value other than 1 (the dataset says it is always 1) is imported and warned about;
- a ``Length:`` footer that disagrees with the number of rows read is warned about.

All sensors are reed switches or float switches; there is no motion sensor at all.
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
    split_lines,
)

ENCODING = "latin-1"
CITATION = "vankasteren2008"
SENSE_FILE = "kasterensensedata.txt"
ACT_FILE = "kasterenactdata.txt"

#: Fallback for a sense file whose header has no id list: the 2008 house.
SENSOR_NAMES: dict[int, str] = {
    1: "Microwave",
    5: "Hall-Toilet door",
    6: "Hall-Bathroom door",
    7: "Cups cupboard",
    8: "Fridge",
    9: "Plates cupboard",
    12: "Frontdoor",
    13: "Dishwasher",
    14: "ToiletFlush",
    17: "Freezer",
    18: "Pans Cupboard",
    20: "Washingmachine",
    23: "Groceries Cupboard",
    24: "Hall-Bedroom door",
}

#: Fallback for an act file whose header has no id list.
ACTIVITY_NAMES: dict[int, str] = {
    1: "leave house",
    4: "use toilet",
    5: "take shower",
    10: "go to bed",
    13: "prepare Breakfast",
    15: "prepare Dinner",
    17: "get drink",
}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a sensor is and what it tells: room, role, kind."""

    room: str
    role: Role
    kind: EventKind


#: Sensors by name (lower case, single spaces). A door between the hall and a room tells
#: that the person went into that room, so it takes the room's role.
SENSORS: dict[str, Placement] = {
    "frontdoor": Placement("hall", Role.FRONT_DOOR, EventKind.CONTACT),
    "hall-toilet door": Placement("toilet", Role.TOILET, EventKind.CONTACT),
    "hall-bathroom door": Placement("bathroom", Role.BATHROOM, EventKind.CONTACT),
    "toiletflush": Placement("toilet", Role.TOILET, EventKind.FLUSH),
    "hall-bedroom door": Placement("bedroom", Role.BEDROOM, EventKind.CONTACT),
    "microwave": Placement("kitchen", Role.KITCHEN, EventKind.APPLIANCE),
    "cups cupboard": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    "fridge": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    "plates cupboard": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    "dishwasher": Placement("kitchen", Role.KITCHEN, EventKind.APPLIANCE),
    "freezer": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    "pans cupboard": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    "groceries cupboard": Placement("kitchen", Role.KITCHEN, EventKind.CONTACT),
    # The dataset does not say in which room the washing machine stands. Filing it under
    # kitchen would count laundry as kitchen use (meal routines); under bathroom it could
    # start a "long stay in the bathroom" while the person is elsewhere. It proves only
    # that the person is at home and active, which "other" says and no more.
    "washingmachine": Placement("other", Role.OTHER, EventKind.APPLIANCE),
}

#: Activity names (snake_case of the original) to the common vocabulary. Others keep
#: their snake_case name (prepare_breakfast, prepare_dinner, get_drink).
ACTIVITIES: dict[str, str] = {
    "leave_house": LEAVING,
    "go_to_bed": SLEEPING,
    "use_toilet": TOILETING,
    "take_shower": SHOWERING,
}

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_TIME = r"\d{1,2}-[A-Za-z]{3}-\d{4}\s+\d{1,2}:\d{2}:\d{2}"
_TIME_PARTS = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})")
_ROW = re.compile(rf"^\s*(?P<start>{_TIME})\s+(?P<end>{_TIME})(?P<rest>.*)$")
_SENSOR_ID = re.compile(r"^\s*\[\s*(\d+)\s*\]\s*'(.*?)'\s*$")
_ACTIVITY_ID = re.compile(r"^\s*(\d+)\s*:\s*'(.*?)'\s*$")
_FOOTER = re.compile(r"^\s*Length:\s*(\d+)\s*$", re.IGNORECASE)


def parse_time(text: str) -> datetime:
    """``25-Feb-2008 00:20:14`` as a naive datetime; ValueError when it is not one."""
    match = _TIME_PARTS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a time like 25-Feb-2008 00:20:14: {text!r}")
    day, mon, year, hour, minute, second = match.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        raise ValueError(f"unknown month {mon!r}")
    return datetime(int(year), month, int(day), int(hour), int(minute), int(second))


def parse_id_list(lines: Sequence[str], pattern: re.Pattern[str]) -> dict[int, str]:
    """The ``id -> name`` list of a header (``[ 1] 'Microwave'`` or ``1: 'leave house'``)."""
    names: dict[int, str] = {}
    for line in lines:
        match = pattern.match(line)
        if match:
            names[int(match[1])] = match[2].strip()
    return names


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: ``value`` is None in the act file, which has no value column."""

    line: int
    start: datetime
    end: datetime
    id: int
    value: str | None


@dataclass
class Table:
    """A parsed file: its header's id list, its rows, and its footer's row count."""

    names: dict[int, str]
    rows: list[Row]
    data_lines: int
    footer: int | None


def parse_table(lines: Sequence[str], source: str, warn: Warnings, *, with_value: bool) -> Table:
    """Header id list, data rows and footer of a sense (``with_value``) or act file."""
    names = parse_id_list(lines, _SENSOR_ID if with_value else _ACTIVITY_ID)
    rows: list[Row] = []
    in_data = False
    data_lines = 0
    footer: int | None = None
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        foot = _FOOTER.match(text)
        if foot:
            footer = int(foot[1])
            continue
        if not in_data:
            # Header text up to the dashes under the column names, or up to the first row.
            if set(text) <= set("-\t "):
                in_data = True
                continue
            if _ROW.match(text) is None:
                continue
            in_data = True
        data_lines += 1
        row = _parse_row(text, lineno, source, warn, with_value=with_value)
        if row is not None:
            rows.append(row)
    if not in_data:
        warn.note(f"{source}: no data rows after the header")
    return Table(names, rows, data_lines, footer)


def _parse_row(
    text: str, lineno: int, source: str, warn: Warnings, *, with_value: bool
) -> Row | None:
    match = _ROW.match(text)
    if match is None:
        warn.line(source, lineno, f"not a row of start, end, id; skipped: {text!r}")
        return None
    start_text, end_text = match["start"], match["end"]
    tokens = match["rest"].split()
    if not tokens:
        warn.line(source, lineno, "no id column; skipped")
        return None
    value = (tokens[1] if len(tokens) > 1 else None) if with_value else None
    extra = tokens[2:] if with_value else tokens[1:]
    if extra:
        warn.line(source, lineno, f"extra columns ignored: {' '.join(extra)!r}")
    try:
        start = parse_time(start_text)
        end = parse_time(end_text)
        ident = int(tokens[0])
    except ValueError as err:
        warn.line(source, lineno, f"{err}; skipped")
        return None
    if end < start:
        warn.line(source, lineno, f"ends ({end_text}) before it starts ({start_text}); skipped")
        return None
    return Row(lineno, start, end, ident, value)


def placement(name: str) -> Placement | None:
    """Room, role and kind of a sensor by its name; keyword rules for names not listed."""
    key = " ".join(name.lower().split())
    known = SENSORS.get(key)
    if known is not None:
        return known
    if "flush" in key:
        return Placement("toilet", Role.TOILET, EventKind.FLUSH)
    contact = any(w in key for w in ("door", "cupboard", "fridge", "freezer", "drawer"))
    kind = EventKind.CONTACT if contact else EventKind.APPLIANCE
    if "front" in key and "door" in key:
        return Placement("hall", Role.FRONT_DOOR, kind)
    for word, room, role in (
        ("toilet", "toilet", Role.TOILET),
        ("bathroom", "bathroom", Role.BATHROOM),
        ("bedroom", "bedroom", Role.BEDROOM),
    ):
        if word in key:
            return Placement(room, role, kind)
    kitchen = ("cupboard", "fridge", "freezer", "microwave", "dishwasher", "oven", "stove", "pan")
    if any(w in key for w in kitchen):
        return Placement("kitchen", Role.KITCHEN, kind)
    return None


def build(
    sense: Table,
    act: Table | None,
    tz: ZoneInfo,
    warn: Warnings,
    *,
    source: str,
    files: Sequence[str] = (),
    sense_file: str = "sense",
    act_file: str = "act",
) -> Imported:
    """Parsed files to a trace: an on and an off event per sensor interval."""
    names = sense.names
    if not names:
        warn.note(f"{sense_file}: no sensor id list in the header; using the 2008 house's")
        names = SENSOR_NAMES
    _check_footer(sense, sense_file, warn)
    specs: dict[int, tuple[str, Placement]] = {}
    for ident, name in names.items():
        place = placement(name)
        if place is None:
            warn.note(f"sensor {ident} {name!r}: room and role unknown, using 'other'")
            place = Placement("other", Role.OTHER, EventKind.CONTACT)
        specs[ident] = (kebab_case(name) or f"sensor-{ident}", place)

    intervals: list[Interval] = []
    for row in sense.rows:
        spec = specs.get(row.id)
        if spec is None:
            warn.line(
                sense_file, row.line, f"sensor id {row.id} is not in the header's list; skipped"
            )
            continue
        if row.value is not None and row.value != "1":
            warn.line(sense_file, row.line, f"value {row.value!r} where 1 is expected; imported")
        sid, place = spec
        start, end, moved = localize_span(row.start, row.end, tz)
        if moved:
            warn.line(sense_file, row.line, GAP_WARNING)
        intervals.append(Interval(sid, place.kind, start.timestamp(), end.timestamp(), row.line))

    labels: list[Label] = []
    if act is not None:
        activity_names = act.names
        if not activity_names:
            warn.note(f"{act_file}: no activity id list in the header; using the 2008 house's")
            activity_names = ACTIVITY_NAMES
        _check_footer(act, act_file, warn)
        for row in act.rows:
            original = activity_names.get(row.id)
            if original is None:
                warn.line(
                    act_file, row.line, f"activity id {row.id} is not in the header's list; skipped"
                )
                continue
            label, moved = activity_label(original, row.start, row.end, tz, ACTIVITIES)
            if moved:
                warn.line(act_file, row.line, GAP_WARNING)
            labels.append(label)
        labels.sort(key=lambda label: label.start)

    events = interval_events(intervals)
    home = HomeMap(
        sensors={
            sid: SensorSpec(room=place.room, role=place.role, kind=place.kind, label=names[i])
            for i, (sid, place) in sorted(specs.items(), key=lambda item: item[1][0])
        }
    )
    return finish(
        "kasteren", tz, home, events, labels, len(intervals), warn, source=source, files=files
    )


def _check_footer(table: Table, source: str, warn: Warnings) -> None:
    if table.footer is not None and table.footer != table.data_lines:
        warn.note(f"{source}: the footer says {table.footer} rows, the file has {table.data_lines}")


def find_files(sources: Sequence[Path]) -> tuple[Path, Path | None]:
    """The sense file and, when given, the act file among folders and files."""
    sense: list[Path] = []
    act: list[Path] = []
    for src in sources:
        if src.is_dir():
            candidates = sorted(src.iterdir())
        elif src.is_file():
            candidates = [src]
        else:
            raise TraceError(str(src), 0, "no such file or folder")
        for path in candidates:
            low = path.name.lower()
            if low == SENSE_FILE or (src.is_file() and "sense" in low):
                sense.append(path)
            elif low == ACT_FILE or (src.is_file() and "act" in low):
                act.append(path)
            elif src.is_file():
                raise TraceError(
                    str(path), 0, "not kasterenSenseData.txt or kasterenActData.txt by name"
                )
    if not sense:
        where = ", ".join(str(s) for s in sources) or "(nothing given)"
        raise TraceError(where, 0, "no kasterenSenseData.txt found")
    if len(sense) > 1 or len(act) > 1:
        names = ", ".join(str(p) for p in [*sense, *act])
        raise TraceError(str(sense[0]), 0, f"more than one home given ({names})")
    return sense[0], (act[0] if act else None)


def import_kasteren(sources: Sequence[Path], tz: ZoneInfo) -> Imported:
    """The van Kasteren home as a trace, from its folder or its two files (acts optional)."""
    sense_path, act_path = find_files(sources)
    warn = Warnings()
    sense = parse_table(
        split_lines(read_text(sense_path, ENCODING)), sense_path.name, warn, with_value=True
    )
    if not sense.rows:
        raise TraceError(str(sense_path), 0, "no sensor rows: not a van Kasteren sense file?")
    act: Table | None = None
    files = [sense_path.name]
    if act_path is not None:
        files.append(act_path.name)
        act = parse_table(
            split_lines(read_text(act_path, ENCODING)), act_path.name, warn, with_value=False
        )
    return build(
        sense,
        act,
        tz,
        warn,
        source=f"van Kasteren 2008, kasterenDataset [{CITATION}]",
        files=files,
        sense_file=sense_path.name,
        act_file=act_path.name if act_path else "act",
    )
