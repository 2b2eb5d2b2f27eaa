"""Durations and times of day as people write them: "90s", "15m", "2h30m", "1d", "22:00"."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")  # "ms" before "m"
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: Any) -> float:
    """Seconds from a number (already seconds) or a string like ``"2h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like '2h30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or a text like '2h30m'")
    text = value.strip().lower().replace(" ", "")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration; write it like '90s', '15m', '2h30m', '1d'")
    return total


def format_duration(seconds: float) -> str:
    """``9120`` -> ``"2 h 32 min"``; for people, not for parsing."""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48 or minutes:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _fmt_seconds(seconds: float) -> str | float:
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(_fmt_seconds)]


def parse_time_of_day(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
            return time(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"{value!r} is not a time of day; write it like '07:30'")


TimeOfDay = Annotated[time, BeforeValidator(parse_time_of_day)]


def minutes_of_day(t: time) -> int:
    return t.hour * 60 + t.minute
