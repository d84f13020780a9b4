"""The forecourt service: typed results and one event stream for every terminal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from cardcore.layout import LockStatus
from terminal_sim.dispenser import Preset
from terminal_sim.events import APDU, BILL, MESSAGE, TICK, Event
from terminal_sim.fuelling import BillType
from terminal_sim.reader_url import ReaderUrlError
from terminal_sim.service import Forecourt, ServiceError, pcsc_readers, scenario_steps
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


def test_every_exchange_is_an_apdu_event_with_the_injected_timing(tmp_path: Path) -> None:
    ticks = iter(range(1000))
    fc = Forecourt.open(
        ACTORS,
        start=datetime(2026, 11, 22, 8, 0),
        workdir=tmp_path,
        timer=lambda: float(next(ticks)),
    )
    try:
        events: list[Event] = []
        fc.subscribe(events.append)
        fc.insert("alice", "pump1", "999999")
        apdus = [e for e in events if e.kind == APDU]
        assert apdus and {e.terminal for e in apdus} == {"pump1"}
        assert all(e.data["seconds"] == 1.0 for e in apdus)  # one timer step per exchange
        assert apdus[0].data["command"][:4] == bytes.fromhex("00A40400")  # SELECT first
        assert apdus[0].data["response"][-2:] == b"\x90\x00"
        fc.crash("pump1")  # a restarted pump is traced too
        before = len([e for e in events if e.kind == APDU])
        fc.insert("alice", "pump1", "999999")
        assert len([e for e in events if e.kind == APDU]) > before
    finally:
        fc.close()


def test_views_of_pumps_and_cards(forecourt: Forecourt) -> None:
    assert forecourt.terminals() == {"pump1": "dispenser", "pos1": "pos", "office1": "office"}
    assert forecourt.cards() == ["alice"] and forecourt.is_emulated("alice")
    forecourt.insert("alice", "pump1", "999999")
    forecourt.lift("pump1", Preset(1, amount=1_500))
    forecourt.tick("pump1")
    view = forecourt.dispenser_view("pump1")
    assert (view.state, view.card, view.balance) == ("fuelling", "alice", 100_000)
    assert view.fuelling is not None
    assert (view.fuelling.volume, view.fuelling.amount, view.fuelling.limit_volume) == (
        50,
        375,
        200,
    )
    assert [n.grade for n in view.nozzles] == ["92#", "95#", "diesel"]
    assert forecourt.lock_record("alice").status == LockStatus.GREY
    titles = [title for title, _ in forecourt.card_sections("alice")]
    assert any("grey lock" in title for title in titles)
    assert forecourt.reset("alice")[:1] == b"\x3b"  # a warm reset answers with the ATR


def test_add_card_from_a_reader_url(forecourt: Forecourt) -> None:
    assert forecourt.add_card("bob", "inproc:store-enabled") == "bob"
    assert forecourt.card_status("bob").store_enabled
    forecourt.pay("pos1", 250, card="bob")
    assert forecourt.card_status("bob").balance == 99_750
    with pytest.raises(ServiceError, match="already a card 'bob'"):
        forecourt.add_card("bob", "inproc:normal")
    with pytest.raises(ReaderUrlError):
        forecourt.add_card("carol", "floppy:a")
    assert forecourt.cards() == ["alice", "bob"]


def test_pcsc_listing_answers_even_without_pcscd() -> None:
    readers = pcsc_readers()
    assert isinstance(readers.names, tuple)
    assert readers.error is None or "pcscd" in readers.error or readers.names == ()


def test_a_scenario_runs_step_by_step(tmp_path: Path) -> None:
    scenario = Path(__file__).parents[1] / "tui" / "data" / "store-flag-enable-then-pay.yaml"
    events: list[Event] = []
    steps = scenario_steps(scenario, on_event=events.append)
    first = next(steps)
    assert (first.number, first.action, first.ok) == (1, "pay", True)
    assert any(e.kind == MESSAGE for e in events)  # the events arrive while it runs
    rest = list(steps)
    assert [s.number for s in rest] == [2, 3, 4, 5] and all(s.ok for s in rest)


def test_the_office_reaches_the_http_host(tmp_path: Path) -> None:
    fc = Forecourt.open(
        ACTORS, start=datetime(2026, 11, 22, 8, 0), workdir=tmp_path, host_kind="http"
    )
    try:
        assert fc.world.link is not None and fc.world.link.server is not None
        fc.report_loss("office1", "alice")  # signed HTTP calls to the host app
        with fc.world.link.server.db.connect() as conn:
            listed = [row[0] for row in conn.execute("SELECT asn FROM blacklist")]
        assert listed == [fc.asn("alice").hex()]
    finally:
        fc.close()


def test_use_host_sends_the_office_and_store_to_another_host(forecourt: Forecourt) -> None:
    from terminal_sim.online import InProcessHost

    other = InProcessHost(forecourt.world.hsm, forecourt.world.clock)
    first = forecourt.world.host
    forecourt.use_host(other)
    forecourt.report_loss("office1", "alice")
    assert other.blacklisted(forecourt.asn("alice"))
    assert not first.blacklisted(forecourt.asn("alice"))
    assert forecourt.pos("pos1").host is other
    other.close()
