"""The issuing office with the in-process host: load, loss report and unblock, PIN reload, and the
online unlock of a grey card under the host's waiting rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore import commands as cmd
from cardcore import layout
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.layout import AppBlock, LockStatus, TxType
from cardcore.records import Bill, LockRecord, PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.events import EventBus, Recorder
from terminal_sim.issuing import IssuedCard
from terminal_sim.office import IssuingOffice, OfficeRefused
from terminal_sim.online import (
    E_ALREADY_UNLOCKED,
    E_BAD_BILL,
    E_BAD_MAC1,
    E_BAD_MAC3,
    E_BAD_TAC,
    E_BILL_MISMATCH,
    E_CARD_BLOCKED,
    E_FORMAT,
    E_NO_ESCAPE_BILL,
    E_NOT_AUTHORIZED,
    E_TOO_EARLY,
    HostRefused,
    InProcessHost,
)
from terminal_sim.readers import CardLost, InProcReader
from terminal_sim.store_pos import BLACKLISTED, BLOCKED, StorePos, StoreRefused

PIN = "999999"
LOCKED_AT = datetime(2026, 11, 22, 10, 0, 0)  # the grey-locked profile's lock (its escape bill)
SAME_STATION = bytes.fromhex("440101009901")  # station 44010100 locked the card
OTHER_STATION = bytes.fromhex("440102000001")


class AnswerLost(InProcReader):
    """Runs the first command starting with `prefix` on the card, then loses the answer."""

    def __init__(self, applet: FuelCard, prefix: bytes) -> None:
        super().__init__(applet, "card")
        self.prefix: bytes | None = prefix

    def transmit(self, command: bytes) -> bytes:
        if self.prefix is not None and command.startswith(self.prefix):
            self.prefix = None
            self.applet.process(command)
            self.remove()
            raise CardLost("card: pulled out")
        return super().transmit(command)


@dataclass
class Desk:
    card: FuelCard
    reader: InProcReader
    host: InProcessHost
    clock: ManualClock
    events: Recorder
    office: IssuingOffice
    bus: EventBus

    def cells(self) -> dict[str, bytes]:
        return dict(self.card.nvm.cells)

    def balance(self) -> int:
        return int.from_bytes(self.card.nvm.cells["et.balance"], "big")

    def public(self) -> PublicAppData:
        return PublicAppData.from_bytes(self.card.nvm.cells["ef15"])

    def lock(self) -> LockRecord:
        return LockRecord.from_bytes(self.card.nvm.cells["lock"])

    def at(self, term: bytes, card: FuelCard | None = None) -> IssuingOffice:
        """Another office desk on the same host, optionally with another card."""
        reader = self.reader if card is None else InProcReader(card, "card")
        return IssuingOffice("desk", reader, self.host, self.bus, self.clock, term)

    def store(self, psam: Psam) -> StorePos:
        return StorePos(
            "store", self.reader, InProcReader(psam, "psam"), self.host, self.bus, self.clock
        )


@pytest.fixture
def escape_bill(issued: Callable[[str], IssuedCard]) -> Bill:
    bill = issued("grey-locked").escape_bill
    assert bill is not None
    return bill


@pytest.fixture
def desk(
    make_card: Callable[..., FuelCard], hsm: MockHsm, escape_bill: Bill
) -> Callable[..., Desk]:
    def make(
        profile: str = "normal",
        term: bytes = OTHER_STATION,
        now: datetime = datetime(2026, 11, 25, 9, 0, 0),
        lost_at: bytes | None = None,
    ) -> Desk:
        card = make_card(profile)
        reader = InProcReader(card, "card") if lost_at is None else AnswerLost(card, lost_at)
        clock = ManualClock(now)
        host = InProcessHost(hsm, clock)
        host.record_escape_bill(escape_bill)
        bus = EventBus()
        events = Recorder()
        bus.subscribe(events)
        office = IssuingOffice("office", reader, host, bus, clock, term)
        return Desk(card, reader, host, clock, events, office, bus)

    return make


# Load -------------------------------------------------------------------------------------------
def test_load_of_a_new_card(desk: Callable[..., Desk], hsm: MockHsm) -> None:
    d = desk("new")
    assert d.balance() == 0
    result = d.office.load(PIN, 50_000)
    assert (result.balance_before, result.balance_after, result.amount) == (0, 50_000, 50_000)
    assert d.balance() == 50_000 and result.online_ctc == 0
    assert d.card.nvm.cells["et.online_ctc"] == b"\x00\x01"
    asn8 = d.public().asn8
    assert hsm.verify_load_tac(
        asn8,
        new_balance=50_000,
        online_ctc=0,
        amount=50_000,
        tx_type=TxType.ED_LOAD,
        term=OTHER_STATION,
        dt=result.dt,
        tac=result.tac,
    )
    assert result.dt == bytes.fromhex("20261125090000")  # the host's clock
    (booked,) = d.host.loads
    assert (booked.asn8, booked.amount, booked.tac) == (asn8, 50_000, result.tac)
    assert d.events.messages()[-1] == "loaded 500.00; balance 500.00"
    d.office.load(PIN, 1)
    assert d.balance() == 50_001 and len(d.host.loads) == 2


def test_load_refused_for_a_card_reported_lost(desk: Callable[..., Desk]) -> None:
    d = desk()
    d.host.report_loss(d.public().asn)
    before = d.cells()
    with pytest.raises(OfficeRefused, match="reported lost") as refused:
        d.office.load(PIN, 1_000)
    assert refused.value.code == E_CARD_BLOCKED
    assert d.cells() == before and d.host.loads == []


def test_load_refused_on_a_grey_card(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked")
    before = d.cells()
    with pytest.raises(OfficeRefused, match="card grey-locked: unlock it first"):
        d.office.load(PIN, 1_000)
    assert d.cells() == before


def test_load_whose_answer_was_lost_is_recovered(desk: Callable[..., Desk]) -> None:
    d = desk("new", lost_at=bytes.fromhex("8052"))
    with pytest.raises(CardLost, match="recover the operation"):
        d.office.load(PIN, 2_000)
    assert d.balance() == 2_000 and d.host.loads == []  # the card did it; the host waits
    with pytest.raises(OfficeRefused, match="unfinished operation"):
        d.office.load(PIN, 2_000)
    d.reader.insert()
    result = d.office.recover()
    assert result is not None and result.balance_after == 2_000
    assert len(d.host.loads) == 1 and d.host.loads[0].tac == result.tac
    assert d.office.in_doubt is None


def _flip(mac: bytes) -> bytes:
    return bytes((mac[0] ^ 1,)) + mac[1:]


def test_host_checks_the_load_mac1_and_tac(desk: Callable[..., Desk]) -> None:
    d = desk("new")
    card, asn = Channel(d.reader), d.public().asn
    card.send(cmd.select(layout.ET_AID))
    card.send(cmd.verify(PIN))
    init = card.send(cmd.initialize_for_load(500, OTHER_STATION))
    request = dict(rand=init[8:12], online_ctc=0, old_balance=0, amount=500, term=OTHER_STATION)
    with pytest.raises(HostRefused) as refused:
        d.host.authorize_load(asn, **request, mac1=_flip(init[12:16]))
    assert refused.value.code == E_BAD_MAC1
    auth = d.host.authorize_load(asn, **request, mac1=init[12:16])
    tac = card.send(cmd.credit_for_load(auth.dt, auth.mac2))
    booked = dict(new_balance=500, online_ctc=0, amount=500, term=OTHER_STATION, dt=auth.dt)
    for changes, code in (({"tac": _flip(tac)}, E_BAD_TAC), ({"amount": 501}, E_NOT_AUTHORIZED)):
        with pytest.raises(HostRefused) as refused:
            d.host.confirm_load(asn, **{**booked, "tac": tac, **changes})
        assert refused.value.code == code
    assert d.host.loads == []
    d.host.confirm_load(asn, **booked, tac=tac)
    d.host.confirm_load(asn, **booked, tac=tac)  # a repeat books once
    assert len(d.host.loads) == 1


# Loss report and unblock -------------------------------------------------------------------------
def test_loss_report_blacklists_and_unblock_lifts_it(
    desk: Callable[..., Desk], make_psam: Callable[..., Psam]
) -> None:
    d = desk("store-enabled")
    asn = d.public().asn
    store = d.store(make_psam("psam-store"))
    d.reader.remove()  # the card is lost: the holder comes without it
    report = d.office.report_loss(asn)
    assert report == type(report)(asn, card_blocked=False) and d.host.blacklisted(asn)
    d.reader.insert()  # someone found it and tries it in the shop
    with pytest.raises(StoreRefused, match=BLACKLISTED):
        store.pay(PIN, 100)
    assert d.card.nvm.cells["et.block"] == bytes((AppBlock.ACTIVE,))
    result = d.office.unblock(asn)
    assert not result.card_unblocked and not d.host.blacklisted(asn)
    assert store.pay(PIN, 100).balance_after == 99_900


def test_loss_report_blocks_the_card_in_the_reader_until_unblocked(
    desk: Callable[..., Desk], make_psam: Callable[..., Psam]
) -> None:
    d = desk("store-enabled")
    asn = d.public().asn
    store = d.store(make_psam("psam-store"))
    assert d.office.report_loss(asn).card_blocked
    assert d.card.nvm.cells["et.block"] == bytes((AppBlock.TEMPORARY,))
    with pytest.raises(StoreRefused, match=BLOCKED):
        store.pay(PIN, 100)
    with pytest.raises(OfficeRefused, match="card blocked: unblock it first"):
        d.office.load(PIN, 100)
    result = d.office.unblock(asn)
    assert result.card_unblocked and not d.host.blacklisted(asn)
    assert d.card.nvm.cells["et.block"] == bytes((AppBlock.ACTIVE,))
    assert store.pay(PIN, 100).balance_after == 99_900


def test_unblock_with_another_cards_number_is_refused(
    desk: Callable[..., Desk], issued: Callable[[str], IssuedCard]
) -> None:
    d = desk("blacklisted")
    other = PublicAppData.from_bytes(issued("normal").cells["ef15"]).asn
    with pytest.raises(OfficeRefused, match="is not card 1000114400000000002"):
        d.office.unblock(other)
    assert d.card.nvm.cells["et.block"] == bytes((AppBlock.TEMPORARY,))
    own = PublicAppData.from_bytes(issued("blacklisted").cells["ef15"]).asn
    assert d.office.unblock(own).card_unblocked


def test_loss_report_leaves_another_card_in_the_reader_alone(
    desk: Callable[..., Desk], issued: Callable[[str], IssuedCard]
) -> None:
    d = desk("normal")
    other = PublicAppData.from_bytes(issued("store-enabled").cells["ef15"]).asn
    assert not d.office.report_loss(other).card_blocked
    assert d.host.blacklisted(other) and not d.host.blacklisted(d.public().asn)
    assert d.card.nvm.cells["et.block"] == bytes((AppBlock.ACTIVE,))


# PIN reload -------------------------------------------------------------------------------------
def test_pin_reload_on_a_pin_blocked_card(desk: Callable[..., Desk]) -> None:
    d = desk("pin-blocked")
    with pytest.raises(OfficeRefused, match="PIN blocked: reload the PIN first"):
        d.office.load(PIN, 1_000)
    assert d.card.nvm.cells["pin.tries"] == b"\x00"
    d.office.reload_pin("123456")
    assert d.card.nvm.cells["pin.tries"] == bytes((layout.PIN_TRIES,))
    with pytest.raises(OfficeRefused, match="wrong PIN, 2 tries left"):
        d.office.load(PIN, 1_000)
    assert d.office.load("123456", 1_000).balance_after == 101_000


# Store flag -------------------------------------------------------------------------------------
def test_host_signs_only_the_store_flag(desk: Callable[..., Desk]) -> None:
    d = desk()
    header = cmd.update_binary_mac_header(layout.SFI_EF15, 0, b"\x99")  # the issuer id
    with pytest.raises(HostRefused) as refused:
        d.host.store_flag_mac(d.public().asn, command=header, challenge=bytes(4))
    assert refused.value.code == E_FORMAT


# Online unlock ----------------------------------------------------------------------------------
def test_online_unlock_at_another_station_after_48_hours(
    desk: Callable[..., Desk], escape_bill: Bill
) -> None:
    d = desk("grey-locked", now=datetime(2026, 11, 24, 10, 0, 0))
    assert d.lock().status == LockStatus.GREY and d.balance() == 100_000
    result = d.office.online_unlock(PIN)
    assert (result.amount, result.balance_before, result.balance_after) == (20_000, 100_000, 80_000)
    assert d.balance() == 100_000 - 20_000
    lock = d.lock()
    assert (lock.status, lock.tx_type, lock.amount) == (
        LockStatus.FREE,
        TxType.ONLINE_UNLOCK,
        20_000,
    )
    assert lock.tac == result.mac3 and result.lock_ctc == escape_bill.ctc
    (booked,) = d.host.unlocks
    assert (booked.lock_ctc, booked.amount, booked.mac3) == (escape_bill.ctc, 20_000, result.mac3)
    assert d.host.escape_bills[(escape_bill.asn, escape_bill.ctc)].unlocked
    assert d.events.messages()[-1] == "unlocked: 200.00 debited; balance 800.00"


def test_online_unlock_at_another_station_before_48_hours(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked", now=datetime(2026, 11, 24, 9, 59, 59))
    before = d.cells()
    with pytest.raises(OfficeRefused, match="from 2026-11-24 10:00:00") as refused:
        d.office.online_unlock(PIN)
    assert refused.value.code == E_TOO_EARLY
    assert "E_TOO_EARLY" in d.events.messages()[-1]
    assert d.cells() == before and d.host.unlocks == []
    d.clock.advance(1)
    assert d.office.online_unlock(PIN).balance_after == 80_000


def test_online_unlock_at_the_same_station_at_once(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked", term=SAME_STATION, now=datetime(2026, 11, 22, 10, 30, 0))
    assert d.office.online_unlock(PIN).balance_after == 80_000 == d.balance()


def test_a_settled_escape_bill_may_be_unlocked_anywhere(
    desk: Callable[..., Desk], escape_bill: Bill
) -> None:
    d = desk("grey-locked", now=datetime(2026, 11, 22, 11, 0, 0))
    d.host.settle_escape_bill(escape_bill.asn, escape_bill.ctc)
    assert d.office.online_unlock(PIN).balance_after == 80_000


def test_the_same_grey_record_is_never_unlocked_twice(
    desk: Callable[..., Desk], make_card: Callable[..., FuelCard]
) -> None:
    d = desk("grey-locked", term=SAME_STATION)
    d.office.online_unlock(PIN)
    with pytest.raises(OfficeRefused, match="not grey-locked"):
        d.office.online_unlock(PIN)
    copy = make_card("grey-locked")  # the card's memory as it was before the unlock
    before = dict(copy.nvm.cells)
    with pytest.raises(OfficeRefused, match="was unlocked") as refused:
        d.at(SAME_STATION, copy).online_unlock(PIN)
    assert refused.value.code == E_ALREADY_UNLOCKED
    assert dict(copy.nvm.cells) == before and len(d.host.unlocks) == 1


def test_online_unlock_without_the_escape_bill(
    make_card: Callable[..., FuelCard], hsm: MockHsm
) -> None:
    card = make_card("grey-locked")
    host = InProcessHost(hsm, ManualClock(datetime(2027, 1, 1)))
    office = IssuingOffice(
        "o", InProcReader(card, "card"), host, EventBus(), host.clock, SAME_STATION
    )
    before = dict(card.nvm.cells)
    with pytest.raises(OfficeRefused) as refused:
        office.online_unlock(PIN)
    assert refused.value.code == E_NO_ESCAPE_BILL and dict(card.nvm.cells) == before


def test_host_checks_the_online_unlock_mac3(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked", term=SAME_STATION)
    card, asn = Channel(d.reader), d.public().asn
    card.send(cmd.select(layout.ET_AID))
    card.send(cmd.verify(PIN))
    init = card.send(cmd.initialize_for_online_unlock(SAME_STATION))
    rand, online = init[10:14], int.from_bytes(init[6:8], "big")
    auth = d.host.authorize_online_unlock(
        asn,
        rand=rand,
        online_ctc=online,
        balance=100_000,
        offline_ctc=int.from_bytes(init[4:6], "big"),
        term=SAME_STATION,
        mac1=init[14:18],
    )
    mac3 = card.send(cmd.online_unlock(auth.amount, auth.dt, auth.mac2))
    confirm = dict(rand=rand, online_ctc=online, balance_after=80_000, amount=20_000)
    with pytest.raises(HostRefused) as refused:
        d.host.confirm_online_unlock(
            asn,
            **confirm,
            term=SAME_STATION,
            dt=auth.dt,
            mac3=_flip(mac3),
        )
    assert refused.value.code == E_BAD_MAC3 and d.host.unlocks == []
    d.host.confirm_online_unlock(asn, **confirm, term=SAME_STATION, dt=auth.dt, mac3=mac3)
    assert len(d.host.unlocks) == 1


def test_online_unlock_whose_answer_was_lost_is_recovered(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked", lost_at=bytes.fromhex("E07E09"))
    with pytest.raises(CardLost):
        d.office.online_unlock(PIN)
    assert d.balance() == 80_000 and d.host.unlocks == []
    d.reader.insert()
    result = d.office.recover()
    assert result is not None and result.balance_after == 80_000
    assert len(d.host.unlocks) == 1 and d.host.unlocks[0].mac3 == result.mac3


def test_host_keeps_only_genuine_escape_bills(desk: Callable[..., Desk], escape_bill: Bill) -> None:
    d = desk()
    for bad in (replace(escape_bill, amount=1), replace(escape_bill, tx_type=0x00)):
        with pytest.raises(HostRefused) as refused:
            d.host.record_escape_bill(bad)
        assert refused.value.code == E_BAD_BILL


def test_an_escape_bill_that_does_not_match_the_card_is_refused(
    issued: Callable[[str], IssuedCard], hsm: MockHsm, escape_bill: Bill
) -> None:
    """A forged bill is refused by the bill checks (the GTAC covers the locked balance); a genuine
    bill with a card that holds another balance (its MAC1 covers it) is refused at the unlock."""
    host = InProcessHost(hsm, ManualClock(datetime(2027, 1, 1)))
    wrong = replace(escape_bill, balance_after=escape_bill.balance_after - 1)
    with pytest.raises(HostRefused, match="GTAC") as refused:
        host.record_escape_bill(replace(wrong, tmac=hsm.bill_tmac(wrong.body())))
    assert refused.value.code == E_BAD_BILL and host.escape_bills == {}
    host.record_escape_bill(escape_bill)
    cells = {**issued("grey-locked").cells, "et.balance": (99_999).to_bytes(4, "big")}
    card = in_memory(cells, SeededRng(1))
    assert isinstance(card, FuelCard)
    office = IssuingOffice(
        "o", InProcReader(card, "card"), host, EventBus(), host.clock, SAME_STATION
    )
    card.power_on()
    before = dict(card.nvm.cells)
    with pytest.raises(OfficeRefused, match="holds 99999 fen, the bill locked 100000") as refused:
        office.online_unlock(PIN)
    assert refused.value.code == E_BILL_MISMATCH and dict(card.nvm.cells) == before
