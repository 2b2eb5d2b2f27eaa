"""A restart of the agent: open alerts, sequence numbers and the mode outlive it.

Two levels. The engine: a rule raises, the engine's state goes through its stored record
(``detection.saved``) into a new engine, and the same rule, or the engine for it, ends the
alert under the same id. The runtime: a hub with the SQLite outbox replays the first part
of a simulated home and stops, or is killed with SIGKILL, while alerts are open; a new
agent on the same outbox replays the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.devtools.broker import free_port
from agent.events import EventKind, SensorEvent
from agent.messages import AlertMessage, AlertState, Mode, Severity
from agent.outbox.memory import MemoryOutbox
from agent.outbox.sqlite import SqliteOutbox
from agent.replay import replay_runtime
from agent.traces.format import TraceHeader, write_trace
from agent.traces.simulate import parse_incident, simulate
from agent.uplink import MemoryUplink
from detection.button import HelpButton
from detection.emergency import Emergency
from detection.engine import Detector, EngineState, OpenAlert
from detection.intrusion import Intrusion
from detection.person import PersonWatch
from detection.saved import (
    ASIDE_KEY,
    STATE_KEY,
    EngineStateKeeper,
    SavedStateError,
    decode_state,
    encode_state,
)
from detection.sensorhealth import SensorHealth
from detection.temperature import Temperature
from tests.conftest import ROOT
from tests.test_detectors_events import HEALTH_HOME, Run, ev, every, ts
from tests.test_outbox_sqlite import V1_FIXTURE

RAISED, UPDATED, RESOLVED = AlertState.RAISED, AlertState.UPDATED, AlertState.RESOLVED


def restart(run: Run, *detectors: type[Detector], **kw: object) -> Run:
    """A new engine (new clock, set by its first event) from ``run``'s stored record."""
    state = decode_state(encode_state(run.engine.snapshot()))
    again = Run(*detectors, start=None, mode=state.mode, **kw)  # type: ignore[arg-type]
    again.engine.restore(state)
    return again


def only(run: Run) -> AlertMessage:
    [message] = run.alerts
    return message


# ---- the engine: each rule takes its own back --------------------------------------------


def test_smoke_open_at_a_restart_is_updated_and_resolved_under_its_id() -> None:
    """The same sensor again updates the old alert (no second raise); clear resolves it."""
    run = Run(Emergency)
    run.feed(ev("2026-11-10T10:00:00", "kitchen-smoke"), ev("2026-11-10T10:01:00", "kitchen-smoke"))
    raised = run.alerts[0]
    after = restart(run, Emergency)
    after.feed(ev("2026-11-10T10:05:00", "kitchen-smoke"))
    updated = only(after)
    assert (updated.state, updated.id, updated.seq) == (UPDATED, raised.id, 3)
    assert updated.evidence == {"reports": 3}
    after.feed(ev("2026-11-10T10:12:00", "kitchen-smoke", 0))
    resolved = after.alerts[-1]
    assert (resolved.state, resolved.id, resolved.seq) == (RESOLVED, raised.id, 4)
    assert resolved.summary == "The smoke alarm in Kitchen cleared after 12 min."
    assert resolved.evidence == {"reports": 3, "open_min": 12}


def test_a_fall_open_at_a_restart_resolves_on_movement_in_another_room() -> None:
    """The radar's room is known again: movement there does not end it, elsewhere does."""
    run = Run(Emergency)
    run.feed(ev("2026-11-10T10:00:00", "fall-radar"))
    raised = only(run)
    after = restart(run, Emergency)
    after.feed(ev("2026-11-10T10:20:00", "bathroom-motion"))
    assert after.alerts == []
    after.feed(ev("2026-11-10T10:30:00", "kitchen-motion"))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "Seen moving again in Kitchen 30 min after the fall."


def test_a_cold_room_open_at_a_restart_is_not_raised_again_and_resolves_when_warm() -> None:
    """Still cold for hours after the restart: no second alert; warm again: resolved."""
    run = Run(Temperature)
    run.feed(every("2026-11-10T06:00:00", 10, 20, "living-temp", "temperature", 14.0))
    raised = only(run)
    assert raised.evidence["lowest_c"] == 14.0
    after = restart(run, Temperature)
    after.feed(every("2026-11-10T10:00:00", 10, 30, "living-temp", "temperature", 15.0))
    assert after.alerts == []
    after.feed(ev("2026-11-10T15:00:00", "living-temp", 17.0))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == (
        "Back to 17.0 °C in Living after 9 h below 16 °C; the lowest was 14.0 °C."
    )


