"""Recorded APDU sessions: a Trace of TraceEntry items, and the Recorder that builds one from a
TracingReader (docs/traces.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from terminal_sim.readers import Exchange
from terminal_sim.traces.patterns import Pattern, Payload


# Traces -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One exchange: a command to `reader` and its answer (None: the card was lost), with the
    time it started (seconds from the start of the recording) and how long it took."""

    reader: str
    command: Payload
    response: Payload | None
    started: float = 0.0
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.started) and math.isfinite(self.elapsed)):
            raise ValueError("timing must be finite")

    @classmethod
    def from_exchange(cls, exchange: Exchange) -> TraceEntry:
        return cls(
            exchange.reader,
            exchange.command,
            exchange.response,
            exchange.started,
            exchange.seconds,
        )

    @property
    def masked(self) -> bool:
        """The command has masked bytes (a redacted trace) and cannot be sent."""
        return isinstance(self.command, Pattern)

    def exchange(self) -> Exchange | None:
        """The readers.Exchange of an entry without patterns (None when it has some)."""
        if isinstance(self.command, Pattern) or isinstance(self.response, Pattern):
            return None
        return Exchange(self.reader, self.command, self.response, self.started, self.elapsed)


@dataclass
class Trace:
    entries: list[TraceEntry] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_exchanges(
        cls, exchanges: Iterable[Exchange], meta: Mapping[str, str] | None = None
    ) -> Trace:
        return cls([TraceEntry.from_exchange(e) for e in exchanges], dict(meta or {}))

    @property
    def readers(self) -> list[str]:
        """Reader names in the order they first appear."""
        return list(dict.fromkeys(entry.reader for entry in self.entries))

    def for_reader(self, reader: str) -> list[tuple[int, TraceEntry]]:
        """The entries of one reader, with their step numbers in the whole trace (from 1)."""
        return [(n, e) for n, e in enumerate(self.entries, 1) if e.reader == reader]

    def masked_steps(self) -> list[int]:
        """Step numbers whose command has masked bytes."""
        return [n for n, e in enumerate(self.entries, 1) if e.masked]


class Recorder:
    """A TracingReader listener that builds a Trace: `TracingReader(inner, [recorder])`."""

    def __init__(self, meta: Mapping[str, str] | None = None) -> None:
        self.trace = Trace(meta=dict(meta or {}))

    def __call__(self, exchange: Exchange) -> None:
        self.trace.entries.append(TraceEntry.from_exchange(exchange))
