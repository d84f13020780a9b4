"""What terminals ask of the host, as one Protocol, and a host that answers with the HSM in-process.

`OnlineHost` is the store POS's and the issuing office's view of the host: MAC2 and TAC checks for
loads, secure-messaging MACs for maintenance commands, the online unlock of a grey card (spec §5)
and the blacklist. `InProcessHost` implements it over an `Hsm`; host_sim's HTTP client is meant to
implement the same Protocol. Refusals are `HostRefused` with one of the `E_…` codes below.

Online unlock (联机解扣) decisions:
- The host debits what the escape bill says; without the bill it refuses (`E_NO_ESCAPE_BILL`).
- A grey record is (ASN, lock CTC). GREY LOCK moved the offline CTC on by one, so the lock CTC is
  the offline CTC that INITIALIZE FOR ONLINE UNLOCK reports, minus one.
- **Station** = the first 4 bytes (8 BCD digits) of the 6-byte terminal id; the last 2 bytes number
  the device in the station (`440101000001` and `440101000101` are both station `44010100`). A
  terminal of the station that locked the card may unlock at once; elsewhere only `escape_wait`
  (48 h) after the escape bill's dt, or once the bill is settled (`settle_escape_bill`).
- A record whose MAC3 the host confirmed is never unlocked again (`E_ALREADY_UNLOCKED`). One that
  was authorised but not confirmed may be authorised again: a valid MAC1 from INITIALIZE FOR ONLINE
  UNLOCK proves the card is still grey, so the first MAC2 was never used.
- A blacklisted card is neither loaded nor unlocked (`E_CARD_BLOCKED`), and MAC1 is checked
  before anything else, so a forged request learns nothing about the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt, decode_pin, parse_bcd_dt
from cardcore.errors import FuelsimError
from cardcore.layout import TxType
from cardcore.ports import Clock, Hsm
from cardcore.records import Bill
from terminal_sim.fuelling import BillType

E_FORMAT = "E_FORMAT"  # a request the host does not accept as it is
E_CARD_BLOCKED = "E_CARD_BLOCKED"  # the card is on the blacklist
E_BAD_MAC1 = "E_BAD_MAC1"
E_BAD_TAC = "E_BAD_TAC"
E_BAD_MAC3 = "E_BAD_MAC3"
E_NOT_AUTHORIZED = "E_NOT_AUTHORIZED"  # a confirmation the host gave no authorisation for
E_BAD_BILL = "E_BAD_BILL"  # an escape bill that is not one, or whose TMAC does not match
E_NO_ESCAPE_BILL = "E_NO_ESCAPE_BILL"
E_BILL_MISMATCH = "E_BILL_MISMATCH"  # the card's balance is not the one the bill locked
E_TOO_EARLY = "E_TOO_EARLY"  # another station, before the waiting time, bill not settled
E_ALREADY_UNLOCKED = "E_ALREADY_UNLOCKED"

ESCAPE_WAIT = timedelta(hours=48)


class HostRefused(FuelsimError):
    title = "host refused"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message


@dataclass(frozen=True)
class LoadAuthorization:
    mac2: bytes
    dt: bytes


@dataclass(frozen=True)
class UnlockAuthorization:
    amount: int
    dt: bytes
    mac2: bytes


def station_of(term: bytes) -> bytes:
    """The station part of a terminal id (its first 4 bytes)."""
    return term[:4]


class OnlineHost(Protocol):
    def authorize_load(
        self,
        asn8: bytes,
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
        asn8: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
    ) -> None: ...

    def store_flag_mac(self, asn8: bytes, *, command: bytes, challenge: bytes) -> bytes:
        """`command` = CLA‖INS‖P1‖P2‖Lc‖data of the UPDATE BINARY writing EF15 byte 29."""
        ...

    def block_mac(self, asn8: bytes, *, challenge: bytes, permanent: bool = False) -> bytes: ...

    def unblock_mac(self, asn8: bytes, *, challenge: bytes) -> bytes: ...

    def reload_pin_mac(self, asn8: bytes, *, pin_block: bytes) -> bytes: ...

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


@dataclass
class EscapeRecord:
    bill: Bill
    settled: bool = False
    unlocked: bool = False


@dataclass(frozen=True)
class BookedLoad:
    asn8: bytes
    amount: int
    new_balance: int
    online_ctc: int
    term: bytes
    dt: bytes
    tac: bytes


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


@dataclass(frozen=True)
class _LoadAuth:
    amount: int
    new_balance: int
    term: bytes
    dt: bytes


@dataclass(frozen=True)
class _PendingUnlock:
    lock_ctc: int
    rand: bytes
    online_ctc: int
    amount: int
    term: bytes
    dt: bytes


class InProcessHost:
    """The host in this process: the HSM for keys, dicts for escape bills, blacklist and books."""

    def __init__(
        self,
        hsm: Hsm,
        clock: Clock,
        *,
        escape_wait: timedelta = ESCAPE_WAIT,
        key_set: str = "DEV",
    ) -> None:
        self.hsm = hsm
        self.clock = clock
        self.escape_wait = escape_wait
        self.key_set = key_set
        self.escape_bills: dict[tuple[bytes, int], EscapeRecord] = {}
        self.blacklist: set[bytes] = set()
        self.loads: list[BookedLoad] = []
        self.unlocks: list[BookedUnlock] = []
        self._load_auths: dict[tuple[bytes, int], _LoadAuth] = {}
        self._unlock_auths: dict[bytes, _PendingUnlock] = {}

    def _now(self) -> datetime:
        return self.clock.now().replace(tzinfo=None)  # BCD dt stamps are local wall time

    # Blacklist ----------------------------------------------------------------------------------
    def blacklisted(self, asn: bytes) -> bool:
        return asn in self.blacklist

    def report_loss(self, asn: bytes) -> None:
        self.blacklist.add(_sized("ASN", asn, 10))

    def unblock(self, asn: bytes) -> None:
        self.blacklist.discard(asn)

    def _refuse_blacklisted(self, asn8: bytes) -> None:
        if any(asn[2:] == asn8 for asn in self.blacklist):
            raise HostRefused(E_CARD_BLOCKED, "the card is reported lost")

    # Load ---------------------------------------------------------------------------------------
    def authorize_load(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        old_balance: int,
        amount: int,
        term: bytes,
        mac1: bytes,
    ) -> LoadAuthorization:
        _sized("ASN8", asn8, 8)
        if not self.hsm.verify_load_mac1(
            asn8,
            rand=rand,
            online_ctc=online_ctc,
            old_balance=old_balance,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=term,
            mac1=mac1,
            key_set=self.key_set,
        ):
            raise HostRefused(E_BAD_MAC1, "the card's MAC1 does not verify")
        self._refuse_blacklisted(asn8)
        dt = bcd_dt(self._now())
        mac2 = self.hsm.load_mac2(
            asn8,
            rand=rand,
            online_ctc=online_ctc,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=term,
            dt=dt,
            key_set=self.key_set,
        )
        self._load_auths[(asn8, online_ctc)] = _LoadAuth(amount, old_balance + amount, term, dt)
        return LoadAuthorization(mac2, dt)

    def confirm_load(
        self,
        asn8: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
    ) -> None:
        """Check the card's TAC and book the load; a repeated confirmation books nothing more."""
        booked = BookedLoad(asn8, amount, new_balance, online_ctc, term, dt, tac)
        if booked in self.loads:
            return
        if self._load_auths.get((asn8, online_ctc)) != _LoadAuth(amount, new_balance, term, dt):
            raise HostRefused(E_NOT_AUTHORIZED, "no load was authorised with these values")
        if not self.hsm.verify_load_tac(
            asn8,
            new_balance=new_balance,
            online_ctc=online_ctc,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=term,
            dt=dt,
            tac=tac,
            key_set=self.key_set,
        ):
            raise HostRefused(E_BAD_TAC, "the card's load TAC does not verify")
        del self._load_auths[(asn8, online_ctc)]
        self.loads.append(booked)

    # Maintenance MACs ---------------------------------------------------------------------------
    def _sm_mac(self, asn8: bytes, command: bytes, challenge: bytes) -> bytes:
        if len(challenge) not in (4, 8):
            raise HostRefused(E_FORMAT, "a challenge is 4 or 8 bytes")
        return self.hsm.secure_messaging_mac(
            _sized("ASN8", asn8, 8), command=command, challenge=challenge, key_set=self.key_set
        )

    def store_flag_mac(self, asn8: bytes, *, command: bytes, challenge: bytes) -> bytes:
        allowed = {
            cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, bytes((flag,)))
            for flag in (layout.STORE_FLAG_ON, layout.STORE_FLAG_OFF)
        }
        if command not in allowed:
            raise HostRefused(E_FORMAT, "only the store flag (EF15 byte 29, 00 or 01) is signed")
        return self._sm_mac(asn8, command, challenge)

    def block_mac(self, asn8: bytes, *, challenge: bytes, permanent: bool = False) -> bytes:
        return self._sm_mac(asn8, cmd.application_block_header(permanent), challenge)

    def unblock_mac(self, asn8: bytes, *, challenge: bytes) -> bytes:
        return self._sm_mac(asn8, cmd.application_unblock_header(), challenge)

    def reload_pin_mac(self, asn8: bytes, *, pin_block: bytes) -> bytes:
        if decode_pin(pin_block) is None:
            raise HostRefused(E_FORMAT, "a PIN block is compressed BCD of 2 to 12 digits")
        return self.hsm.reload_pin_mac(_sized("ASN8", asn8, 8), pin=pin_block, key_set=self.key_set)

    # Online unlock ------------------------------------------------------------------------------
    def record_escape_bill(self, bill: Bill) -> None:
        """Keep an uploaded escape bill; the same bill again changes nothing."""
        if bill.tx_type != BillType.ESCAPE:
            raise HostRefused(E_BAD_BILL, f"bill type {bill.tx_type:02X} is not an escape bill")
        if self.hsm.bill_tmac(bill.body(), key_set=self.key_set) != bill.tmac:
            raise HostRefused(E_BAD_BILL, "the bill's TMAC does not verify")
        self.escape_bills.setdefault((bill.asn, bill.ctc), EscapeRecord(bill))

    def settle_escape_bill(self, asn: bytes, lock_ctc: int) -> None:
        """Clearing has settled the bill: any station may now unlock the card."""
        self._escape(asn, lock_ctc).settled = True

    def _escape(self, asn: bytes, lock_ctc: int) -> EscapeRecord:
        record = self.escape_bills.get((asn, lock_ctc))
        if record is None:
            raise HostRefused(
                E_NO_ESCAPE_BILL, f"no escape bill for this card's lock (CTC {lock_ctc})"
            )
        return record

    def _check_wait(self, record: EscapeRecord, term: bytes) -> None:
        bill = record.bill
        if record.settled or station_of(term) == station_of(bill.term):
            return
        allowed = parse_bcd_dt(bill.dt) + self.escape_wait
        if self._now() < allowed:
            raise HostRefused(
                E_TOO_EARLY,
                f"locked at station {station_of(bill.term).hex()}: another station may unlock "
                f"it from {allowed:%Y-%m-%d %H:%M:%S}",
            )

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
        asn8 = _sized("ASN", asn, 10)[2:]
        if not self.hsm.verify_online_unlock_mac1(
            asn8,
            rand=rand,
            online_ctc=online_ctc,
            balance=balance,
            offline_ctc=offline_ctc,
            term=term,
            mac1=mac1,
            key_set=self.key_set,
        ):
            raise HostRefused(E_BAD_MAC1, "the card's MAC1 does not verify")
        self._refuse_blacklisted(asn8)
        lock_ctc = offline_ctc - 1
        record = self._escape(asn, lock_ctc)
        if record.unlocked:
            raise HostRefused(E_ALREADY_UNLOCKED, f"the lock of CTC {lock_ctc} was unlocked")
        bill = record.bill
        if bill.balance_after + bill.amount != balance:
            raise HostRefused(
                E_BILL_MISMATCH,
                f"the card holds {balance} fen, the bill locked {bill.balance_after + bill.amount}",
            )
        self._check_wait(record, term)
        dt = bcd_dt(self._now())
        mac2 = self.hsm.online_unlock_mac2(
            asn8,
            rand=rand,
            online_ctc=online_ctc,
            amount=bill.amount,
            term=term,
            dt=dt,
            key_set=self.key_set,
        )
        self._unlock_auths[asn] = _PendingUnlock(lock_ctc, rand, online_ctc, bill.amount, term, dt)
        return UnlockAuthorization(bill.amount, dt, mac2)

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
        """Check the card's MAC3 and book the unlock; a repeated confirmation books nothing more."""
        done = (asn, online_ctc, mac3)
        if any((u.asn, u.online_ctc, u.mac3) == done for u in self.unlocks):
            return
        pending = self._unlock_auths.get(asn)
        if pending is None or pending != _PendingUnlock(
            pending.lock_ctc, rand, online_ctc, amount, term, dt
        ):
            raise HostRefused(E_NOT_AUTHORIZED, "no online unlock was authorised with these values")
        if not self.hsm.verify_online_unlock_mac3(
            asn[2:],
            rand=rand,
            online_ctc=online_ctc,
            balance_after=balance_after,
            amount=amount,
            term=term,
            dt=dt,
            mac3=mac3,
            key_set=self.key_set,
        ):
            raise HostRefused(E_BAD_MAC3, "the card's MAC3 does not verify")
        del self._unlock_auths[asn]
        self._escape(asn, pending.lock_ctc).unlocked = True
        self.unlocks.append(
            BookedUnlock(asn, pending.lock_ctc, amount, balance_after, online_ctc, term, dt, mac3)
        )


def _sized(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise HostRefused(E_FORMAT, f"{name} is {size} bytes, got {len(value)}")
    return value
