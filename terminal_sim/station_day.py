"""A station's business day as a station day file (`fuelsim.station-day/1`) for reconciliation.

The bills are the outbox's dispenser bills whose own dt falls on the day (store sales, kept in
the same outbox, are the receipts' side). The report figures are the station's shift reports
(班结) of the shifts opened that day and closed: card fuel = fuelling + re-debit, store = the
store total. The store POS receipts of the day give the POS total; the station's receipt book
is also what the store system knows of card payments here, so the two start equal.

The outbox file is read on a read-only connection of its own; the shift figures come from
`Station.shift_report`, as the station's own report shows them.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

from host_sim.reconcile_db import STATION_DAY_FORMAT
from terminal_sim.station import STORE_SALE_TYPE, Station


def _bcd_day(dt: bytes) -> str:
    digits = bytes(dt[:4]).hex()
    return f"{digits[0:4]}-{digits[4:6]}-{digits[6:8]}"


def export_station_day(station: Station, day: date) -> dict[str, Any]:
    """The station day document of `station` for `day`."""
    text = day.isoformat()
    conn = sqlite3.connect(f"file:{station.path}?mode=ro", uri=True)
    try:
        bills = [
            bytes(raw)
            for (raw,) in conn.execute(
                "SELECT raw FROM outbox WHERE bill_type <> ? ORDER BY id", (STORE_SALE_TYPE,)
            )
            if _bcd_day(bytes(raw)[5:9]) == text
        ]
        shifts = [
            int(shift_id)
            for shift_id, opened_at in conn.execute(
                "SELECT id, opened_at FROM shift WHERE closed_at IS NOT NULL ORDER BY id"
            )
            if str(opened_at)[:10] == text
        ]
        receipts = sum(
            int(amount)
            for amount, dt in conn.execute("SELECT amount, dt FROM receipt")
            if _bcd_day(bytes(dt)) == text
        )
    finally:
        conn.close()
    reports = [station.shift_report(shift) for shift in shifts]
    return {
        "format": STATION_DAY_FORMAT,
        "station": station.station_id,
        "day": text,
        "bills": [raw.hex() for raw in bills],
        "report_amount": sum(r.fuelling.amount + r.redebit.amount for r in reports),
        "pos_receipts_total": receipts,
        "store_system_total": receipts,
        "report_store_amount": sum(r.store.amount for r in reports),
        "shifts": [r.shift for r in reports],
    }
