"""The dispenser's grey-lock fuelling (spec §5), as steps a terminal or a scenario can stop between.

read_card / read_psam at insertion, `lock` before the nozzle opens, `unlock_answer` from the
PSAM when the nozzle goes back, `debit` on the card, `make_bill` with the PSAM's TMAC. `fuel`
runs them all; a card pulled after `lock` leaves the caller with an escape bill instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt
from cardcore.errors import FuelsimError
from cardcore.layout import LockStatus
from cardcore.records import (
    Bill,
    Cardholder,
    EtGeneralInfo,
    LockRecord,
    PsamKeyInfo,
    PsamSerial,
    PublicAppData,
    Restrictions,
)
from cardcore.sw import SW
from terminal_sim.channel import Channel


class FuellingRefused(FuelsimError):
    title = "fuelling refused"


class BillType:
    """[SC] Byte 4 of a dispenser bill."""

    FUELLING = 0x00
    ESCAPE = 0x01
    REDEBIT = 0x02


@dataclass(frozen=True)
class CardData:
    public: PublicAppData
    holder: Cardholder
    general: EtGeneralInfo
    restrictions: Restrictions


@dataclass(frozen=True)
class PsamData:
    serial: PsamSerial
    term: bytes
    key_info: PsamKeyInfo


@dataclass(frozen=True)
class GreyLock:
    lock_ctc: int
    lock_ttc: int
    balance: int
    term: bytes
    dt: bytes
    mac2: bytes
    gtac: bytes


@dataclass(frozen=True)
class UnlockAnswer:
    """What `E0 44` gives for the delivered amount: all an escape bill needs to re-debit."""

    amount: int
    gmac: bytes
    psam_tac: bytes
    unlock_ttc: int


@dataclass(frozen=True)
class Sale:
    nozzle: int
    grade: int
    price: int  # fen per litre
    volume: int  # 0.01 L

    @property
    def amount(self) -> int:
        """Fen, rounded half up."""
        return (self.volume * self.price + 50) // 100


def read_card(card: Channel) -> CardData:
    card.send(cmd.select(layout.PSE_NAME))
    card.send(cmd.select(layout.ET_AID))
    return CardData(
        PublicAppData.from_bytes(card.send(cmd.read_binary(layout.SFI_EF15))),
        Cardholder.from_bytes(card.send(cmd.read_binary(layout.SFI_EF16))),
        EtGeneralInfo.from_bytes(card.send(cmd.read_binary(layout.SFI_EF1B))),
        Restrictions.from_bytes(card.send(cmd.read_binary(layout.SFI_EF1C))),
    )


def read_psam(psam: Channel) -> PsamData:
    serial = PsamSerial.from_bytes(psam.send(cmd.read_binary(layout.SFI_PSAM_EF15)))
    term = psam.send(cmd.read_binary(layout.SFI_PSAM_EF16))
    psam.send(cmd.select(layout.PSAM_AID))
    key_info = PsamKeyInfo.from_bytes(psam.send(cmd.read_binary(layout.SFI_PSAM_EF17)))
    return PsamData(serial, term, key_info)


PIN_BLOCKED = "PIN blocked: reload it at an issuing office"


def wrong_pin(tries: int) -> str:
    return f"wrong PIN, {tries} {'try' if tries == 1 else 'tries'} left"


def pin_refusal(sw: int, blocked: str = PIN_BLOCKED) -> str | None:
    """What a terminal shows when VERIFY refused the PIN (None: not a PIN refusal)."""
    if sw == SW.PIN_BLOCKED:
        return blocked
    if sw & 0xFFF0 == 0x63C0:
        return wrong_pin(sw & 0x0F)
    return None


def check_card(data: CardData, today: datetime) -> None:
    """The insertion checks of the grey-lock flow (dates; the rest belongs to the dispenser)."""
    day = today.date()
    if day < data.public.start:
        raise FuellingRefused(f"card not valid before {data.public.start}")
    if day > data.public.expiry:
        raise FuellingRefused(f"card expired on {data.public.expiry}")


def lock_status(card: Channel) -> LockRecord:
    return LockRecord.from_bytes(card.send(cmd.get_lock_proof()))


def lock(
    card: Channel,
    psam: Channel,
    data: CardData,
    term: bytes,
    when: datetime,
    before_lock: Callable[[GreyLock], None] | None = None,
) -> GreyLock:
    """INITIALIZE FOR GREY LOCK → PSAM E0 40 → GREY LOCK → PSAM E0 42.

    `before_lock` gets what is known just before GREY LOCK is sent (no MAC2 or GTAC yet), so a
    journal can recognise the lock on the card if the answer never comes back.
    """
    answer = card.send(cmd.initialize_for_grey_lock(term))
    balance, ctc, rand = (
        int.from_bytes(answer[:4], "big"),
        int.from_bytes(answer[4:6], "big"),
        answer[11:15],
    )
    dt = bcd_dt(when)
    public = data.public
    sam = psam.send(
        cmd.init_sam_for_grey_lock(rand, ctc, balance, dt, public.asn8, public.issuer_id)
    )
    lock_ttc, psam_rand, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8], sam[8:12]
    if before_lock is not None:
        before_lock(GreyLock(ctc, lock_ttc, balance, term, dt, b"", b""))
    locked = card.send(cmd.grey_lock(lock_ttc, psam_rand, dt, mac1))
    gtac, mac2 = locked[:4], locked[4:8]
    psam.send(cmd.verify_grey_lock_mac2(mac2))
    return GreyLock(ctc, lock_ttc, balance, term, dt, mac2, gtac)


def unlock_answer(psam: Channel, asn8: bytes, locked: GreyLock, amount: int) -> UnlockAnswer:
    """PSAM E0 44 for the delivered amount; in the normal flow the unlock TTC is lock TTC + 1."""
    answer = psam.send(cmd.gmac_for_unlock(asn8, locked.lock_ctc, amount))
    return UnlockAnswer(amount, answer[:4], answer[4:8], locked.lock_ttc + 1)


def debit(
    card: Channel, locked: GreyLock, unlock: UnlockAnswer, when: datetime
) -> tuple[bytes, bytes]:
    """DEBIT FOR UNLOCK with the lock CTC + 1; returns the TAC and the dt it used."""
    dt = bcd_dt(when)
    tac = card.send(
        cmd.debit_for_unlock(
            unlock.amount, locked.lock_ctc + 1, locked.term, unlock.unlock_ttc, dt, unlock.gmac
        )
    )
    return tac, dt


def make_bill(psam: Channel, bill: Bill) -> Bill:
    """Put the PSAM's TMAC (80 1A, 80 FA over bytes 0–90) on a bill."""
    psam.send(cmd.init_for_descrypt())
    tmac = psam.send(cmd.des_crypt_mac(bill.body()))
    return replace(bill, tmac=tmac)


