"""Configuration: one model, every problem listed with its key path, no I/O."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import MqttUplinkConfig, load_config, validate_config
from agent.errors import ConfigError, UnknownDriverError
from drivers import registry
from drivers.replay.config import ReplayConfig

GOOD = """
[hub]
id = "h-0412"
timezone = "Europe/Amsterdam"

[uplink]
type = "mqtt"
host = "broker.example"
port = 8883
will_delay = "2m"

[detection.inactivity]
night_start = "23:00"
thresholds.bathroom = { day = "1h30m", night = "2h" }

[home.sensors.bathroom-motion]
room = "Bathroom"
role = "bathroom"
kind = "motion"

[[drivers]]
type = "replay"
path = "home.jsonl"
speed = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_good_file_gives_typed_sections(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.hub.id == "h-0412"
    assert isinstance(config.uplink, MqttUplinkConfig)
    assert config.uplink.will_delay == 120.0
    assert config.detection.inactivity.thresholds["bathroom"].day == 5400.0
    # roles not named keep their safe defaults
    assert config.detection.inactivity.thresholds["bed"].night == 14 * 3600.0
    assert isinstance(config.drivers[0], ReplayConfig)
    assert config.drivers[0].speed == 60
    assert config.home.sensors["bathroom-motion"].role.value == "bathroom"


def test_every_problem_is_listed_with_its_key_path(tmp_path: Path) -> None:
    bad = """
    [hub]
    id = "H 0412"
    timezone = "Mars/Olympus"

    [uplink]
    type = "mqtt"
    port = 70000
    keepalive = "soon"

    [detection.inactivity]
    thresholds.attic = { day = "1h", night = "2h" }

    [home.sensors.kitchen]
    room = "Kitchen"
    role = "pantry"

    [[drivers]]
    type = "replay"
    speed = -1
    colour = "red"

    [[drivers]]
    type = "teleporter"
    """
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad))
    wheres = {p.where for p in info.value.problems}
    assert {
        "hub.id",
        "hub.timezone",
        "uplink.port",
        "uplink.keepalive",
        "detection.inactivity.thresholds",
        "home.sensors.kitchen.role",
        "drivers[0].path",
        "drivers[0].speed",
        "drivers[0].colour",
        "drivers[1].type",
    } <= wheres
    text = str(info.value)
    assert "teleporter" in text and "replay" in text  # the unknown driver and the known ones
    assert "unknown key" in text


def test_an_uplink_without_a_type_is_mqtt() -> None:
    config = validate_config({"hub": {"id": "h-1"}, "uplink": {"host": "broker", "port": 8883}})
    assert isinstance(config.uplink, MqttUplinkConfig) and config.uplink.port == 8883
    with pytest.raises(ConfigError) as info:
        validate_config({"hub": {"id": "h-1"}, "uplink": {"type": "pigeon"}})
    assert [p.where for p in info.value.problems] == ["uplink"]
    assert "'mqtt', 'memory'" in str(info.value)


