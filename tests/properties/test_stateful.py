"""Random walks through the card and PSAM protocol, checked against a small reference model.

A hypothesis state machine drives a user card (profile `normal` or `new`) and the dispenser
PSAM with valid and invalid operations: VERIFY right and wrong, RELOAD PIN, purchase, load,
grey lock and unlock with the delivered amount, the card pulled mid-fuelling and re-debited
from the escape bill, online unlock, CLEAR TAC-UNREAD, GET BALANCE / LOCK PROOF / TRANSACTION
PROVE, garbage APDUs and power cycles of either device. The model (balance, offline and online
CTC, lock status, PIN tries, session) predicts every status word. Invariants: balance as
modelled; balance + debited - loaded = initial balance; the CTCs never go down and each value
transaction moves exactly one of them by exactly one; the newest EF18 record is the last value
transaction; the PSAM's TTC as modelled; the store holds what the RAM mirror holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from card_profiles.applet import Applet
from card_profiles.emulator import in_memory
from card_profiles.nvm import Cells
from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import bcd_dt, encode_pin
from cardcore.clockrng import SeededRng
from cardcore.layout import LockStatus, TxType
from cardcore.records import LockRecord, PublicAppData, TxLogEntry
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard

PIN = "999999"
OK = 0x9000
START = datetime(2026, 11, 22, 8, 0, 0)
ET_RECORD = layout.EF18_RECORD_SIZE

# Commands that write or change the session: never sent as garbage (the model could not tell).
CARD_NOT_GARBAGE = {
    (0x00, 0xA4),
    (0x00, 0x20),
    (0x80, 0x52),
    (0x80, 0x54),
    (0xE0, 0x7C),
    (0xE0, 0x7E),
    (0xE0, 0xCA),
    (0x04, 0xD6),
    (0x84, 0x1E),
    (0x84, 0x18),
    (0x80, 0x5E),
}
PSAM_NOT_GARBAGE = {(0x00, 0xA4), (0x80, 0x70), (0xE0, 0x40), (0xE0, 0x42), (0xE0, 0x44)}


@dataclass
class World:
    hsm: MockHsm
    issued: Callable[[str], IssuedCard]

    def cells(self, profile: str) -> Cells:
        return dict(self.issued(profile).cells)


def num(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def flip(mac: bytes) -> bytes:
    return bytes((mac[0] ^ 0x01,)) + mac[1:]


@dataclass
class PsamGrey:
    """The model of one grey-lock session the PSAM keeps."""

    ctc: int
    ttc: int
    balance: int
    state: str = "open"  # open → locked (E0 42) → answered (E0 44)
    amount: int = 0
    answer: bytes = b""


@dataclass
class Lock:
    """The card's open grey lock, as the dispenser recorded it."""

    ctc: int
    ttc: int
    balance: int
    term: bytes
    dt: bytes
    mac2: bytes
    gtac: bytes


@dataclass
class Escape:
    """The escape bill: the PSAM's E0 44 answer for the delivered amount."""

    amount: int
    gmac: bytes
    psam_tac: bytes
    unlock_ttc: int


@dataclass
class Model:
    initial: int
    balance: int
    offline: int
    online: int
    lock: LockStatus
    lock_record: bytes
    tries: int
    psam_ttc: int
    last_tx: bytes | None
    loaded: int = 0
    debited: int = 0
    app: str | None = None
    pin_ok: bool = False
    proof: tuple[int, int, bytes] | None = None  # type, CTC, MAC ‖ TAC
    grey: list[PsamGrey] = field(default_factory=list)  # newest first
    open_lock: Lock | None = None
    escape: Escape | None = None


amounts = st.integers(0, 120_000)
shares = st.integers(0, 100) | st.sampled_from([0, 100, 150])  # percent of the balance
tampered = st.sampled_from([False, False, False, True])
fresh = st.sampled_from([True, True, False])  # start with a re-insert, or in the session as it is
garbage = st.binary(max_size=60) | st.tuples(
    st.sampled_from([0x00, 0x04, 0x80, 0x84, 0xE0]),
    st.sampled_from(sorted({ins for (_, ins, _) in cmd._NAMES})),
    st.binary(min_size=2, max_size=40),
).map(lambda t: bytes((t[0], t[1])) + t[2])


