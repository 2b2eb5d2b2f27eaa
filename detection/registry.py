"""Which detectors run, from the configuration."""

from __future__ import annotations

from agent.detectconfig import DetectionConfig
from detection.button import HelpButton
from detection.engine import Detector
from detection.inactivity import FixedInactivity


def enabled_detectors(config: DetectionConfig) -> list[type[Detector]]:
    found: list[type[Detector]] = []
    if config.help_button.enabled:
        found.append(HelpButton)
    if config.inactivity.enabled:
        found.append(FixedInactivity)
    return found
