"""Terminal-side readers: the in-process one (straight to an applet) and the tracing decorator.

Every reader meets cardcore.ports.Reader. A reader that loses the card mid-command raises
CardLost; the terminal decides what that means for the transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from card_profiles.nvm import PowerLost
from cardcore.errors import FuelsimError
from cardcore.ports import CardOS, Reader


class CardLost(FuelsimError):
    """The card left the reader or lost power before it answered."""

    title = "card lost"


class InProcReader:
    """A slot wired straight to an applet in this process."""

    def __init__(self, applet: CardOS, name: str) -> None:
        self.applet = applet
        self.name = name
        self.present = True

    def connect(self) -> bytes:
        if not self.present:
            raise CardLost(f"{self.name}: no card in the reader")
        return self.applet.power_on()

    def disconnect(self) -> None:
        self.applet.power_off()

    def transmit(self, command: bytes) -> bytes:
        if not self.present:
            raise CardLost(f"{self.name}: no card in the reader")
        try:
            return self.applet.process(command)
        except PowerLost:
            raise CardLost(f"{self.name}: the card lost power during the command") from None

    def remove(self) -> None:
        """Pull the card: it loses power and answers nothing until inserted again."""
        self.present = False
        self.applet.power_off()

    def insert(self) -> None:
        self.present = True


@dataclass(frozen=True, slots=True)
class Exchange:
    """One command and its answer (None when the card never answered), with timing."""

    reader: str
    command: bytes
    response: bytes | None
    started: float  # seconds since the tracer was created
    seconds: float


class TracingReader:
    """Wraps any reader and reports every exchange to its listeners."""

    def __init__(self, inner: Reader, listeners: list[Callable[[Exchange], None]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.listeners = listeners
        self._origin = time.perf_counter()

    def connect(self) -> bytes:
        return self.inner.connect()

    def disconnect(self) -> None:
        self.inner.disconnect()

    def transmit(self, command: bytes) -> bytes:
        start = time.perf_counter()
        response: bytes | None = None
        try:
            response = self.inner.transmit(command)
            return response
        finally:
            end = time.perf_counter()
            exchange = Exchange(self.name, command, response, start - self._origin, end - start)
            for listener in self.listeners:
                listener(exchange)
