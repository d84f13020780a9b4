"""Daily clearing per station and merchant, with fees, and T+n settlement.

`clear_day` takes the bills of one business day (the date of the bill's own dt) that booked a
sale (a fuelling bill, or the first bill of a grey record: the escape bill, or a re-debit that
arrived first) and not yet cleared, and writes one line per (station, payment type): count,
gross, the fee at the rule's basis points (rounded half up to the fen), net, and the settlement
date (`day + lag_days`, T+1 by default). A day is cleared once.

`settle_day` pays a cleared day on or after its settlement date: one balanced ledger
transaction per line (the station account is debited the gross, `clearing:fees` credited the
fee, `cash:settlement` the net), and the escape bills cleared that day whose grey record is
still open become `settled`, which lets online unlock serve them at any station.

Fee rules: `set_fee(db, payment_type, basis_points, merchant="*")`; a merchant's own rule wins
over the `*` rule, no rule is 0 bp. A station not mapped to a merchant (`set_merchant`) is its
own merchant.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cardcore.errors import FuelsimError
from host_sim.db import Database, utc_text
from host_sim.ledger import Leg, post, station_account

PAYMENT_TYPES = {0: "et", 1: "loyalty", 2: "bank_ep", 3: "bank_ed"}  # bill byte 63
ANY_MERCHANT = "*"
FEES_ACCOUNT = "clearing:fees"
PAYOUT_ACCOUNT = "cash:settlement"
DEBIT_SOURCE_OFFSET = 63


class ClearingError(FuelsimError):
    title = "clearing"


@dataclass(frozen=True)
class ClearingLine:
    day: str
    station_id: str
    merchant_id: str
    payment_type: str
    count: int
    gross: int
    basis_points: int
    fee: int
    net: int
    settle_date: str
    txn_id: int | None = None


@dataclass(frozen=True)
class ClearedDay:
    day: str
    settle_date: str
    settled_at: str | None
    lines: list[ClearingLine]

    @property
    def gross(self) -> int:
        return sum(line.gross for line in self.lines)

    @property
    def fee(self) -> int:
        return sum(line.fee for line in self.lines)

    @property
    def net(self) -> int:
        return sum(line.net for line in self.lines)


@dataclass(frozen=True)
class Settlement:
    day: str
    transactions: list[int]
    escape_bills_settled: int
    paid: int  # net paid out, fen


def payment_type(debit_source: int) -> str:
    return PAYMENT_TYPES.get(debit_source, f"source_{debit_source:02x}")


def fee_of(gross: int, basis_points: int) -> int:
    """The fee in fen, rounded half up (a refund-negative gross rounds half away from 0)."""
    sign = -1 if gross < 0 else 1
    return sign * ((abs(gross) * basis_points + 5_000) // 10_000)


def day_bounds(day: date) -> tuple[str, str]:
    """The bill_dt text range of a business day, [start, end): `~` sorts after the `T` of every
    time of the day and before the next day's text (and needs no date after 9999-12-31)."""
    return day.isoformat(), day.isoformat() + "~"


def set_merchant(db: Database, station_id: str, merchant_id: str) -> None:
    if not station_id or not merchant_id:
        raise ClearingError("station and merchant ids must not be empty")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO merchants VALUES (?, ?)"
            " ON CONFLICT (station_id) DO UPDATE SET merchant_id = excluded.merchant_id",
            (station_id, merchant_id),
        )


def set_fee(
    db: Database, payment_type: str, basis_points: int, merchant: str = ANY_MERCHANT
) -> None:
    if not payment_type or not merchant:
        raise ClearingError("payment type and merchant must not be empty")
    if isinstance(basis_points, bool) or not isinstance(basis_points, int):
        raise ClearingError("basis points must be an integer")
    if not 0 <= basis_points <= 10_000:
        raise ClearingError(f"basis points must be 0..10000, got {basis_points}")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO fee_rules VALUES (?, ?, ?) ON CONFLICT (merchant_id, payment_type)"
            " DO UPDATE SET basis_points = excluded.basis_points",
            (merchant, payment_type, basis_points),
        )


def parse_fee(text: str) -> tuple[str, str, int]:
    """`TYPE=BP` or `MERCHANT:TYPE=BP` → (merchant, type, basis points)."""
    head, sep, value = text.partition("=")
    merchant, colon, kind = head.rpartition(":")
    if not sep or not kind or not value.strip().isdigit():
        raise ClearingError(f"fee {text!r} is not TYPE=BP or MERCHANT:TYPE=BP")
    return (merchant if colon else ANY_MERCHANT), kind, int(value)


