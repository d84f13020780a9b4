"""Sales reports by day, station, product and payment type, exported as CSV or XLSX.

A sale is a booked bill (one per fuelling and one per grey record: a re-debit that completes an
escape bill is not counted again) or a store sale (product = the store product code). Rows are
grouped by any of the four dimensions and summed: count, volume (0.01 L), amount (fen).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cardcore.errors import FuelsimError
from host_sim.clearing import DEBIT_SOURCE_OFFSET, ClearedDay, day_bounds, payment_type
from host_sim.db import has_table

DIMENSIONS = ("day", "station", "product", "payment_type")
MEASURES = ("count", "volume", "amount")
FORMATS = ("json", "csv", "xlsx")
MAX_DAYS = 366
SHEET_FORBIDDEN = set("[]:*?/\\")  # characters Excel refuses in a sheet name
STORE_PAYMENT = "et"  # store sales are ED purchases on the card's ET application


class ReportError(FuelsimError):
    title = "report"


@dataclass(frozen=True)
class Report:
    title: str
    columns: list[str]
    rows: list[list[str | int]]

    def as_dicts(self) -> list[dict[str, str | int]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def parse_dimensions(text: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in DIMENSIONS]
    if not names or unknown or len(set(names)) != len(names):
        raise ReportError(
            f"group by one or more of {', '.join(DIMENSIONS)} (no repeats), got {names!r}"
        )
    return names


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return has_table(conn, name)


def _sales(
    conn: sqlite3.Connection, start: date, end: date
) -> list[tuple[str, str, int, str, int, int]]:
    """(day, station, product, payment type, volume, amount) of every sale in [start, end]."""
    low, high = day_bounds(start)[0], day_bounds(end)[1]
    sales = []
    for bill_dt, station, amount, raw in conn.execute(
        "SELECT bill_dt, station_id, amount, raw FROM bills"
        " WHERE bill_dt >= ? AND bill_dt < ? AND txn_id IS NOT NULL",
        (low, high),
    ):
        raw = bytes(raw)
        product = int.from_bytes(raw[68:70], "big")
        volume = int.from_bytes(raw[70:73], "big")
        sales.append(
            (bill_dt[:10], station, product, payment_type(raw[DEBIT_SOURCE_OFFSET]), volume, amount)
        )
    if _has_table(conn, "store_sales"):
        for sale_dt, station, product, amount in conn.execute(
            "SELECT sale_dt, station_id, product, amount FROM store_sales"
            " WHERE sale_dt >= ? AND sale_dt < ?",
            (low, high),
        ):
            sales.append((sale_dt[:10], station, int(product), STORE_PAYMENT, 0, int(amount)))
    return sales


def sales_report(
    conn: sqlite3.Connection,
    by: Sequence[str],
    start: date,
    end: date | None = None,
    *,
    station: str | None = None,
) -> Report:
    """Sales of the days [start, end] (of one station if given) grouped by the dimensions
    `by`, sorted by them."""
    end = end or start
    dims = parse_dimensions(by)
    if end < start:
        raise ReportError(f"the period ends ({end}) before it starts ({start})")
    if (end - start).days >= MAX_DAYS:
        raise ReportError(f"a report covers at most {MAX_DAYS} days")
    index = [DIMENSIONS.index(d) for d in dims]
    groups: dict[tuple[str | int, ...], list[int]] = {}
    for sale in _sales(conn, start, end):
        if station is not None and sale[1] != station:
            continue
        key = tuple(sale[i] for i in index)
        total = groups.setdefault(key, [0, 0, 0])
        total[0] += 1
        total[1] += sale[4]
        total[2] += sale[5]
    rows: list[list[str | int]] = [
        [*(f"{v:04X}" if dims[i] == "product" else v for i, v in enumerate(key)), *total]
        for key, total in sorted(groups.items())
    ]
    period = start.isoformat() if end == start else f"{start.isoformat()}..{end.isoformat()}"
    where = "" if station is None else f" at {station}"
    return Report(f"sales {period}{where} by {', '.join(dims)}", [*dims, *MEASURES], rows)


def clearing_report(day: ClearedDay) -> Report:
    columns = [
        "day",
        "station",
        "merchant",
        "payment_type",
        "count",
        "gross",
        "basis_points",
        "fee",
        "net",
        "settle_date",
    ]
    rows: list[list[str | int]] = [
        [
            line.day,
            line.station_id,
            line.merchant_id,
            line.payment_type,
            line.count,
            line.gross,
            line.basis_points,
            line.fee,
            line.net,
            line.settle_date,
        ]
        for line in day.lines
    ]
    return Report(f"clearing {day.day} (settles {day.settle_date})", columns, rows)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    writer.writerows(report.rows)
    return out.getvalue()


def to_xlsx(report: Report) -> bytes:
    """One worksheet: the title, the header row, the rows (numbers stay numbers)."""
    from openpyxl import Workbook  # loaded only when a workbook is asked for

    book = Workbook(write_only=True)
    sheet = book.create_sheet("".join(c for c in report.title if c not in SHEET_FORBIDDEN)[:31])
    sheet.append([report.title])
    sheet.append(report.columns)
    for row in report.rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
