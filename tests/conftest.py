"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devtools.broker import Mosquitto, find_mosquitto

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$LEEFSAMEN_SHARED_DATA``."""
    env = os.environ.get("LEEFSAMEN_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The recorded real homes; the test is skipped, with the reason, where they are absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"recorded data not present at {path} (it is never copied into the repo)")
    return path


class FailOnBadFormattingHandler(logging.Handler):
    """A log call whose arguments do not fit its format string fails the test."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as err:  # pragma: no cover - only reached by a buggy log call
            pytest.fail(f"bad log format {record.msg!r} with {record.args!r}: {err}")


@pytest.fixture(autouse=True)
def _fail_on_bad_log_formatting() -> Iterator[None]:
    handler = FailOnBadFormattingHandler(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A private Mosquitto broker on a free port, stopped after the test.

    Skipped, with the reason, where the binary is absent (CI installs it).
    """
    if find_mosquitto() is None:
        pytest.skip(
            "mosquitto is not installed (looked in PATH and /usr/sbin); "
            "install the 'mosquitto' package to run the broker tests"
        )
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
