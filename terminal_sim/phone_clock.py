"""The phone's clocks: a wall clock that can be wrong, and trusted time synced with the host.

Payments failed in the field because phone clocks were not synchronised, so the phone never puts
its wall clock into a token. `PhoneClock` models the two clocks of a phone from one true clock
(injected, so runs are deterministic): a wall clock the user or the network can set wrong, that
can drift (ppm) or jump, and a monotonic clock that does neither. `TrustedTime` syncs with the
host NTP-style, keeps the lowest-delay sample of a round and anchors it on the monotonic clock:
`trusted_now = server_est + (monotonic − monotonic_at_sync)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from cardcore.ports import Clock
from cardcore.vfc import WALL_OFF_THRESHOLD_S, clamp_skew, sync_age_bucket

DEFAULT_SYNC_SAMPLES = 4


class PhoneClock:
    """Wall = true time + offset + drift accumulated since the drift was last set."""

    def __init__(self, true_clock: Clock, *, offset_s: float = 0.0, drift_ppm: float = 0.0):
        self._true = true_clock
        self._offset = offset_s
        self._drift_ppm = drift_ppm
        self._drift_since = true_clock.monotonic()

    def true_unix(self) -> float:
        now = self._true.now()
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()

    def monotonic(self) -> float:
        return self._true.monotonic()

    def _drifted(self) -> float:
        return (self.monotonic() - self._drift_since) * self._drift_ppm * 1e-6

    def wall(self) -> float:
        """What the phone's clock shows, as Unix seconds."""
        return self.true_unix() + self._offset + self._drifted()

    def set_wall(self, unix: float) -> None:
        """The user (or a bad network time) sets the clock to `unix`."""
        self._offset = unix - self.true_unix()
        self._drift_since = self.monotonic()

    def jump(self, seconds: float) -> None:
        """The wall clock jumps (a manual change, a time-zone bug); monotonic time does not."""
        self._offset += seconds

    def set_drift(self, ppm: float) -> None:
        """From now on the wall clock gains `ppm` microseconds per second (negative: loses)."""
        self._offset += self._drifted()
        self._drift_since = self.monotonic()
        self._drift_ppm = ppm


@dataclass(frozen=True)
class SyncSample:
    """One exchange: the host's time estimated at the reply (`server_s` at `mono_s`)."""

    server_s: float
    mono_s: float
    delay_s: float


@dataclass(frozen=True)
class ClockStatus:
    """What the phone knows about its time, as the IAD's clock flags carry it."""

    trusted_now: float
    synced: bool
    sync_age_s: float | None
    skew_s: float  # wall − trusted; 0 when not synced

    @property
    def wall_off(self) -> bool:
        return abs(self.skew_s) > WALL_OFF_THRESHOLD_S

    @property
    def sync_age_bucket(self) -> int:
        return sync_age_bucket(self.sync_age_s)

    @property
    def skew_field(self) -> int:
        return clamp_skew(self.skew_s)


class TrustedTime:
    """The host's time carried forward on the phone's monotonic clock."""

    def __init__(self, clock: PhoneClock) -> None:
        self.clock = clock
        self.anchor: SyncSample | None = None

    def sync(
        self, server_time: Callable[[], float], samples: int = DEFAULT_SYNC_SAMPLES
    ) -> SyncSample:
        """Ask the host `samples` times and anchor on the answer with the lowest round trip:
        its delay bounds the error (the host answered somewhere inside it)."""
        if samples < 1:
            raise ValueError("at least one sample")
        best: SyncSample | None = None
        for _ in range(samples):
            sent = self.clock.monotonic()
            server = server_time()
            received = self.clock.monotonic()
            delay = received - sent
            sample = SyncSample(server + delay / 2, received, delay)
            if best is None or sample.delay_s < best.delay_s:
                best = sample
        assert best is not None
        self.anchor = best
        return best

    def now(self) -> float | None:
        if self.anchor is None:
            return None
        return self.anchor.server_s + (self.clock.monotonic() - self.anchor.mono_s)

    def age(self) -> float | None:
        return None if self.anchor is None else self.clock.monotonic() - self.anchor.mono_s

    def status(self) -> ClockStatus:
        """Trusted time when synced; the wall clock, flagged as unsynced, otherwise."""
        wall = self.clock.wall()
        trusted = self.now()
        if trusted is None:
            return ClockStatus(wall, False, None, 0.0)
        return ClockStatus(trusted, True, self.age(), wall - trusted)