def test_a_cold_room_silent_after_a_restart_resolves_as_a_stale_one() -> None:
    """No reading at all after the restart: closed once its readings would be stale."""
    run = Run(Temperature)
    run.feed(every("2026-11-10T06:00:00", 10, 20, "living-temp", "temperature", 14.0))
    raised = only(run)
    after = restart(run, Temperature)
    after.feed(ev("2026-11-10T10:00:00", "bedroom-temp", 20.0))  # another room: the clock
    after.until("2026-11-10T11:59:00")  # living-temp declares 10 min: stale after 6 h
    assert after.alerts == []
    after.until("2026-11-10T16:00:01")
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary.startswith("No temperature reading from Living for 6 h")


def test_a_low_battery_open_at_a_restart_is_not_raised_again_and_a_new_one_resolves() -> None:
    """Another low report after the restart is no new alert; a new battery resolves it."""
    run = Run(SensorHealth, home=HEALTH_HOME)
    run.feed(ev("2026-11-10T10:00:00", "kitchen-motion", "battery", 12))
    raised = only(run)
    after = restart(run, SensorHealth, home=HEALTH_HOME)
    after.feed(ev("2026-11-10T11:00:00", "kitchen-motion", "battery", 11))
    assert after.alerts == []
    after.feed(ev("2026-11-10T12:00:00", "kitchen-motion", "battery", 100))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "New battery in kitchen-motion in Kitchen: 100 %."


def test_a_silent_sensor_open_at_a_restart_resolves_when_it_reports() -> None:
    """Counted from when it was last heard before the restart."""
    run = Run(SensorHealth, home=HEALTH_HOME)
    run.feed(ev("2026-11-10T08:00:00", "living-temp", "temperature", 20.0))
    run.until("2026-11-10T11:00:00")  # declared 1 h: silent after 3
    raised = only(run)
    assert raised.kind == "sensor_silent"
    after = restart(run, SensorHealth, home=HEALTH_HOME)
    after.feed(ev("2026-11-10T14:00:00", "living-temp", "temperature", 20.0))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "living-temp in Living reported again after 6 h of silence."
    assert resolved.evidence == {"silent_h": 6.0}


def test_a_driver_down_at_a_restart_is_resolved_when_it_runs_again() -> None:
    """The drivers start afresh: one that runs at the first event after the restart is up."""
    run = Run(SensorHealth, home=HEALTH_HOME)
    run.until("2026-11-10T10:00:00")
    run.engine.driver_state("zigbee", up=False)
    run.until("2026-11-10T10:06:00")
    raised = only(run)
    after = restart(run, SensorHealth, home=HEALTH_HOME)
    after.feed(ev("2026-11-10T10:30:00", "kitchen-motion", "motion"))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.evidence == {"down_min": 30}
    assert resolved.summary == (
        "The zigbee driver is running again after 30 min; the hub restarted meanwhile."
    )


def test_a_driver_still_down_after_a_restart_is_not_raised_again() -> None:
    """Down again at once: the old alert stays open, no second one; up: resolved."""
    run = Run(SensorHealth, home=HEALTH_HOME)
    run.until("2026-11-10T10:00:00")
    run.engine.driver_state("zigbee", up=False)
    run.until("2026-11-10T10:06:00")
    raised = only(run)
    after = restart(run, SensorHealth, home=HEALTH_HOME)
    after.clock.set(ts("2026-11-10T10:20:00"), after.mono("2026-11-10T10:20:00"))
    after.engine.driver_state("zigbee", up=False)
    after.until("2026-11-10T12:00:00")
    assert after.alerts == []
    after.engine.driver_state("zigbee", up=True)
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == "The zigbee driver is back after 2 h down."


