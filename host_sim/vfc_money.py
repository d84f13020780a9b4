"""Money models of virtual fleet card payments at the pump, booked in the double-entry ledger.

Prepaid / authorisation code: `open_hold` moves the amount limit from the company account
(`fleet:<company>`) to its hold account (`fleet:<company>:hold`) and the pump is unlocked;
`complete` pays the station (`station:<station>`) the delivered amount from the hold and gives
the rest back; `release` gives it all back (nothing delivered).

Post-paid flash pay: `capture` pays the pump's finished sale straight from the company account;
a sale (station, terminal, sale id) is paid once.

Every payment is one `vfc_payments` row; reconciliation reads rows with status `completed` or
`captured` (amount = what the station is owed, `settle_txn_id` its ledger transaction).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from host_sim import ledger
from host_sim.db import returned_id, utc_text
from host_sim.errors import ApiError
from host_sim.fleet import Card, fleet_account, hold_account

MODELS = ("prepaid", "flash")


@dataclass(frozen=True)
class Sale:
    """Where and what: the pump context a terminal sends with a payment."""

    terminal_id: str
    station_id: str
    pump: int
    product: str
    amount: int  # prepaid: the amount limit to hold; flash pay: the sale's amount
    sale_id: str | None = None


@dataclass(frozen=True)
class Payment:
    payment_id: int
    model: str
    status: str
    card_id: str
    company_id: str
    station_id: str
    terminal_id: str
    pump: int
    product: str
    held_amount: int
    amount: int
    sale_id: str | None
    atc: int
    luk_index: int
    method: str
    hold_txn_id: int | None
    settle_txn_id: int | None
    created_at: str
    closed_at: str | None


def load_payment(conn: sqlite3.Connection, payment_id: int) -> Payment | None:
    row = conn.execute("SELECT * FROM vfc_payments WHERE payment_id = ?", (payment_id,)).fetchone()
    if row is None:
        return None
    return Payment(**{name: row[name] for name in Payment.__dataclass_fields__})


def _insert(
    conn: sqlite3.Connection,
    card: Card,
    sale: Sale,
    *,
    model: str,
    status: str,
    atc: int,
    luk_index: int,
    method: str,
    now: datetime,
    **columns: Any,
) -> int:
    values: dict[str, Any] = {
        "model": model,
        "status": status,
        "card_id": card.card_id,
        "company_id": card.company_id,
        "station_id": sale.station_id,
        "terminal_id": sale.terminal_id,
        "pump": sale.pump,
        "product": sale.product,
        "sale_id": sale.sale_id,
        "atc": atc,
        "luk_index": luk_index,
        "method": method,
        "created_at": utc_text(now),
        "day": now.date().isoformat(),
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = conn.execute(
        f"INSERT INTO vfc_payments ({names}) VALUES ({marks}) RETURNING payment_id",
        tuple(values.values()),
    )
    return returned_id(cursor)


def open_hold(
    conn: sqlite3.Connection,
    card: Card,
    sale: Sale,
    *,
    atc: int,
    luk_index: int,
    method: str,
    now: datetime,
) -> Payment:
    txn = ledger.post(
        conn,
        kind="vfc.hold",
        memo=f"hold for {card.card_id} at {sale.station_id}/{sale.terminal_id} pump {sale.pump}",
        legs=[
            ledger.Leg(fleet_account(card.company_id), sale.amount),
            ledger.Leg(hold_account(card.company_id), -sale.amount),
        ],
        now=now,
    )
    payment_id = _insert(
        conn,
        card,
        sale,
        model="prepaid",
        status="held",
        atc=atc,
        luk_index=luk_index,
        method=method,
        now=now,
        held_amount=sale.amount,
        hold_txn_id=txn,
    )
    payment = load_payment(conn, payment_id)
    assert payment is not None
    return payment


def sale_paid(conn: sqlite3.Connection, sale: Sale) -> ApiError | None:
    row = conn.execute(
        "SELECT payment_id, closed_at, amount FROM vfc_payments"
        " WHERE station_id = ? AND terminal_id = ? AND sale_id = ?",
        (sale.station_id, sale.terminal_id, sale.sale_id),
    ).fetchone()
    if row is None:
        return None
    return ApiError(
        "E_SALE_ALREADY_PAID",
        409,
        f"sale {sale.sale_id} of terminal {sale.terminal_id} is already paid",
        sale_id=sale.sale_id,
        payment_id=row["payment_id"],
        paid_at=row["closed_at"],
        paid_amount=row["amount"],
    )


def capture(
    conn: sqlite3.Connection,
    card: Card,
    sale: Sale,
    *,
    atc: int,
    luk_index: int,
    method: str,
    now: datetime,
) -> Payment:
    """Flash pay: the finished sale, paid once, straight to the station."""
    paid = sale_paid(conn, sale)
    if paid is not None:
        raise paid
    txn = ledger.post(
        conn,
        kind="vfc.flash",
        memo=f"flash pay {card.card_id} sale {sale.sale_id} at {sale.station_id}",
        legs=[
            ledger.Leg(fleet_account(card.company_id), sale.amount),
            ledger.Leg(ledger.station_account(sale.station_id), -sale.amount),
        ],
        now=now,
    )
    payment_id = _insert(
        conn,
        card,
        sale,
        model="flash",
        status="captured",
        atc=atc,
        luk_index=luk_index,
        method=method,
        now=now,
        amount=sale.amount,
        settle_txn_id=txn,
        closed_at=utc_text(now),
    )
    payment = load_payment(conn, payment_id)
    assert payment is not None
    return payment


def open_hold_of(conn: sqlite3.Connection, payment_id: int, station_id: str) -> Payment:
    """The prepaid hold a terminal of `station_id` may close."""
    payment = load_payment(conn, payment_id)
    if payment is None or payment.station_id != station_id or payment.model != "prepaid":
        raise ApiError(
            "E_UNKNOWN_HOLD", 404, f"no hold {payment_id} at this station", hold_id=payment_id
        )
    if payment.status != "held":
        raise ApiError(
            "E_HOLD_CLOSED",
            409,
            f"hold {payment_id} is already {payment.status}",
            hold_id=payment_id,
            hold_status=payment.status,
            amount=payment.amount,
        )
    return payment


def complete(conn: sqlite3.Connection, payment: Payment, delivered: int, now: datetime) -> Payment:
    """Settle the delivered amount from the hold; the rest goes back to the company."""
    if not 0 <= delivered <= payment.held_amount:
        raise ApiError(
            "E_OVER_HOLD",
            422,
            f"delivered {delivered} fen is outside 0..{payment.held_amount} (the hold)",
            held_amount=payment.held_amount,
            delivered=delivered,
        )
    rest = payment.held_amount - delivered
    legs = [ledger.Leg(hold_account(payment.company_id), payment.held_amount)]
    if delivered:
        legs.append(ledger.Leg(ledger.station_account(payment.station_id), -delivered))
    if rest:
        legs.append(ledger.Leg(fleet_account(payment.company_id), -rest))
    txn = ledger.post(
        conn,
        kind="vfc.complete" if delivered else "vfc.release",
        memo=f"payment {payment.payment_id}: {delivered} delivered, {rest} released",
        legs=legs,
        now=now,
    )
    conn.execute(
        "UPDATE vfc_payments SET status = ?, amount = ?, settle_txn_id = ?, closed_at = ?"
        " WHERE payment_id = ? AND status = 'held'",
        (
            "completed" if delivered else "released",
            delivered,
            txn,
            utc_text(now),
            payment.payment_id,
        ),
    )
    closed = load_payment(conn, payment.payment_id)
    assert closed is not None
    return closed
