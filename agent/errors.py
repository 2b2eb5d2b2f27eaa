"""One exception root for the hub; subclasses are named by what the caller should do.

- ``ConfigError``: stop. The configuration is wrong and a person must fix it.
- ``TraceError``: stop reading that file; it names the line.
- ``TransientError``: retry later (a broker down, a device unplugged).
- ``UnknownDriverError``: a configuration names a driver nobody provides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input, at a key path such as ``drivers[0].speed``."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(HubError):
    """The configuration cannot be used. ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class UnknownDriverError(HubError):
    """A driver type is neither built in nor offered by an installed entry point."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown driver {name!r}; known drivers: {', '.join(self.known)}")


class TraceError(HubError):
    """A trace file is malformed; ``line`` is 1-based, 0 when the file as a whole is wrong."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.reason = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class TransientError(HubError):
    """Something outside the hub is not available right now; the caller retries."""
