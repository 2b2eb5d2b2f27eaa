"""Which drivers exist: a map of built-in names plus the ``leefsamen_hub.drivers`` entry
point group for drivers from other packages. Everything is imported lazily, so that a
Bluetooth or GPIO library is loaded only when a configuration names its driver.

A driver named ``NAME`` provides two objects:

- a configuration model, a subclass of ``agent.config.DriverConfig`` with
  ``type: Literal["NAME"]`` (imported at validation: pydantic only, no I/O);
- a driver class, a subclass of ``drivers.base.Driver`` (imported when the runtime starts).

Built-in drivers keep both in ``drivers/<name>/config.py`` and ``drivers/<name>/driver.py``
with a ``sample.toml`` beside them. An outside package declares::

    [project.entry-points."leefsamen_hub.drivers"]
    mydriver = "mypackage.hub_driver:SPEC"

where ``SPEC`` is a ``DriverSpec``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.errors import Problem, UnknownDriverError

if TYPE_CHECKING:
    from agent.config import DriverConfig
    from drivers.base import Driver

ENTRY_POINT_GROUP = "leefsamen_hub.drivers"


@dataclass(frozen=True)
class DriverSpec:
    """Where a driver's parts live, as ``module:attribute`` strings."""

    name: str
    config: str
    driver: str
    sample: Path | None = None

    def load_config_model(self) -> type[DriverConfig]:
        return _load(self.config)  # type: ignore[no-any-return]

    def load_driver(self) -> type[Driver]:
        return _load(self.driver)  # type: ignore[no-any-return]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_HERE = Path(__file__).parent


def _builtin(name: str, cls: str, driver: str) -> DriverSpec:
    return DriverSpec(
        name=name,
        config=f"drivers.{name}.config:{cls}",
        driver=f"drivers.{name}.driver:{driver}",
        sample=_HERE / name / "sample.toml",
    )


BUILTIN: dict[str, DriverSpec] = {
    "replay": _builtin("replay", "ReplayConfig", "ReplayDriver"),
    "zigbee2mqtt": _builtin("zigbee2mqtt", "Zigbee2MqttConfig", "Zigbee2MqttDriver"),
    "bthome": _builtin("bthome", "BTHomeConfig", "BTHomeDriver"),
    "gpio": _builtin("gpio", "GpioConfig", "GpioDriver"),
    "radar": _builtin("radar", "RadarConfig", "RadarDriver"),
}


def known() -> list[str]:
    """Every driver name: built in, or offered by an installed package."""
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def get(name: str) -> DriverSpec:
    """The spec of driver ``name``; ``UnknownDriverError`` names the known ones."""
    spec = BUILTIN.get(name)
    if spec is not None:
        return spec
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):  # a built-in name stays ours
        loaded = ep.load()
        if not isinstance(loaded, DriverSpec):
            raise TypeError(f"entry point {ep.value} of driver {name!r} is not a DriverSpec")
        return loaded
    raise UnknownDriverError(name, known())


def validate_driver_section(
    section: Any, where: tuple[int | str, ...]
) -> tuple[DriverConfig | None, list[Problem]]:
    """One ``[[drivers]]`` table to its driver's typed model, or the problems found."""
    from agent.config import _where, problems_of

    if not isinstance(section, dict):
        return None, [Problem(_where(where), "must be a table")]
    name = section.get("type")
    if not isinstance(name, str):
        return None, [Problem(_where((*where, "type")), "missing: which driver is this?")]
    try:
        model = get(name).load_config_model()
    except UnknownDriverError as err:
        return None, [Problem(_where((*where, "type")), str(err))]
    except (ImportError, AttributeError, TypeError) as err:  # a broken outside driver
        return None, [Problem(_where((*where, "type")), f"driver {name!r} cannot be loaded: {err}")]
    try:
        return model.model_validate(section), []
    except ValidationError as err:
        return None, problems_of(err, section, where)
