"""Domain events that terminals publish: the one stream the CLI, scenarios and the TUI follow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Event kinds
APDU = "apdu"  # data: reader, command, response, seconds
TICK = "tick"  # data: nozzle, litres (0.01 L), amount (fen)
STATE = "state"  # data: state (the terminal's new state)
MESSAGE = "message"  # data: text (what the display shows)
BILL = "bill"  # data: bill (cardcore.records.Bill)
RECEIPT = "receipt"  # data: receipt (terminal_sim.store_pos.Receipt)
UPLOAD = "upload"  # data: accepted, duplicates, rejected


@dataclass(frozen=True)
class Event:
    kind: str
    terminal: str
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """Synchronous publish/subscribe; subscribers must not raise (a failing one is dropped)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                self._subscribers.remove(callback)


class Recorder:
    """A subscriber that keeps every event (tests and scenario reports read it)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def messages(self) -> list[str]:
        return [str(e.data["text"]) for e in self.of(MESSAGE)]