def test_the_help_button_open_at_a_restart_counts_on_and_is_acknowledged() -> None:
    """A press after the restart updates the old alert; the acknowledgement resolves it."""
    run = Run(HelpButton)
    run.feed(ev("2026-11-10T10:00:00", "pendant"))
    raised = only(run)
    after = restart(run, HelpButton)
    after.feed(ev("2026-11-10T10:10:00", "pendant"))
    updated = only(after)
    assert (updated.state, updated.id, updated.seq) == (UPDATED, raised.id, 2)
    assert updated.evidence == {"presses": 2}
    assert after.engine.acknowledge(raised.id)
    assert (after.alerts[-1].state, after.alerts[-1].id) == (RESOLVED, raised.id)
    assert not after.engine.open


def test_an_intrusion_open_at_a_restart_is_updated_and_ends_with_normal_mode() -> None:
    """Built in the saved away mode: armed at once, the old alert counts on."""
    run = Run(Intrusion, mode=Mode.AWAY)
    run.feed(ev("2026-11-10T10:00:00", "front-door"))
    raised = only(run)
    after = restart(run, Intrusion)
    assert after.engine.mode is Mode.AWAY
    after.feed(ev("2026-11-10T10:30:00", "bedroom-window"))
    updated = only(after)
    assert (updated.state, updated.id, updated.evidence) == (UPDATED, raised.id, {"openings": 2})
    after.engine.set_mode(Mode.NORMAL)
    resolved = after.alerts[-1]
    assert (resolved.state, resolved.id, resolved.evidence) == (
        RESOLVED,
        raised.id,
        {"openings": 2},
    )


# ---- the engine: what the person rules leave to it ---------------------------------------


def test_inactivity_open_at_a_restart_is_resolved_at_the_first_movement_under_its_id() -> None:
    """The engine ends it when the person is seen; the person rule starts afresh from there."""
    run = Run(PersonWatch)
    run.feed(ev("2026-11-10T09:00:00", "kitchen-motion"), until="2026-11-10T20:00:00")
    raised = only(run)
    assert (raised.kind, raised.state) == ("inactivity", RAISED)
    after = restart(run, PersonWatch)
    after.feed(ev("2026-11-10T21:00:00", "living-motion"))
    resolved = only(after)
    assert (resolved.state, resolved.id, resolved.seq) == (RESOLVED, raised.id, 2)
    assert resolved.summary == (
        "Seen moving again in Living, 12 h after it began (the hub restarted meanwhile)."
    )
    assert resolved.evidence == {"quiet_min": 720}
    after.until("2026-11-11T12:00:00")  # a new quiet: a new alert, numbered on
    again = after.alerts[1]
    assert (again.state, again.seq) == (RAISED, 3)
    assert again.id != raised.id


def test_an_inactivity_alert_open_at_a_restart_is_not_raised_twice() -> None:
    """Until the person is seen, the person rule is silent and the old alert stays open."""
    run = Run(PersonWatch)
    run.feed(ev("2026-11-10T09:00:00", "kitchen-motion"), until="2026-11-10T20:00:00")
    raised = only(run)
    after = restart(run, PersonWatch)
    after.feed(ev("2026-11-10T21:00:00", "living-temp", 20.0), until="2026-11-12T00:00:00")
    assert after.alerts == []
    assert [a.id for a in after.engine.open.values()] == [raised.id]


def test_away_long_open_at_a_restart_ends_when_the_person_is_seen_inside() -> None:
    """The door alone is not coming home; movement inside is."""
    run = Run(PersonWatch)
    run.feed(
        ev("2026-11-10T09:00:00", "front-door"),
        ev("2026-11-10T09:00:05", "front-door", 0),
        until="2026-11-12T00:00:00",
    )
    raised = only(run)
    assert (raised.kind, raised.severity) == ("away_long", Severity.INFO)
    after = restart(run, PersonWatch)
    after.feed(ev("2026-11-12T10:00:00", "front-door"), ev("2026-11-12T10:00:05", "front-door", 0))
    assert after.alerts == []
    after.feed(ev("2026-11-12T10:01:00", "kitchen-motion"))
    resolved = only(after)
    assert (resolved.state, resolved.id) == (RESOLVED, raised.id)
    assert resolved.summary == (
        "Home again: seen in Kitchen after 49 h 1 min away (the hub restarted meanwhile)."
    )


