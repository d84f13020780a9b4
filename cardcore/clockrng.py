"""Injected time and randomness: the system ones for real use, fixed ones for reproducible runs."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from cardcore.ports import Clock

ClockLike = Clock | Callable[[], datetime]


def now_function(clock: ClockLike | None) -> Callable[[], datetime]:
    """The current time from a `Clock`, a callable returning a datetime, or (None) UTC now."""
    if clock is None:
        return lambda: datetime.now(UTC)
    now = getattr(clock, "now", None)
    if callable(now):
        return now  # type: ignore[no-any-return]
    if callable(clock):
        return clock
    raise TypeError("clock must have now() or be a callable returning a datetime")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now().astimezone()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: the same run gives the same bytes."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, moment: datetime) -> None:
        self._now = moment


class SystemRng:
    def random(self, n: int) -> bytes:
        return os.urandom(n)


class SeededRng:
    """Deterministic bytes from a seed (not for secrets: simulation only)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def random(self, n: int) -> bytes:
        return self._random.randbytes(n)


class ScriptedRng:
    """Hands out the given byte strings in order, then falls back to a seeded stream."""

    def __init__(self, values: Iterable[bytes], then_seed: int = 0) -> None:
        self._values = list(values)
        self._fallback = SeededRng(then_seed)

    def random(self, n: int) -> bytes:
        if self._values:
            value = self._values.pop(0)
            if len(value) != n:
                raise ValueError(f"scripted random of {len(value)} bytes asked for {n}")
            return value
        return self._fallback.random(n)
