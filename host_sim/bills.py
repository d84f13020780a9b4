"""Bill upload: verify each 128-byte dispenser bill, then store it with its ledger entries.

Phase 1 (`check_bill`, no database): XOR check byte → TMAC (HSM `bill_tmac` over bytes 0–90) →
bill type → fields (BCD ASN and dt, counters) → card TAC → PSAM TAC where the bill carries what
it covers. Per bill type [SC byte 4]:

* fuelling `00` and re-debit `02`: the card's debit-for-unlock TAC, `verify_unlock_tac(amount,
  term, TTC = PSAM TTC, dt = bill dt)`. Their PSAM TAC covers the *lock* TTC and dt, which these
  bills do not carry; it is checked in phase 2 against the escape bill of the same grey record
  when the host has one, and otherwise stays unverified (`psam_tac_verified = 0`).
* escape `01`: the bill is the lock itself (dt, CTC and TAC of GREY LOCK; see
  terminal_sim.fuelling.lock_bill): GTAC via `verify_gtac(balance = balance after + amount,
  TTC = PSAM TTC − 1, dt)` and the PSAM TAC via `verify_psam_tac(amount, lock term = term,
  lock TTC = PSAM TTC − 1, lock dt = dt)`.
* The GMAC is never verifiable after the fact (its key needs the lock's session randoms).

Phase 2 (`store_bill` for one bill; `upload_bills` stores a whole batch in one `BEGIN IMMEDIATE`
transaction, committed before the answer):
station check → idempotency by (term, PSAM TTC, bill type) → the grey record (ASN, lock CTC),
booked at most once → bill row and ledger postings together. A refused bill goes to the
`exceptions` table, never to the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Literal

from cardcore.bcd import from_bcd, parse_bcd_dt
from cardcore.errors import DecodeError, FuelsimError
from cardcore.ports import Hsm
from cardcore.records import BILL_BODY, Bill
from host_sim.access import station_of
from host_sim.db import Database, returned_id, transaction, utc_text
from host_sim.ledger import Leg, card_account, post, station_account

MAX_BATCH = 500

Status = Literal["accepted", "duplicate", "rejected"]


class BillType(IntEnum):
    """[SC] byte 4 of a dispenser bill (the same values as terminal_sim.fuelling.BillType)."""

    FUELLING = 0x00
    ESCAPE = 0x01
    REDEBIT = 0x02


# Reasons a bill is refused (the `reason` of a rejected result and of its exceptions row).
REASONS = {
    "E_BILL_CHECK": "the XOR check byte (127) does not match bytes 0–126",
    "E_BILL_TMAC": "the PSAM's TMAC over bytes 0–90 does not verify",
    "E_BILL_TYPE": "byte 4 is not a known bill type (00 fuelling, 01 escape, 02 re-debit)",
    "E_BILL_FIELD": "a field is out of range (ASN or dt not BCD, counter zero, …)",
    "E_BILL_TAC": "the card's TAC (unlock TAC, or GTAC for an escape bill) does not verify",
    "E_BILL_PSAM_TAC": "the PSAM TAC does not verify, or differs from the grey record's",
    "E_BILL_TERMINAL": "the bill's terminal is not one of the uploading terminal's station",
    "E_BILL_CONFLICT": "another bill with the same (term, PSAM TTC, type) is on file",
    "E_BILL_GREY_MISMATCH": "the grey record (ASN, lock CTC) is already booked differently",
}


@dataclass(frozen=True)
class Verdict:
    """What phase 1 proved about one bill; `reason` None means it may be stored."""

    raw: bytes
    bill: Bill | None
    reason: str | None = None
    message: str = ""
    psam_tac_verified: bool = False


@dataclass(frozen=True)
class BillOutcome:
    index: int
    status: Status
    bill_id: int | None = None
    reason: str | None = None
    message: str = ""
    booked: bool = False
    transaction_id: int | None = None
    exception_id: int | None = None


def lock_ctc(bill: Bill) -> int:
    """The card's offline CTC at GREY LOCK: an escape bill carries it, the others carry +1."""
    return bill.ctc if bill.tx_type == BillType.ESCAPE else bill.ctc - 1


