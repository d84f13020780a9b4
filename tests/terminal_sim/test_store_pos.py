"""The convenience-store POS: its refusals in order with their exact texts (the card untouched),
purchases with the store PSAM and the reserved product code, and a card lost mid-sale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest

from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.bcd import bcd_dt
from cardcore.clockrng import ManualClock
from cardcore.layout import TxType
from cardcore.records import PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.events import EventBus, Recorder
from terminal_sim.fuelling import PIN_BLOCKED
from terminal_sim.office import IssuingOffice
from terminal_sim.online import InProcessHost
from terminal_sim.readers import CardLost, InProcReader
from terminal_sim.store_pos import (
    BLACKLISTED,
    BLOCKED,
    BLOCKED_FOR_GOOD,
    GREY,
    IN_DOUBT,
    STORE_OFF,
    STORE_PRODUCT,
    Item,
    Reason,
    StorePos,
    StoreRefused,
)

NOW = datetime(2026, 11, 22, 12, 0, 0)
STORE_TERM = bytes.fromhex("440101000101")  # psam-store
OFFICE_TERM = bytes.fromhex("440101009901")
PIN = "999999"


class AnswerLost(InProcReader):
    """Loses the card on the first command that starts with `prefix`: before the card runs it,
    or (`ran=True`) after the card ran it and before its answer came back."""

    def __init__(self, applet: FuelCard, prefix: bytes, *, ran: bool) -> None:
        super().__init__(applet, "card")
        self.prefix: bytes | None = prefix
        self.ran = ran

    def transmit(self, command: bytes) -> bytes:
        if self.prefix is not None and command.startswith(self.prefix):
            self.prefix = None
            if self.ran:
                self.applet.process(command)
            self.remove()
            raise CardLost("card: pulled out")
        return super().transmit(command)


@dataclass
class Rig:
    card: FuelCard
    reader: InProcReader
    psam: Psam
    host: InProcessHost
    clock: ManualClock
    events: Recorder
    store: StorePos
    office: IssuingOffice

    def balance(self) -> int:
        return int.from_bytes(self.card.nvm.cells["et.balance"], "big")

    def public(self) -> PublicAppData:
        return PublicAppData.from_bytes(self.card.nvm.cells["ef15"])


@pytest.fixture
def rig(
    make_card: Callable[..., FuelCard], make_psam: Callable[..., Psam], hsm: MockHsm
) -> Callable[..., Rig]:
    def make(profile: str = "store-enabled", lost_at: bytes | None = None, ran: bool = True) -> Rig:
        """A store and an office of one station; `lost_at`: the card leaves at that command."""
        card = make_card(profile)
        card_reader = (
            InProcReader(card, "card") if lost_at is None else AnswerLost(card, lost_at, ran=ran)
        )
        psam = make_psam("psam-store")
        clock = ManualClock(NOW)
        host = InProcessHost(hsm, clock)
        bus = EventBus()
        events = Recorder()
        bus.subscribe(events)
        store = StorePos("store-1", card_reader, InProcReader(psam, "psam"), host, bus, clock)
        office = IssuingOffice("office", card_reader, host, bus, clock, OFFICE_TERM)
        return Rig(card, card_reader, psam, host, clock, events, store, office)

    return make


def test_store_purchase_with_receipt(rig: Callable[..., Rig], hsm: MockHsm) -> None:
    r = rig()
    items = (Item("water", 250, 2), Item("bread", 734))
    receipt = r.store.pay(PIN, 1_234, items)
    assert r.balance() == 100_000 - 1_234 == receipt.balance_after
    assert (receipt.number, receipt.amount, receipt.items) == (1, 1_234, items)
    assert receipt.product == STORE_PRODUCT == 0x9999
    assert receipt.term == STORE_TERM and receipt.dt == bcd_dt(NOW)
    assert receipt.asn == r.public().asn and receipt.psam_ttc == 1
    assert hsm.verify_purchase_tac(
        r.public().asn8,
        amount=1_234,
        tx_type=TxType.ED_PURCHASE,
        term=STORE_TERM,
        ttc=receipt.psam_ttc,
        dt=receipt.dt,
        tac=receipt.tac,
    )
    assert r.events.messages()[-1] == "paid 12.34; balance 987.66"
    text = receipt.text()
    assert "receipt 000001" in text and "product 9999" in text
    assert "paid 12.34  balance 987.66" in text and "bread x1" in text
    assert "card 100011*********0003" in text and receipt.tac.hex().upper() in text
    second = r.store.pay(PIN, 100)
    assert (second.number, second.psam_ttc, second.balance_after) == (2, 2, 100_000 - 1_334)


def _as_issued(r: Rig) -> None:
    pass


def _permanently_blocked(r: Rig) -> None:
    r.card.nvm.commit({"et.block": b"\x02"})


def _reported_lost(r: Rig) -> None:
    r.host.report_loss(r.public().asn)


def _before_start(r: Rig) -> None:
    r.clock.set(datetime(2023, 6, 1, 9, 0, 0))


@pytest.mark.parametrize(
    ("profile", "amount", "setup", "reason", "text"),
    [
        ("blacklisted", 100, _as_issued, Reason.BLOCKED, BLOCKED),
        ("store-enabled", 100, _permanently_blocked, Reason.BLOCKED, BLOCKED_FOR_GOOD),
        ("store-enabled", 100, _reported_lost, Reason.BLACKLISTED, BLACKLISTED),
        # grey-locked is also off for the store: grey answers first
        ("grey-locked", 100, _as_issued, Reason.GREY, GREY),
        ("grey-locked", 100, _reported_lost, Reason.BLACKLISTED, BLACKLISTED),
        ("expired", 100, _as_issued, Reason.VALIDITY, "card expired on 2025-12-31"),
        ("store-enabled", 100, _before_start, Reason.VALIDITY, "card not valid before 2024-01-01"),
        (
            "low-balance",
            2_000,
            _as_issued,
            Reason.BALANCE,
            "balance 10.00 is below the sale of 20.00",
        ),
        ("normal", 100, _as_issued, Reason.STORE_FLAG, STORE_OFF),
    ],
)
def test_store_refusals_leave_the_card_untouched(
    rig: Callable[..., Rig],
    profile: str,
    amount: int,
    setup: Callable[[Rig], None],
    reason: Reason,
    text: str,
) -> None:
    r = rig(profile)
    setup(r)
    before = dict(r.card.nvm.cells)
    with pytest.raises(StoreRefused) as refused:
        r.store.pay(PIN, amount)
    assert (refused.value.reason, str(refused.value)) == (reason, text)
    assert r.events.messages() == [text]
    assert dict(r.card.nvm.cells) == before
    assert r.psam.nvm.cells["ttc"] == make_ttc(1)


def make_ttc(value: int) -> bytes:
    return value.to_bytes(4, "big")


def test_the_spec_words_of_the_two_store_refusals() -> None:
    assert GREY == "unlock at a pump or an issuing office first"
    assert STORE_OFF == "store purchases not enabled for this card"


def test_wrong_pin_counts_a_try_and_says_how_many_are_left(rig: Callable[..., Rig]) -> None:
    r = rig()
    before = dict(r.card.nvm.cells)
    with pytest.raises(StoreRefused, match=r"^wrong PIN, 2 tries left$"):
        r.store.pay("123456", 100)
    with pytest.raises(StoreRefused, match=r"^wrong PIN, 1 try left$"):
        r.store.pay("123456", 100)
    changed = {k for k in before if before[k] != r.card.nvm.cells[k]}
    assert changed == {"pin.tries"}
    r.store.pay(PIN, 100)
    assert r.card.nvm.cells["pin.tries"] == b"\x03"


def test_store_flag_enabled_at_the_office_then_disabled(rig: Callable[..., Rig]) -> None:
    r = rig("normal")
    with pytest.raises(StoreRefused, match=STORE_OFF):
        r.store.pay(PIN, 500)
    result = r.office.set_store_flag(True)
    assert result.enabled and r.public().store_flag == 0x01 and result.asn == r.public().asn
    assert r.store.pay(PIN, 500).balance_after == 99_500 == r.balance()
    r.office.set_store_flag(False)
    assert r.public().store_flag == 0x00
    with pytest.raises(StoreRefused, match=STORE_OFF):
        r.store.pay(PIN, 500)


def test_pin_blocked_card_is_refused_until_the_office_reloads_the_pin(
    rig: Callable[..., Rig],
) -> None:
    r = rig("pin-blocked")
    r.office.set_store_flag(True)
    with pytest.raises(StoreRefused, match=PIN_BLOCKED) as refused:
        r.store.pay(PIN, 100)
    assert refused.value.reason is Reason.PIN_BLOCKED
    r.office.reload_pin(PIN)
    assert r.store.pay(PIN, 100).balance_after == 99_900


@pytest.mark.parametrize("lost_at", ["0020", "805001"])  # VERIFY, INITIALIZE FOR PURCHASE
def test_card_lost_before_the_debit_takes_nothing(rig: Callable[..., Rig], lost_at: str) -> None:
    r = rig(lost_at=bytes.fromhex(lost_at))
    with pytest.raises(CardLost, match="nothing was paid; insert the card and pay again"):
        r.store.pay(PIN, 700)
    assert r.store.in_doubt is None and r.balance() == 100_000
    r.reader.insert()
    assert r.store.pay(PIN, 700).balance_after == 99_300


@pytest.mark.parametrize("ran", [True, False])
def test_card_lost_during_the_debit_is_recovered(
    rig: Callable[..., Rig], hsm: MockHsm, ran: bool
) -> None:
    r = rig(lost_at=bytes.fromhex("805401"), ran=ran)
    with pytest.raises(CardLost, match="insert the card again and recover the sale"):
        r.store.pay(PIN, 700, [Item("coffee", 700)])
    assert r.balance() == (99_300 if ran else 100_000)
    with pytest.raises(StoreRefused, match=IN_DOUBT):
        r.store.pay(PIN, 100)
    r.reader.insert()
    receipt = r.store.recover()
    assert r.store.in_doubt is None
    if not ran:
        assert receipt is None and r.balance() == 100_000
        assert r.events.messages()[-1] == "the card was not debited: 7.00 is still to pay"
        return
    assert receipt is not None and receipt.balance_after == 99_300 == r.balance()
    assert receipt.items == (Item("coffee", 700),) and receipt.psam_ttc == 1
    assert hsm.verify_purchase_tac(
        r.public().asn8,
        amount=700,
        tx_type=TxType.ED_PURCHASE,
        term=STORE_TERM,
        ttc=receipt.psam_ttc,
        dt=receipt.dt,
        tac=receipt.tac,
    )
    assert r.store.pay(PIN, 100).balance_after == 99_200  # the POS takes sales again


def test_sale_must_match_its_items(rig: Callable[..., Rig]) -> None:
    r = rig()
    before = dict(r.card.nvm.cells)
    with pytest.raises(ValueError, match="match its items"):
        r.store.pay(PIN, 1_000, [Item("tea", 300)])
    with pytest.raises(ValueError):
        r.store.pay("12a4", 100)
    assert dict(r.card.nvm.cells) == before
