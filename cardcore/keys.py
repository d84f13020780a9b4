"""Key records handed out by the HSM at personalisation: what a card and a PSAM hold inside."""

from __future__ import annotations

from dataclasses import dataclass

from cardcore.crypto import tac_key


@dataclass(frozen=True, slots=True, repr=False)
class CardKeys:
    """A user card's diversified keys (spec §3.1); repr shows no key bytes."""

    dpk: bytes
    dlk: bytes
    dtk: bytes
    dugk: bytes
    dulk: bytes
    damk: bytes
    dpuk: bytes
    drpk: bytes
    diak: bytes

    @property
    def dtk_prime(self) -> bytes:
        return tac_key(self.dtk)

    def __repr__(self) -> str:
        return "CardKeys(<9 keys>)"


@dataclass(frozen=True, slots=True, repr=False)
class PsamKeys:
    """The master keys a PSAM holds and diversifies per card."""

    mpk: bytes
    mtk: bytes
    mtmac: bytes

    def __repr__(self) -> str:
        return "PsamKeys(<3 keys>)"


# Card key label → master key label (spec §3.1 table).
CARD_KEY_MASTERS = {
    "dpk": "MPK",
    "dlk": "MLK",
    "dtk": "MTK",
    "dugk": "MUGK",
    "dulk": "MULK",
    "damk": "MAMK",
    "dpuk": "MPUK",
    "drpk": "MRPK",
    "diak": "MIAK",
}
PSAM_KEY_MASTERS = {"mpk": "MPK", "mtk": "MTK", "mtmac": "MTMAC"}
MASTER_KEY_LABELS = ("MPK", "MLK", "MTK", "MUGK", "MULK", "MAMK", "MPUK", "MRPK", "MIAK", "MTMAC")
