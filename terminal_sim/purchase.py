"""A normal ED purchase with the PSAM (spec §5, convenience store): INITIALIZE FOR PURCHASE,
PSAM 80 70, DEBIT FOR PURCHASE, PSAM 80 72. The store checks come before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cardcore import commands as cmd
from cardcore.bcd import bcd_dt
from cardcore.records import PublicAppData
from terminal_sim.channel import Channel


@dataclass(frozen=True)
class PurchaseResult:
    amount: int
    balance_before: int
    ctc: int
    ttc: int
    dt: bytes
    tac: bytes
    mac2: bytes


@dataclass(frozen=True)
class DebitIntent:
    """What DEBIT FOR PURCHASE is about to do: all a later GET TRANSACTION PROVE needs."""

    balance_before: int
    ctc: int
    ttc: int
    dt: bytes


def purchase(
    card: Channel,
    psam: Channel,
    public: PublicAppData,
    term: bytes,
    amount: int,
    when: datetime,
    before_debit: Callable[[DebitIntent], None] | None = None,
) -> PurchaseResult:
    """Debit `amount` fen; the card is selected with its PIN verified, the PSAM in SINOPEC1.
    `before_debit` runs just before DEBIT FOR PURCHASE is sent (a journal records it there)."""
    answer = card.send(cmd.initialize_for_purchase(amount, term))
    balance, ctc, rand = (
        int.from_bytes(answer[:4], "big"),
        int.from_bytes(answer[4:6], "big"),
        answer[11:15],
    )
    dt = bcd_dt(when)
    sam = psam.send(cmd.init_sam_for_purchase(rand, ctc, amount, dt, public.asn8, public.issuer_id))
    ttc, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8]
    if before_debit is not None:
        before_debit(DebitIntent(balance, ctc, ttc, dt))
    debited = card.send(cmd.debit_for_purchase(ttc, dt, mac1))
    tac, mac2 = debited[:4], debited[4:8]
    psam.send(cmd.credit_sam_for_purchase(mac2))
    return PurchaseResult(amount, balance, ctc, ttc, dt, tac, mac2)
