"""A dispenser with card-machine linkage: nozzles, presets, fuelling in ticks, grey lock, bills.

The card is inserted and checked (dates, blacklist, PIN, lock status, EF1C restrictions), the
nozzle is preset by amount or litres, lifting it grey-locks the purse, each `tick()` delivers
fuel, and hanging up debits the card and stores the bill. A card pulled while the nozzle is
open leaves an escape bill at hang-up; the station's dispensers share their escape bills, so
the card is re-debited (补扣) when it comes back to any of them. Every step is journaled first
(`journal.py`), so `recover()` can finish a transaction after a crash or power loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt
from cardcore.errors import FuelsimError
from cardcore.layout import CardType, LockStatus, TxType
from cardcore.ports import Clock, Reader
from cardcore.records import (
    NO_LIMIT,
    Bill,
    LockRecord,
    TxLogEntry,
)
from host_sim.promotions import Offer, rule_from_dict
from terminal_sim.channel import CardRefused, Channel
from terminal_sim.events import BILL, MESSAGE, STATE, TICK, Event, EventBus
from terminal_sim.fuelling import (
    BillType,
    CardData,
    GreyLock,
    PsamData,
    Sale,
    UnlockAnswer,
    check_card,
    lock,
    lock_bill,
    lock_status,
    make_bill,
    pin_refusal,
    read_card,
    read_psam,
    unlock_answer,
)
from terminal_sim.journal import Journal
from terminal_sim.promotions import PriceQuoter, PumpSale
from terminal_sim.readers import CardLost

FUELLING_CARD_TYPES = {CardType.USER, CardType.STAFF, CardType.PUMP_TEST}


class DispenserRefused(FuelsimError):
    title = "refused at the pump"


class State(Enum):
    IDLE = "idle"
    CARD_READY = "card ready"
    FUELLING = "fuelling"


@dataclass(frozen=True)
class Grade:
    code: int
    name: str
    price: int  # fen per litre


@dataclass
class Preset:
    nozzle: int
    amount: int | None = None  # fen
    volume: int | None = None  # 0.01 L


@dataclass
class Fuelling:
    """The transaction in progress at the nozzle."""

    txn: int
    nozzle: int
    grade: Grade
    card: CardData
    locked: GreyLock
    limit_volume: int  # 0.01 L the preset and the balance allow
    volume: int = 0
    card_lost: bool = False
    offer: Offer | None = None  # the host's discount, quoted when the nozzle was lifted

    @property
    def amount(self) -> int:
        """What the card pays for the fuel so far, after the discount."""
        return charge(Sale(self.nozzle, self.grade.code, self.grade.price, self.volume), self.offer)


@dataclass
class StationBills:
    """Escape bills of a station, by (ASN, lock CTC): any of its pumps can re-debit them."""

    escape: dict[tuple[bytes, int], Bill] = field(default_factory=dict)


class Dispenser:
    def __init__(
        self,
        name: str,
        card: Reader,
        psam: Reader,
        nozzles: dict[int, Grade],
        *,
        bus: EventBus,
        clock: Clock,
        journal: Journal,
        station: StationBills | None = None,
        blacklisted: Callable[[bytes], bool] = lambda _: False,
        flow_per_tick: int = 50,  # 0.50 L per tick
        quoter: PriceQuoter | None = None,
    ) -> None:
        self.name = name
        self.card_reader = card
        self.card = Channel(card)
        self.psam_reader = psam
        self.psam = Channel(psam)
        self.nozzles = nozzles
        self.bus = bus
        self.clock = clock
        self.journal = journal
        self.station = station or StationBills()
        self.blacklisted = blacklisted
        self.flow_per_tick = flow_per_tick
        self.quoter = quoter
        self.state = State.IDLE
        self.card_data: CardData | None = None
        self.balance = 0
        self.fuelling: Fuelling | None = None
        self.bill_ttc = 0
        self.bills: list[Bill] = []
        self.psam_data: PsamData | None = None

    # Display and state -----------------------------------------------------------------------
    def show(self, text: str) -> None:
        self.bus.publish(Event(MESSAGE, self.name, {"text": text}))

    def refuse(self, text: str) -> DispenserRefused:
        self.show(text)
        return DispenserRefused(text)

    def enter(self, state: State) -> None:
        self.state = state
        self.bus.publish(Event(STATE, self.name, {"state": state.value}))

    def start(self) -> PsamData:
        """Power the PSAM and read it once, as the pump does when it starts."""
        self.psam_reader.connect()
        self.psam_data = read_psam(self.psam)
        self.show("insert card")
        return self.psam_data

    @property
    def term(self) -> bytes:
        if self.psam_data is None:
            raise FuelsimError(f"{self.name}: start the dispenser first")
        return self.psam_data.term

    # Card insertion --------------------------------------------------------------------------
    def insert_card(self, pin: str) -> CardData:
        """Read and check the card, verify the PIN, settle an old lock; the pump is then ready."""
        now = self.clock.now()
        self.card_reader.connect()
        try:
            data = read_card(self.card)
        except CardRefused as refused:
            if refused.sw in (0x6A81, 0x9303):
                raise self.refuse("card blocked: take it to an issuing office") from None
            raise
        if self.blacklisted(data.public.asn):
            raise self.refuse("card blacklisted: keep the card and call the office")
        try:
            check_card(data, now)
        except FuelsimError as exc:
            raise self.refuse(str(exc)) from None
        if data.holder.card_type not in FUELLING_CARD_TYPES:
            raise self.refuse("this card type cannot buy fuel")
        if self.unfinished_for(data.public.asn):
            # This pump lost the card mid-transaction (GREY LOCK's answer, say): finish that
            # transaction now that the card is back, as after a restart.
            self.recover()
        answer = self.card.exchange(cmd.verify(pin))
        refusal = pin_refusal(answer.sw)
        if refusal is not None:
            raise self.refuse(refusal)
        if not answer.ok:
            raise CardRefused(self.card_reader.name, "VERIFY", answer.sw)
        self.settle_lock(data)
        self.balance = int.from_bytes(self.card.send(cmd.get_balance()), "big")
        self.card_data = data
        self.enter(State.CARD_READY)
        self.show(f"balance {self.balance / 100:.2f}; choose a nozzle")
        if data.restrictions.plate:
            self.show(f"vehicle {data.restrictions.plate} only")
        return data

    def settle_lock(self, data: CardData) -> None:
        """Status 01: re-debit from this station's escape bill, else refuse. Status 10: clear."""
        record = lock_status(self.card)
        paid = self.station.escape.get((data.public.asn, record.ctc - 1))
        if (
            paid is not None
            and record.status != LockStatus.GREY
            and record.tx_type == TxType.DEBIT_FOR_UNLOCK
        ):
            # The escape bill's lock was debited after all (its answer was lost): bill that debit.
            self.paid_escape(data, paid, record)
        if record.status == LockStatus.TAC_UNREAD:
            self.card.send(cmd.clear_tac_unread())
        if record.status != LockStatus.GREY:
            return
        bill = self.station.escape.get((data.public.asn, record.ctc))
        if bill is None:
            raise self.refuse("card grey-locked elsewhere: unlock at an issuing office")
        self.redebit(data, bill)

    def paid_escape(self, data: CardData, escape: Bill, record: LockRecord) -> Bill:
        """An escape bill whose DEBIT FOR UNLOCK the card did: re-bill it with the card's TAC."""
        del self.station.escape[(data.public.asn, escape.ctc)]
        bill = replace(
            escape,
            bill_ttc=self.next_bill_ttc(),
            tx_type=BillType.REDEBIT,
            dt=record.dt,
            ctc=escape.ctc + 1,
            tac=record.tac,
        )
        return self.store_bill(make_bill(self.psam, bill))

    def redebit(self, data: CardData, escape: Bill) -> Bill:
        """补扣: DEBIT FOR UNLOCK with the escape bill's amount, CTC + 1, term, TTC and GMAC."""
        dt = bcd_dt(self.clock.now())
        tac = self.card.send(
            cmd.debit_for_unlock(
                escape.amount, escape.ctc + 1, escape.term, escape.psam_ttc, dt, escape.gmac
            )
        )
        self.card.send(cmd.clear_tac_unread())
        del self.station.escape[(data.public.asn, escape.ctc)]
        self.show(f"re-debited {escape.amount / 100:.2f} from an earlier fuelling")
        bill = make_bill(
            self.psam,
            Bill(
                bill_ttc=self.next_bill_ttc(),
                tx_type=BillType.REDEBIT,
                dt=dt,
                asn=escape.asn,
                balance_after=escape.balance_after,
                amount=escape.amount,
                ctc=escape.ctc + 1,
                tac=tac,
                gmac=escape.gmac,
                psam_tac=escape.psam_tac,
                psam_asn=escape.psam_asn,
                term=escape.term,
                psam_ttc=escape.psam_ttc,
                card_class=escape.card_class,
                key_index=escape.key_index,
                nozzle=escape.nozzle,
                grade=escape.grade,
                volume=escape.volume,
                price=escape.price,
            ),
        )
        return self.store_bill(bill)

    # Preset and restrictions -----------------------------------------------------------------
    def preset(self, preset: Preset) -> int:
        """Check the preset against the balance and EF1C; returns the volume limit (0.01 L)."""
        data = self.ready_card()
        grade = self.nozzles.get(preset.nozzle)
        if grade is None:
            raise self.refuse(f"no nozzle {preset.nozzle}")
        limits = data.restrictions
        if limits.product != NO_LIMIT and limits.product != grade.code:
            raise self.refuse(f"this card may only buy product {limits.product:04X}")
        volume = self.balance * 100 // grade.price
        if preset.amount is not None:
            volume = min(volume, preset.amount * 100 // grade.price)
        if preset.volume is not None:
            volume = min(volume, preset.volume)
        if limits.max_litres_per_fill != NO_LIMIT:
            volume = min(volume, limits.max_litres_per_fill * 100)
        fills, spent = self.today(data)
        if limits.max_fills_per_day != NO_LIMIT and fills >= limits.max_fills_per_day:
            raise self.refuse(f"daily limit reached: {fills} fills today")
        if limits.max_amount_per_day != NO_LIMIT:
            left = limits.max_amount_per_day - spent
            if left <= 0:
                raise self.refuse(f"daily limit reached: {spent / 100:.2f} spent today")
            volume = min(volume, left * 100 // grade.price)
        if volume <= 0:
            raise self.refuse("balance too low for this grade")
        return volume

    def today(self, data: CardData) -> tuple[int, int]:
        """Fills and fen spent today, from the card's log (EF18)."""
        day = bcd_dt(self.clock.now())[:4]
        fills = spent = 0
        for number in range(1, layout.EF18_RECORDS + 1):
            answer = self.card.exchange(cmd.read_record(layout.SFI_EF18, number))
            if not answer.ok:
                break
            entry = TxLogEntry.from_bytes(answer.data)
            if entry.dt[:4] == day and entry.tx_type in (
                TxType.DEBIT_FOR_UNLOCK,
                TxType.ED_PURCHASE,
            ):
                fills += entry.tx_type == TxType.DEBIT_FOR_UNLOCK
                spent += entry.amount
        return fills, spent

    def ready_card(self) -> CardData:
        if self.state is not State.CARD_READY or self.card_data is None:
            raise self.refuse("insert a card first")
        return self.card_data

    # Fuelling --------------------------------------------------------------------------------
    def lift_nozzle(self, preset: Preset) -> Fuelling:
        """Grey-lock the card (journaled first) and open the nozzle."""
        limit = self.preset(preset)
        data = self.ready_card()
        grade = self.nozzles[preset.nozzle]
        now = self.clock.now()
        offer = self.quote(data, grade, preset.nozzle, limit)
        txn = self.journal.begin(
            "fuelling",
            self.name,
            now.isoformat(),
            asn=data.public.asn,
            nozzle=preset.nozzle,
            ef15=data.public.to_bytes(),
            ef16=data.holder.to_bytes(),
            ef1b=data.general.to_bytes(),
            ef1c=data.restrictions.to_bytes(),
        )
        if offer is not None:
            self.journal.step(txn, "offer", **offer_fields(offer))
        locked = lock(
            self.card,
            self.psam,
            data,
            self.term,
            now,
            before_lock=lambda intent: self.journal.step(txn, "locking", **lock_fields(intent)),
        )
        self.journal.step(txn, "locked", **lock_fields(locked))
        self.fuelling = Fuelling(txn, preset.nozzle, grade, data, locked, limit, offer=offer)
        self.enter(State.FUELLING)
        if offer is not None:
            self.show(f"{grade.name}: {offer.text}")
        self.show(f"fuelling {grade.name}")
        return self.fuelling

    def quote(self, data: CardData, grade: Grade, nozzle: int, limit: int) -> Offer | None:
        """The host's discount for the most this authorisation allows (list price)."""
        if self.quoter is None:
            return None
        gross = Sale(nozzle, grade.code, grade.price, limit).amount
        return self.quoter.quote(
            PumpSale(data.public.asn, self.term, grade.code, gross, limit, self.clock.now())
        )

    def tick(self, ticks: int = 1) -> int:
        """Deliver fuel; returns the volume so far (0.01 L). Stops at the preset."""
        fuelling = self.current()
        for _ in range(ticks):
            fuelling.volume = min(fuelling.limit_volume, fuelling.volume + self.flow_per_tick)
            self.bus.publish(
                Event(
                    TICK,
                    self.name,
                    {
                        "nozzle": fuelling.nozzle,
                        "volume": fuelling.volume,
                        "amount": fuelling.amount,
                    },
                )
            )
        self.journal.step(fuelling.txn, "delivered", volume=fuelling.volume)
        return fuelling.volume

    def pull_card(self) -> None:
        """The card leaves the reader: mid-fuelling it stays grey and the pump keeps going."""
        if self.fuelling is not None:
            self.fuelling.card_lost = True
            self.show("card removed: fuelling continues, the sale will be re-debited")
        self.card_reader.disconnect()

    def current(self) -> Fuelling:
        if self.fuelling is None:
            raise self.refuse("no fuelling in progress")
        return self.fuelling

    def hang_up(self) -> Bill:
        """Nozzle back: GMAC from the PSAM, debit the card (or keep an escape bill), bill."""
        fuelling = self.current()
        sale = Sale(fuelling.nozzle, fuelling.grade.code, fuelling.grade.price, fuelling.volume)
        self.journal.step(fuelling.txn, "delivered", volume=fuelling.volume)
        unlock = unlock_answer(
            self.psam, fuelling.card.public.asn8, fuelling.locked, charge(sale, fuelling.offer)
        )
        self.journal.step(fuelling.txn, "unlock", **unlock_fields(unlock))
        bill = self.finish(
            fuelling.txn, fuelling.card, fuelling.locked, unlock, sale, fuelling.card_lost
        )
        self.fuelling = None
        self.card_data = None
        self.enter(State.IDLE)
        return bill

    def finish(
        self,
        txn: int,
        data: CardData,
        locked: GreyLock,
        unlock: UnlockAnswer,
        sale: Sale,
        card_lost: bool,
    ) -> Bill:
        if not card_lost:
            try:
                tac = self.card.send(
                    cmd.debit_for_unlock(
                        unlock.amount,
                        locked.lock_ctc + 1,
                        locked.term,
                        unlock.unlock_ttc,
                        bcd_dt(self.clock.now()),
                        unlock.gmac,
                    )
                )
            except CardLost:
                card_lost = True
            else:
                return self.debited(txn, data, locked, unlock, sale, tac)
        return self.escaped(txn, data, locked, unlock, sale)

    def debited(
        self,
        txn: int,
        data: CardData,
        locked: GreyLock,
        unlock: UnlockAnswer,
        sale: Sale,
        tac: bytes,
        dt: bytes | None = None,
        card_present: bool = True,
    ) -> Bill:
        if card_present:
            record = LockRecord.from_bytes(self.card.send(cmd.get_lock_proof()))
            dt = dt or record.dt
        assert dt is not None
        self.journal.step(txn, "debited", tac=tac, dt=dt)
        if card_present:
            self.card.send(cmd.clear_tac_unread())
        bill = lock_bill(
            self.psam,
            BillType.FUELLING,
            data,
            self.psam_data_or_fail(),
            locked,
            unlock,
            sale=sale,
            dt=dt,
            tac=tac,
            bill_ttc=self.next_bill_ttc(),
        )
        self.journal.step(txn, "done", bill=bill.to_bytes())
        off = sale.amount - unlock.amount
        discount = f" after {off / 100:.2f} discount" if off else ""
        self.show(
            f"paid {unlock.amount / 100:.2f}{discount}; balance {bill.balance_after / 100:.2f}"
        )
        return self.store_bill(bill)

    def escaped(
        self, txn: int, data: CardData, locked: GreyLock, unlock: UnlockAnswer, sale: Sale
    ) -> Bill:
        bill = lock_bill(
            self.psam,
            BillType.ESCAPE,
            data,
            self.psam_data_or_fail(),
            locked,
            unlock,
            sale=sale,
            bill_ttc=self.next_bill_ttc(),
        )
        self.station.escape[(data.public.asn, locked.lock_ctc)] = bill
        self.journal.step(txn, "done", bill=bill.to_bytes(), escape=True)
        self.show(f"escape bill {unlock.amount / 100:.2f} kept: re-insert the card at this station")
        return self.store_bill(bill)

    def psam_data_or_fail(self) -> PsamData:
        if self.psam_data is None:
            raise FuelsimError(f"{self.name}: start the dispenser first")
        return self.psam_data

    def next_bill_ttc(self) -> int:
        self.bill_ttc += 1
        return self.bill_ttc

    def store_bill(self, bill: Bill) -> Bill:
        self.bills.append(bill)
        self.bus.publish(Event(BILL, self.name, {"bill": bill}))
        return bill

    # Recovery --------------------------------------------------------------------------------
    def unfinished_for(self, asn: bytes) -> bool:
        """Whether the journal holds an unfinished transaction of this pump with this card."""
        return any(
            (entry.data("begin") or {}).get("asn") == asn
            for entry in self.journal.unfinished(self.name)
        )

    def recover(self) -> list[Bill]:
        """Finish every journaled fuelling of this pump after a crash or power loss."""
        from terminal_sim.dispenser_recovery import recover_one  # it imports this module

        bills = [recover_one(self, entry) for entry in self.journal.unfinished(self.name)]
        return [bill for bill in bills if bill is not None]


def lock_fields(locked: GreyLock) -> dict[str, object]:
    return {
        "lock_ctc": locked.lock_ctc,
        "lock_ttc": locked.lock_ttc,
        "balance": locked.balance,
        "term": locked.term,
        "dt": locked.dt,
        "mac2": locked.mac2,
        "gtac": locked.gtac,
    }


def charge(sale: Sale, offer: Offer | None) -> int:
    """What the card pays: the sale at list price less the offer's discount on it. The bill
    keeps the list price, so its discount is volume × price − amount (docs/promotions.md)."""
    return sale.amount - (offer.discount(sale.amount, sale.volume) if offer else 0)


def offer_fields(offer: Offer) -> dict[str, object]:
    return {"rule": offer.rule.to_dict(), "quoted_discount": offer.quoted_discount}


def offer_from_journal(fields: dict[str, object] | None) -> Offer | None:
    """The offer a journaled fuelling was authorised with (None: none was)."""
    if fields is None:
        return None
    rule, quoted = fields["rule"], fields["quoted_discount"]
    assert isinstance(rule, dict) and isinstance(quoted, int)
    return Offer(rule_from_dict(rule), quoted)


def unlock_fields(unlock: UnlockAnswer) -> dict[str, object]:
    return {
        "amount": unlock.amount,
        "gmac": unlock.gmac,
        "psam_tac": unlock.psam_tac,
        "unlock_ttc": unlock.unlock_ttc,
    }
