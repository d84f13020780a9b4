"""How a dispenser finishes a fuelling after a crash or power loss, from its journal and the
card: the lock still open (finish the sale), the debit done but its answer lost (bill it from
GET LOCK PROOF), the card gone (keep an escape bill), or GREY LOCK sent but never journaled
(prove it from the card's lock record)."""

from __future__ import annotations

from cardcore import commands as cmd
from cardcore.layout import LockStatus, TxType
from cardcore.records import Bill, Cardholder, EtGeneralInfo, PublicAppData, Restrictions
from terminal_sim.channel import CardRefused
from terminal_sim.dispenser import (
    Dispenser,
    charge,
    lock_fields,
    offer_from_journal,
    unlock_fields,
)
from terminal_sim.fuelling import (
    CardData,
    GreyLock,
    Sale,
    UnlockAnswer,
    lock_status,
    read_card,
    unlock_answer,
)
from terminal_sim.journal import JournalEntry
from terminal_sim.readers import CardLost


def lock_on_card(pump: Dispenser, entry: JournalEntry) -> GreyLock | None:
    """GREY LOCK was sent but its answer never journaled: the card's lock record says
    whether it happened (same CTC, terminal and dt). If so, confirm it to the PSAM (E0 42
    with the card's MAC2) and journal it, so the fuelling can be finished."""
    intent = entry.data("locking")
    if intent is None:
        return None
    try:
        pump.card_reader.connect()
        read_card(pump.card)
        record = lock_status(pump.card)
    except CardLost:
        return None  # without the card the lock cannot be proven: the office unlocks it
    if (record.status, record.ctc, record.term, record.dt) != (
        LockStatus.GREY,
        intent["lock_ctc"],
        intent["term"],
        intent["dt"],
    ):
        return None
    locked = GreyLock(**{**intent, "mac2": record.word22, "gtac": record.tac})
    answer = pump.psam.exchange(cmd.verify_grey_lock_mac2(locked.mac2))
    if not answer.ok and answer.sw != 0x6985:  # 6985: the PSAM had confirmed it already
        raise CardRefused(pump.psam_reader.name, "VERIFY GREY-LOCK MAC2", answer.sw)
    pump.journal.step(entry.txn, "locked", **lock_fields(locked))
    return locked


def card_data_from(entry: JournalEntry) -> CardData:
    """The card as read at insertion, from the journal (the card itself may be gone)."""
    begin = entry.data("begin") or {}
    return CardData(
        PublicAppData.from_bytes(begin["ef15"]),
        Cardholder.from_bytes(begin["ef16"]),
        EtGeneralInfo.from_bytes(begin["ef1b"]),
        Restrictions.from_bytes(begin["ef1c"]),
    )


def recover_one(pump: Dispenser, entry: JournalEntry) -> Bill | None:
    """The transaction's bill, or None when it never locked the card (closed as aborted)."""
    locked_data = entry.data("locked")
    if locked_data is None:
        found = lock_on_card(pump, entry)
        if found is None:  # the lock never happened: nothing to finish
            pump.journal.step(entry.txn, "done", aborted=True)
            pump.show("the interrupted fuelling never locked the card: nothing to bill")
            return None
        locked = found
    else:
        locked = GreyLock(**locked_data)
    volume = max((d["volume"] for n, d in entry.steps if n == "delivered"), default=0)
    begin = entry.data("begin") or {}
    grade = pump.nozzles[int(begin["nozzle"])]
    sale = Sale(int(begin["nozzle"]), grade.code, grade.price, volume)
    asn = begin["asn"]
    unlock_data = entry.data("unlock")
    unlock = (
        UnlockAnswer(**unlock_data)
        if unlock_data is not None
        else unlock_answer(
            pump.psam, asn[2:], locked, charge(sale, offer_from_journal(entry.data("offer")))
        )
    )
    pump.journal.step(entry.txn, "unlock", **unlock_fields(unlock))
    debited = entry.data("debited")
    try:
        pump.card_reader.connect()
        data = read_card(pump.card)
    except CardLost:
        if debited is not None:  # the card paid; the next insertion clears its TAC-unread
            return pump.debited(
                entry.txn,
                card_data_from(entry),
                locked,
                unlock,
                sale,
                debited["tac"],
                debited["dt"],
                card_present=False,
            )
        # the card is gone: keep an escape bill for the delivered fuel
        return pump.escaped(entry.txn, card_data_from(entry), locked, unlock, sale)
    record = lock_status(pump.card)
    if record.status == LockStatus.GREY and record.ctc == locked.lock_ctc:
        return pump.finish(entry.txn, data, locked, unlock, sale, card_lost=False)
    if record.tx_type == TxType.DEBIT_FOR_UNLOCK and record.ctc == locked.lock_ctc + 1:
        # The debit happened; its answer was lost. The lock record holds the TAC.
        return pump.debited(entry.txn, data, locked, unlock, sale, record.tac, record.dt)
    raise pump.refuse("the card does not match the interrupted fuelling")
