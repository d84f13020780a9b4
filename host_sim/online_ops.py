"""The host's online operations (spec §5) over its database: load (圈存), online unlock (联机解扣)
and the secure-messaging MACs of maintenance commands. No HTTP here: `routes_online` serves these
calls, and terminal_sim's in-process host calls them directly.

Each decision is one `BEGIN IMMEDIATE` transaction, committed before the answer: an authorisation
given is on disk (and survives a restart), a booking happens together with the row that records
it, and a refusal changes nothing. Refusals raise `OnlineRefused` with one of the `E_…` codes
below; `routes_online.STATUS` gives each its HTTP status.

Load (圈存):
- MAC1 (INITIALIZE FOR LOAD) is checked first, then the blacklist (`E_CARD_BLOCKED`); the host
  answers MAC2 with its date-time and keeps the authorisation under (ASN, online CTC). A card
  that asks again for the same online CTC replaces the pending authorisation: its valid MAC1 shows
  the first MAC2 was never used. One whose load for that CTC is booked is refused
  (`E_CTC_REUSED`: a copied card).
- The confirmation must repeat what was authorised (amount, new balance = old + amount, term,
  dt; else `E_NOT_AUTHORIZED`) and carry the card's load TAC (`E_BAD_TAC`). It books the load
  once: debit `cash:<station>` (the cash the terminal's station took), credit `card:<ASN>`. The
  same confirmation again books nothing more. A sub (fleet) card's load is debited to its
  reserve `reserve:<ASN>` instead when the reserve covers the whole amount (`cards.load_source`):
  its master paid for it, no cash is taken.

Online unlock (联机解扣):
- The host debits what the escape bill says; without the bill it refuses (`E_NO_ESCAPE_BILL`).
  The bill is the one uploaded through `host_sim.bills`, found by its grey record.
- A grey record is (ASN, lock CTC). GREY LOCK moved the offline CTC on by one, so the lock CTC is
  the offline CTC that INITIALIZE FOR ONLINE UNLOCK reports, minus one.
- **Station** = the first 4 bytes (8 BCD digits) of the 6-byte terminal id; the last 2 bytes number
  the device in the station (`440101000001` and `440101000101` are both station `44010100`). A
  terminal of the station that locked the card may unlock at once; elsewhere only `escape_wait`
  (48 h) after the escape bill's dt, or once the bill is settled (`settle_escape_bill`).
- A record whose MAC3 the host confirmed is never unlocked again (`E_ALREADY_UNLOCKED`), nor is one
  a pump already settled with a fuelling or re-debit bill. One that was authorised but not
  confirmed may be authorised again: a valid MAC1 from INITIALIZE FOR ONLINE UNLOCK proves the
  card is still grey, so the first MAC2 was never used.
- The card's balance must be the one the bill locked (`E_BILL_MISMATCH`).
- The money moved when the escape bill was uploaded (the grey record's sale: card debited to the
  locking station); the confirmed unlock is linked to that transaction and books nothing again.
- A blacklisted card is neither loaded nor unlocked (`E_CARD_BLOCKED`), and MAC1 is checked
  before anything else, so a forged request learns nothing about the account.

BCD date-times are read and written as the wall time of the host's clock (UTC for a server on
the system clock; the simulated clock in scenarios).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt, decode_pin
from cardcore.layout import TxType
from host_sim import access, cards, ledger
from host_sim.db import utc_text
from host_sim.online_base import (
    E_ALREADY_UNLOCKED,
    E_BAD_BILL,
    E_BAD_MAC1,
    E_BAD_MAC3,
    E_BAD_TAC,
    E_BILL_MISMATCH,
    E_CARD_BLOCKED,
    E_CTC_REUSED,
    E_FORMAT,
    E_NO_ESCAPE_BILL,
    E_NOT_AUTHORIZED,
    E_TOO_EARLY,
    ESCAPE_WAIT,
    OnlineRefused,
    asn_text,
    hex_upper,
    sized,
    station_prefix,
    wall,
)
from host_sim.online_unlock import BookedUnlock, EscapeRecord, UnlockAuthorization, UnlockOps

__all__ = [
    "ESCAPE_WAIT",
    "E_ALREADY_UNLOCKED",
    "E_BAD_BILL",
    "E_BAD_MAC1",
    "E_BAD_MAC3",
    "E_BAD_TAC",
    "E_BILL_MISMATCH",
    "E_CARD_BLOCKED",
    "E_CTC_REUSED",
    "E_FORMAT",
    "E_NOT_AUTHORIZED",
    "E_NO_ESCAPE_BILL",
    "E_TOO_EARLY",
    "BookedLoad",
    "BookedUnlock",
    "EscapeRecord",
    "LoadAuthorization",
    "OnlineOps",
    "OnlineRefused",
    "UnlockAuthorization",
    "station_prefix",
]


@dataclass(frozen=True)
class LoadAuthorization:
    mac2: bytes
    dt: bytes


@dataclass(frozen=True)
class BookedLoad:
    asn: bytes
    amount: int
    new_balance: int
    online_ctc: int
    term: bytes
    dt: bytes
    tac: bytes
    transaction_id: int

    @property
    def asn8(self) -> bytes:
        return self.asn[2:]


class OnlineOps(UnlockOps):
    """The online operations over one host database and HSM."""

    # Load ---------------------------------------------------------------------------------------
    def authorize_load(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        old_balance: int,
        amount: int,
        term: bytes,
        mac1: bytes,
        now: datetime,
        ak: str = "",
    ) -> LoadAuthorization:
        card = asn_text(asn)
        for name, value, size in (("rand", rand, 4), ("term", term, 6), ("MAC1", mac1, 4)):
            sized(name, value, size)
        if amount <= 0:
            raise OnlineRefused(E_FORMAT, "a load is a positive number of fen")
        if not self._hsm(
            lambda: self.hsm.verify_load_mac1(
                asn[2:],
                rand=rand,
                online_ctc=online_ctc,
                old_balance=old_balance,
                amount=amount,
                tx_type=TxType.ED_LOAD,
                term=term,
                mac1=mac1,
                key_set=self.key_set,
            )
        ):
            raise OnlineRefused(E_BAD_MAC1, "the card's MAC1 does not verify")
        with self.db.write() as conn:
            self._not_blacklisted(conn, card)
            row = conn.execute(
                "SELECT status FROM load_authorizations WHERE asn = ? AND online_ctc = ?",
                (card, online_ctc),
            ).fetchone()
            if row is not None and row["status"] == "booked":
                raise OnlineRefused(
                    E_CTC_REUSED, f"the load of online CTC {online_ctc} is booked already"
                )
            dt = bcd_dt(wall(now))
            mac2 = self._hsm(
                lambda: self.hsm.load_mac2(
                    asn[2:],
                    rand=rand,
                    online_ctc=online_ctc,
                    amount=amount,
                    tx_type=TxType.ED_LOAD,
                    term=term,
                    dt=dt,
                    key_set=self.key_set,
                )
            )
            station, _ = access.station_of(conn, hex_upper(term))
            conn.execute(
                "INSERT INTO load_authorizations (asn, online_ctc, old_balance, amount, term,"
                " station_id, dt, status, ak, authorized_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'authorized', ?, ?)"
                " ON CONFLICT (asn, online_ctc) DO UPDATE SET old_balance = excluded.old_balance,"
                " amount = excluded.amount, term = excluded.term,"
                " station_id = excluded.station_id, dt = excluded.dt, ak = excluded.ak,"
                " authorized_at = excluded.authorized_at",
                (
                    card,
                    online_ctc,
                    old_balance,
                    amount,
                    hex_upper(term),
                    station,
                    dt.hex(),
                    ak,
                    utc_text(now),
                ),
            )
        return LoadAuthorization(mac2, dt)

    def confirm_load(
        self,
        asn: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
        now: datetime,
    ) -> tuple[BookedLoad, bool]:
        """Check the card's TAC and book the load: (the load, True when this call booked it)."""
        card = asn_text(asn)
        for name, value, size in (("term", term, 6), ("dt", dt, 7), ("TAC", tac, 4)):
            sized(name, value, size)
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT * FROM load_authorizations WHERE asn = ? AND online_ctc = ?",
                (card, online_ctc),
            ).fetchone()
            same = row is not None and (
                row["amount"],
                row["old_balance"] + row["amount"],
                row["term"],
                row["dt"],
            ) == (amount, new_balance, hex_upper(term), dt.hex())
            if same and row["status"] == "booked" and row["tac"] == hex_upper(tac):
                return _booked_load(row), False
            if not same or row["status"] != "authorized":
                raise OnlineRefused(E_NOT_AUTHORIZED, "no load was authorised with these values")
            if not self._hsm(
                lambda: self.hsm.verify_load_tac(
                    asn[2:],
                    new_balance=new_balance,
                    online_ctc=online_ctc,
                    amount=amount,
                    tx_type=TxType.ED_LOAD,
                    term=term,
                    dt=dt,
                    tac=tac,
                    key_set=self.key_set,
                )
            ):
                raise OnlineRefused(E_BAD_TAC, "the card's load TAC does not verify")
            txn = ledger.post(
                conn,
                kind="load",
                memo=f"load at term {hex_upper(term)} online CTC {online_ctc}: card {card},"
                f" {amount} fen",
                legs=[
                    ledger.Leg(cards.load_source(conn, card, amount, row["station_id"]), amount),
                    ledger.Leg(ledger.card_account(card), -amount),
                ],
                now=now,
            )
            conn.execute(
                "UPDATE load_authorizations SET status = 'booked', tac = ?, txn_id = ?,"
                " booked_at = ? WHERE asn = ? AND online_ctc = ?",
                (hex_upper(tac), txn, utc_text(now), card, online_ctc),
            )
            row = conn.execute(
                "SELECT * FROM load_authorizations WHERE asn = ? AND online_ctc = ?",
                (card, online_ctc),
            ).fetchone()
            return _booked_load(row), True

    # Maintenance MACs ---------------------------------------------------------------------------
    def _sm_mac(self, asn: bytes, command: bytes, challenge: bytes) -> bytes:
        asn_text(asn)
        if len(challenge) not in (4, 8):
            raise OnlineRefused(E_FORMAT, "a challenge is 4 or 8 bytes")
        return self._hsm(
            lambda: self.hsm.secure_messaging_mac(
                asn[2:], command=command, challenge=challenge, key_set=self.key_set
            )
        )

    def store_flag_mac(self, asn: bytes, *, command: bytes, challenge: bytes) -> bytes:
        """`command` = CLA‖INS‖P1‖P2‖Lc‖data of the UPDATE BINARY writing EF15 byte 29."""
        allowed = {
            cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, bytes((flag,)))
            for flag in (layout.STORE_FLAG_ON, layout.STORE_FLAG_OFF)
        }
        if command not in allowed:
            raise OnlineRefused(E_FORMAT, "only the store flag (EF15 byte 29, 00 or 01) is signed")
        return self._sm_mac(asn, command, challenge)

    def block_mac(self, asn: bytes, *, challenge: bytes, permanent: bool = False) -> bytes:
        return self._sm_mac(asn, cmd.application_block_header(permanent), challenge)

    def unblock_mac(self, asn: bytes, *, challenge: bytes) -> bytes:
        return self._sm_mac(asn, cmd.application_unblock_header(), challenge)

    def reload_pin_mac(self, asn: bytes, *, pin_block: bytes) -> bytes:
        asn_text(asn)
        if decode_pin(pin_block) is None:
            raise OnlineRefused(E_FORMAT, "a PIN block is compressed BCD of 2 to 12 digits")
        return self._hsm(
            lambda: self.hsm.reload_pin_mac(asn[2:], pin=pin_block, key_set=self.key_set)
        )

    def loads(self) -> list[BookedLoad]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM load_authorizations WHERE status = 'booked' ORDER BY txn_id"
            ).fetchall()
        return [_booked_load(row) for row in rows]


def _booked_load(row: sqlite3.Row) -> BookedLoad:
    return BookedLoad(
        bytes.fromhex(row["asn"]),
        int(row["amount"]),
        int(row["old_balance"]) + int(row["amount"]),
        int(row["online_ctc"]),
        bytes.fromhex(row["term"]),
        bytes.fromhex(row["dt"]),
        bytes.fromhex(row["tac"]),
        int(row["txn_id"]),
    )