def test_broken_toml_and_unreadable_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[hub\nid = 1"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    raw = tmp_path / "latin1.toml"
    raw.write_bytes(b'[hub]\nid = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(raw)


def test_a_replay_cannot_run_beside_live_drivers() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(
            {
                "hub": {"id": "h-1"},
                "drivers": [{"type": "replay", "path": "a.jsonl"}, {"type": "replay", "path": "b"}],
            }
        )
    assert [p.where for p in info.value.problems] == ["drivers"]


def test_validation_does_no_io(tmp_path: Path) -> None:
    # paths are taken as given: a trace that does not exist yet is not a config error
    config = validate_config(
        {"hub": {"id": "h-1"}, "drivers": [{"type": "replay", "path": "/nowhere/x.jsonl"}]}
    )
    assert str(config.drivers[0].path) == "/nowhere/x.jsonl"  # type: ignore[attr-defined]


def test_config_check_command_prints_the_same_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[hub]\nid = "h-1"\n[[drivers]]\ntype = "nope"\n')
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "drivers[0].type" in err and "unknown driver 'nope'" in err
    good = write(tmp_path, GOOD)
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_unknown_driver_is_a_typed_error() -> None:
    with pytest.raises(UnknownDriverError) as info:
        registry.get("teleporter")
    assert info.value.name == "teleporter"
    assert "replay" in info.value.known


def test_every_builtin_driver_is_complete() -> None:
    """Each built-in driver has a config model, a driver class and a sample that validates."""
    from agent.config import DriverConfig
    from drivers.base import Driver

    for name, spec in registry.BUILTIN.items():
        model = spec.load_config_model()
        assert issubclass(model, DriverConfig)
        assert model.model_fields["type"].default == name
        cls = spec.load_driver()
        assert issubclass(cls, Driver) and cls.config_model is model
        assert spec.sample is not None and spec.sample.is_file(), f"{name} has no sample.toml"
        sample = spec.sample.read_text(encoding="utf-8")
        config = validate_config(
            {"hub": {"id": "h-1"}, **__import__("tomllib").loads(sample)}, str(spec.sample)
        )
        assert config.drivers and config.drivers[0].type == name
        readme = spec.sample.with_name("README.md")
        assert readme.is_file(), f"{name} has no README.md"
        documented = readme.read_text(encoding="utf-8") + sample
        for key in model.model_fields:
            assert key in documented, f"{name}: configuration key {key!r} is not documented"


def test_the_example_hub_configuration_is_valid() -> None:
    from tests.conftest import ROOT

    config = load_config(ROOT / "deploy" / "hub.example.toml")
    assert config.hub.id == "h-0412"
    assert isinstance(config.uplink, MqttUplinkConfig) and config.uplink.tls is not None
    assert len(config.home.sensors) == 8
    assert config.detection.inactivity.thresholds["bathroom"].night == 8 * 3600.0


def test_an_outside_driver_is_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package that declares ``leefsamen_hub.drivers`` needs no change in the hub."""
    import importlib
    import sys

    pkg = tmp_path / "acme_hub_driver.py"
    pkg.write_text(
        textwrap.dedent(
            """
            from typing import Literal
            from agent.config import DriverConfig
            from drivers.base import Driver
            from drivers.registry import DriverSpec

            class AcmeConfig(DriverConfig):
                type: Literal["acme"] = "acme"
                port: str

            class AcmeDriver(Driver):
                config_model = AcmeConfig
                async def run(self) -> None:
                    return None

            SPEC = DriverSpec("acme", "acme_hub_driver:AcmeConfig", "acme_hub_driver:AcmeDriver")
            """
        )
    )
    dist = tmp_path / "acme_hub_driver-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hub-driver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[leefsamen_hub.drivers]\nacme = acme_hub_driver:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert "acme" in registry.known()
    config = validate_config(
        {"hub": {"id": "h-1"}, "drivers": [{"type": "acme", "port": "/dev/ttyUSB0"}]}
    )
    assert type(config.drivers[0]).__name__ == "AcmeConfig"
    assert registry.get("acme").load_driver().__name__ == "AcmeDriver"
    with pytest.raises(ConfigError) as info:
        validate_config({"hub": {"id": "h-1"}, "drivers": [{"type": "acme"}]})
    assert [p.where for p in info.value.problems] == ["drivers[0].port"]
    sys.modules.pop("acme_hub_driver", None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h30m", 9000.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1m500ms", 60.5),
        ("1.5h", 5400.0),
        (" 2 h ", 7200.0),
        (45, 45.0),
    ],
)
def test_durations_are_read_as_people_write_them(text: object, seconds: float) -> None:
    from agent.units import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "-3s", "1h-", True, None])
def test_a_wrong_duration_is_refused(text: object) -> None:
    from agent.units import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)


def test_one_gpio_driver_per_hub_and_driver_names_differ() -> None:
    raw = {
        "hub": {"id": "h-1"},
        "drivers": [
            {
                "type": "gpio",
                "pin_factory": "mock",
                "inputs": [{"sensor": "a", "pin": 17, "kind": "motion"}],
            },
            {
                "type": "gpio",
                "pin_factory": "mock",
                "inputs": [{"sensor": "b", "pin": 18, "kind": "motion"}],
            },
            {"type": "zigbee2mqtt", "name": "z"},
            {"type": "zigbee2mqtt", "name": "z", "base_topic": "other"},
        ],
    }
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    messages = [p.message for p in info.value.problems]
    assert "only one 'gpio' driver can run on a hub; merge the tables" in messages
    assert "two drivers are named 'z'; names must differ" in messages
