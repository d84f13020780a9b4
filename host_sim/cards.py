"""The card registry: cards issued through the host, master cards and their sub (fleet) cards,
and the funds a master sets aside for each sub.

A card is `single`, `master` or `sub`; a sub names its master, which must be a master, active and
not reported lost when the sub is issued. Issuing allocates the next ASN of the host's range
(`HOST_ASN_PREFIX`, under the DEV issuer 0100 0114) unless the caller names one, asks the HSM to
personalise the card (the keys stay in the HSM: the host only checks the HSM can derive them),
records the card and opens its ledger account `card:<ASN>` (and `reserve:<ASN>` for a sub).

Allocation moves money in the ledger from the master's account to the sub's reserve: debit
`card:<master>`, credit `reserve:<sub>`, never more than the master's balance. Each allocation
carries the client's `request_id`; the same id again answers the first booking, so a retried call
books once. A load at the office for a sub card draws on the reserve when it covers the whole
amount (`load_source`), and on the station's cash otherwise.

Writes run in one `BEGIN IMMEDIATE` transaction (serialised on SQLite and PostgreSQL alike), so
the next ASN and the master's balance cannot change between the check and the booking.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cardcore.errors import FuelsimError
from cardcore.ports import Hsm
from host_sim import blacklist, ledger
from host_sim.db import Database, utc_text
from host_sim.errors import ApiError, bad_request

KINDS = ("single", "master", "sub")
HOST_ASN_PREFIX = "010001145"
"""Host-issued ASNs: the DEV issuer's `01000114`, then `5` and an 11-digit serial. The card
profiles use `010001144…` and generated test bills `010001140…`, so the ranges never meet."""
SERIAL_DIGITS = 20 - len(HOST_ASN_PREFIX)
ISSUER_ID = bytes.fromhex("10FFFFFFFFFFFFFF")  # the profiles' issuer id (DPK's first factor)


@dataclass(frozen=True)
class Card:
    asn: str
    kind: str
    master: str | None
    holder: str
    profile: str
    status: str
    issued_at: str
    issued_by: str


@dataclass(frozen=True)
class Allocation:
    request_id: str
    master: str
    sub: str
    amount: int
    transaction_id: int
    allocated_at: str
    booked_now: bool


def reserve_account(asn: str) -> str:
    return f"reserve:{asn}"


def unknown_card(asn: str, field: str = "asn") -> ApiError:
    return ApiError("E_UNKNOWN_CARD", 404, f"no card {asn} in the registry", asn=asn, field=field)


def not_master(card: Card) -> ApiError:
    return ApiError(
        "E_NOT_MASTER", 409, f"card {card.asn} is a {card.kind} card, not a master", asn=card.asn
    )


def _card(row: sqlite3.Row) -> Card:
    return Card(
        row["asn"],
        row["kind"],
        row["master_asn"],
        row["holder"],
        row["profile"],
        row["status"],
        row["issued_at"],
        row["issued_by"],
    )


def find(conn: sqlite3.Connection, asn: str) -> Card | None:
    row = conn.execute("SELECT * FROM cards WHERE asn = ?", (asn,)).fetchone()
    return None if row is None else _card(row)


def subs_of(conn: sqlite3.Connection, master: str) -> list[Card]:
    rows = conn.execute(
        "SELECT * FROM cards WHERE master_asn = ? ORDER BY asn", (master,)
    ).fetchall()
    return [_card(row) for row in rows]


def is_active(conn: sqlite3.Connection, card: Card) -> bool:
    """Active: not closed and not on the blacklist (a lost card funds nothing)."""
    return card.status == "active" and not blacklist.is_listed(conn, card.asn)


def _next_asn(conn: sqlite3.Connection) -> str:
    low, high = HOST_ASN_PREFIX + "0" * SERIAL_DIGITS, HOST_ASN_PREFIX + "9" * SERIAL_DIGITS
    row = conn.execute(
        "SELECT MAX(asn) FROM cards WHERE asn >= ? AND asn <= ?", (low, high)
    ).fetchone()
    serial = 1 if row[0] is None else int(str(row[0])[len(HOST_ASN_PREFIX) :]) + 1
    if serial >= 10**SERIAL_DIGITS:
        raise ApiError("E_ASN_EXHAUSTED", 409, "the host's ASN range is used up")
    return f"{HOST_ASN_PREFIX}{serial:0{SERIAL_DIGITS}d}"


def _master_for_sub(conn: sqlite3.Connection, master: str) -> None:
    card = find(conn, master)
    if card is None:
        raise unknown_card(master, "master")
    if card.kind != "master":
        raise not_master(card)
    if not is_active(conn, card):
        raise ApiError(
            "E_CARD_NOT_ACTIVE", 409, f"master card {master} is closed or reported lost", asn=master
        )


def issue(
    db: Database,
    hsm: Hsm,
    *,
    kind: str,
    holder: str,
    profile: str,
    master: str | None,
    asn: str | None,
    ak: str,
    now: datetime,
    key_set: str = "DEV",
) -> Card:
    """Record a new card and open its accounts; refusals change nothing."""
    if kind not in KINDS:
        raise bad_request("kind", f"must be one of {', '.join(KINDS)}")
    if (kind == "sub") != (master is not None):
        raise bad_request("master", "a sub card names its master; other cards name none")
    with db.write() as conn:
        if master is not None:
            _master_for_sub(conn, master)
        number = asn if asn is not None else _next_asn(conn)
        if find(conn, number) is not None:
            raise ApiError("E_CARD_EXISTS", 409, f"card {number} is issued already", asn=number)
        try:  # the HSM derives the card's keys; the host keeps none of them
            hsm.personalise_card(bytes.fromhex(number)[2:], ISSUER_ID, key_set)
        except FuelsimError as exc:
            raise ApiError(
                "E_HSM_REFUSED", 422, f"the HSM cannot personalise card {number}: {exc}"
            ) from None
        conn.execute(
            "INSERT INTO cards (asn, kind, master_asn, holder, profile, status, issued_at,"
            " issued_by) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
            (number, kind, master, holder, profile, utc_text(now), ak),
        )
        ledger.account_id(conn, ledger.card_account(number), now)
        if kind == "sub":
            ledger.account_id(conn, reserve_account(number), now)
        card = find(conn, number)
    assert card is not None
    return card


def _allocation(row: sqlite3.Row, booked_now: bool) -> Allocation:
    return Allocation(
        row["request_id"],
        row["master_asn"],
        row["sub_asn"],
        int(row["amount"]),
        int(row["txn_id"]),
        row["allocated_at"],
        booked_now,
    )


def allocate(
    db: Database,
    *,
    master: str,
    sub: str,
    amount: int,
    request_id: str,
    ak: str,
    now: datetime,
) -> Allocation:
    """Move `amount` fen from the master's account to the sub's reserve, once per request id."""
    if amount <= 0:
        raise bad_request("amount", "an allocation is a positive number of fen")
    with db.write() as conn:
        row = conn.execute(
            "SELECT * FROM card_allocations WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is not None:
            if (row["master_asn"], row["sub_asn"], int(row["amount"])) != (master, sub, amount):
                raise ApiError(
                    "E_REQUEST_ID_REUSED",
                    409,
                    f"request {request_id!r} was an allocation of {row['amount']} fen from"
                    f" {row['master_asn']} to {row['sub_asn']}",
                    request_id=request_id,
                )
            return _allocation(row, False)
        owner = find(conn, master)
        if owner is None:
            raise unknown_card(master)
        if owner.kind != "master":
            raise not_master(owner)
        target = find(conn, sub)
        if target is None:
            raise unknown_card(sub, "sub")
        if target.kind != "sub" or target.master != master:
            raise ApiError(
                "E_NOT_SUB_OF", 409, f"card {sub} is not a sub card of {master}", asn=sub
            )
        for card in (owner, target):
            if not is_active(conn, card):
                raise ApiError(
                    "E_CARD_NOT_ACTIVE",
                    409,
                    f"card {card.asn} is closed or reported lost",
                    asn=card.asn,
                )
        available = ledger.balance(conn, ledger.card_account(master))
        if amount > available:
            raise ApiError(
                "E_INSUFFICIENT_FUNDS",
                402,
                f"master card {master} holds {available} fen, {amount} asked",
                balance=available,
                amount=amount,
            )
        txn = ledger.post(
            conn,
            kind="allocation",
            memo=f"allocation {request_id}: {amount} fen from master {master} to sub {sub}",
            legs=[
                ledger.Leg(ledger.card_account(master), amount),
                ledger.Leg(reserve_account(sub), -amount),
            ],
            now=now,
        )
        conn.execute(
            "INSERT INTO card_allocations (request_id, master_asn, sub_asn, amount, txn_id, ak,"
            " allocated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, master, sub, amount, txn, ak, utc_text(now)),
        )
        return Allocation(request_id, master, sub, amount, txn, utc_text(now), True)


def load_source(conn: sqlite3.Connection, asn: str, amount: int, station_id: str) -> str:
    """The account a load of `amount` fen onto card `asn` is debited to: the sub card's reserve
    when it covers the whole amount (no cash changes hands), else the station's cash."""
    row = conn.execute("SELECT kind FROM cards WHERE asn = ?", (asn,)).fetchone()
    if row is not None and row["kind"] == "sub":
        reserve = reserve_account(asn)
        if ledger.balance(conn, reserve) >= amount:
            return reserve
    return f"cash:{station_id}"
