"""The self-test: an alert that says only "the hub can raise an alert", at once resolved.

The centre asks for it (the ``selftest`` command) to check the whole path from the
engine through the outbox and the uplink to its own screens. The alert takes the same
way as every other one: a stable id, a sequence number, the outbox, QoS 1. Its kind is
``self_test`` and its severity ``info``, so the centre can tell it from a real one; it is
raised and resolved in one step, so it is never open and cannot be acknowledged.

Not a rule: it watches no events and is not in the engine's list of detectors.
"""

from __future__ import annotations

from agent.events import SensorEvent
from agent.messages import Severity
from detection.engine import Detector

KIND = "self_test"
_KEY = "self_test"


class SelfTest(Detector):
    name = "self_test"
    kinds = frozenset()

    def on_event(self, event: SensorEvent) -> None:
        """Never called: it wants no events."""

    def run(self) -> str:
        """Raise and resolve one self-test alert now; its alert id."""
        alert_id = self.raise_alert(
            _KEY,
            KIND,
            Severity.INFO,
            self.clock.wall(),
            None,
            "Self-test requested by the centre: the hub can raise an alert.",
        )
        self.engine.resolve(self, _KEY, "Self-test complete.")
        return alert_id
