"""The dispenser: insertion checks, presets and restrictions, fuelling in ticks, escape bills,
re-debit at another pump of the station, and recovery from the journal after a crash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore import commands as cmd
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.layout import LockStatus
from cardcore.records import LockRecord, PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.dispenser import Dispenser, DispenserRefused, Grade, Preset, StationBills
from terminal_sim.events import BILL, TICK, EventBus, Recorder
from terminal_sim.fuelling import BillType
from terminal_sim.issuing import IssuedCard
from terminal_sim.journal import Journal
from terminal_sim.readers import InProcReader

NOZZLES = {1: Grade(0x0092, "92#", 750), 2: Grade(0x0095, "95#", 800)}
START = datetime(2026, 11, 22, 10, 0, 0)


class Pump:
    def __init__(
        self,
        card: FuelCard,
        psam: Psam,
        journal: Journal,
        clock: ManualClock,
        station: StationBills,
        name: str = "pump-1",
    ) -> None:
        self.card = card
        self.events = Recorder()
        bus = EventBus()
        bus.subscribe(self.events)
        self.card_reader = InProcReader(card, "card")
        self.psam = psam
        self.dispenser = Dispenser(
            name,
            self.card_reader,
            InProcReader(self.psam, "psam"),
            NOZZLES,
            bus=bus,
            clock=clock,
            journal=journal,
            station=station,
        )
        self.dispenser.start()

    def balance(self) -> int:
        return int.from_bytes(self.card.nvm.cells["et.balance"], "big")

    def lock(self) -> LockRecord:
        return LockRecord.from_bytes(self.card.nvm.cells["lock"])


@pytest.fixture
def rig(issued: Callable[[str], IssuedCard], tmp_path: Path) -> Callable[..., Pump]:
    clock = ManualClock(START)
    station = StationBills()
    journal = Journal(tmp_path / "journal.sqlite")
    psam_cells = dict(issued("psam-dispenser").cells)

    def make(
        profile: str = "normal",
        card: FuelCard | None = None,
        name: str = "pump-1",
        psam: Psam | None = None,
    ) -> Pump:
        """A pump; pass the card (and the pump's PSAM) of an earlier one to continue with them."""
        if card is None:
            applet = in_memory(dict(issued(profile).cells), SeededRng(1))
            assert isinstance(applet, FuelCard)
            card = applet
        if psam is None:
            new_psam = in_memory(dict(psam_cells), SeededRng(5))
            assert isinstance(new_psam, Psam)
            psam = new_psam
        return Pump(card, psam, journal, clock, station, name)

    return make


def fill(pump: Pump, preset: Preset, ticks: int = 1000) -> Any:
    pump.dispenser.insert_card("999999")
    pump.dispenser.lift_nozzle(preset)
    pump.dispenser.tick(ticks)
    return pump.dispenser.hang_up()


def test_grey_lock_fuelling_from_insert_to_bill(rig: Callable[..., Pump], hsm: MockHsm) -> None:
    pump = rig()
    bill = fill(pump, Preset(1, amount=10_000))
    # The nozzle stops at the whole 0.01 L under 100.00: 13.33 L at 7.50 is 99.98.
    assert bill.tx_type == BillType.FUELLING and bill.amount == 9_998 == 100_000 - pump.balance()
    assert bill.volume == 1333 and bill.nozzle == 1 and bill.grade == 0x0092
    assert hsm.bill_tmac(bill.body()) == bill.tmac
    public = PublicAppData.from_bytes(pump.card.nvm.cells["ef15"])
    assert hsm.verify_unlock_tac(
        public.asn8,
        amount=bill.amount,
        term=bill.term,
        ttc=bill.psam_ttc,
        dt=bill.dt,
        tac=bill.tac,
    )
    assert pump.lock().status == LockStatus.FREE
    assert len(pump.events.of(TICK)) > 1 and pump.events.of(BILL)[0].data["bill"] == bill
    assert "paid 99.98; balance 900.02" in pump.events.messages()
    assert pump.dispenser.journal.unfinished() == []


def test_preset_by_litres_stops_the_nozzle(rig: Callable[..., Pump]) -> None:
    pump = rig()
    bill = fill(pump, Preset(2, volume=1_025))
    assert (bill.volume, bill.amount) == (1_025, 8_200)


def test_card_pulled_then_re_debited_at_another_pump(rig: Callable[..., Pump]) -> None:
    first = rig()
    first.dispenser.insert_card("999999")
    first.dispenser.lift_nozzle(Preset(1, amount=5_000))
    first.dispenser.tick(3)
    first.dispenser.pull_card()
    first.dispenser.tick(3)
    escape = first.dispenser.hang_up()
    assert escape.tx_type == BillType.ESCAPE and escape.amount == 2_250  # 3.00 L
    assert first.lock().status == LockStatus.GREY and first.balance() == 100_000

    second = rig(card=first.card, name="pump-2")  # the same card at another pump
    second.dispenser.insert_card("999999")
    assert first.balance() == 100_000 - 2_250
    assert first.lock().status == LockStatus.FREE
    redebit = second.dispenser.bills[0]
    assert redebit.tx_type == BillType.REDEBIT and redebit.amount == 2_250
    assert any("re-debited 22.50" in m for m in second.events.messages())
    bill = second.dispenser.hang_up() if second.dispenser.fuelling else None
    assert bill is None  # nothing more was fuelled


def test_grey_card_without_the_escape_bill_is_refused(rig: Callable[..., Pump]) -> None:
    pump = rig("grey-locked")
    with pytest.raises(DispenserRefused, match="grey-locked elsewhere"):
        pump.dispenser.insert_card("999999")


@pytest.mark.parametrize(
    ("profile", "pin", "message"),
    [
        ("blacklisted", "999999", "card blocked"),
        ("expired", "999999", "expired"),
        ("pin-blocked", "999999", "PIN blocked"),
        ("normal", "123456", "wrong PIN, 2 tries left"),
    ],
)
def test_insertion_refusals(rig: Callable[..., Pump], profile: str, pin: str, message: str) -> None:
    pump = rig(profile)
    before = dict(pump.card.nvm.cells)
    with pytest.raises(DispenserRefused, match=message):
        pump.dispenser.insert_card(pin)
    assert message in pump.events.messages()[-1]
    changed = {k for k in before if before[k] != pump.card.nvm.cells[k]}
    assert changed <= {"pin.tries"}


def test_restrictions_of_ef1c(rig: Callable[..., Pump]) -> None:
    pump = rig("restricted")
    pump.dispenser.insert_card("999999")
    with pytest.raises(DispenserRefused, match="only buy product 0092"):
        pump.dispenser.preset(Preset(2, amount=1_000))
    assert pump.dispenser.preset(Preset(1)) == 6_000  # 60 L per fill
    for _ in range(3):
        pump.dispenser.lift_nozzle(Preset(1, amount=1_000))
        pump.dispenser.tick(100)
        pump.dispenser.hang_up()
        pump.dispenser.insert_card("999999")
    with pytest.raises(DispenserRefused, match="daily limit reached: 3 fills"):
        pump.dispenser.preset(Preset(1, amount=1_000))


def test_recovery_after_a_crash_while_fuelling(rig: Callable[..., Pump]) -> None:
    pump = rig()
    pump.dispenser.insert_card("999999")
    pump.dispenser.lift_nozzle(Preset(1, amount=3_000))
    pump.dispenser.tick(2)  # 1.00 L journaled, then the pump loses power
    restarted = rig(card=pump.card, psam=pump.psam)
    restarted.card.power_off()
    (bill,) = restarted.dispenser.recover()
    assert (bill.tx_type, bill.amount) == (BillType.FUELLING, 750)
    assert restarted.balance() == 100_000 - 750
    assert restarted.lock().status == LockStatus.FREE
    assert restarted.dispenser.journal.unfinished() == []


def test_recovery_when_the_debit_answer_was_lost(rig: Callable[..., Pump]) -> None:
    pump = rig()
    dispenser = pump.dispenser
    dispenser.insert_card("999999")
    fuelling = dispenser.lift_nozzle(Preset(1, amount=3_000))
    dispenser.tick(4)
    # The card takes the debit but the pump dies before reading the answer.
    from terminal_sim.fuelling import Sale, unlock_answer

    sale = Sale(1, 0x0092, 750, fuelling.volume)
    unlock = unlock_answer(dispenser.psam, fuelling.card.public.asn8, fuelling.locked, sale.amount)
    dispenser.journal.step(
        fuelling.txn,
        "unlock",
        amount=unlock.amount,
        gmac=unlock.gmac,
        psam_tac=unlock.psam_tac,
        unlock_ttc=unlock.unlock_ttc,
    )
    dispenser.card.send(
        cmd.debit_for_unlock(
            unlock.amount,
            fuelling.locked.lock_ctc + 1,
            fuelling.locked.term,
            unlock.unlock_ttc,
            fuelling.locked.dt,
            unlock.gmac,
        )
    )
    restarted = rig(card=pump.card, psam=pump.psam)
    (bill,) = restarted.dispenser.recover()
    assert bill.amount == sale.amount == 100_000 - restarted.balance()
    assert restarted.lock().status == LockStatus.FREE  # the TAC was read and cleared
    record = LockRecord.from_bytes(pump.card.nvm.cells["lock"])
    assert bill.tac == record.tac


def test_recovery_without_the_card_keeps_an_escape_bill(rig: Callable[..., Pump]) -> None:
    pump = rig()
    pump.dispenser.insert_card("999999")
    pump.dispenser.lift_nozzle(Preset(1, amount=3_000))
    pump.dispenser.tick(2)
    restarted = rig(card=pump.card, psam=pump.psam)
    restarted.card_reader.remove()  # the driver took the card while the pump was down
    (bill,) = restarted.dispenser.recover()
    assert bill.tx_type == BillType.ESCAPE and bill.amount == 750
    assert restarted.dispenser.station.escape  # re-debit is possible at this station
    assert pump.lock().status == LockStatus.GREY