def test_an_alert_whose_rule_no_longer_runs_waits_for_the_acknowledgement() -> None:
    """Movement does not end a smoke alert the engine keeps; the centre's ack does."""
    run = Run(Emergency, PersonWatch)
    run.feed(ev("2026-11-10T10:00:00", "kitchen-smoke"))
    raised = only(run)
    after = restart(run, PersonWatch)  # the emergency rule was switched off meanwhile
    after.feed(
        ev("2026-11-10T10:10:00", "kitchen-motion"), ev("2026-11-10T10:11:00", "kitchen-smoke", 0)
    )
    assert after.alerts == []
    assert not after.engine.acknowledge("no-such-alert")
    assert after.engine.acknowledge(raised.id)
    resolved = only(after)
    assert (resolved.state, resolved.id, resolved.summary) == (
        RESOLVED,
        raised.id,
        "Acknowledged by the centre.",
    )
    assert not after.engine.open


# ---- the engine: numbers, mode, the rules of restore ------------------------------------


def test_the_snapshot_holds_numbers_mode_end_time_and_evidence() -> None:
    """What is stored: the next number, the mode with its end, each open alert as last sent."""
    run = Run(HelpButton)
    changes: list[EngineState] = []
    run.engine.on_state_change = lambda: changes.append(run.engine.snapshot())
    run.feed(ev("2026-11-10T10:00:00", "pendant"), ev("2026-11-10T10:01:00", "pendant"))
    until = ts("2026-11-20T12:00:00")
    run.engine.set_mode(Mode.HOLIDAY, until=until)
    run.engine.set_mode(Mode.HOLIDAY, until=until)  # no change: nothing to store
    state = run.engine.snapshot()
    assert changes == [state]
    assert (state.seq, state.mode, state.mode_until) == (3, Mode.HOLIDAY, until)
    [alert] = state.open
    assert (alert.kind, alert.owner, alert.key, alert.evidence) == (
        "help_button",
        "help_button",
        "pressed",
        {"presses": 2},
    )
    assert alert.since == ts("2026-11-10T10:00:00")
    run.engine.set_mode(Mode.NORMAL)  # normal has no end time
    assert (run.engine.mode, run.engine.mode_until, len(changes)) == (Mode.NORMAL, None, 2)


def test_restore_is_for_a_new_engine_built_in_the_saved_mode() -> None:
    """Restoring into a used engine, or one built in another mode, is refused."""
    state = EngineState(seq=5, mode=Mode.AWAY, mode_until=None, open=())
    with pytest.raises(ValueError, match="saved mode 'away'"):
        Run(HelpButton).engine.restore(state)
    used = Run(HelpButton, mode=Mode.AWAY)
    used.feed(ev("2026-11-10T10:00:00", "pendant"))
    with pytest.raises(RuntimeError, match="not raised anything"):
        used.engine.restore(state)
    fresh = Run(HelpButton, mode=Mode.AWAY)
    fresh.engine.restore(state)
    fresh.feed(ev("2026-11-10T10:00:00", "pendant"))
    assert only(fresh).seq == 5


def test_the_stored_record_round_trips_and_damage_says_why() -> None:
    """Encode then decode is the identity; a damaged or newer record is a clear error."""
    alert = OpenAlert(
        "smoke-20261110T090000Z",
        "smoke",
        Severity.URGENT,
        ts("2026-11-10T10:00:00"),
        "Kitchen",
        "emergency",
        "smoke:kitchen-smoke",
        {"reports": 2},
    )
    state = EngineState(seq=12, mode=Mode.AWAY, mode_until=1.8e9, open=(alert,))
    assert decode_state(encode_state(state)) == state
    with pytest.raises(SavedStateError) as garbage:
        decode_state(b"\x00\x13 not json")
    assert garbage.value.seq is None
    newer = json.loads(encode_state(state))
    newer["v"] = 2
    with pytest.raises(SavedStateError, match="newer agent") as caught:
        decode_state(json.dumps(newer).encode())
    assert caught.value.seq == 12
    longest = OpenAlert(  # a sensor id may be 64 characters: the key is longer
        "battery_low-20261110T090000Z",
        "battery_low",
        Severity.MAINTENANCE,
        ts("2026-11-10T10:00:00"),
        "Kitchen",
        "sensor_health",
        "battery:" + "s" * 64,
    )
    state_long = EngineState(seq=2, mode=Mode.NORMAL, mode_until=None, open=(longest,))
    assert decode_state(encode_state(state_long)) == state_long
    broken = json.loads(encode_state(state))
    broken["open"][0]["since"] = "yesterday"
    with pytest.raises(SavedStateError, match=r"open\.0\.since") as caught:
        decode_state(json.dumps(broken).encode())
    assert caught.value.seq == 12