def _fee_table(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {(r[0], r[1]): int(r[2]) for r in conn.execute("SELECT * FROM fee_rules")}


def _merchants(conn: sqlite3.Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT station_id, merchant_id FROM merchants")}


def clear_day(db: Database, day: date, now: datetime, *, lag_days: int = 1) -> ClearedDay:
    """Clear one business day (once); the lines are committed together."""
    if lag_days < 0:
        raise ClearingError("the settlement lag must be 0 days or more")
    start, end = day_bounds(day)
    try:
        settle = (day + timedelta(days=lag_days)).isoformat()
    except OverflowError:
        raise ClearingError(f"{start} + {lag_days} days is past the last date") from None
    with db.write() as conn:
        if conn.execute("SELECT 1 FROM clearing_days WHERE day = ?", (start,)).fetchone():
            raise ClearingError(f"day {start} is already cleared")
        rows = conn.execute(
            "SELECT b.id, b.station_id, b.amount, b.raw FROM bills b"
            " LEFT JOIN clearing_bills c ON c.bill_id = b.id"
            " WHERE b.bill_dt >= ? AND b.bill_dt < ? AND b.txn_id IS NOT NULL"
            " AND c.bill_id IS NULL",
            (start, end),
        ).fetchall()
        fees, merchants = _fee_table(conn), _merchants(conn)
        groups: dict[tuple[str, str], list[int]] = {}
        for _, station, amount, raw in rows:
            group = groups.setdefault((station, payment_type(raw[DEBIT_SOURCE_OFFSET])), [0, 0])
            group[0] += 1
            group[1] += int(amount)
        conn.execute(
            "INSERT INTO clearing_days (day, cleared_at, settle_date) VALUES (?, ?, ?)",
            (start, utc_text(now), settle),
        )
        lines = []
        for (station, kind), (count, gross) in sorted(groups.items()):
            merchant = merchants.get(station, station)
            bp = fees.get((merchant, kind), fees.get((ANY_MERCHANT, kind), 0))
            fee = fee_of(gross, bp)
            line = ClearingLine(
                start, station, merchant, kind, count, gross, bp, fee, gross - fee, settle
            )
            conn.execute(
                "INSERT INTO clearing_lines (day, station_id, merchant_id, payment_type, count,"
                " gross, basis_points, fee, net, settle_date)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (start, station, merchant, kind, count, gross, bp, fee, gross - fee, settle),
            )
            lines.append(line)
        conn.executemany(
            "INSERT INTO clearing_bills (bill_id, day) VALUES (?, ?)",
            [(row[0], start) for row in rows],
        )
    return ClearedDay(start, settle, None, lines)


def cleared_day(conn: sqlite3.Connection, day: date) -> ClearedDay | None:
    head = conn.execute(
        "SELECT day, settle_date, settled_at FROM clearing_days WHERE day = ?", (day.isoformat(),)
    ).fetchone()
    if head is None:
        return None
    rows = conn.execute(
        "SELECT day, station_id, merchant_id, payment_type, count, gross, basis_points, fee, net,"
        " settle_date, txn_id FROM clearing_lines WHERE day = ? ORDER BY station_id, payment_type",
        (head[0],),
    ).fetchall()
    return ClearedDay(head[0], head[1], head[2], [ClearingLine(*tuple(r)) for r in rows])


def _settlement_legs(line: ClearingLine) -> list[Leg]:
    legs = [Leg(station_account(line.station_id), line.gross)]
    legs += [Leg(FEES_ACCOUNT, -line.fee)] if line.fee else []
    legs += [Leg(PAYOUT_ACCOUNT, -line.net)] if line.net else []
    return legs


def settle_day(db: Database, day: date, now: datetime, *, force: bool = False) -> Settlement:
    """Pay a cleared day (on or after its settlement date unless `force`) and mark the escape
    bills it cleared settled. Refused, with nothing changed, when the day is not cleared or is
    already settled."""
    text = day.isoformat()
    with db.write() as conn:
        head = conn.execute(
            "SELECT settle_date, settled_at FROM clearing_days WHERE day = ?", (text,)
        ).fetchone()
        if head is None:
            raise ClearingError(f"day {text} is not cleared")
        if head[1] is not None:
            raise ClearingError(f"day {text} was settled at {head[1]}")
        if not force and now.date().isoformat() < head[0]:
            raise ClearingError(f"day {text} settles on {head[0]}, not before")
        found = cleared_day(conn, day)
        assert found is not None
        transactions = []
        for line in found.lines:
            if line.gross == 0:
                continue
            txn = post(
                conn,
                kind="settlement",
                memo=(
                    f"settlement of {text} for station {line.station_id} ({line.payment_type}):"
                    f" gross {line.gross}, fee {line.fee} ({line.basis_points} bp), net {line.net}"
                ),
                legs=_settlement_legs(line),
                now=now,
            )
            conn.execute(
                "UPDATE clearing_lines SET txn_id = ? WHERE day = ? AND station_id = ?"
                " AND payment_type = ?",
                (txn, text, line.station_id, line.payment_type),
            )
            transactions.append(txn)
        escapes = conn.execute(
            "UPDATE grey_records SET status = 'settled' WHERE status = 'open' AND escape_bill_id"
            " IN (SELECT bill_id FROM clearing_bills WHERE day = ?)",
            (text,),
        ).rowcount
        conn.execute("UPDATE clearing_days SET settled_at = ? WHERE day = ?", (utc_text(now), text))
    return Settlement(text, transactions, escapes, found.net)


def cleared_days(conn: sqlite3.Connection) -> Iterable[str]:
    return [r[0] for r in conn.execute("SELECT day FROM clearing_days ORDER BY day")]
