"""Which detectors run, from the configuration."""

from __future__ import annotations

from agent.detectconfig import DetectionConfig
from detection.button import HelpButton
from detection.engine import Detector
from detection.person import PersonWatch


def enabled_detectors(config: DetectionConfig) -> list[type[Detector]]:
    found: list[type[Detector]] = []
    if config.help_button.enabled:
        found.append(HelpButton)
    person_rules = (config.inactivity, config.wakeup, config.bathroom, config.night_exit)
    if any(rule.enabled for rule in person_rules):
        found.append(PersonWatch)
    return found