def lock_bill(
    psam: Channel,
    bill_type: int,
    data: CardData,
    psam_data: PsamData,
    locked: GreyLock,
    unlock: UnlockAnswer,
    *,
    sale: Sale | None = None,
    dt: bytes | None = None,
    tac: bytes | None = None,
    bill_ttc: int = 1,
) -> Bill:
    """The bill of a grey-lock fuelling, signed with the PSAM's TMAC.

    A fuelling bill carries the unlock's dt, CTC and TAC. An escape bill (no `tac`: the card
    was pulled) carries the lock's dt and CTC and the GTAC, and is what a re-debit needs.
    """
    escape = tac is None
    return make_bill(
        psam,
        Bill(
            bill_ttc=bill_ttc,
            tx_type=bill_type,
            dt=locked.dt if dt is None else dt,
            asn=data.public.asn,
            balance_after=locked.balance - unlock.amount,
            amount=unlock.amount,
            ctc=locked.lock_ctc if escape else locked.lock_ctc + 1,
            tac=locked.gtac if tac is None else tac,
            gmac=unlock.gmac,
            psam_tac=unlock.psam_tac,
            psam_asn=psam_data.serial.serial,
            term=psam_data.term,
            psam_ttc=unlock.unlock_ttc,
            card_class=data.holder.card_type,
            key_index=psam_data.key_info.key_index,
            nozzle=sale.nozzle if sale else 0,
            grade=sale.grade if sale else 0,
            volume=sale.volume if sale else 0,
            price=sale.price if sale else 0,
        ),
    )


@dataclass(frozen=True)
class FuellingResult:
    card: CardData
    locked: GreyLock
    unlock: UnlockAnswer
    tac: bytes
    bill: Bill
    balance_before: int
    balance_after: int


def fuel(
    card: Channel,
    psam: Channel,
    psam_data: PsamData,
    *,
    pin: str,
    sale: Sale,
    clock_now: datetime,
    unlock_at: datetime,
    bill_ttc: int = 1,
) -> FuellingResult:
    """One complete grey-lock fuelling, from the card's insertion to the bill.

    The PSAM was read once when the dispenser started (`read_psam`); the card is powered.
    """
    data = read_card(card)
    check_card(data, clock_now)
    card.send(cmd.verify(pin))
    card.exchange(cmd.read_record(layout.SFI_EF18, 1))  # the newest log record; 6A83 if none
    status = lock_status(card)
    if status.status == LockStatus.GREY:
        raise FuellingRefused(
            "the card is grey-locked: re-debit it at the station that holds the escape bill"
        )
    if status.status == LockStatus.TAC_UNREAD:
        card.send(cmd.clear_tac_unread())
    balance = int.from_bytes(card.send(cmd.get_balance()), "big")
    if sale.amount > balance:
        raise FuellingRefused(f"balance {balance} fen is below the sale of {sale.amount} fen")
    locked = lock(card, psam, data, psam_data.term, clock_now)
    unlock = unlock_answer(psam, data.public.asn8, locked, sale.amount)
    tac, dt = debit(card, locked, unlock, unlock_at)
    card.send(cmd.clear_tac_unread())
    bill = lock_bill(
        psam,
        BillType.FUELLING,
        data,
        psam_data,
        locked,
        unlock,
        sale=sale,
        dt=dt,
        tac=tac,
        bill_ttc=bill_ttc,
    )
    return FuellingResult(data, locked, unlock, tac, bill, balance, locked.balance - sale.amount)
