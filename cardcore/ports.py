"""The Protocols the packages meet through: card OS, reader, HSM, clock, randomness."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from cardcore.keys import CardKeys, PsamKeys


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class Rng(Protocol):
    def random(self, n: int) -> bytes: ...


@runtime_checkable
class CardOS(Protocol):
    """A sans-IO applet: bytes in, bytes out, never raises, never sleeps, never reads the clock."""

    atr: bytes

    def power_on(self) -> bytes:
        """Cold reset; returns the ATR."""
        ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes:
        """Warm reset; returns the ATR."""
        ...

    def process(self, apdu: bytes) -> bytes: ...


class Reader(Protocol):
    """The terminal's view of a card slot: in-process, PC/SC, or a recorded trace."""

    name: str

    def connect(self) -> bytes:
        """Power the card and return its ATR."""
        ...

    def disconnect(self) -> None: ...

    def transmit(self, command: bytes) -> bytes: ...


class Hsm(Protocol):
    """What the host and the issuing office ask of an HSM. Master keys never leave it.

    `key_set` names a set of master keys ("DEV" by default); `asn8` selects the card.
    Verifications return a bool and compare in constant time.
    """

    def key_sets(self) -> list[str]: ...

    def key_check_values(self, key_set: str = "DEV") -> dict[str, bytes]: ...

    def personalise_card(
        self, asn8: bytes, issuer8: bytes | None, key_set: str = "DEV"
    ) -> CardKeys: ...

    def personalise_psam(self, key_set: str = "DEV") -> PsamKeys: ...

    def verify_load_mac1(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        old_balance: int,
        amount: int,
        tx_type: int,
        term: bytes,
        mac1: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def load_mac2(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        amount: int,
        tx_type: int,
        term: bytes,
        dt: bytes,
        key_set: str = "DEV",
    ) -> bytes: ...

    def verify_load_tac(
        self,
        asn8: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        tx_type: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def verify_purchase_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        tx_type: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        tac: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def verify_gtac(
        self,
        asn8: bytes,
        *,
        balance: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        gtac: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def verify_psam_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        lock_term: bytes,
        lock_ttc: int,
        lock_dt: bytes,
        tac: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def verify_unlock_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        tac: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def verify_online_unlock_mac1(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def online_unlock_mac2(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        key_set: str = "DEV",
    ) -> bytes: ...

    def verify_online_unlock_mac3(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance_after: int,
        amount: int,
        term: bytes,
        dt: bytes,
        mac3: bytes,
        key_set: str = "DEV",
    ) -> bool: ...

    def secure_messaging_mac(
        self, asn8: bytes, *, command: bytes, challenge: bytes, key_set: str = "DEV"
    ) -> bytes:
        """DAMK retail MAC over CLA‖INS‖P1‖P2‖Lc(incl. MAC)‖data, IV from the card challenge."""
        ...

    def reload_pin_mac(self, asn8: bytes, *, pin: bytes, key_set: str = "DEV") -> bytes: ...

    def bill_tmac(self, data: bytes, key_set: str = "DEV") -> bytes:
        """The TMAC a PSAM puts on a bill (bytes 0–90), for checking uploads."""
        ...

    def bill_tmacs(self, datas: Sequence[bytes], key_set: str = "DEV") -> list[bytes]:
        """`bill_tmac` of each of a batch of bills (one key operation for the batch)."""
        ...
