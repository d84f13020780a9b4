"""The host's virtual fleet card settings: key budgets, time tolerances, replay windows and fraud
thresholds, in one frozen record (`app.state.vfc_policy`, defaults below).

It also names the HSM operations the host needs for virtual cards (`VfcKeySource`): the host
receives its HSM as a `cardcore.ports.Hsm`, and only an HSM that holds IMK_VFC answers these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cardcore import vfc


@runtime_checkable
class VfcKeySource(Protocol):
    """The IMK_VFC operations of the HSM (hsm_mock.MockHsm implements them)."""

    def vfc_key_version(self, key_set: str = "DEV") -> int: ...

    def vfc_luk(self, card_id: str, kv: int, index: int, key_set: str = "DEV") -> bytes: ...


@dataclass(frozen=True)
class VfcPolicy:
    # Limited-use keys (spec §1).
    luk_ttl_s: int = vfc.LUK_TTL_S
    luk_budget: int = vfc.LUK_BUDGET
    keys_per_request: int = 5
    max_active_luks: int = 10
    # Time (spec §4 step 5): how far ahead a synced/unsynced phone may be, the grace after ttl,
    # the drift that earns a warning, and how close two offsets must be to count as "the same".
    ahead_synced_s: int = 5
    ahead_unsynced_s: int = 30
    expiry_grace_s: int = 5
    drift_warning_s: int = 10
    offset_match_s: int = 15
    # Numeric codes: accepted steps are server_step - steps_behind .. server_step + steps_ahead.
    numeric_steps_behind: int = 2
    numeric_steps_ahead: int = 1
    # Replay (step 6): an ATC this far below the high-water mark is a replay; further above it
    # than atc_forward is out of range.
    atc_replay_window: int = 20
    atc_forward: int = 100
    # Fraud rules: cryptogram failures throttle; velocity, unusual amount or too many stations
    # in a day block the card.
    failure_limit: int = 5
    failure_window_s: int = 600
    velocity_max: int = 6
    velocity_window_s: int = 600
    unusual_amount: int = 300_000
    max_stations_per_day: int = 4

    def __post_init__(self) -> None:
        bad = [name for name, value in vars(self).items() if value < 0]
        if bad:
            raise ValueError(f"VfcPolicy: negative {', '.join(bad)}")
        if self.luk_budget < 1 or self.luk_ttl_s < 1 or self.keys_per_request < 1:
            raise ValueError("VfcPolicy: LUK budget, TTL and keys per request must be positive")


DEFAULT_POLICY = VfcPolicy()