def test_a_state_that_cannot_be_written_does_not_stop_the_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault in the record is logged; the alert is stored without it, the older record
    stays."""
    run = Run(HelpButton)
    keeper = EngineStateKeeper(MemoryOutbox(1 << 20))
    keeper.store.put_state({STATE_KEY: b"older"})
    run.feed(ev("2026-11-10T10:00:00", "pendant"))
    [alert] = run.engine.open.values()
    alert.since = math.nan  # no such number in a record
    with caplog.at_level(logging.ERROR):
        assert keeper.records(run.engine) == {}
        assert not keeper.save(run.engine)
    assert "cannot be stored" in caplog.text
    assert keeper.store.get_state(STATE_KEY) == b"older"


# ---- the runtime: a simulated home, stopped or killed in the middle ----------------------

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)
CUT = datetime(2026, 11, 4, 16, 0, tzinfo=TZ)  # day 3, hours after the fall
MOVES = CUT + timedelta(hours=1)  # the person is seen moving again
PRESS = CUT + timedelta(hours=1, minutes=5)  # and presses the help button again
END = CUT + timedelta(hours=4)


@dataclass(frozen=True)
class Home:
    first: Path  # up to CUT: a help-button press on day 2, a fall on day 3
    rest: Path  # from CUT to END: the person moves again and presses the button


def _event(sensor: str, kind: EventKind, when: datetime) -> SensorEvent:
    t = when.timestamp()
    return SensorEvent(sensor, kind, 1.0, t, t)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    incidents = [parse_incident(s, START, TZ) for s in ("help_button@d2T16:20", "fall@d3T10:40")]
    sim = simulate(3, 21, START, TZ, "sparse", incidents)
    folder = tmp_path_factory.mktemp("restart-home")
    cut, end = CUT.timestamp(), END.timestamp()
    first = folder / "first.jsonl"
    write_trace(
        first,
        sim.header.model_copy(update={"end": CUT}),
        [e for e in sim.events if e.wall < cut],
    )
    rest = [e for e in sim.events if cut <= e.wall < end]
    rest += [
        _event("kitchen-motion", EventKind.MOTION, MOVES),
        _event("help-button", EventKind.BUTTON, PRESS),
    ]
    rest.sort(key=lambda e: e.wall)
    second = folder / "rest.jsonl"
    header: TraceHeader = sim.header.model_copy(update={"start": CUT, "end": END})
    write_trace(second, header, rest)
    return Home(first, second)


def hub_config(folder: Path, outbox: Path | None, uplink: str = 'type = "memory"') -> Path:
    """A hub configuration: the SQLite outbox at ``outbox`` (None: in memory)."""
    path = folder / "hub.toml"
    store = f'[outbox]\npath = "{outbox}"\n' if outbox is not None else ""
    path.write_text(
        f'[hub]\nid = "h-0412"\ntimezone = "Europe/Amsterdam"\n[uplink]\n{uplink}\n{store}',
        encoding="utf-8",
    )
    return path


def replay(trace: Path, config: Path) -> tuple[list[AlertMessage], MemoryUplink]:
    """Run an agent on ``trace`` to its end; the alerts it made and what it published."""
    made: list[AlertMessage] = []
    runtime = replay_runtime(trace, config, "max", made.append)
    asyncio.run(runtime.run())
    assert isinstance(runtime.uplink, MemoryUplink)
    return made, runtime.uplink


def published_alerts(uplink: MemoryUplink) -> list[dict[str, object]]:
    return [json.loads(payload) for topic, payload in uplink.sent if topic == "alert"]


def steps(alerts: list[AlertMessage]) -> list[tuple[str, str, int]]:
    return [(a.kind, a.state.value, a.seq) for a in alerts]


def test_open_alerts_survive_a_stop_and_end_under_their_ids(home: Home, tmp_path: Path) -> None:
    """Stopped with two alerts open: after the restart, movement resolves the quiet and a
    press updates the help call, under the same ids, numbered on; nothing is raised again."""
    config = hub_config(tmp_path, tmp_path / "outbox.db")
    before, _ = replay(home.first, config)
    assert steps(before) == [("help_button", "raised", 1), ("inactivity", "raised", 2)]
    help_id, quiet_id = before[0].id, before[1].id
    after, uplink = replay(home.rest, config)
    assert steps(after) == [("inactivity", "resolved", 3), ("help_button", "updated", 4)]
    assert [a.id for a in after] == [quiet_id, help_id]
    assert after[0].at == MOVES and after[1].evidence == {"presses": 2}
    assert [a["id"] for a in published_alerts(uplink)] == [quiet_id, help_id]


def test_without_an_outbox_file_a_restart_starts_afresh(home: Home, tmp_path: Path) -> None:
    """The outbox in memory keeps working; nothing of the engine outlives the process."""
    config = hub_config(tmp_path, None)
    before, _ = replay(home.first, config)
    after, _ = replay(home.rest, config)
    assert steps(after) == [("help_button", "raised", 1)]
    assert after[0].id != before[0].id


KILLED_AGENT = """
import asyncio, os, signal, sys
from pathlib import Path
from agent.messages import encode
from agent.replay import replay_runtime

made = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def hook(message):
    # called right after the outbox stored the message
    os.write(made, encode(message) + b"\\n")
    if message.kind == "inactivity" and message.state.value == "raised":
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no goodbye

asyncio.run(replay_runtime(Path(sys.argv[1]), Path(sys.argv[2]), "max", hook).run())
"""


def test_an_agent_killed_with_alerts_open_sends_them_and_ends_them_after_the_restart(
    home: Home, tmp_path: Path
) -> None:
    """SIGKILL right after the fall's alert was stored, the broker unreachable: the next
    agent sends both stored raises, then ends them under the same ids, numbered on."""
    killed = tmp_path / "killed"
    killed.mkdir()
    outbox = tmp_path / "outbox.db"
    down = f'type = "mqtt"\nhost = "127.0.0.1"\nport = {free_port()}'  # nobody listens
    made = tmp_path / "made.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_AGENT,
            str(home.first),
            str(hub_config(killed, outbox, down)),
            str(made),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr.decode(errors="replace")[-2000:]
    stored = [json.loads(line) for line in made.read_text().splitlines()]
    assert [(a["kind"], a["state"], a["seq"]) for a in stored] == [
        ("help_button", "raised", 1),
        ("inactivity", "raised", 2),
    ]
    after, uplink = replay(home.rest, hub_config(tmp_path, outbox))
    centre = published_alerts(uplink)
    assert [(a["id"], a["state"], a["seq"]) for a in centre] == [
        (stored[0]["id"], "raised", 1),
        (stored[1]["id"], "raised", 2),
        (stored[1]["id"], "resolved", 3),
        (stored[0]["id"], "updated", 4),
    ]
    assert centre[:2] == stored  # the stored bytes, sent as they were made
    assert steps(after) == [("inactivity", "resolved", 3), ("help_button", "updated", 4)]


@pytest.mark.parametrize(
    ("record", "why", "first_seq"),
    [
        (b"\x00\x01 what a worn SD card returns", "damaged", 1),
        (b'{"v": 2, "seq": 41, "mode": "normal", "open": "?"}', "newer agent", 41),
    ],
)
def test_a_damaged_state_record_is_reported_moved_aside_and_the_agent_starts_afresh(
    home: Home,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record: bytes,
    why: str,
    first_seq: int,
) -> None:
    """An unreadable record: an error in the log, the record kept aside, no open alerts,
    numbers on from the record's own if it still shows one; the agent runs its trace."""
    outbox = tmp_path / "outbox.db"
    box = SqliteOutbox(outbox, 1 << 20)
    box.put_state({STATE_KEY: record})
    box.close()
    with caplog.at_level(logging.INFO):
        after, _ = replay(home.rest, hub_config(tmp_path, outbox))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "saved engine state is damaged" in errors[0] and why in errors[0]
    assert "moved aside" in errors[0] and "starting with no open alerts" in errors[0]
    assert steps(after) == [("help_button", "raised", first_seq)]  # fresh: a new alert
    box = SqliteOutbox(outbox, 1 << 20)
    assert box.get_state(ASIDE_KEY) == record
    stored = box.get_state(STATE_KEY)
    box.close()
    assert stored is not None and decode_state(stored).open[0].id == after[0].id


