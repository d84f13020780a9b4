"""What terminals ask of the host, as one Protocol, and the host run in this process.

`OnlineHost` is the issuing office's and the store POS's view of the host: MAC2 and TAC checks
for loads, secure-messaging MACs for maintenance commands, the online unlock of a grey card
(spec §5) and the blacklist. Two hosts implement it with the same code:
- `InProcessHost` runs host_sim's own decisions (`host_sim.online_ops`, `host_sim.bills`,
  `host_sim.blacklist`) over a host database in this process, without HTTP;
- `terminal_sim.online_http.HttpOnlineHost` asks the real host over signed HTTP.

The decisions and their `E_…` codes are documented in `host_sim.online_ops`. A refusal raises
`HostRefused` (code, reason); a host that cannot be reached raises
`terminal_sim.host_client.HostUnavailable` (`E_UNREACHABLE`), and nothing was done.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from cardcore.ports import Clock, Hsm
from cardcore.records import Bill
from host_sim import bills, blacklist
from host_sim.blacklist import Update
from host_sim.db import MEMORY, Database
from host_sim.online_base import asn_text
from host_sim.online_ops import (
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
    BookedLoad,
    BookedUnlock,
    EscapeRecord,
    LoadAuthorization,
    OnlineOps,
    UnlockAuthorization,
)
from host_sim.online_ops import OnlineRefused as HostRefused
from host_sim.online_ops import station_prefix as station_of
from host_sim.signing import as_utc
from terminal_sim.fuelling import BillType
from terminal_sim.host_client import HostUnavailable

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
    "HostRefused",
    "InProcessHost",
    "LoadAuthorization",
    "OnlineHost",
    "UnlockAuthorization",
    "escape_bill_refusal",
    "station_of",
]

T = TypeVar("T")
IN_PROCESS_AK = "in-process"  # who the host's records say asked, for calls made in process


class OnlineHost(Protocol):
    """`asn` is the card's 10-byte BCD ASN everywhere; the host diversifies keys by its ASN8."""

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
    ) -> LoadAuthorization: ...

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
    ) -> None: ...

    def store_flag_mac(self, asn: bytes, *, command: bytes, challenge: bytes) -> bytes:
        """`command` = CLA‖INS‖P1‖P2‖Lc‖data of the UPDATE BINARY writing EF15 byte 29."""
        ...

    def block_mac(self, asn: bytes, *, challenge: bytes, permanent: bool = False) -> bytes: ...

    def unblock_mac(self, asn: bytes, *, challenge: bytes) -> bytes: ...

    def reload_pin_mac(self, asn: bytes, *, pin_block: bytes) -> bytes: ...

    def authorize_online_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
    ) -> UnlockAuthorization: ...

    def confirm_online_unlock(
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
    ) -> None: ...

    def blacklisted(self, asn: bytes) -> bool: ...

    def report_loss(self, asn: bytes) -> None: ...

    def unblock(self, asn: bytes) -> None: ...

    def record_escape_bill(self, bill: Bill) -> None:
        """Upload a dispenser's escape bill, so that an office may unlock the card."""
        ...


def escape_bill_refusal(bill: Bill) -> HostRefused | None:
    """Only escape bills are sent this way: a fuelling bill would book a sale."""
    if bill.tx_type != BillType.ESCAPE:
        return HostRefused(E_BAD_BILL, f"bill type {bill.tx_type:02X} is not an escape bill")
    return None


