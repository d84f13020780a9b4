"""The ET purse's value commands: load, purchase, grey lock, both unlocks, and their proofs.

Every command computes its answer and all its writes first and commits them in one NVM
transaction at the very end, so a failed check or a power loss changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from hmac import compare_digest
from typing import TYPE_CHECKING

from card_profiles.applet import expect_lc, fail, fixed_answer, require
from card_profiles.fuel_card_states import Cmd, OpenInit, Pending
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.layout import LockStatus, TxType
from cardcore.records import LockRecord, TxLogEntry
from cardcore.sw import SW

if TYPE_CHECKING:
    from card_profiles.fuel_card import FuelCard

U32_MAX = 0xFFFFFFFF
KEY_INFO = bytes((layout.KEY_VERSION, layout.ALG_3DES))


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


class Purse:
    def __init__(self, card: FuelCard) -> None:
        self.card = card

    @property
    def balance(self) -> int:
        return int.from_bytes(self.card.nvm.cells["et.balance"], "big")

    def counter(self, name: str) -> int:
        return int.from_bytes(self.card.nvm.cells[name], "big")

    def logged(self, ctc: int, amount: int, tx_type: int, term: bytes, dt: bytes) -> bytes:
        """EF18 with a new newest record: the cyclic file drops its oldest one when full."""
        entry = TxLogEntry(ctc, amount, tx_type, term, dt).to_bytes()
        return (entry + self.card.nvm.cells["ef18"])[
            : layout.EF18_RECORDS * layout.EF18_RECORD_SIZE
        ]

    @staticmethod
    def proof(tx_type: int, ctc: int, mac: bytes, tac: bytes) -> bytes:
        return bytes((tx_type,)) + u16(ctc) + mac + tac

    def check_key_index(self, kidx: int) -> None:
        require(kidx == layout.KEY_INDEX, SW.KEY_INDEX_UNKNOWN)

    # 80 50: INITIALIZE FOR LOAD (P1 00) / FOR PURCHASE (P1 01) ---------------------------------
    def initialize(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 not in (0x00, 0x01) or apdu.p2 != layout.ET_PURSE:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 11)
        is_load = apdu.p1 == 0x00
        fixed_answer(apdu, 16 if is_load else 15)
        card = self.card
        card.enter(Cmd.INITIALIZE_FOR_LOAD if is_load else Cmd.INITIALIZE_FOR_PURCHASE)
        self.check_key_index(data[0])
        amount, term = int.from_bytes(data[1:5], "big"), data[5:11]
        balance = self.balance
        if is_load:
            ctc = self.counter("et.online_ctc")
            require(ctc < layout.CTC_MAX, SW.COUNTER_AT_MAXIMUM)
            require(balance + amount <= U32_MAX, SW.WRONG_DATA)
            rand = card.random(4)
            key = crypto.session_key_load(card.key("dlk"), rand, u16(ctc))
            mac1 = crypto.mac_session(
                key, u32(balance) + u32(amount) + bytes((TxType.ED_LOAD,)) + term
            )
            card.open(Pending.LOAD, OpenInit(amount, term, rand, balance, ctc, key))
            return u32(balance) + u16(ctc) + KEY_INFO + rand + mac1
        ctc = self.counter("et.offline_ctc")
        require(ctc < layout.CTC_MAX, SW.COUNTER_AT_MAXIMUM)
        require(amount <= balance, SW.INSUFFICIENT_BALANCE)
        rand = card.random(4)
        card.open(Pending.PURCHASE, OpenInit(amount, term, rand, balance, ctc))
        return u32(balance) + u16(ctc) + self.overdraft() + KEY_INFO + rand

    def overdraft(self) -> bytes:
        return self.card.nvm.cells["et.overdraft"]

    # 80 52: CREDIT FOR LOAD ----------------------------------------------------------------------
    def credit_for_load(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 11)
        fixed_answer(apdu, 4)
        init = self.card.enter(Cmd.CREDIT_FOR_LOAD)
        assert init is not None
        dt, mac2 = data[:7], data[7:]
        tail = bytes((TxType.ED_LOAD,)) + init.term
        expected = crypto.mac_session(init.session_key, u32(init.amount) + tail + dt)
        require(compare_digest(expected, mac2), SW.MAC_WRONG)
        new_balance = init.balance + init.amount
        tac = crypto.mac_session(
            self.card.tac_key(),
            u32(new_balance) + u16(init.ctc) + u32(init.amount) + tail + dt,
        )
        self.card.commit(
            {
                "et.balance": u32(new_balance),
                "et.online_ctc": u16(init.ctc + 1),
                "ef18": self.logged(init.ctc, init.amount, TxType.ED_LOAD, init.term, dt),
                "proof": self.proof(TxType.ED_LOAD, init.ctc, mac2, tac),
            }
        )
        return tac

    # 80 54: DEBIT FOR PURCHASE -------------------------------------------------------------------
    def debit_for_purchase(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x01 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 15)
        fixed_answer(apdu, 8)
        init = self.card.enter(Cmd.DEBIT_FOR_PURCHASE)
        assert init is not None
        ttc, dt, mac1 = data[:4], data[4:11], data[11:15]
        key = crypto.session_key_purchase(self.card.key("dpk"), init.rand, u16(init.ctc), ttc)
        amount = u32(init.amount)
        tx_type = bytes((TxType.ED_PURCHASE,))
        expected = crypto.mac_session(key, amount + tx_type + init.term + dt)
        require(compare_digest(expected, mac1), SW.MAC_WRONG)
        mac2 = crypto.mac_session(key, amount)
        tac = crypto.mac_session(self.card.tac_key(), amount + tx_type + init.term + ttc + dt)
        self.card.commit(
            {
                "et.balance": u32(init.balance - init.amount),
                "et.offline_ctc": u16(init.ctc + 1),
                "ef18": self.logged(init.ctc, init.amount, TxType.ED_PURCHASE, init.term, dt),
                "proof": self.proof(TxType.ED_PURCHASE, init.ctc, mac2, tac),
            }
        )
        return tac + mac2

    # E0 7A: INITIALIZE FOR GREY LOCK (P1 08) / FOR ONLINE UNLOCK (P1 09) ------------------------
    def initialize_grey(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 not in (0x08, 0x09) or apdu.p2 != layout.ET_PURSE:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 7)
        is_lock = apdu.p1 == 0x08
        fixed_answer(apdu, 15 if is_lock else 18)
        card = self.card
        card.enter(Cmd.INITIALIZE_FOR_GREY_LOCK if is_lock else Cmd.INITIALIZE_FOR_ONLINE_UNLOCK)
        self.check_key_index(data[0])
        term = data[1:7]
        balance, offline = self.balance, self.counter("et.offline_ctc")
        if is_lock:
            # The lock uses CTC n and the unlock n+1; both must fit the counter.
            require(offline + 1 < layout.CTC_MAX, SW.COUNTER_AT_MAXIMUM)
            rand = card.random(4)
            card.open(Pending.GREY_LOCK, OpenInit(0, term, rand, balance, offline))
            return u32(balance) + u16(offline) + self.overdraft() + KEY_INFO + rand
        online = self.counter("et.online_ctc")
        require(online < layout.CTC_MAX, SW.COUNTER_AT_MAXIMUM)
        rand = card.random(4)
        key = crypto.session_key_online_unlock(card.key("dugk"), rand, u16(online))
        head = u32(balance) + u16(offline)
        mac1 = crypto.mac_session(key, head + bytes((TxType.ONLINE_UNLOCK,)) + term)
        card.open(Pending.ONLINE_UNLOCK, OpenInit(0, term, rand, balance, online, key))
        return head + u16(online) + KEY_INFO + rand + mac1

    # E0 7C: GREY LOCK -----------------------------------------------------------------------------
    def grey_lock(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x08 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 19)
        fixed_answer(apdu, 8)
        init = self.card.enter(Cmd.GREY_LOCK)
        assert init is not None
        ttc, psam_rand, dt, mac1 = data[:4], data[4:8], data[8:15], data[15:19]
        sesgk = crypto.session_key_grey_lock(
            self.card.key("dpk"), init.rand, u16(init.ctc), ttc, psam_rand
        )
        lock_type = bytes((TxType.GREY_LOCK,))
        expected = crypto.mac_session(sesgk, lock_type + init.term + dt)
        require(compare_digest(expected, mac1), SW.MAC_WRONG)
        balance = u32(init.balance)
        mac2 = crypto.mac_session(sesgk, balance)
        gtac = crypto.mac_session(self.card.tac_key(), balance + lock_type + init.term + ttc + dt)
        record = LockRecord(
            LockStatus.GREY, TxType.GREY_LOCK, init.balance, init.ctc, init.term, dt, mac2, gtac
        )
        self.card.commit(
            {
                "lock": record.to_bytes(),
                "lock.sesgk": sesgk,
                "et.offline_ctc": u16(init.ctc + 1),
                "proof": self.proof(TxType.GREY_LOCK, init.ctc, mac2, gtac),
            }
        )
        return gtac + mac2

    # E0 7E: DEBIT FOR UNLOCK (P1 08) / ONLINE UNLOCK (P1 09) -----------------------------------
    def unlock(self, apdu: CommandApdu) -> bytes:
        if (apdu.p1, apdu.p2) == (0x08, 0x01):
            return self.debit_for_unlock(apdu)
        if (apdu.p1, apdu.p2) == (0x09, 0x00):
            return self.online_unlock(apdu)
        fail(SW.WRONG_P1P2)

    def debit_for_unlock(self, apdu: CommandApdu) -> bytes:
        data = expect_lc(apdu, 27)
        fixed_answer(apdu, 4)
        card = self.card
        card.enter(Cmd.DEBIT_FOR_UNLOCK)
        amount, ctc, term = int.from_bytes(data[:4], "big"), data[4:6], data[6:12]
        ttc, dt, gmac = data[12:16], data[16:23], data[23:27]
        offline = self.counter("et.offline_ctc")
        require(int.from_bytes(ctc, "big") == offline, SW.CONDITIONS_NOT_SATISFIED)
        require(offline < layout.CTC_MAX, SW.COUNTER_AT_MAXIMUM)
        locked = LockRecord.from_bytes(card.nvm.cells["lock"])
        unlock_type = bytes((TxType.DEBIT_FOR_UNLOCK,))
        expected = crypto.mac_session(
            card.nvm.cells["lock.sesgk"], data[:4] + unlock_type + card.asn8 + u16(locked.ctc)
        )
        require(compare_digest(expected, gmac), SW.MAC_WRONG)
        require(amount <= locked.balance, SW.INSUFFICIENT_BALANCE)
        balance = locked.balance - amount
        tac = crypto.mac_session(card.tac_key(), data[:4] + unlock_type + term + ttc + dt)
        record = LockRecord(
            LockStatus.TAC_UNREAD,
            TxType.DEBIT_FOR_UNLOCK,
            balance,
            offline,
            term,
            dt,
            data[:4],
            tac,
        )
        card.commit(
            {
                "et.balance": u32(balance),
                "et.offline_ctc": u16(offline + 1),
                "lock": record.to_bytes(),
                "lock.sesgk": b"",
                "ef18": self.logged(offline, amount, TxType.DEBIT_FOR_UNLOCK, term, dt),
                "proof": self.proof(TxType.DEBIT_FOR_UNLOCK, offline, gmac, tac),
            }
        )
        return tac

    def online_unlock(self, apdu: CommandApdu) -> bytes:
        data = expect_lc(apdu, 15)
        fixed_answer(apdu, 4)
        init = self.card.enter(Cmd.ONLINE_UNLOCK)
        assert init is not None
        amount, dt, mac2 = int.from_bytes(data[:4], "big"), data[4:11], data[11:15]
        tail = bytes((TxType.ONLINE_UNLOCK,)) + init.term + dt
        expected = crypto.mac_session(init.session_key, data[:4] + tail)
        require(compare_digest(expected, mac2), SW.MAC_WRONG)
        require(amount <= init.balance, SW.INSUFFICIENT_BALANCE)
        balance = init.balance - amount
        mac3 = crypto.mac_session(init.session_key, u32(balance) + u16(init.ctc) + data[:4] + tail)
        record = LockRecord(
            LockStatus.FREE, TxType.ONLINE_UNLOCK, balance, init.ctc, init.term, dt, data[:4], mac3
        )
        self.card.commit(
            {
                "et.balance": u32(balance),
                "et.online_ctc": u16(init.ctc + 1),
                "lock": record.to_bytes(),
                "lock.sesgk": b"",
                "ef18": self.logged(init.ctc, amount, TxType.ONLINE_UNLOCK, init.term, dt),
                "proof": self.proof(TxType.ONLINE_UNLOCK, init.ctc, mac3, bytes(4)),
            }
        )
        return mac3

    # E0 CA: GET LOCK PROOF (P1 00) / CLEAR TAC-UNREAD (P1 01) ----------------------------------
    def lock_proof(self, apdu: CommandApdu) -> bytes:
        if apdu.p2 != 0x00 or apdu.p1 not in (0x00, 0x01):
            fail(SW.WRONG_P1P2)
        if apdu.data:
            fail(SW.WRONG_LENGTH)
        card = self.card
        if apdu.p1 == 0x00:
            fixed_answer(apdu, layout.LOCK_RECORD_SIZE)
            card.enter(Cmd.GET_LOCK_PROOF)
            return card.nvm.cells["lock"]
        card.enter(Cmd.CLEAR_TAC_UNREAD)
        record = card.nvm.cells["lock"]
        if record[0] == LockStatus.TAC_UNREAD:
            card.commit({"lock": bytes((LockStatus.FREE,)) + record[1:]})
        return b""

    # 80 5A: GET TRANSACTION PROVE ----------------------------------------------------------------
    def transaction_prove(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00:
            fail(SW.WRONG_P1P2)
        ctc = expect_lc(apdu, 2)
        fixed_answer(apdu, 8)
        self.card.enter(Cmd.GET_TRANSACTION_PROVE)
        proof = self.card.nvm.cells["proof"]
        require(proof[:3] == bytes((apdu.p2,)) + ctc, SW.PROOF_NOT_FOUND)
        return proof[3:11]


def purse_handlers(card: FuelCard) -> dict[tuple[int, int], Callable[[CommandApdu], bytes]]:
    purse = Purse(card)
    return {
        (0x80, 0x50): purse.initialize,
        (0x80, 0x52): purse.credit_for_load,
        (0x80, 0x54): purse.debit_for_purchase,
        (0xE0, 0x7A): purse.initialize_grey,
        (0xE0, 0x7C): purse.grey_lock,
        (0xE0, 0x7E): purse.unlock,
        (0xE0, 0xCA): purse.lock_proof,
        (0x80, 0x5A): purse.transaction_prove,
    }
