"""The user card's persistent memory: the cells it is made of, and how a fresh card fills them.

Cells (all bytes): key.<name> for the nine card keys; ef15/ef16/ef1b/ef1c file contents; ef18
the cyclic log, newest record first; et.balance (4), et.offline_ctc (2), et.online_ctc (2),
et.overdraft (3), et.block (1, AppBlock); pin (compressed BCD block), pin.tries (1); lock (the
30-byte status record), lock.sesgk (the SESGK of an open lock, else empty); proof (type ‖ CTC ‖
MAC ‖ TAC of the most recent value transaction, else empty); loyalty.balance (4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from card_profiles.nvm import Cells
from cardcore import layout
from cardcore.bcd import encode_pin
from cardcore.keys import CardKeys
from cardcore.layout import AppBlock
from cardcore.records import (
    Cardholder,
    EtGeneralInfo,
    LockRecord,
    PublicAppData,
    Restrictions,
    TxLogEntry,
)

EF_CELLS = {
    layout.SFI_EF15: "ef15",
    layout.SFI_EF16: "ef16",
    layout.SFI_EF1B: "ef1b",
    layout.SFI_EF1C: "ef1c",
}
KIND = b"user-card"
KEY_NAMES = ("dpk", "dlk", "dtk", "dugk", "dulk", "damk", "dpuk", "drpk", "diak")


@dataclass(frozen=True)
class FuelCardContent:
    """Everything a user card holds, in typed form; `cells()` lays it out in memory."""

    keys: CardKeys
    public: PublicAppData
    holder: Cardholder = field(default_factory=Cardholder)
    general: EtGeneralInfo = field(default_factory=EtGeneralInfo)
    restrictions: Restrictions = field(default_factory=Restrictions)
    balance: int = 0
    offline_ctc: int = 0
    online_ctc: int = 0
    overdraft: int = 0
    block: AppBlock = AppBlock.ACTIVE
    pin: str = layout.DEFAULT_PIN
    pin_tries: int = layout.PIN_TRIES
    lock: LockRecord = field(default_factory=LockRecord.never_locked)
    lock_sesgk: bytes = b""
    proof: bytes = b""
    log: tuple[TxLogEntry, ...] = ()
    loyalty_balance: int = 0

    def cells(self) -> Cells:
        cells: Cells = {"kind": KIND}
        cells.update({"key." + name: getattr(self.keys, name) for name in KEY_NAMES})
        cells.update(
            {
                "ef15": self.public.to_bytes(),
                "ef16": self.holder.to_bytes(),
                "ef1b": self.general.to_bytes(),
                "ef1c": self.restrictions.to_bytes(),
                "ef18": b"".join(entry.to_bytes() for entry in self.log[: layout.EF18_RECORDS]),
                "et.balance": self.balance.to_bytes(4, "big"),
                "et.offline_ctc": self.offline_ctc.to_bytes(2, "big"),
                "et.online_ctc": self.online_ctc.to_bytes(2, "big"),
                "et.overdraft": self.overdraft.to_bytes(3, "big"),
                "et.block": bytes((self.block,)),
                "pin": encode_pin(self.pin),
                "pin.tries": bytes((self.pin_tries,)),
                "lock": self.lock.to_bytes(),
                "lock.sesgk": self.lock_sesgk,
                "proof": self.proof,
                "loyalty.balance": self.loyalty_balance.to_bytes(4, "big"),
            }
        )
        return cells