class InProcessHost:
    """host_sim's code over a host database in this process (a temporary file by default).

    `available = False` plays a host that cannot be reached: every call raises
    `HostUnavailable` and changes nothing, except `blacklisted`, which answers from the list as
    it stands (what a terminal's synced copy would say).
    """

    def __init__(
        self,
        hsm: Hsm,
        clock: Clock,
        *,
        escape_wait: timedelta = ESCAPE_WAIT,
        key_set: str = "DEV",
        db: Database | str | os.PathLike[str] | None = None,
    ) -> None:
        self.hsm = hsm
        self.clock = clock
        self.key_set = key_set
        if db is None:  # thrown away with the host: no need to wait for the disk
            db = Database(MEMORY, synchronous="OFF")
            weakref.finalize(self, db.close)
        self.db = db if isinstance(db, Database) else Database(db)
        self.ops = OnlineOps(self.db, hsm, key_set=key_set, escape_wait=escape_wait)
        self.available = True

    @property
    def escape_wait(self) -> timedelta:
        return self.ops.escape_wait

    @escape_wait.setter
    def escape_wait(self, wait: timedelta) -> None:
        self.ops.escape_wait = wait

    def _now(self) -> datetime:
        return as_utc(self.clock.now())  # a naive simulated clock is the host's wall time

    def _call(self, request: Callable[[], T]) -> T:
        if not self.available:
            raise HostUnavailable(
                "E_UNREACHABLE", "the host cannot be reached", status=None, details={}
            )
        return request()

    # Blacklist ----------------------------------------------------------------------------------
    def blacklisted(self, asn: bytes) -> bool:
        with self.db.connect() as conn:
            return blacklist.is_listed(conn, asn.hex())

    @property
    def blacklist(self) -> frozenset[bytes]:
        with self.db.connect() as conn:
            rows = conn.execute("SELECT asn FROM blacklist").fetchall()
        return frozenset(bytes.fromhex(row[0]) for row in rows)

    def report_loss(self, asn: bytes) -> None:
        self._change_blacklist(blacklist.report_loss, asn)

    def unblock(self, asn: bytes) -> None:
        self._change_blacklist(blacklist.unblock, asn)

    def _change_blacklist(self, change: Callable[..., Update], asn: bytes) -> None:
        card = asn_text(asn)

        def run() -> None:
            with self.db.connect() as conn:
                change(conn, card, "", IN_PROCESS_AK, self._now())

        self._call(run)

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
    ) -> LoadAuthorization:
        return self._call(
            lambda: self.ops.authorize_load(
                asn,
                rand=rand,
                online_ctc=online_ctc,
                old_balance=old_balance,
                amount=amount,
                term=term,
                mac1=mac1,
                now=self._now(),
                ak=IN_PROCESS_AK,
            )
        )

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
    ) -> None:
        """Check the card's TAC and book the load; a repeated confirmation books nothing more."""
        self._call(
            lambda: self.ops.confirm_load(
                asn,
                new_balance=new_balance,
                online_ctc=online_ctc,
                amount=amount,
                term=term,
                dt=dt,
                tac=tac,
                now=self._now(),
            )
        )

    @property
    def loads(self) -> list[BookedLoad]:
        """The loads booked in the ledger, oldest first."""
        return self.ops.loads()

    # Maintenance MACs ---------------------------------------------------------------------------
    def store_flag_mac(self, asn: bytes, *, command: bytes, challenge: bytes) -> bytes:
        return self._call(
            lambda: self.ops.store_flag_mac(asn, command=command, challenge=challenge)
        )

    def block_mac(self, asn: bytes, *, challenge: bytes, permanent: bool = False) -> bytes:
        return self._call(lambda: self.ops.block_mac(asn, challenge=challenge, permanent=permanent))

    def unblock_mac(self, asn: bytes, *, challenge: bytes) -> bytes:
        return self._call(lambda: self.ops.unblock_mac(asn, challenge=challenge))

    def reload_pin_mac(self, asn: bytes, *, pin_block: bytes) -> bytes:
        return self._call(lambda: self.ops.reload_pin_mac(asn, pin_block=pin_block))

    # Escape bills and online unlock -------------------------------------------------------------
    def record_escape_bill(self, bill: Bill) -> None:
        """Upload an escape bill through the host's bill checks, as its terminal would; the same
        bill again changes nothing. A refused bill raises `HostRefused` (`E_BAD_BILL`)."""
        refusal = escape_bill_refusal(bill)
        if refusal is not None:
            raise refusal
        (outcome,) = self._call(
            lambda: bills.upload_bills(
                self.db,
                self.hsm,
                [bill.to_bytes()],
                uploader=bill.term.hex().upper(),
                ak=IN_PROCESS_AK,
                now=self._now(),
                key_set=self.key_set,
            )
        )
        if outcome.status == "rejected":
            raise HostRefused(E_BAD_BILL, f"{outcome.reason}: {outcome.message}")

    def settle_escape_bill(self, asn: bytes, lock_ctc: int) -> None:
        """Clearing has settled the bill: any station may now unlock the card."""
        self._call(lambda: self.ops.settle_escape_bill(asn, lock_ctc))

    @property
    def escape_bills(self) -> dict[tuple[bytes, int], EscapeRecord]:
        return self.ops.escape_records()

    def authorize_online_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
    ) -> UnlockAuthorization:
        return self._call(
            lambda: self.ops.authorize_unlock(
                asn,
                rand=rand,
                online_ctc=online_ctc,
                balance=balance,
                offline_ctc=offline_ctc,
                term=term,
                mac1=mac1,
                now=self._now(),
                ak=IN_PROCESS_AK,
            )
        )

    def confirm_online_unlock(
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
    ) -> None:
        """Check the card's MAC3 and record the unlock; a repeated confirmation changes nothing."""
        self._call(
            lambda: self.ops.confirm_unlock(
                asn,
                rand=rand,
                online_ctc=online_ctc,
                balance_after=balance_after,
                amount=amount,
                term=term,
                dt=dt,
                mac3=mac3,
                now=self._now(),
            )
        )

    @property
    def unlocks(self) -> list[BookedUnlock]:
        """The confirmed online unlocks, oldest first."""
        return self.ops.unlocks()

    def close(self) -> None:
        """Delete the temporary database (a database file given by the caller stays)."""
        self.db.close()
