"""The agent killed with SIGKILL at random instants while alerts flow: nothing accepted is lost.

The harness is ``agent.devtools.crash.KillHarness`` (also run by ``bench/uplink.py`` with
1,000 kills): after every kill a copy of the outbox file must pass ``PRAGMA
integrity_check`` and hold every accepted alert the subscriber has not received. The
seed of the kill delays is new each run and is part of every failure message; set
``LEEFSAMEN_CRASH_SEED`` to run with a given one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.devtools.broker import Mosquitto
from agent.devtools.crash import CrashCheckFailed, KillHarness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SEED = int(os.environ.get("LEEFSAMEN_CRASH_SEED", "0")) or int.from_bytes(os.urandom(4), "big")


def test_killed_200_times_with_a_broker_no_accepted_alert_is_lost(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """200 kills while alerts are made and sent: all arrive in the end, in order, none lost."""
    harness = KillHarness(tmp_path, seed=SEED, broker=(mosquitto.host, mosquitto.port))
    report = harness.run(200)
    print(report.text())
    assert report.kills >= 200
    assert report.accepted > 1000  # alerts really flowed between the kills
    assert report.most_waiting > 0  # and kills found alerts waiting to be sent
    assert report.received == report.accepted  # the last agent delivered every one


def test_killed_with_the_broker_down_every_accepted_alert_stays(tmp_path: Path) -> None:
    """50 kills with the broker down: the outbox only grows, sound after every kill."""
    report = KillHarness(tmp_path, seed=SEED + 1).run(50)
    print(report.text())
    assert report.kills >= 50
    assert report.received == 0
    assert report.most_waiting == report.accepted > 250  # all of them wait, none lost


@pytest.mark.parametrize("broker", [False, True], ids=["broker down", "broker up"])
def test_the_harness_notices_an_outbox_that_loses_alerts(
    mosquitto: Mosquitto, tmp_path: Path, broker: bool
) -> None:
    """An outbox that forgets every 50th alert it accepted fails the check at once."""
    address = (mosquitto.host, mosquitto.port) if broker else None
    harness = KillHarness(tmp_path, seed=SEED, broker=address, settle=2.0, fault="forget")
    with pytest.raises(CrashCheckFailed, match=r"accepted alert messages lost|lost the alert"):
        harness.run(20)
