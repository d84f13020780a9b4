"""The forecourt service: typed results and one event stream for every terminal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from cardcore.layout import LockStatus
from terminal_sim.dispenser import Preset
from terminal_sim.events import APDU, BILL, MESSAGE, TICK, Event
from terminal_sim.fuelling import BillType
from terminal_sim.service import Forecourt
from terminal_sim.store_pos import StoreRefused

ACTORS = {
    "cards": {"alice": "normal"},
    "terminals": {
        "pump1": {"kind": "dispenser"},
        "pos1": {"kind": "pos"},
        "office1": {"kind": "office"},
    },
}


@pytest.fixture
def forecourt(tmp_path: Path) -> Forecourt:
    fc = Forecourt.open(ACTORS, start=datetime(2026, 11, 22, 8, 0), workdir=tmp_path)
    yield fc  # type: ignore[misc]
    fc.close()


def test_fuel_pull_redebit_pay_through_one_api(forecourt: Forecourt) -> None:
    events: list[Event] = []
    forecourt.subscribe(events.append)
    escape = forecourt.fuel("pump1", Preset(1, amount=3_000), card="alice", pull_at_tick=1)
    assert escape.tx_type == BillType.ESCAPE and escape.amount == 3_000  # 4.00 L at 7.50
    status = forecourt.card_status("alice")
    assert (status.lock, status.balance, status.slot) == (LockStatus.GREY, 100_000, None)
    with pytest.raises(StoreRefused, match="unlock at a pump or an issuing office first"):
        forecourt.pay("pos1", 500, card="alice")
    forecourt.insert("alice", "pump1", "999999")  # the pump re-debits from its escape bill
    status = forecourt.card_status("alice")
    assert (status.lock, status.balance, status.slot) == (LockStatus.FREE, 97_000, "pump1")
    kinds = {event.kind for event in events}
    assert {TICK, BILL, MESSAGE} <= kinds
    assert APDU not in kinds or all(e.terminal for e in events)


def test_office_then_store(forecourt: Forecourt) -> None:
    forecourt.set_store_flag("office1", True, card="alice")
    receipt = forecourt.pay("pos1", 1_250, card="alice")
    assert receipt.amount == 1_250 and forecourt.card_status("alice").balance == 98_750
    assert forecourt.card_status("alice").store_enabled
