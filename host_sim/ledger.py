"""Double-entry bookkeeping: accounts, transactions, postings that always sum to zero.

A posting's amount is signed: positive = debit, negative = credit. Accounts are named by a code
`kind:id` (`card:<ASN>`, `station:<station id>`). Card and station accounts are liabilities of
the host (what it owes the cardholder / the station), so their balance is credit-normal:
`balance = credits − debits`. A fuelling sale debits the card and credits the station.

`post` checks the legs in Python; the schema checks them again in SQLite (see `schema.py`), so
no code path can commit an unbalanced transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cardcore.errors import FuelsimError
from host_sim.db import returned_id, utc_text

NORMAL_SIDE = {
    "card": "credit",
    "station": "credit",
    "clearing": "debit",
    "cash": "debit",
    "fleet": "credit",  # fleet:<company> prepaid funds, fleet:<company>:hold held amounts
    "reserve": "credit",  # reserve:<sub ASN> funds a master set aside for its sub card's loads
}


class LedgerError(FuelsimError):
    title = "ledger error"


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int  # + debit, − credit


@dataclass(frozen=True)
class Entry:
    """One posting as an account sees it."""

    transaction_id: int
    kind: str
    memo: str
    posted_at: str
    amount: int  # + debit, − credit


def card_account(asn: str) -> str:
    return f"card:{asn}"


def station_account(station_id: str) -> str:
    return f"station:{station_id}"


def _kind(code: str) -> str:
    kind, sep, name = code.partition(":")
    if not sep or not name or kind not in NORMAL_SIDE:
        raise LedgerError(f"account code {code!r} is not kind:id with kind in {list(NORMAL_SIDE)}")
    return kind


def account_id(conn: sqlite3.Connection, code: str, now: datetime) -> int:
    """The account's id, opening it on first use."""
    kind = _kind(code)
    row = conn.execute("SELECT id FROM accounts WHERE code = ?", (code,)).fetchone()
    if row is not None:
        return int(row[0])
    cursor = conn.execute(
        "INSERT INTO accounts (code, kind, normal_side, created_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (code, kind, NORMAL_SIDE[kind], utc_text(now)),
    )
    return returned_id(cursor)


def post(
    conn: sqlite3.Connection, *, kind: str, memo: str, legs: Sequence[Leg], now: datetime
) -> int:
    """Book one balanced transaction inside the caller's open transaction; returns its id."""
    if not conn.in_transaction:
        raise LedgerError("post inside a database transaction, with the records it books")
    if len(legs) < 2:
        raise LedgerError("a transaction needs at least two legs")
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or leg.amount == 0:
            raise LedgerError(f"leg {leg.account}: amount must be a non-zero integer")
    total = sum(leg.amount for leg in legs)
    if total != 0:
        raise LedgerError(f"legs sum to {total}, not zero")
    row = conn.execute(
        "SELECT COALESCE(MAX(id), 0) + 1 FROM (SELECT MAX(id) AS id FROM ledger_transactions"
        " UNION ALL SELECT MAX(txn_id) FROM postings) AS used"
    ).fetchone()
    txn_id = int(row[0])
    for leg in legs:
        conn.execute(
            "INSERT INTO postings (txn_id, account_id, amount) VALUES (?, ?, ?)",
            (txn_id, account_id(conn, leg.account, now), leg.amount),
        )
    conn.execute(
        "INSERT INTO ledger_transactions (id, kind, memo, posted_at) VALUES (?, ?, ?, ?)",
        (txn_id, kind, memo, utc_text(now)),
    )
    return txn_id


def exists(conn: sqlite3.Connection, code: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE code = ?", (code,)).fetchone() is not None


def balance(conn: sqlite3.Connection, code: str) -> int:
    """The balance on the account's normal side (0 for an account never used)."""
    row = conn.execute(
        "SELECT a.normal_side, COALESCE(SUM(p.amount), 0) FROM accounts a"
        " LEFT JOIN postings p ON p.account_id = a.id WHERE a.code = ? GROUP BY a.id",
        (code,),
    ).fetchone()
    if row is None:
        return 0
    side, total = row[0], int(row[1])
    return -total if side == "credit" else total


def entries(conn: sqlite3.Connection, code: str, limit: int = 100) -> list[Entry]:
    """The account's newest postings first."""
    rows = conn.execute(
        "SELECT t.id, t.kind, t.memo, t.posted_at, p.amount FROM postings p"
        " JOIN accounts a ON a.id = p.account_id"
        " JOIN ledger_transactions t ON t.id = p.txn_id"
        " WHERE a.code = ? ORDER BY t.id DESC, p.id DESC LIMIT ?",
        (code, limit),
    ).fetchall()
    return [Entry(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]


def unbalanced_transactions(conn: sqlite3.Connection) -> list[int]:
    """Ids of transactions whose postings do not sum to zero (always empty: a check)."""
    rows = conn.execute(
        "SELECT t.id FROM ledger_transactions t LEFT JOIN postings p ON p.txn_id = t.id"
        " GROUP BY t.id HAVING COALESCE(SUM(p.amount), 0) <> 0 OR COUNT(p.id) < 2"
    ).fetchall()
    return [int(r[0]) for r in rows]
