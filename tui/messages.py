"""Textual messages the app routes to its screens: domain events and scenario steps."""

from __future__ import annotations

from textual.message import Message

from terminal_sim.events import Event
from terminal_sim.scenarios import StepResult


class ServiceEvent(Message, bubble=False):
    """A domain event of the forecourt (posted from whichever thread published it). It does not
    bubble: the app hands a copy to each screen, which must not come back to the app."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class ScenarioStep(Message, bubble=False):
    """One step of a scenario run from the TUI has finished."""

    def __init__(self, result: StepResult) -> None:
        super().__init__()
        self.result = result


class ScenarioEvent(Message, bubble=False):
    """A domain event of a scenario run from the TUI (its own forecourt, not the station's)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
