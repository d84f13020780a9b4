"""Store POS sales: check the card's purchase TAC through the HSM, then book each sale once.

A sale is the 45-byte `cardcore.records.StoreSale` a station uploads for every store receipt.
Idempotent by (term, PSAM TTC): the same bytes again are a `duplicate`, other bytes under the
same key a conflict. A refused sale goes to the `exceptions` table (record `store_sale`), never
to the ledger. Booking: the card's account is debited, the station's credited (kind
`sale.store`), in the same transaction as the sale row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cardcore.bcd import from_bcd, parse_bcd_dt
from cardcore.errors import DecodeError, FuelsimError
from cardcore.layout import TxType
from cardcore.ports import Hsm
from cardcore.records import STORE_SALE, StoreSale
from host_sim.access import station_of
from host_sim.bills import Status, record_exception
from host_sim.db import Database, returned_id, transaction, utc_text
from host_sim.ledger import Leg, card_account, post, station_account

MAX_BATCH = 500

REASONS = {
    "E_SALE_FIELD": "a field is out of range (ASN or dt not BCD, amount or TTC zero)",
    "E_SALE_TAC": "the card's purchase TAC does not verify",
    "E_SALE_TERMINAL": "the sale's terminal is not one of the uploading terminal's station",
    "E_SALE_CONFLICT": "another sale with the same (term, PSAM TTC) is on file",
}


@dataclass(frozen=True)
class SaleOutcome:
    index: int
    status: Status
    sale_id: int | None = None
    reason: str | None = None
    message: str = ""
    transaction_id: int | None = None
    exception_id: int | None = None


def check_sale(hsm: Hsm, raw: bytes, key_set: str = "DEV") -> tuple[StoreSale | None, str, str]:
    """The sale, or None with the refusal's reason and message (no database)."""
    try:
        sale = StoreSale.from_bytes(raw)
        from_bcd(sale.asn)
        parse_bcd_dt(sale.dt)
    except DecodeError as exc:
        return None, "E_SALE_FIELD", str(exc)
    if sale.amount <= 0 or sale.psam_ttc <= 0:
        return None, "E_SALE_FIELD", "amount and PSAM TTC must be positive"
    try:
        verified = hsm.verify_purchase_tac(
            sale.asn[2:],
            amount=sale.amount,
            tx_type=TxType.ED_PURCHASE,
            term=sale.term,
            ttc=sale.psam_ttc,
            dt=sale.dt,
            tac=sale.tac,
            key_set=key_set,
        )
    except FuelsimError as exc:
        return None, "E_SALE_FIELD", f"HSM refused the sale's fields: {exc}"
    if not verified:
        return None, "E_SALE_TAC", REASONS["E_SALE_TAC"]
    return sale, "", ""


def store_sale(
    conn: sqlite3.Connection,
    index: int,
    raw: bytes,
    checked: tuple[StoreSale | None, str, str],
    *,
    uploader: str,
    ak: str,
    now: datetime,
) -> SaleOutcome:
    """Store one checked sale in its own committed transaction."""
    sale, reason, message = checked
    with transaction(conn):

        def reject(reason: str, message: str) -> SaleOutcome:
            padded = raw.ljust(STORE_SALE.size, b"\x00")  # a short record names what it can
            exception_id = record_exception(
                conn,
                raw,
                reason,
                message,
                asn=padded[10:20],
                term=padded[0:6],
                psam_ttc=int.from_bytes(padded[6:10], "big"),
                kind=TxType.ED_PURCHASE,
                record="store_sale",
                uploader=uploader,
                ak=ak,
                now=now,
            )
            return SaleOutcome(
                index, "rejected", reason=reason, message=message, exception_id=exception_id
            )

        if sale is None:
            return reject(reason, message)
        term = sale.term.hex().upper()
        station, _ = station_of(conn, uploader)
        if station_of(conn, term)[0] != station:
            return reject(
                "E_SALE_TERMINAL",
                f"terminal {term} is not of station {station} of uploader {uploader}",
            )
        same = conn.execute(
            "SELECT id, raw, txn_id FROM store_sales WHERE term = ? AND psam_ttc = ?",
            (term, sale.psam_ttc),
        ).fetchone()
        if same is not None:
            if bytes(same["raw"]) == raw:
                return SaleOutcome(
                    index,
                    "duplicate",
                    sale_id=int(same["id"]),
                    message="already stored",
                    transaction_id=int(same["txn_id"]),
                )
            return reject(
                "E_SALE_CONFLICT",
                f"sale #{same['id']} has the same term {term} and PSAM TTC {sale.psam_ttc}"
                " but different bytes",
            )
        asn = sale.asn.hex().upper()
        txn_id = post(
            conn,
            kind="sale.store",
            memo=f"store sale term {term} PSAM TTC {sale.psam_ttc}: card {asn}, {sale.amount} fen",
            legs=[Leg(card_account(asn), sale.amount), Leg(station_account(station), -sale.amount)],
            now=now,
        )
        cursor = conn.execute(
            "INSERT INTO store_sales (term, psam_ttc, raw, asn, amount, balance_after, sale_dt,"
            " product, receipt_no, txn_id, station_id, uploaded_by, ak, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                term,
                sale.psam_ttc,
                raw,
                asn,
                sale.amount,
                sale.balance_after,
                parse_bcd_dt(sale.dt).isoformat(),
                sale.product,
                sale.number,
                txn_id,
                station,
                uploader,
                ak,
                utc_text(now),
            ),
        )
        return SaleOutcome(
            index, "accepted", sale_id=returned_id(cursor), message="booked", transaction_id=txn_id
        )


def upload_sales(
    db: Database,
    hsm: Hsm,
    raws: Sequence[bytes],
    *,
    uploader: str,
    ak: str,
    now: datetime,
    key_set: str = "DEV",
) -> list[SaleOutcome]:
    """Check every sale, then store each in its own transaction; all committed on return."""
    checked = [check_sale(hsm, raw, key_set) for raw in raws]
    with db.connect() as conn:
        return [
            store_sale(conn, i, raw, result, uploader=uploader, ak=ak, now=now)
            for i, (raw, result) in enumerate(zip(raws, checked, strict=True))
        ]
