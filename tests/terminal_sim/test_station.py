"""The station against the real HTTP host: the outbox uploads each bill once, survives a host
outage and a lost answer without losing or double-booking anything, syncs the blacklist by
versions, and closes a shift (班结) with totals that match its bills."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.records import Bill, PublicAppData
from host_sim.access import DEFAULT_SCOPES, add_access_key, add_terminal
from host_sim.app import create_app
from host_sim.server import BackgroundServer
from hsm_mock.hsm import MockHsm
from terminal_sim.dispenser import Dispenser, DispenserRefused, Grade, Preset
from terminal_sim.events import UPLOAD, EventBus, Recorder
from terminal_sim.fuelling import BillType
from terminal_sim.host_client import BillResult, HostClient, HostUnavailable
from terminal_sim.issuing import IssuedCard
from terminal_sim.journal import Journal
from terminal_sim.online import InProcessHost
from terminal_sim.readers import InProcReader
from terminal_sim.station import Station, StationError
from terminal_sim.store_pos import STORE_PRODUCT, Item, StorePos

NOZZLES = {1: Grade(0x0092, "92#", 750), 2: Grade(0x0095, "95#", 800)}
START = datetime(2026, 11, 22, 10, 0, 0)
STATION_ID = "ST-0001"
STATION_AK, STATION_SK = "station-1", "station-secret-0123456789abcdef"
OPS_AK, OPS_SK = "ops-1", "operations-secret-0123456789abcd"
TERMS = ("440101000001", "440101000002")
STORE_TERM = "440101000101"  # the psam-store profile's terminal
PIN = "999999"


class HostProcess:
    """The real host app over HTTP on one port; `stop()` and `restart()` keep file and port."""

    def __init__(self, path: Path, hsm: MockHsm) -> None:
        self.path = path
        self.hsm = hsm
        self.server: BackgroundServer | None = None
        self.port = 0
        self.start()
        app = self._app
        db = app.state.host.db
        add_access_key(db, STATION_AK, STATION_SK, "station", DEFAULT_SCOPES["station"], STATION_ID)
        add_access_key(db, OPS_AK, OPS_SK, "app", ("cards.loss", "cards.unblock"), "operations")
        for term in (*TERMS, STORE_TERM):
            add_terminal(db, term, STATION_ID)

    def start(self) -> None:
        self._app = create_app(self.path, self.hsm)
        self.server = BackgroundServer(self._app, port=self.port)
        self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()
        self._app.state.host.db.close()
        self.server = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, ak: str = STATION_AK, sk: str = STATION_SK) -> HostClient:
        return HostClient(self.base_url, ak, sk, timeout=5.0)

    def scalar(self, query: str, *args: Any) -> Any:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(query, args).fetchone()[0]
        finally:
            conn.close()

    def bills(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM bills"))

    def transactions(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM ledger_transactions"))


@pytest.fixture
def host(hsm: MockHsm, tmp_path: Path) -> Iterator[HostProcess]:
    process = HostProcess(tmp_path / "host.sqlite", hsm)
    try:
        yield process
    finally:
        if process.server is not None:
            process.stop()


class LosesAnswer(HostClient):
    """The host stores the batch, then the answer is lost (a crash before marking as sent)."""

    lose = True

    def upload_bills(
        self, bills: Sequence[Bill], *, terminal_id: str | None = None
    ) -> list[BillResult]:
        results = super().upload_bills(bills, terminal_id=terminal_id)
        if self.lose:
            self.lose = False
            raise HostUnavailable("E_UNREACHABLE", "answer lost", status=None, details={})
        return results


@dataclass
class World:
    clock: ManualClock
    bus: EventBus
    events: Recorder
    pumps: list[Dispenser]
    cards: list[FuelCard]
    store: StorePos
    station: Station
    outbox: Path
    host: HostProcess

    def asn(self, index: int) -> bytes:
        return PublicAppData.from_bytes(self.cards[index].nvm.cells["ef15"]).asn

    def fill(self, pump: int, preset: Preset, ticks: int = 1000) -> Bill:
        dispenser = self.pumps[pump]
        dispenser.insert_card(PIN)
        dispenser.lift_nozzle(preset)
        dispenser.tick(ticks)
        self.clock.advance(60)
        return dispenser.hang_up()

    def reopen(self, client: HostClient | None = None) -> Station:
        """The station process restarts on the same outbox file."""
        self.station.close()
        self.station = Station(
            "station",
            STATION_ID,
            self.pumps,
            [self.store],
            client or self.host.client(),
            self.bus,
            self.clock,
            self.outbox,
        )
        return self.station


@pytest.fixture
def world(
    issued: Callable[[str], IssuedCard], hsm: MockHsm, host: HostProcess, tmp_path: Path
) -> Iterator[World]:
    clock = ManualClock(START)
    bus = EventBus()
    events = Recorder()
    bus.subscribe(events)
    journal = Journal(tmp_path / "journal.sqlite")
    cards: list[FuelCard] = []
    pumps = []
    for number, (term, profile) in enumerate(
        zip(TERMS, ("normal", "store-enabled"), strict=True), 1
    ):
        card = in_memory(dict(issued(profile).cells), SeededRng(number))
        psam = in_memory(
            {**issued("psam-dispenser").cells, "ef16": bytes.fromhex(term)}, SeededRng(10 + number)
        )
        assert isinstance(card, FuelCard) and isinstance(psam, Psam)
        cards.append(card)
        pump = Dispenser(
            f"pump-{number}",
            InProcReader(card, "card"),
            InProcReader(psam, "psam"),
            NOZZLES,
            bus=bus,
            clock=clock,
            journal=journal,
        )
        pump.start()
        pumps.append(pump)
    store_psam = in_memory(dict(issued("psam-store").cells), SeededRng(20))
    assert isinstance(store_psam, Psam)
    store = StorePos(
        "store-1",
        InProcReader(cards[1], "card"),
        InProcReader(store_psam, "psam"),
        InProcessHost(hsm, clock),
        bus,
        clock,
        journal=journal,
    )
    outbox = tmp_path / "outbox.sqlite"
    station = Station("station", STATION_ID, pumps, [store], host.client(), bus, clock, outbox)
    w = World(clock, bus, events, pumps, cards, store, station, outbox, host)
    try:
        yield w
    finally:
        w.station.close()
        journal.close()


def test_a_sale_whose_receipt_event_was_missed_is_collected_from_the_journal(
    world: World,
) -> None:
    world.station.close()  # the station is down while the store sells
    receipt = world.store.pay(PIN, 450)
    station = world.reopen()
    assert station.outbox_state().pending == 0
    assert station.collect() == 1 and station.collect() == 0
    report = station.upload()
    assert (report.accepted, report.pending) == (1, 0)
    assert world.host.scalar("SELECT receipt_no, amount FROM store_sales") == receipt.number
    assert world.host.scalar("SELECT amount FROM store_sales") == 450


def test_bills_are_in_the_outbox_and_uploaded_once(world: World) -> None:
    bills = [world.fill(0, Preset(1, amount=5_000)), world.fill(1, Preset(2, volume=1_000))]
    assert world.station.pending_bills() == bills  # stored at the BILL event, before any upload
    report = world.station.upload()
    assert (report.accepted, report.duplicates, report.rejected, report.pending) == (2, 0, 0, 0)
    assert report.ok and world.host.bills() == 2 and world.host.transactions() == 2
    stored = world.host.scalar("SELECT group_concat(term) FROM bills ORDER BY id")
    assert set(stored.split(",")) == set(TERMS)
    assert world.events.of(UPLOAD)[-1].data["accepted"] == 2
    again = world.station.upload()  # nothing pending: nothing sent again
    assert (again.accepted, again.duplicates) == (0, 0) and world.host.bills() == 2
    assert world.station.outbox_state().sent == 2


def test_host_outage_keeps_bills_pending_and_they_go_once_when_it_is_back(world: World) -> None:
    world.host.stop()
    first = world.fill(0, Preset(1, amount=3_000))
    report = world.station.upload()
    assert report.error is not None and "E_UNREACHABLE" in report.error
    assert (report.pending, report.failures) == (1, 1) and report.retry_at is not None
    assert world.events.of(UPLOAD)[-1].data["error"] == report.error
    second = world.fill(1, Preset(2, amount=2_000))
    assert world.station.upload(force=True).failures == 2  # the backoff counter grows
    world.reopen()  # the station restarts during the outage: the outbox is a file
    assert world.station.pending_bills() == [first, second]
    world.host.start()  # the host is back on the same database file and port
    assert world.station.upload().skipped  # before the retry time: not yet
    world.clock.advance(3600)
    report = world.station.upload()
    assert (report.accepted, report.pending, report.failures) == (2, 0, 0)
    assert world.station.upload(force=True).accepted == 0
    assert world.host.bills() == 2 and world.host.transactions() == 2


def test_lost_answer_is_resent_and_answered_duplicate_never_booked_twice(world: World) -> None:
    bills = [world.fill(0, Preset(1, amount=4_000)), world.fill(0, Preset(1, amount=1_500))]
    world.reopen(LosesAnswer(world.host.base_url, STATION_AK, STATION_SK, timeout=5.0))
    lost = world.station.upload()
    assert lost.error is not None and lost.pending == 2
    assert world.host.bills() == 2  # the host did store them; the station does not know it
    resent = world.station.upload(force=True)
    assert (resent.accepted, resent.duplicates, resent.pending) == (0, 2, 0)
    assert world.host.bills() == 2 and world.host.transactions() == 2
    credited = world.host.scalar(
        "SELECT SUM(p.amount) FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE a.code = ?",
        f"station:{STATION_ID}",
    )
    assert -credited == sum(b.amount for b in bills)  # each sale credited to the station once


def test_rejected_bill_is_kept_with_the_hosts_reason(world: World) -> None:
    good = world.fill(0, Preset(1, amount=1_000))
    forged = replace(good, psam_ttc=good.psam_ttc + 100, amount=1)  # TMAC no longer matches
    assert world.station.record_bill(forged, "forger")
    assert not world.station.record_bill(good, "again")  # the outbox holds each bill once
    report = world.station.upload()
    assert (report.accepted, report.rejected, report.pending) == (1, 1, 0)
    [(bill, reason, _message)] = world.station.rejected_bills()
    assert bill == forged and reason == "E_BILL_TMAC"


def test_blacklist_sync_is_incremental_and_durable(world: World) -> None:
    ops = world.host.client(OPS_AK, OPS_SK)
    asn = world.asn(0)
    assert world.station.sync_blacklist().version == 0
    world.fill(0, Preset(1, amount=1_000))  # the card is fine before the report
    ops.report_loss(world.asn(1), "other card")
    ops.report_loss(asn, "stolen")
    sync = world.station.sync_blacklist()
    assert (sync.version, sync.added, sync.removed) == (2, 2, 0)
    assert world.station.blacklisted(asn) and world.station.blacklist_version == 2
    with pytest.raises(DispenserRefused, match="blacklisted"):
        world.pumps[0].insert_card(PIN)
    ops.unblock(world.asn(1))
    sync = world.station.sync_blacklist()
    assert (sync.version, sync.added, sync.removed) == (3, 0, 1)  # only the new change
    station = world.reopen()  # version and list are durable
    assert station.blacklist_version == 3 and station.blacklisted(asn)
    assert not station.blacklisted(world.asn(1))
    with pytest.raises(DispenserRefused, match="blacklisted"):
        world.pumps[0].insert_card(PIN)
    world.host.stop()
    failed = station.sync_blacklist()
    assert failed.error is not None and station.blacklisted(asn)  # an outage keeps the list


def test_shift_report_totals_match_the_bills(world: World) -> None:
    world.fill(0, Preset(1, amount=1_000))  # before the shift: not in its report
    with pytest.raises(StationError):
        world.station.close_shift()
    shift = world.station.open_shift("王五")
    with pytest.raises(StationError):
        world.station.open_shift("赵六")
    a = world.fill(0, Preset(1, amount=5_000))
    b = world.fill(1, Preset(2, volume=1_000))
    c = world.fill(1, Preset(1, volume=2_000))
    pump = world.pumps[0]  # the card is pulled while the nozzle is open: an escape bill
    pump.insert_card(PIN)
    pump.lift_nozzle(Preset(2, amount=5_000))
    pump.tick(3)
    pump.pull_card()
    escape = pump.hang_up()
    other = world.fill(1, Preset(1, volume=500))
    receipt = world.store.pay(PIN, 1_234, (Item("water", 1_234),))  # booked by its event
    world.pumps[1].insert_card(PIN)  # a second escape bill stays unsettled
    world.pumps[1].lift_nozzle(Preset(1, volume=400))
    world.pumps[1].tick(2)
    world.pumps[1].pull_card()
    unsettled = world.pumps[1].hang_up()
    pump.insert_card(PIN)  # back at the pump: re-debited (补扣)
    redebit = pump.bills[-1]
    assert (escape.tx_type, redebit.tx_type) == (BillType.ESCAPE, BillType.REDEBIT)
    pump.card_reader.disconnect()
    world.station.upload()
    report = world.station.close_shift()
    assert report.shift == shift and report.staff == "王五" and report.closed_at
    fuel = [a, b, c, other]
    assert report.fuelling.count == 4 and report.fuelling.amount == sum(x.amount for x in fuel)
    assert (report.redebit.count, report.redebit.amount) == (1, escape.amount)
    assert receipt.amount == 1_234 and (report.store.count, report.store.amount) == (1, 1_234)
    assert report.bills == 7 and report.receipts == 1 and report.shift_pending == 0
    assert world.host.scalar("SELECT amount FROM store_sales") == 1_234  # uploaded and booked
    assert report.total == sum(x.amount for x in fuel) + escape.amount + 1_234
    lines = {(e.asn, e.amount, e.settled) for e in report.escapes}
    assert lines == {(escape.asn, escape.amount, True), (unsettled.asn, unsettled.amount, False)}
    assert report.escape_pending == unsettled.amount
    by_product = {p.product: p for p in report.products}
    paid = [*fuel, redebit]
    for code in (0x0092, 0x0095):
        mine = [x for x in paid if x.grade == code]
        assert by_product[code].volume == sum(x.volume for x in mine)
        assert by_product[code].amount == sum(x.amount for x in mine)
        assert by_product[code].count == len(mine)
    assert by_product[STORE_PRODUCT].amount == 1_234 and by_product[STORE_PRODUCT].volume == 0
    assert report.outbox.sent == 9 and report.outbox.pending == 0  # the early bill, the sale