class FuelMachine(RuleBasedStateMachine):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.hsm = world.hsm
        self.ready = False
        self.tick = 0

    # Set-up -------------------------------------------------------------------------------------
    @initialize(profile=st.sampled_from(["normal", "new"]), seed=st.integers(0, 1000))
    def issue(self, profile: str, seed: int) -> None:
        cells = self.world.cells(profile)
        self.card: Applet = in_memory(cells, SeededRng(seed))
        self.card.power_on()
        self.psam: Applet = in_memory(self.world.cells("psam-dispenser"), SeededRng(seed + 1))
        self.psam.power_on()
        assert self.psam_x(cmd.select(layout.PSAM_AID))[1] == OK
        public = PublicAppData.from_bytes(cells["ef15"])
        self.asn8, self.issuer8 = public.asn8, public.issuer_id
        self.term = self.psam.nvm.cells["ef16"]
        log = cells["ef18"]
        self.m = Model(
            initial=num(cells["et.balance"]),
            balance=num(cells["et.balance"]),
            offline=num(cells["et.offline_ctc"]),
            online=num(cells["et.online_ctc"]),
            lock=LockStatus(cells["lock"][0]),
            lock_record=cells["lock"],
            tries=num(cells["pin.tries"]),
            psam_ttc=num(self.psam.nvm.cells["ttc"]),
            last_tx=log[:ET_RECORD] or None,
        )
        self.floor = (self.m.offline, self.m.online, self.m.psam_ttc)
        self.ready = True

    # Helpers --------------------------------------------------------------------------------------
    def card_x(self, apdu: CommandApdu) -> tuple[bytes, int]:
        raw = self.card.process(bytes(apdu))
        return raw[:-2], num(raw[-2:])

    def psam_x(self, apdu: CommandApdu) -> tuple[bytes, int]:
        raw = self.psam.process(bytes(apdu))
        return raw[:-2], num(raw[-2:])

    @staticmethod
    def expect(got: tuple[bytes, int], sw: int, what: str) -> bytes:
        assert got[1] == sw, f"{what}: expected {sw:04X}, the device answered {got[1]:04X}"
        return got[0]

    def dt(self) -> bytes:
        self.tick += 1
        return bcd_dt(START + timedelta(minutes=self.tick))

    def gate(self, *, pin: bool = True, refuse: dict[LockStatus, int] | None = None) -> int:
        """The status word the card's state table answers for an ET command."""
        if self.m.app != "ET":
            return 0x6985
        if pin and not self.m.pin_ok:
            return 0x6982
        return (refuse or {}).get(self.m.lock, OK)

    def counters(self) -> tuple[int, int]:
        cells = self.card.nvm.cells
        return num(cells["et.offline_ctc"]), num(cells["et.online_ctc"])

    def moved(self, before: tuple[int, int], counter: str | None) -> None:
        """A value transaction moves exactly one counter by exactly one; a failed one none."""
        offline, online = before
        expected = (offline + (counter == "offline"), online + (counter == "online"))
        assert self.counters() == expected

    def session(self, ctc: int) -> PsamGrey | None:
        return next((s for s in self.m.grey if s.ctc == ctc), None)

    def part(self, share: int) -> int:
        """`share` percent of the balance, plus a fen when above 100 (so surely too much)."""
        return self.m.balance * share // 100 + (share > 100)

    def logged(self, ctc: int, amount: int, tx_type: int, term: bytes, dt: bytes) -> None:
        self.m.last_tx = TxLogEntry(ctc, amount, tx_type, term, dt).to_bytes()

    # Session --------------------------------------------------------------------------------------
    @rule()
    def power_cycle_card(self) -> None:
        self.card.power_off()
        self.card.power_on()
        self.m.app, self.m.pin_ok = None, False

    @rule()
    def power_cycle_psam(self) -> None:
        self.psam.power_off()
        self.psam.power_on()
        self.expect(self.psam_x(cmd.select(layout.PSAM_AID)), OK, "PSAM SELECT")

    @rule(app=st.sampled_from(["ET", "PSE", "LOYALTY", "nothing"]))
    def select(self, app: str) -> None:
        names = {"ET": layout.ET_AID, "PSE": layout.PSE_NAME, "LOYALTY": layout.LOYALTY_AID}
        got = self.card_x(cmd.select(names.get(app, b"\xa0\x00\x00\x00\x03NOPE")))
        if app == "nothing":
            self.expect(got, 0x6A82, "SELECT unknown")
            return
        self.expect(got, OK, f"SELECT {app}")
        self.m.app, self.m.pin_ok = app, False

    @rule(right=st.booleans())
    def verify(self, right: bool) -> None:
        got = self.card_x(cmd.verify(PIN if right else "1111"))
        if self.m.app != "ET":
            self.expect(got, 0x6985, "VERIFY outside ET")
        elif self.m.tries == 0:
            self.expect(got, 0x6983, "VERIFY blocked")
        elif right:
            self.expect(got, OK, "VERIFY")
            self.m.tries, self.m.pin_ok = layout.PIN_TRIES, True
        else:
            self.m.tries -= 1
            self.m.pin_ok = False
            sw = 0x6983 if self.m.tries == 0 else 0x63C0 | self.m.tries
            self.expect(got, sw, "VERIFY wrong")

    @rule()
    def reinsert(self) -> None:
        """The usual start: power, SELECT ET, VERIFY the right PIN."""
        self.power_cycle_card()
        self.select("ET")
        self.verify(True)

    @rule()
    def block_pin(self) -> None:
        """Three wrong PINs in a row (63C2, 63C1, 6983), or fewer when some were wrong already."""
        self.select("ET")
        for _ in range(layout.PIN_TRIES):
            self.verify(False)
        assert self.m.tries == 0

    @rule()
    def reload_pin(self) -> None:
        mac = self.hsm.reload_pin_mac(self.asn8, pin=encode_pin(PIN))
        got = self.card_x(cmd.reload_pin(PIN, mac))
        self.expect(got, self.gate(pin=False), "RELOAD PIN")
        if got[1] == OK:
            self.m.tries = layout.PIN_TRIES

    # Reads ----------------------------------------------------------------------------------------
    @rule()
    def get_balance(self) -> None:
        got = self.card_x(cmd.get_balance())
        sw = {"ET": OK, "LOYALTY": 0x6A86}.get(self.m.app or "", 0x6985)
        self.expect(got, sw, "GET BALANCE")
        if sw == OK:
            assert num(got[0]) == self.m.balance

    @rule()
    def lock_proof(self) -> None:
        got = self.card_x(cmd.get_lock_proof())
        self.expect(got, self.gate(pin=False), "GET LOCK PROOF")
        if got[1] == OK:
            assert got[0] == self.m.lock_record

    @rule(wrong_ctc=st.booleans())
    def transaction_prove(self, wrong_ctc: bool) -> None:
        tx_type, ctc, answer = self.m.proof or (TxType.ED_PURCHASE, 0, b"")
        ctc += wrong_ctc
        got = self.card_x(cmd.get_transaction_prove(tx_type, ctc))
        sw = self.gate(pin=False)
        if sw == OK and (self.m.proof is None or wrong_ctc):
            sw = 0x9406
        self.expect(got, sw, "GET TRANSACTION PROVE")
        if sw == OK:
            assert got[0] == answer

    @rule(raw=garbage)
    def garbage_to_card(self, raw: bytes) -> None:
        if raw[:2] and tuple(raw[:2]) in CARD_NOT_GARBAGE:
            raw = b"\xb0\xb0" + raw[2:]
        before = dict(self.card.nvm.cells)
        answer = self.card.process(raw)
        assert len(answer) >= 2
        assert self.card.nvm.cells == before

    @rule(raw=garbage)
    def garbage_to_psam(self, raw: bytes) -> None:
        if raw[:2] and tuple(raw[:2]) in PSAM_NOT_GARBAGE:
            raw = b"\xb0\xb0" + raw[2:]
        before = dict(self.psam.nvm.cells)
        answer = self.psam.process(raw)
        assert len(answer) >= 2
        assert self.psam.nvm.cells == before

    # Purchase and load ----------------------------------------------------------------------------
    @rule(amount=amounts, tamper=tampered, new_session=fresh)
    def purchase(self, amount: int, tamper: bool, new_session: bool) -> None:
        if new_session:
            self.reinsert()
        before, m = self.counters(), self.m
        dt = self.dt()
        got = self.card_x(cmd.initialize_for_purchase(amount, self.term))
        sw = self.gate(refuse={LockStatus.GREY: 0x9408})
        if sw == OK and amount > m.balance:
            sw = 0x9401
        init = self.expect(got, sw, "INITIALIZE FOR PURCHASE")
        if sw != OK:
            self.moved(before, None)
            return
        assert (num(init[:4]), num(init[4:6])) == (m.balance, m.offline)
        sam = self.expect(
            self.psam_x(
                cmd.init_sam_for_purchase(
                    init[11:15], m.offline, amount, dt, self.asn8, self.issuer8
                )
            ),
            OK,
            "INIT SAM FOR PURCHASE",
        )
        ttc, mac1 = num(sam[:4]), sam[4:8]
        assert ttc == m.psam_ttc
        m.psam_ttc += 1
        got = self.card_x(cmd.debit_for_purchase(ttc, dt, flip(mac1) if tamper else mac1))
        if tamper:
            self.expect(got, 0x9302, "DEBIT FOR PURCHASE with a bad MAC1")
            self.moved(before, None)
            return
        answer = self.expect(got, OK, "DEBIT FOR PURCHASE")
        tac, mac2 = answer[:4], answer[4:8]
        assert self.hsm.verify_purchase_tac(
            self.asn8,
            amount=amount,
            tx_type=TxType.ED_PURCHASE,
            term=self.term,
            ttc=ttc,
            dt=dt,
            tac=tac,
        )
        self.expect(self.psam_x(cmd.credit_sam_for_purchase(mac2)), OK, "CREDIT SAM")
        m.balance -= amount
        m.debited += amount
        self.logged(m.offline, amount, TxType.ED_PURCHASE, self.term, dt)
        m.proof = (TxType.ED_PURCHASE, m.offline, mac2 + tac)
        m.offline += 1
        self.moved(before, "offline")

    @rule(amount=amounts, tamper=tampered, new_session=fresh)
    def load(self, amount: int, tamper: bool, new_session: bool) -> None:
        if new_session:
            self.reinsert()
        before, m = self.counters(), self.m
        dt = self.dt()
        got = self.card_x(cmd.initialize_for_load(amount, self.term))
        init = self.expect(got, self.gate(refuse={LockStatus.GREY: 0x9408}), "INIT FOR LOAD")
        if got[1] != OK:
            self.moved(before, None)
            return
        assert (num(init[:4]), num(init[4:6])) == (m.balance, m.online)
        rand = init[8:12]
        assert self.hsm.verify_load_mac1(
            self.asn8,
            rand=rand,
            online_ctc=m.online,
            old_balance=m.balance,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=self.term,
            mac1=init[12:16],
        )
        mac2 = self.hsm.load_mac2(
            self.asn8,
            rand=rand,
            online_ctc=m.online,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=self.term,
            dt=dt,
        )
        got = self.card_x(cmd.credit_for_load(dt, flip(mac2) if tamper else mac2))
        if tamper:
            self.expect(got, 0x9302, "CREDIT FOR LOAD with a bad MAC2")
            self.moved(before, None)
            return
        tac = self.expect(got, OK, "CREDIT FOR LOAD")
        assert self.hsm.verify_load_tac(
            self.asn8,
            new_balance=m.balance + amount,
            online_ctc=m.online,
            amount=amount,
            tx_type=TxType.ED_LOAD,
            term=self.term,
            dt=dt,
            tac=tac,
        )
        m.balance += amount
        m.loaded += amount
        self.logged(m.online, amount, TxType.ED_LOAD, self.term, dt)
        m.proof = (TxType.ED_LOAD, m.online, mac2 + tac)
        m.online += 1
        self.moved(before, "online")

    # Grey lock ------------------------------------------------------------------------------------
    @rule(tamper=tampered, new_session=fresh)
    def grey_lock(self, tamper: bool, new_session: bool) -> None:
        if new_session:
            self.reinsert()
        before, m = self.counters(), self.m
        dt = self.dt()
        got = self.card_x(cmd.initialize_for_grey_lock(self.term))
        refuse = {LockStatus.GREY: 0x9408, LockStatus.TAC_UNREAD: 0x6985}
        init = self.expect(got, self.gate(refuse=refuse), "INITIALIZE FOR GREY LOCK")
        if got[1] != OK:
            self.moved(before, None)
            return
        balance, ctc = num(init[:4]), num(init[4:6])
        assert (balance, ctc) == (m.balance, m.offline)
        sam = self.expect(
            self.psam_x(
                cmd.init_sam_for_grey_lock(init[11:15], ctc, balance, dt, self.asn8, self.issuer8)
            ),
            OK,
            "INIT SAM FOR GREY LOCK",
        )
        ttc, psam_rand, mac1 = num(sam[:4]), sam[4:8], sam[8:12]
        assert ttc == m.psam_ttc
        m.psam_ttc += 1
        m.grey.insert(0, PsamGrey(ctc, ttc, balance))
        got = self.card_x(cmd.grey_lock(ttc, psam_rand, dt, flip(mac1) if tamper else mac1))
        if tamper:
            self.expect(got, 0x9302, "GREY LOCK with a bad MAC1")
            self.moved(before, None)
            return
        answer = self.expect(got, OK, "GREY LOCK")
        gtac, mac2 = answer[:4], answer[4:8]
        assert self.hsm.verify_gtac(
            self.asn8, balance=balance, term=self.term, ttc=ttc, dt=dt, gtac=gtac
        )
        self.expect(self.psam_x(cmd.verify_grey_lock_mac2(mac2)), OK, "VERIFY GREY-LOCK MAC2")
        m.grey[0].state = "locked"
        m.lock = LockStatus.GREY
        m.lock_record = LockRecord(
            LockStatus.GREY, TxType.GREY_LOCK, balance, ctc, self.term, dt, mac2, gtac
        ).to_bytes()
        m.open_lock, m.escape = Lock(ctc, ttc, balance, self.term, dt, mac2, gtac), None
        m.proof = (TxType.GREY_LOCK, ctc, mac2 + gtac)
        m.offline += 1
        self.moved(before, "offline")

    def unlock_answer(self, delivered: int, reuse: bool) -> None:
        """PSAM E0 44 for the open lock; keeps the answer as the escape bill."""
        m, lock = self.m, self.m.open_lock
        assert lock is not None
        session = self.session(lock.ctc)
        assert session is not None
        amount = session.amount if reuse and session.state == "answered" else delivered
        got = self.psam_x(cmd.gmac_for_unlock(self.asn8, lock.ctc, amount))
        if session.state == "open" or (session.state == "answered" and amount != session.amount):
            self.expect(got, 0x6985, "GMAC FOR UNLOCK")
            return
        if session.state == "locked" and amount > session.balance:
            self.expect(got, 0x9401, "GMAC FOR UNLOCK above the balance")
            return
        answer = self.expect(got, OK, "GMAC FOR UNLOCK")
        if session.state == "answered":
            assert answer == session.answer  # asked again: the same answer, no new TTC
        else:
            session.state, session.amount, session.answer = "answered", amount, answer
            m.escape = Escape(amount, answer[:4], answer[4:8], m.psam_ttc)
            m.psam_ttc += 1
        assert self.hsm.verify_psam_tac(
            self.asn8,
            amount=amount,
            lock_term=lock.term,
            lock_ttc=lock.ttc,
            lock_dt=lock.dt,
            tac=answer[4:8],
        )
        again = self.psam_x(cmd.get_gmac_again(lock.ttc))
        assert again == (answer, OK)

    def debit_for_unlock(self, tamper: bool) -> None:
        """DEBIT FOR UNLOCK with the escape bill (at the pump, or re-debit after a pull)."""
        m, lock, bill = self.m, self.m.open_lock, self.m.escape
        assert lock is not None and bill is not None
        before = self.counters()
        dt = self.dt()
        gmac = flip(bill.gmac) if tamper else bill.gmac
        apdu = cmd.debit_for_unlock(bill.amount, lock.ctc + 1, lock.term, bill.unlock_ttc, dt, gmac)
        got = self.card_x(apdu)
        refuse = {LockStatus.FREE: 0x6985, LockStatus.TAC_UNREAD: 0x6985}
        sw = self.gate(pin=False, refuse=refuse)  # the lock was authorised by the PIN
        if sw == OK and tamper:
            sw = 0x9302
        tac = self.expect(got, sw, "DEBIT FOR UNLOCK")
        if sw != OK:
            self.moved(before, None)
            return
        assert m.balance == lock.balance  # nothing moves the balance of a grey purse
        assert self.hsm.verify_unlock_tac(
            self.asn8, amount=bill.amount, term=lock.term, ttc=bill.unlock_ttc, dt=dt, tac=tac
        )
        m.balance -= bill.amount
        m.debited += bill.amount
        m.lock = LockStatus.TAC_UNREAD
        m.lock_record = LockRecord(
            LockStatus.TAC_UNREAD,
            TxType.DEBIT_FOR_UNLOCK,
            m.balance,
            m.offline,
            lock.term,
            dt,
            bill.amount.to_bytes(4, "big"),
            tac,
        ).to_bytes()
        self.logged(m.offline, bill.amount, TxType.DEBIT_FOR_UNLOCK, lock.term, dt)
        m.proof = (TxType.DEBIT_FOR_UNLOCK, m.offline, bill.gmac + tac)
        m.offline += 1
        m.open_lock = m.escape = None
        self.moved(before, "offline")

    @precondition(lambda self: self.ready and self.m.open_lock is not None)
    @rule(share=shares, reuse=st.booleans(), tamper=tampered)
    def nozzle_back(self, share: int, reuse: bool, tamper: bool) -> None:
        """Fuelling done: E0 44 for the delivered amount, then DEBIT FOR UNLOCK."""
        self.unlock_answer(self.part(share), reuse)
        if self.m.escape is not None:
            self.debit_for_unlock(tamper)

    @precondition(
        lambda self: self.ready and self.m.open_lock is not None and self.m.escape is None
    )
    @rule(share=shares)
    def pull_card_during_fuelling(self, share: int) -> None:
        """The card leaves mid-fuelling: it stays grey, the pump keeps an escape bill."""
        self.power_cycle_card()
        self.unlock_answer(self.part(share), reuse=False)

    @precondition(lambda self: self.ready and self.m.escape is not None)
    @rule(tamper=tampered)
    def redebit(self, tamper: bool) -> None:
        """Re-insert, read the lock proof (status 01, lock CTC), re-debit the escape bill."""
        self.reinsert()
        lock = self.m.open_lock
        assert lock is not None
        record = LockRecord.from_bytes(self.expect(self.card_x(cmd.get_lock_proof()), OK, "PROOF"))
        assert (record.status, record.ctc, record.word22) == (LockStatus.GREY, lock.ctc, lock.mac2)
        self.debit_for_unlock(tamper)

    @rule()
    def clear_tac_unread(self) -> None:
        got = self.card_x(cmd.clear_tac_unread())
        self.expect(got, self.gate(pin=False, refuse={LockStatus.GREY: 0x6985}), "CLEAR")
        if got[1] == OK and self.m.lock == LockStatus.TAC_UNREAD:
            self.m.lock = LockStatus.FREE
            self.m.lock_record = bytes((LockStatus.FREE,)) + self.m.lock_record[1:]

    @rule(settle=st.booleans(), share=shares, tamper=tampered, new_session=fresh)
    def online_unlock(self, settle: bool, share: int, tamper: bool, new_session: bool) -> None:
        if new_session:
            self.reinsert()
        before, m = self.counters(), self.m
        dt = self.dt()
        got = self.card_x(cmd.initialize_for_online_unlock(self.term))
        refuse = {LockStatus.FREE: 0x6985, LockStatus.TAC_UNREAD: 0x6985}
        init = self.expect(got, self.gate(refuse=refuse), "INITIALIZE FOR ONLINE UNLOCK")
        if got[1] != OK:
            self.moved(before, None)
            return
        balance, offline, online = num(init[:4]), num(init[4:6]), num(init[6:8])
        assert (balance, offline, online) == (m.balance, m.offline, m.online)
        rand = init[10:14]
        assert self.hsm.verify_online_unlock_mac1(
            self.asn8,
            rand=rand,
            online_ctc=online,
            balance=balance,
            offline_ctc=offline,
            term=self.term,
            mac1=init[14:18],
        )
        amount = self.part(share)
        if settle and m.escape is not None:
            amount = m.escape.amount  # the host settles the escape bill it received
        mac2 = self.hsm.online_unlock_mac2(
            self.asn8, rand=rand, online_ctc=online, amount=amount, term=self.term, dt=dt
        )
        got = self.card_x(cmd.online_unlock(amount, dt, flip(mac2) if tamper else mac2))
        sw = 0x9302 if tamper else 0x9401 if amount > balance else OK
        mac3 = self.expect(got, sw, "ONLINE UNLOCK")
        if sw != OK:
            self.moved(before, None)
            return
        after = balance - amount
        assert self.hsm.verify_online_unlock_mac3(
            self.asn8,
            rand=rand,
            online_ctc=online,
            balance_after=after,
            amount=amount,
            term=self.term,
            dt=dt,
            mac3=mac3,
        )
        m.balance = after
        m.debited += amount
        m.lock = LockStatus.FREE
        m.lock_record = LockRecord(
            LockStatus.FREE,
            TxType.ONLINE_UNLOCK,
            after,
            online,
            self.term,
            dt,
            amount.to_bytes(4, "big"),
            mac3,
        ).to_bytes()
        self.logged(online, amount, TxType.ONLINE_UNLOCK, self.term, dt)
        m.proof = (TxType.ONLINE_UNLOCK, online, mac3 + bytes(4))
        m.online += 1
        m.open_lock = m.escape = None  # the host never debits the same grey record twice
        self.moved(before, "online")

    # Invariants -----------------------------------------------------------------------------------
    @invariant()
    def memory_matches_the_model(self) -> None:
        if not self.ready:
            return
        m, cells = self.m, self.card.nvm.cells
        balance = num(cells["et.balance"])
        assert balance == m.balance
        assert balance + m.debited - m.loaded == m.initial  # no fen created or lost
        offline, online = self.counters()
        assert (offline, online) == (m.offline, m.online)
        ttc = num(self.psam.nvm.cells["ttc"])
        assert ttc == m.psam_ttc
        floor_offline, floor_online, floor_ttc = self.floor
        assert offline >= floor_offline and online >= floor_online and ttc >= floor_ttc
        self.floor = (offline, online, ttc)
        assert cells["lock"][0] == m.lock
        assert cells["lock"] == m.lock_record
        assert num(cells["pin.tries"]) == m.tries
        assert (cells["ef18"][:ET_RECORD] or None) == m.last_tx
        for applet in (self.card, self.psam):
            assert applet.nvm.backend.load() == (applet.nvm.cells, None)


@pytest.fixture(scope="module")
def world(hsm: MockHsm, issued: Callable[[str], IssuedCard]) -> World:
    return World(hsm, issued)


def test_card_and_psam_follow_the_model(world: World) -> None:
    class Machine(FuelMachine):
        def __init__(self) -> None:
            super().__init__(world)

    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=500, stateful_step_count=50, deadline=None, database=None),
    )
