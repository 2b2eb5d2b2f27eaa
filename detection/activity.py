"""What counts as the person doing something, and where it puts them."""

from __future__ import annotations

from agent.events import ACTIVITY_KINDS, EventKind, SensorEvent

#: every kind that can be a person's doing
PERSON_KINDS = ACTIVITY_KINDS

# Both edges of these are a person's doing: opening and closing a door, sitting down and
# getting up. For the rest only the rising edge is: a motion sensor clearing, or a toaster
# switching itself off, says nothing about the person.
BOTH_EDGES = frozenset({EventKind.CONTACT, EventKind.PRESSURE})
_RISING = ACTIVITY_KINDS - BOTH_EDGES


def is_person_activity(event: SensorEvent) -> bool:
    kind = event.kind
    if kind in BOTH_EDGES:
        return True
    return kind in _RISING and event.value > 0