def _refuse(raw: bytes, bill: Bill | None, reason: str, message: str) -> Verdict:
    return Verdict(raw, bill, reason, message)


def check_bill(hsm: Hsm, raw: bytes, key_set: str = "DEV", tmac: bytes | None = None) -> Verdict:
    """Phase 1: the checks that need only the bill and the HSM (`tmac`: the HSM's TMAC over
    bytes 0–90 when the caller already has it)."""
    try:
        bill = Bill.from_bytes(raw)
    except DecodeError as exc:
        return _refuse(raw, None, "E_BILL_CHECK", str(exc))
    expected = hsm.bill_tmac(bill.body(), key_set) if tmac is None else tmac
    if not hmac.compare_digest(expected, bill.tmac):
        return _refuse(raw, bill, "E_BILL_TMAC", "TMAC does not verify over bytes 0–90")
    if bill.tx_type not in set(BillType):
        return _refuse(raw, bill, "E_BILL_TYPE", f"unknown bill type {bill.tx_type:02X}")
    kind = BillType(bill.tx_type)
    try:
        from_bcd(bill.asn, "ASN")
        parse_bcd_dt(bill.dt)
    except DecodeError as exc:
        return _refuse(raw, bill, "E_BILL_FIELD", str(exc))
    if kind == BillType.ESCAPE and bill.psam_ttc == 0:
        return _refuse(raw, bill, "E_BILL_FIELD", "escape bill with PSAM TTC 0 (no lock TTC)")
    if kind != BillType.ESCAPE and bill.ctc == 0:
        return _refuse(raw, bill, "E_BILL_FIELD", f"{kind.name.lower()} bill with CTC 0")
    asn8 = bill.asn[2:]
    try:
        if kind == BillType.ESCAPE:
            lock_ttc = bill.psam_ttc - 1
            if not hsm.verify_gtac(
                asn8,
                balance=bill.balance_after + bill.amount,
                term=bill.term,
                ttc=lock_ttc,
                dt=bill.dt,
                gtac=bill.tac,
                key_set=key_set,
            ):
                return _refuse(raw, bill, "E_BILL_TAC", "GTAC of the grey lock does not verify")
            if not hsm.verify_psam_tac(
                asn8,
                amount=bill.amount,
                lock_term=bill.term,
                lock_ttc=lock_ttc,
                lock_dt=bill.dt,
                tac=bill.psam_tac,
                key_set=key_set,
            ):
                return _refuse(raw, bill, "E_BILL_PSAM_TAC", "PSAM TAC does not verify")
            return Verdict(raw, bill, psam_tac_verified=True)
        if not hsm.verify_unlock_tac(
            asn8,
            amount=bill.amount,
            term=bill.term,
            ttc=bill.psam_ttc,
            dt=bill.dt,
            tac=bill.tac,
            key_set=key_set,
        ):
            return _refuse(raw, bill, "E_BILL_TAC", "debit-for-unlock TAC does not verify")
    except FuelsimError as exc:  # the HSM refused the inputs (e.g. a balance past 32 bits)
        return _refuse(raw, bill, "E_BILL_FIELD", f"HSM refused the bill's fields: {exc}")
    return Verdict(raw, bill)


def record_exception(
    conn: sqlite3.Connection,
    raw: bytes,
    reason: str,
    message: str,
    *,
    asn: bytes,
    term: bytes,
    psam_ttc: int,
    kind: int,
    record: str = "bill",
    uploader: str,
    ak: str,
    now: datetime,
) -> int:
    """One `exceptions` row per distinct refused record (by SHA-256); a re-upload bumps `seen`.
    `kind` is a bill's type byte, or the card's transaction type of a store sale."""
    stamp = utc_text(now)
    row = conn.execute(
        "INSERT INTO exceptions (raw_sha256, raw, reason, message, asn, term, psam_ttc,"
        " bill_type, uploaded_by, ak, first_seen, last_seen, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (raw_sha256) DO UPDATE SET reason = excluded.reason,"
        " message = excluded.message, uploaded_by = excluded.uploaded_by, ak = excluded.ak,"
        " last_seen = excluded.last_seen, seen = exceptions.seen + 1 RETURNING id",
        (
            hashlib.sha256(raw).hexdigest(),
            raw,
            reason,
            message,
            asn.hex().upper(),
            term.hex().upper(),
            psam_ttc,
            kind,
            uploader,
            ak,
            stamp,
            stamp,
            record,
        ),
    ).fetchall()
    return int(row[0][0])


