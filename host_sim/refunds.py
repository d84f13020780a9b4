"""Refunds of wallet (app) payments: a ledger transaction that reverses part or all of one.

A refundable payment is a ledger transaction of kind `payment.…` or `wallet.…` with exactly two
legs (the payer's debit and the payee's credit). A refund books the same two legs reversed for
the refunded amount, and the refunds of one payment never add up to more than it moved. The
check and the booking share one `BEGIN IMMEDIATE` transaction, so concurrent refunds cannot
both pass it. A card purse sale (`sale.…`) is not refundable here: its money is on the chip,
and a ledger refund would leave the card and the host disagreeing; it goes back by a load.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cardcore.errors import FuelsimError
from host_sim.db import returned_id, transaction, utc_text
from host_sim.ledger import Leg, post

REFUNDABLE_KINDS = ("payment.", "wallet.")


class RefundRefused(FuelsimError):
    title = "refund refused"

    def __init__(self, code: str, status: int, message: str, **figures: int) -> None:
        super().__init__(message)
        self.code, self.status, self.figures = code, status, figures


@dataclass(frozen=True)
class Refund:
    refund_id: int
    payment_txn_id: int
    refund_txn_id: int
    amount: int
    refunded_total: int
    paid: int

    @property
    def refundable_left(self) -> int:
        return self.paid - self.refunded_total


def refund(
    conn: sqlite3.Connection,
    payment_txn_id: int,
    amount: int,
    *,
    reason: str,
    ak: str,
    now: datetime,
) -> Refund:
    """Refund `amount` fen of payment `payment_txn_id`, committed before returning."""
    if amount <= 0:
        raise RefundRefused("E_BAD_REQUEST", 400, "amount: a refund is at least 1 fen")
    with transaction(conn):
        row = conn.execute(
            "SELECT kind FROM ledger_transactions WHERE id = ?", (payment_txn_id,)
        ).fetchone()
        if row is None:
            raise RefundRefused("E_UNKNOWN_PAYMENT", 404, f"no ledger transaction {payment_txn_id}")
        kind = str(row[0])
        legs = conn.execute(
            "SELECT a.code, p.amount FROM postings p JOIN accounts a ON a.id = p.account_id"
            " WHERE p.txn_id = ? ORDER BY p.id",
            (payment_txn_id,),
        ).fetchall()
        if not kind.startswith(REFUNDABLE_KINDS) or len(legs) != 2:
            raise RefundRefused(
                "E_NOT_REFUNDABLE",
                409,
                f"transaction {payment_txn_id} ({kind}) is not a wallet payment; a card purse"
                " sale is returned by a load to the card",
            )
        paid = max(int(leg[1]) for leg in legs)
        done = int(
            conn.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_txn_id = ?",
                (payment_txn_id,),
            ).fetchone()[0]
        )
        if done + amount > paid:
            raise RefundRefused(
                "E_REFUND_EXCEEDS_PAYMENT",
                409,
                f"refunding {amount} fen would bring the refunds of payment {payment_txn_id}"
                f" to {done + amount} fen; it moved {paid} fen",
                paid=paid,
                refunded=done,
                refundable=paid - done,
            )
        refund_txn = post(
            conn,
            kind="refund." + kind.partition(".")[2],
            memo=f"refund of transaction {payment_txn_id}: {amount} fen ({reason or 'no reason'})",
            legs=[Leg(str(code), -amount if int(value) > 0 else amount) for code, value in legs],
            now=now,
        )
        cursor = conn.execute(
            "INSERT INTO refunds (payment_txn_id, refund_txn_id, amount, reason, ak, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (payment_txn_id, refund_txn, amount, reason, ak, utc_text(now)),
        )
        return Refund(returned_id(cursor), payment_txn_id, refund_txn, amount, done + amount, paid)
