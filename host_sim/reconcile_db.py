"""Reconciliation against the host database: the host side read from SQLite, the station side
from station day files, and each run stored with its findings.

A station day file (`fuelsim.station-day/1`, JSON) is what a station system exports for one
business day: its bills as 256 hex digits each (the outbox), and its daily report figures:

```json
{"format": "fuelsim.station-day/1", "station": "ST-0001", "day": "2026-11-22",
 "bills": ["00000001…"], "report_amount": 123400, "pos_receipts_total": 5000,
 "store_system_total": 5000, "report_store_amount": 5000}
```
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cardcore.errors import DecodeError, FuelsimError
from cardcore.records import Bill
from host_sim.access import station_of
from host_sim.clearing import day_bounds
from host_sim.db import Database, column_names, has_table, returned_id, utc_text
from host_sim.reconcile import BillLine, DayRecords, HostDay, Reconciliation, StationDay

STATION_DAY_FORMAT = "fuelsim.station-day/1"


class ReconcileInputError(FuelsimError):
    title = "reconciliation input"


def bill_line(station: str, bill: Bill, **host: Any) -> BillLine:
    """A bill as a BillLine (the host-side fields `verified`, `reason`, `ref` as given)."""
    return BillLine(
        station,
        bill.term.hex().upper(),
        bill.psam_ttc,
        bill.tx_type,
        bill.asn.hex(),
        bill.ctc,
        bill.amount,
        bill.grade,
        bill.volume,
        bill.debit_source,
        **host,
    )


def _raw_line(station: str, raw: bytes, **host: Any) -> BillLine:
    """A stored bill's fields straight from its bytes (no XOR check: refused bills too)."""
    return BillLine(
        station,
        raw[53:59].hex().upper(),
        int.from_bytes(raw[59:63], "big"),
        raw[4],
        raw[12:22].hex(),
        int.from_bytes(raw[29:31], "big"),
        int.from_bytes(raw[26:29], "big"),
        int.from_bytes(raw[68:70], "big"),
        int.from_bytes(raw[70:73], "big"),
        raw[63],
        **host,
    )


def _bill_day(raw: bytes) -> str:
    digits = raw[5:12].hex()
    return f"{digits[0:4]}-{digits[4:6]}-{digits[6:8]}"


def load_host_day(conn: sqlite3.Connection, day: date) -> HostDay:
    """The host's bills of the day (their dt), the refused ones, and the store totals."""
    start, end = day_bounds(day)
    lines = [
        _raw_line(station, bytes(raw), ref=int(ref))
        for ref, station, raw in conn.execute(
            "SELECT id, station_id, raw FROM bills WHERE bill_dt >= ? AND bill_dt < ?",
            (start, end),
        )
    ]
    has_record = "record" in column_names(conn, "exceptions")
    only_bills = " WHERE record = 'bill'" if has_record else ""
    stations: dict[str, str] = {}
    for ref, raw, reason in conn.execute(f"SELECT id, raw, reason FROM exceptions{only_bills}"):
        raw = bytes(raw)
        if len(raw) != 128 or _bill_day(raw) != start:
            continue
        term = raw[53:59].hex().upper()
        if term not in stations:
            stations[term] = station_of(conn, term)[0]
        lines.append(
            _raw_line(stations[term], raw, verified=False, reason=str(reason), ref=int(ref))
        )
    store: dict[str, int] = {}
    if has_table(conn, "store_sales"):
        store = {
            str(station): int(total)
            for station, total in conn.execute(
                "SELECT station_id, SUM(amount) FROM store_sales"
                " WHERE sale_dt >= ? AND sale_dt < ? GROUP BY station_id",
                (start, end),
            )
        }
    return HostDay(lines, store)


def _int(data: dict[str, Any], name: str, where: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReconcileInputError(f"{where}: {name} must be an integer (fen)")
    return value


def station_day_from_json(data: Any, day: date, where: str = "station day") -> StationDay:
    if not isinstance(data, dict) or data.get("format") != STATION_DAY_FORMAT:
        raise ReconcileInputError(f"{where}: not a {STATION_DAY_FORMAT} document")
    station = data.get("station")
    if not isinstance(station, str) or not station:
        raise ReconcileInputError(f"{where}: station must be a non-empty string")
    if data.get("day") != day.isoformat():
        raise ReconcileInputError(f"{where}: day is {data.get('day')!r}, not {day.isoformat()}")
    raws = data.get("bills")
    if not isinstance(raws, list):
        raise ReconcileInputError(f"{where}: bills must be a list of 256-hex-digit bills")
    lines = []
    for index, text in enumerate(raws):
        try:
            bill = Bill.from_bytes(bytes.fromhex(text))
        except (ValueError, TypeError, DecodeError) as exc:
            raise ReconcileInputError(f"{where}: bills[{index}]: {exc}") from None
        lines.append(bill_line(station, bill))
    return StationDay(
        station,
        lines,
        report_amount=_int(data, "report_amount", where),
        pos_receipts_total=_int(data, "pos_receipts_total", where),
        store_system_total=_int(data, "store_system_total", where),
        report_store_amount=_int(data, "report_store_amount", where),
    )


def load_station_file(path: Path, day: date) -> StationDay:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReconcileInputError(f"{path}: {exc}") from None
    return station_day_from_json(data, day, str(path))


def host_records(db: Database, day: date, stations: list[StationDay]) -> DayRecords:
    """The day of the given stations: the host's records of other stations are left out (they
    are not at these stations, and would all look like it)."""
    names = {s.station for s in stations}
    if len(names) != len(stations):
        raise ReconcileInputError("two station day files for the same station")
    with db.connect() as conn:
        host = load_host_day(conn, day)
    lines = [line for line in host.bills if line.station in names]
    store = {name: total for name, total in host.store_totals.items() if name in names}
    return DayRecords(day, stations, HostDay(lines, store))


def save_run(db: Database, result: Reconciliation, source: str, now: datetime) -> int:
    """Store a run and its findings in one transaction; returns the run id."""
    with db.write() as conn:
        cursor = conn.execute(
            "INSERT INTO recon_runs (day, source, ran_at, stations, station_bills, host_bills)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (
                result.day.isoformat(),
                source,
                utc_text(now),
                len(result.totals),
                sum(t.station_bills for t in result.totals),
                sum(t.host_bills for t in result.totals),
            ),
        )
        run = returned_id(cursor)
        conn.executemany(
            "INSERT INTO recon_findings (run_id, kind, station_id, term, psam_ttc, bill_type,"
            " station_amount, host_amount, check_name, detail, handling, action)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run,
                    f.kind,
                    f.station,
                    f.term,
                    f.psam_ttc,
                    f.bill_type,
                    f.station_amount,
                    f.host_amount,
                    f.check,
                    f.detail,
                    f.handling,
                    f.action,
                )
                for f in result.findings
            ],
        )
    return run


def latest_run(conn: sqlite3.Connection, day: date) -> tuple[sqlite3.Row, list[sqlite3.Row]] | None:
    """The newest run of the day and its findings."""
    run = conn.execute(
        "SELECT * FROM recon_runs WHERE day = ? ORDER BY id DESC LIMIT 1", (day.isoformat(),)
    ).fetchone()
    if run is None:
        return None
    findings = conn.execute(
        "SELECT * FROM recon_findings WHERE run_id = ? ORDER BY id", (run["id"],)
    ).fetchall()
    return run, findings