def store_bill(
    conn: sqlite3.Connection,
    index: int,
    verdict: Verdict,
    *,
    uploader: str,
    ak: str,
    now: datetime,
) -> BillOutcome:
    """Phase 2 for one bill, in one committed transaction."""
    with transaction(conn):
        return _store(conn, index, verdict, uploader=uploader, ak=ak, now=now)


def _store(
    conn: sqlite3.Connection,
    index: int,
    verdict: Verdict,
    *,
    uploader: str,
    ak: str,
    now: datetime,
    stations: dict[str, str] | None = None,
) -> BillOutcome:
    """`stations` caches terminal → station within one transaction (a batch)."""
    known = {} if stations is None else stations

    def station_id(terminal: str) -> str:
        found = known.get(terminal)
        if found is None:
            found = known[terminal] = station_of(conn, terminal)[0]
        return found

    def reject(reason: str, message: str) -> BillOutcome:
        raw = verdict.raw
        exception_id = record_exception(
            conn,
            raw,
            reason,
            message,
            asn=raw[12:22],
            term=raw[53:59],
            psam_ttc=int.from_bytes(raw[59:63], "big"),
            kind=raw[4],
            uploader=uploader,
            ak=ak,
            now=now,
        )
        return BillOutcome(
            index, "rejected", reason=reason, message=message, exception_id=exception_id
        )

    bill = verdict.bill
    if verdict.reason is not None or bill is None:
        return reject(verdict.reason or "E_BILL_CHECK", verdict.message)
    term = bill.term.hex().upper()
    station = station_id(uploader)
    if station_id(term) != station:
        return reject(
            "E_BILL_TERMINAL", f"terminal {term} is not of station {station} of uploader {uploader}"
        )
    same = conn.execute(
        "SELECT b.id, b.raw, COALESCE(b.txn_id, g.txn_id) AS txn_id FROM bills b"
        " LEFT JOIN grey_records g ON g.asn = b.asn AND g.lock_ctc = b.lock_ctc"
        " WHERE b.term = ? AND b.psam_ttc = ? AND b.bill_type = ?",
        (term, bill.psam_ttc, bill.tx_type),
    ).fetchone()
    if same is not None:
        if bytes(same["raw"]) == verdict.raw:
            return BillOutcome(
                index,
                "duplicate",
                bill_id=int(same["id"]),
                message="already stored",
                transaction_id=same["txn_id"],
            )
        return reject(
            "E_BILL_CONFLICT",
            f"bill #{same['id']} has the same term {term}, PSAM TTC {bill.psam_ttc} and type"
            " but different bytes",
        )
    asn = bill.asn.hex().upper()
    locked_at = lock_ctc(bill)
    escape = bill.tx_type == BillType.ESCAPE
    slot = "escape_bill_id" if escape else "settle_bill_id"
    grey = conn.execute(
        "SELECT * FROM grey_records WHERE asn = ? AND lock_ctc = ?", (asn, locked_at)
    ).fetchone()

    def insert_bill(txn_id: int | None, psam_tac_verified: bool) -> int:
        cursor = conn.execute(
            "INSERT INTO bills (term, psam_ttc, bill_type, raw, asn, ctc, lock_ctc, amount,"
            " balance_after, bill_dt, bill_ttc, psam_tac_verified, txn_id, uploaded_by,"
            " station_id, ak, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?) RETURNING id",
            (
                term,
                bill.psam_ttc,
                bill.tx_type,
                verdict.raw,
                asn,
                bill.ctc,
                locked_at,
                bill.amount,
                bill.balance_after,
                parse_bcd_dt(bill.dt).isoformat(),
                bill.bill_ttc,
                int(psam_tac_verified),
                txn_id,
                uploader,
                station,
                ak,
                utc_text(now),
            ),
        )
        return returned_id(cursor)

    if grey is None:
        txn_id = None
        if bill.amount:
            txn_id = post(
                conn,
                kind=f"sale.{BillType(bill.tx_type).name.lower()}",
                memo=(
                    f"{BillType(bill.tx_type).name.lower()} bill term {term} PSAM TTC "
                    f"{bill.psam_ttc}: card {asn} lock CTC {locked_at}, {bill.amount} fen"
                ),
                legs=[
                    Leg(card_account(asn), bill.amount),
                    Leg(station_account(station), -bill.amount),
                ],
                now=now,
            )
        bill_id = insert_bill(txn_id, verdict.psam_tac_verified)
        conn.execute(
            f"INSERT INTO grey_records (asn, lock_ctc, amount, status, psam_tac,"
            f" psam_tac_verified, txn_id, {slot}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                asn,
                locked_at,
                bill.amount,
                "open" if escape else "settled",
                bill.psam_tac,
                int(verdict.psam_tac_verified),
                txn_id,
                bill_id,
            ),
        )
        return BillOutcome(
            index,
            "accepted",
            bill_id=bill_id,
            message="booked" if txn_id else "stored (zero amount: nothing to book)",
            booked=txn_id is not None,
            transaction_id=txn_id,
        )

    first = grey["escape_bill_id"] or grey["settle_bill_id"]
    if grey["amount"] != bill.amount:
        return reject(
            "E_BILL_GREY_MISMATCH",
            f"grey record (card {asn}, lock CTC {locked_at}) was booked for {grey['amount']} fen"
            f" by bill #{first}; this bill says {bill.amount} fen",
        )
    if grey[slot] is not None:
        what = "an escape bill" if escape else "a settling (fuelling or re-debit) bill"
        return reject(
            "E_BILL_GREY_MISMATCH",
            f"grey record (card {asn}, lock CTC {locked_at}) already has {what}: #{grey[slot]}",
        )
    if not hmac.compare_digest(bytes(grey["psam_tac"]), bill.psam_tac):
        return reject(
            "E_BILL_PSAM_TAC",
            f"PSAM TAC differs from bill #{first} of the same grey record (card {asn},"
            f" lock CTC {locked_at})",
        )
    verified = bool(grey["psam_tac_verified"]) or verdict.psam_tac_verified
    bill_id = insert_bill(None, verified)
    conn.execute(
        f"UPDATE grey_records SET {slot} = ?, status = 'settled', psam_tac_verified = ?"
        " WHERE asn = ? AND lock_ctc = ?",
        (bill_id, int(verified), asn, locked_at),
    )
    if verified:
        conn.execute("UPDATE bills SET psam_tac_verified = 1 WHERE id = ?", (first,))
    return BillOutcome(
        index,
        "accepted",
        bill_id=bill_id,
        message=f"same grey record as bill #{first}, booked once there",
        booked=False,
        transaction_id=grey["txn_id"],
    )


def upload_bills(
    db: Database,
    hsm: Hsm,
    raws: Sequence[bytes],
    *,
    uploader: str,
    ak: str,
    now: datetime,
    key_set: str = "DEV",
) -> list[BillOutcome]:
    """Check every bill, then store the batch in one transaction, committed on return.

    One commit (one fsync under synchronous=FULL) per batch instead of per bill: bills are
    idempotent by (term, PSAM TTC, type), so a batch that fails as a whole is simply sent again.
    """
    # One HSM operation for the batch's TMACs (bytes 0–90 of each, as the PSAM signed them).
    tmacs = hsm.bill_tmacs([raw[: BILL_BODY.size] for raw in raws], key_set)
    verdicts = [check_bill(hsm, raw, key_set, t) for raw, t in zip(raws, tmacs, strict=True)]
    stations: dict[str, str] = {}
    with db.connect() as conn, transaction(conn):
        return [
            _store(conn, index, verdict, uploader=uploader, ak=ak, now=now, stations=stations)
            for index, verdict in enumerate(verdicts)
        ]