def test_the_mode_set_by_the_centre_outlives_a_restart(tmp_path: Path) -> None:
    """Away, with an end time, stored at once: the next agent starts away (armed), whatever
    the configuration says, and its heartbeat says so."""
    outbox = tmp_path / "outbox.db"
    config = hub_config(tmp_path, outbox)
    door = tmp_path / "door.jsonl"
    opened = datetime(2026, 11, 10, 10, 0, tzinfo=TZ)
    header = TraceHeader(
        tz=TZ.key,
        home={"sensors": {"front-door": {"room": "Hallway", "role": "front_door"}}},
    )
    write_trace(door, header, [_event("front-door", EventKind.CONTACT, opened)])
    first = replay_runtime(door, config)
    until = datetime(2026, 11, 20, 12, 0, tzinfo=TZ).timestamp()
    first.engine.set_mode(Mode.AWAY, until=until)
    first.outbox.close()  # no alert was made: the mode was stored by itself
    made: list[AlertMessage] = []
    second = replay_runtime(door, config, "max", made.append)
    assert (second.engine.mode, second.engine.mode_until) == (Mode.AWAY, until)
    assert second.heartbeat_message().mode is Mode.AWAY
    asyncio.run(second.run())
    assert steps(made) == [("intrusion", "raised", 1)]  # armed at once: no exit delay


def test_the_mode_from_a_command_outlives_a_restart(tmp_path: Path) -> None:
    """``cmd/mode`` through the runtime's commands: the next agent starts in that mode."""
    outbox = tmp_path / "outbox.db"
    config = hub_config(tmp_path, outbox)
    trace = tmp_path / "empty.jsonl"
    header = TraceHeader(
        tz=TZ.key, home={"sensors": {"front-door": {"room": "Hallway", "role": "front_door"}}}
    )
    write_trace(trace, header, [])
    first = replay_runtime(trace, config)
    reply = first.commands.handle("mode", b'{"v": 1, "id": "c-1", "mode": "away"}')
    assert reply.outcome.value == "done", reply
    first.outbox.close()
    assert replay_runtime(trace, config).engine.mode is Mode.AWAY


def test_an_outbox_of_the_previous_version_is_migrated_and_the_agent_starts_afresh(
    home: Home, tmp_path: Path
) -> None:
    """A version-1 outbox (no state): its waiting alerts go first; then the engine's state
    is stored with the new alerts, and the next restart finds it."""
    outbox = tmp_path / "outbox.db"
    shutil.copyfile(V1_FIXTURE, outbox)
    config = hub_config(tmp_path, outbox)
    before, uplink = replay(home.first, config)
    sent = [(a["id"], a["state"]) for a in published_alerts(uplink)]
    assert sent[:2] == [("inactivity-1", "raised"), ("inactivity-2", "resolved")]
    assert sent[2:] == [(a.id, a.state.value) for a in before]
    after, _ = replay(home.rest, config)
    assert [(a.id, a.state) for a in after] == [(before[1].id, RESOLVED), (before[0].id, UPDATED)]


def test_the_agent_refuses_an_outbox_from_a_newer_agent(tmp_path: Path) -> None:
    """``hub run`` on a file of a newer schema: a clear error and exit 1, no traceback."""
    outbox = tmp_path / "outbox.db"
    SqliteOutbox(outbox, 1 << 20).close()
    db = sqlite3.connect(outbox)
    db.execute("PRAGMA user_version=99")
    db.close()
    config = hub_config(tmp_path, outbox)
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    err = run.stderr.decode()
    assert "schema version 99" in err and "Traceback" not in err


def test_a_config_without_an_outbox_path_still_validates(tmp_path: Path) -> None:
    """The [outbox] table keeps its old keys; ``path`` is optional."""
    from agent.config import load_config

    config = load_config(hub_config(tmp_path, None, 'type = "memory"'))
    assert config.outbox.path is None
    config = load_config(hub_config(tmp_path, tmp_path / "o.db"))
    assert config.outbox.path == tmp_path / "o.db"
