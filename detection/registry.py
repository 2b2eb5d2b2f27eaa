"""Which detectors run, from the configuration."""

from __future__ import annotations

from agent.detectconfig import DetectionConfig
from detection.button import HelpButton
from detection.emergency import Emergency
from detection.engine import Detector
from detection.intrusion import Intrusion
from detection.person import PersonWatch
from detection.sensorhealth import SensorHealth
from detection.temperature import Temperature
from detection.trend import FallRiskTrend


def enabled_detectors(config: DetectionConfig) -> list[type[Detector]]:
    """The detectors to run, in a fixed order (the same events give the same messages)."""
    found: list[type[Detector]] = []
    if config.help_button.enabled:
        found.append(HelpButton)
    if config.emergency.enabled and config.emergency.kinds:
        found.append(Emergency)
    person_rules = (config.inactivity, config.wakeup, config.bathroom, config.night_exit)
    if any(rule.enabled for rule in person_rules):
        found.append(PersonWatch)
    if config.intrusion.enabled:
        found.append(Intrusion)
    if config.temperature.enabled:
        found.append(Temperature)
    if config.sensor_health.enabled:
        found.append(SensorHealth)
    if config.trend.enabled:
        found.append(FallRiskTrend)
    return found
