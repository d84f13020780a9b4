"""Online unlock (联机解扣) on the host: the escape bill's grey record decides, MAC1 to MAC3.
The decisions are listed in `host_sim.online_ops`; this module keeps them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cardcore.bcd import bcd_dt, parse_bcd_dt
from cardcore.records import Bill
from host_sim.db import utc_text
from host_sim.online_base import (
    E_ALREADY_UNLOCKED,
    E_BAD_MAC1,
    E_BAD_MAC3,
    E_BILL_MISMATCH,
    E_NO_ESCAPE_BILL,
    E_NOT_AUTHORIZED,
    E_TOO_EARLY,
    OnlineRefused,
    OpsBase,
    asn_text,
    hex_upper,
    sized,
    station_prefix,
    wall,
)


@dataclass(frozen=True)
class UnlockAuthorization:
    amount: int
    dt: bytes
    mac2: bytes
    lock_ctc: int = 0


@dataclass(frozen=True)
class BookedUnlock:
    asn: bytes
    lock_ctc: int
    amount: int
    balance_after: int
    online_ctc: int
    term: bytes
    dt: bytes
    mac3: bytes
    transaction_id: int | None  # the grey record's sale, booked when the escape bill arrived


@dataclass(frozen=True)
class EscapeRecord:
    bill: Bill
    bill_id: int
    settled: bool = False
    unlocked: bool = False


class UnlockOps(OpsBase):
    # Online unlock ------------------------------------------------------------------------------
    def authorize_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
        now: datetime,
        ak: str = "",
    ) -> UnlockAuthorization:
        card = asn_text(asn)
        for name, value, size in (("rand", rand, 4), ("term", term, 6), ("MAC1", mac1, 4)):
            sized(name, value, size)
        if not self._hsm(
            lambda: self.hsm.verify_online_unlock_mac1(
                asn[2:],
                rand=rand,
                online_ctc=online_ctc,
                balance=balance,
                offline_ctc=offline_ctc,
                term=term,
                mac1=mac1,
                key_set=self.key_set,
            )
        ):
            raise OnlineRefused(E_BAD_MAC1, "the card's MAC1 does not verify")
        lock_ctc = offline_ctc - 1
        with self.db.write() as conn:
            self._not_blacklisted(conn, card)
            grey, bill = self._escape(conn, card, lock_ctc)
            moment = wall(now)
            if bill.balance_after + bill.amount != balance:
                raise OnlineRefused(
                    E_BILL_MISMATCH,
                    f"the card holds {balance} fen, the bill locked "
                    f"{bill.balance_after + bill.amount}",
                )
            if grey["status"] != "settled" and station_prefix(term) != station_prefix(bill.term):
                allowed = parse_bcd_dt(bill.dt) + self.escape_wait
                if moment < allowed:
                    raise OnlineRefused(
                        E_TOO_EARLY,
                        f"locked at station {station_prefix(bill.term).hex()}: another station "
                        f"may unlock it from {allowed:%Y-%m-%d %H:%M:%S}",
                        allowed_from=allowed.isoformat(),
                    )
            dt = bcd_dt(moment)
            mac2 = self._hsm(
                lambda: self.hsm.online_unlock_mac2(
                    asn[2:],
                    rand=rand,
                    online_ctc=online_ctc,
                    amount=bill.amount,
                    term=term,
                    dt=dt,
                    key_set=self.key_set,
                )
            )
            conn.execute(
                "INSERT INTO online_unlocks (asn, lock_ctc, escape_bill_id, rand, online_ctc,"
                " balance, amount, term, dt, status, ak, authorized_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'authorized', ?, ?)"
                " ON CONFLICT (asn, lock_ctc) DO UPDATE SET rand = excluded.rand,"
                " online_ctc = excluded.online_ctc, balance = excluded.balance,"
                " term = excluded.term, dt = excluded.dt, ak = excluded.ak,"
                " authorized_at = excluded.authorized_at",
                (
                    card,
                    lock_ctc,
                    grey["escape_bill_id"],
                    hex_upper(rand),
                    online_ctc,
                    balance,
                    bill.amount,
                    hex_upper(term),
                    dt.hex(),
                    ak,
                    utc_text(now),
                ),
            )
        return UnlockAuthorization(bill.amount, dt, mac2, lock_ctc)

    @staticmethod
    def _escape(conn: sqlite3.Connection, card: str, lock_ctc: int) -> tuple[sqlite3.Row, Bill]:
        """The grey record and its escape bill, if it may still be unlocked online."""
        grey = conn.execute(
            "SELECT g.*, b.raw AS escape_raw FROM grey_records g"
            " LEFT JOIN bills b ON b.id = g.escape_bill_id WHERE g.asn = ? AND g.lock_ctc = ?",
            (card, lock_ctc),
        ).fetchone()
        if grey is not None and grey["unlocked_at"] is not None:
            raise OnlineRefused(E_ALREADY_UNLOCKED, f"the lock of CTC {lock_ctc} was unlocked")
        if grey is not None and grey["settle_bill_id"] is not None:
            raise OnlineRefused(
                E_ALREADY_UNLOCKED,
                f"the lock of CTC {lock_ctc} was settled at a pump"
                f" (bill #{grey['settle_bill_id']})",
            )
        if grey is None or grey["escape_raw"] is None:
            raise OnlineRefused(
                E_NO_ESCAPE_BILL, f"no escape bill for this card's lock (CTC {lock_ctc})"
            )
        return grey, Bill.from_bytes(bytes(grey["escape_raw"]))

    def confirm_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance_after: int,
        amount: int,
        term: bytes,
        dt: bytes,
        mac3: bytes,
        now: datetime,
    ) -> tuple[BookedUnlock, bool]:
        """Check the card's MAC3 and record the unlock: (it, True when this call confirmed it)."""
        card = asn_text(asn)
        for name, value, size in (
            ("rand", rand, 4),
            ("term", term, 6),
            ("dt", dt, 7),
            ("MAC3", mac3, 4),
        ):
            sized(name, value, size)
        with self.db.write() as conn:
            done = conn.execute(
                "SELECT * FROM online_unlocks WHERE asn = ? AND online_ctc = ?"
                " AND status = 'confirmed' AND mac3 = ?",
                (card, online_ctc, hex_upper(mac3)),
            ).fetchone()
            if done is not None:
                return _booked_unlock(done), False
            pending = conn.execute(
                "SELECT * FROM online_unlocks WHERE asn = ? AND online_ctc = ? AND rand = ?"
                " AND status = 'authorized'",
                (card, online_ctc, hex_upper(rand)),
            ).fetchone()
            if pending is None or (pending["amount"], pending["term"], pending["dt"]) != (
                amount,
                hex_upper(term),
                dt.hex(),
            ):
                raise OnlineRefused(
                    E_NOT_AUTHORIZED, "no online unlock was authorised with these values"
                )
            if not self._hsm(
                lambda: self.hsm.verify_online_unlock_mac3(
                    asn[2:],
                    rand=rand,
                    online_ctc=online_ctc,
                    balance_after=balance_after,
                    amount=amount,
                    term=term,
                    dt=dt,
                    mac3=mac3,
                    key_set=self.key_set,
                )
            ):
                raise OnlineRefused(E_BAD_MAC3, "the card's MAC3 does not verify")
            key = (card, pending["lock_ctc"])
            (txn,) = conn.execute(
                "SELECT txn_id FROM grey_records WHERE asn = ? AND lock_ctc = ?", key
            ).fetchone()
            conn.execute(
                "UPDATE online_unlocks SET status = 'confirmed', balance_after = ?, mac3 = ?,"
                " txn_id = ?, confirmed_at = ? WHERE asn = ? AND lock_ctc = ?",
                (balance_after, hex_upper(mac3), txn, utc_text(now), *key),
            )
            conn.execute(
                "UPDATE grey_records SET unlocked_at = ? WHERE asn = ? AND lock_ctc = ?",
                (utc_text(now), *key),
            )
            row = conn.execute(
                "SELECT * FROM online_unlocks WHERE asn = ? AND lock_ctc = ?", key
            ).fetchone()
            return _booked_unlock(row), True

    # Clearing's word, and reading back ----------------------------------------------------------
    def settle_escape_bill(self, asn: bytes, lock_ctc: int) -> None:
        """Clearing has settled the escape bill: any station may now unlock the card."""
        card = asn_text(asn)
        with self.db.write() as conn:
            updated = conn.execute(
                "UPDATE grey_records SET status = 'settled' WHERE asn = ? AND lock_ctc = ?"
                " AND escape_bill_id IS NOT NULL",
                (card, lock_ctc),
            ).rowcount
        if updated != 1:
            raise OnlineRefused(
                E_NO_ESCAPE_BILL, f"no escape bill for card {card}, lock CTC {lock_ctc}"
            )

    def unlocks(self) -> list[BookedUnlock]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM online_unlocks WHERE status = 'confirmed'"
                " ORDER BY confirmed_at, txn_id, asn, lock_ctc"
            ).fetchall()
        return [_booked_unlock(row) for row in rows]

    def escape_records(self) -> dict[tuple[bytes, int], EscapeRecord]:
        """Every escape bill the host holds, by (ASN, lock CTC)."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT g.asn, g.lock_ctc, g.status, g.settle_bill_id, g.unlocked_at, b.id, b.raw"
                " FROM grey_records g JOIN bills b ON b.id = g.escape_bill_id"
            ).fetchall()
        return {
            (bytes.fromhex(r["asn"]), int(r["lock_ctc"])): EscapeRecord(
                Bill.from_bytes(bytes(r["raw"])),
                int(r["id"]),
                settled=r["status"] == "settled",
                unlocked=r["unlocked_at"] is not None or r["settle_bill_id"] is not None,
            )
            for r in rows
        }


def _booked_unlock(row: sqlite3.Row) -> BookedUnlock:
    return BookedUnlock(
        bytes.fromhex(row["asn"]),
        int(row["lock_ctc"]),
        int(row["amount"]),
        int(row["balance_after"]),
        int(row["online_ctc"]),
        bytes.fromhex(row["term"]),
        bytes.fromhex(row["dt"]),
        bytes.fromhex(row["mac3"]),
        None if row["txn_id"] is None else int(row["txn_id"]),
    )
