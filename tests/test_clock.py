"""Whether the wall clock is synchronised, also where the unit's filter refuses adjtimex.

Under ``ProtectClock=yes`` (systemd/leefsamen-hub.service) every clock call fails with
EPERM, the read-only ``adjtimex`` too; the agent then reads systemd-timesyncd's
``synchronized`` file. The refused call is the one thing replaced here (the system-call
filter is the operating system's); the files are real, in a folder of the test's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import clock


class _Refused:
    """A C library whose adjtimex the seccomp filter refuses: -1, as with EPERM."""

    def adjtimex(self, _tx: Any) -> int:
        return -1


@pytest.fixture
def timesyncd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "timesync"
    monkeypatch.setattr(clock, "TIMESYNCD_DIR", folder)
    monkeypatch.setattr(clock, "_libc", _Refused)
    return folder


def test_the_kernel_answers_where_adjtimex_is_allowed() -> None:
    assert clock.kernel_says_synced() in (True, False)  # this machine allows it


def test_refused_adjtimex_and_timesyncd_synchronised(timesyncd: Path) -> None:
    timesyncd.mkdir()
    (timesyncd / "synchronized").touch()
    assert clock.kernel_says_synced() is True


def test_refused_adjtimex_and_timesyncd_not_yet_synchronised(timesyncd: Path) -> None:
    timesyncd.mkdir()
    assert clock.kernel_says_synced() is False
    live = clock.LiveClock(ZoneInfo("Europe/Amsterdam"))
    assert live.wall_synced() is False  # so no rule relies on the time of day yet


def test_refused_adjtimex_and_no_timesyncd_cannot_say(timesyncd: Path) -> None:
    assert clock.kernel_says_synced() is None
