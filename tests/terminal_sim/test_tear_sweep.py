"""Tear sweep of the terminal flows: crash the terminal at every APDU boundary and cut the card's
power inside every card write, then recover and check that card, journal and books agree.

Flows: the grey-lock fuelling at a dispenser, the store purchase at the POS and the load at the
issuing office (crash after every card/PSAM APDU, with the answer received or lost, recovery with
the card present or gone; power cut at every card write point of the whole flow; the host down
when the load is confirmed). After recovery every fen the card lost or gained is on exactly one
journaled bill, receipt or load; the host booked exactly that (bills and store sales through
host_sim's upload paths over its SQLite ledger, each sent twice; loads through the online host);
the journal has no unfinished transaction and the card is not left grey.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.nvm import PowerLost, WritePoint
from card_profiles.psam import Psam
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.layout import LockStatus
from cardcore.records import Bill, LockRecord, StoreSale
from host_sim import ledger
from host_sim.access import add_terminal
from host_sim.bills import upload_bills
from host_sim.db import Database
from host_sim.store_sales import upload_sales
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import CardRefused
from terminal_sim.dispenser import Dispenser, DispenserRefused, Grade, Preset, StationBills
from terminal_sim.events import EventBus
from terminal_sim.fuelling import BillType, Sale
from terminal_sim.issuing import IssuedCard
from terminal_sim.journal import Journal
from terminal_sim.office import IssuingOffice, OfficeRefused
from terminal_sim.online import InProcessHost
from terminal_sim.readers import CardLost, InProcReader
from terminal_sim.store_pos import IN_DOUBT, Item, StorePos, StoreRefused

NOZZLES = {1: Grade(0x0092, "92#", 750)}
START = datetime(2026, 11, 22, 10, 0, 0)
PIN = "999999"
OFFICE_TERM = bytes.fromhex("440101009901")
PUMP, STORE, STATION = "440101000001", "440101000101", "44010100"


class Crash(BaseException):
    """The terminal dies: nothing of its process survives but the journal, card and PSAM."""


@dataclass
class Fault:
    """Where to interrupt: after `apdu` exchanges (answer received, or lost when `ran`), or at
    the card's `write`-th write point (power cut)."""

    apdu: int | None = None
    ran: bool = False
    write: int | None = None
    apdus: int = 0
    writes: int = 0
    fired: bool = False
    points: list[WritePoint] = field(default_factory=list)


class FaultyReader(InProcReader):
    def __init__(self, applet: FuelCard | Psam, name: str, fault: Fault) -> None:
        super().__init__(applet, name)
        self.fault = fault

    def transmit(self, command: bytes) -> bytes:
        fault = self.fault
        if not fault.fired and fault.apdu is not None and fault.apdus == fault.apdu:
            fault.fired = True
            if fault.ran:
                self.applet.process(command)  # the card/PSAM did it; the answer never came back
            raise Crash
        fault.apdus += 1
        return super().transmit(command)


def arm_tear(card: FuelCard, fault: Fault) -> None:
    def hook(point: WritePoint) -> None:
        fault.points.append(point)
        if not fault.fired and fault.write is not None and fault.writes == fault.write:
            fault.fired = True
            card.power_off()
            raise PowerLost
        fault.writes += 1

    card.nvm.tear_hook = hook


def balance(card: FuelCard) -> int:
    return int.from_bytes(card.nvm.cells["et.balance"], "big")


def lock_record(card: FuelCard) -> LockRecord:
    return LockRecord.from_bytes(card.nvm.cells["lock"])


class HostBooks:
    """host_sim's upload paths over a real SQLite file: what the host books of the terminals'
    records. Every record is sent twice (a retry after a lost answer): the second is a
    duplicate and books nothing."""

    def __init__(self, directory: Path, hsm: MockHsm) -> None:
        self.db = Database(directory / "host.sqlite")
        self.hsm = hsm
        for terminal in (PUMP, STORE):
            add_terminal(self.db, terminal, STATION)

    def book_bills(self, bills: list[Bill], label: str) -> None:
        raws = [bill.to_bytes() for bill in bills]
        for expected in ("accepted", "duplicate"):
            outcomes = upload_bills(self.db, self.hsm, raws, uploader=PUMP, ak="t", now=START)
            assert {o.status for o in outcomes} <= {expected}, f"{label}: {outcomes}"

    def book_sales(self, sales: list[StoreSale], label: str) -> None:
        raws = [sale.to_bytes() for sale in sales]
        for expected in ("accepted", "duplicate"):
            outcomes = upload_sales(self.db, self.hsm, raws, uploader=STORE, ak="t", now=START)
            assert {o.status for o in outcomes} <= {expected}, f"{label}: {outcomes}"

    def card_spent(self, card: FuelCard) -> int:
        """What the host's ledger says the card paid (its account is credit-normal)."""
        asn = card.nvm.cells["ef15"][10:20].hex().upper()
        with self.db.connect() as conn:
            return -ledger.balance(conn, ledger.card_account(asn))


# Grey-lock fuelling ---------------------------------------------------------------------------
class Station:
    def __init__(self, issued: Callable[[str], IssuedCard], hsm: MockHsm, directory: Path) -> None:
        applet = in_memory(dict(issued("normal").cells), SeededRng(1))
        psam = in_memory(dict(issued("psam-dispenser").cells), SeededRng(5))
        assert isinstance(applet, FuelCard) and isinstance(psam, Psam)
        self.card, self.psam = applet, psam
        self.clock = ManualClock(START)
        self.journal = Journal(directory / "journal.sqlite")
        self.bills = StationBills()
        self.pumps: list[Dispenser] = []
        self.initial = balance(applet)
        self.host = HostBooks(directory, hsm)

    def pump(self, name: str, fault: Fault | None = None, psam: Psam | None = None) -> Dispenser:
        fault = fault or Fault()
        dispenser = Dispenser(
            name,
            FaultyReader(self.card, "card", fault),
            FaultyReader(psam or self.psam, "psam", fault),
            NOZZLES,
            bus=EventBus(),
            clock=self.clock,
            journal=self.journal,
            station=self.bills,
        )
        dispenser.start()
        fault.apdus = 0  # count from the card's insertion
        self.pumps.append(dispenser)
        return dispenser


def fuelling(dispenser: Dispenser) -> None:
    dispenser.insert_card(PIN)
    dispenser.lift_nozzle(Preset(1, amount=3_000))
    dispenser.tick(2)  # 1.00 L
    dispenser.tick(2)  # 2.00 L
    dispenser.hang_up()  # 15.00


def run_interrupted(station: Station, fault: Fault) -> None:
    """The fuelling, stopped by a crash or a power cut; then the card loses power too."""
    with contextlib.suppress(Crash, CardLost, CardRefused, DispenserRefused):
        fuelling(station.pump("pump-1", fault))
    station.card.nvm.tear_hook = None
    station.card.power_off()
    station.psam.power_off()


def recover_and_settle(station: Station, card_present: bool) -> None:
    restarted = station.pump("pump-1")
    reader = restarted.card_reader
    assert isinstance(reader, InProcReader)
    if not card_present:
        reader.remove()  # the driver took the card while the pump was down
    restarted.recover()
    assert station.journal.unfinished() == [], "a journaled transaction is left unfinished"
    station.card.power_off()
    # The card comes back to another pump of the station: an escape bill is re-debited there.
    with contextlib.suppress(DispenserRefused):  # a card left grey: check_fuelling says so
        station.pump("pump-2").insert_card(PIN)


def check_fuelling(station: Station, label: str) -> None:
    bills: list[Bill] = [bill for pump in station.pumps for bill in pump.bills]
    charged = [b for b in bills if b.tx_type in (BillType.FUELLING, BillType.REDEBIT)]
    escapes = [b for b in bills if b.tx_type == BillType.ESCAPE]
    assert lock_record(station.card).status == LockStatus.FREE, f"{label}: card left locked"
    assert station.bills.escape == {}, f"{label}: an escape bill was never re-debited"
    for escape in escapes:
        assert any(
            b.tx_type == BillType.REDEBIT and b.ctc == escape.ctc + 1 and b.amount == escape.amount
            for b in charged
        ), f"{label}: escape bill {escape.amount} not re-debited"
    debits = [(b.asn, b.ctc) for b in charged]
    assert len(debits) == len(set(debits)), f"{label}: one card debit booked twice"
    lost = station.initial - balance(station.card)
    assert sum(b.amount for b in charged) == lost, f"{label}: bills {charged} vs card -{lost}"
    # The journal: every fuelling that locked the card is billed for all the fuel it delivered.
    delivered = 0
    for txn in range(1, 100):
        try:
            entry = station.journal.entry(txn)
        except TypeError:
            break
        done = entry.data("done") or {}
        assert entry.last == "done", f"{label}: txn {txn} unfinished"
        if entry.data("locked") is None:
            assert done.get("aborted"), f"{label}: unlocked txn {txn} not aborted"
            continue
        volume = max((d["volume"] for n, d in entry.steps if n == "delivered"), default=0)
        delivered += Sale(1, 0x0092, 750, volume).amount
        assert Bill.from_bytes(done["bill"]) in bills, f"{label}: journaled bill not held"
    assert delivered == lost, f"{label}: delivered {delivered} fen, card paid {lost}"
    station.host.book_bills(bills, label)
    assert station.host.card_spent(station.card) == lost, f"{label}: host ledger vs card"


def lock_not_journaled(station: Station) -> bool:
    """GREY LOCK ran on the card but the pump died (or the card lost power after the lock's commit
    point) before the journal's "locked" step, and the card was gone at recovery. Without the
    card the lock cannot be proven, so recover() aborts the transaction and the card stays grey
    with no escape bill: no fen moves (nothing was delivered or debited), and the issuing office
    unlocks the card. With the card present, recover() finds the lock and finishes the sale."""
    try:
        aborted = bool((station.journal.entry(1).data("done") or {}).get("aborted"))
    except TypeError:  # no transaction was begun
        return False
    return aborted and lock_record(station.card).status == LockStatus.GREY


def check(station: Station, label: str, gaps: list[str] | None = None) -> list[str]:
    """check_fuelling's first failure for this case, so one run lists every failing case."""
    if gaps is not None and lock_not_journaled(station):
        gaps.append(label)
        assert balance(station.card) == station.initial, f"{label}: money moved"
        assert not [b for pump in station.pumps for b in pump.bills], f"{label}: billed"
        return []
    try:
        check_fuelling(station, label)
    except AssertionError as failed:
        return [str(failed).splitlines()[0]]
    return []


def count(tally: dict[str, int], flow: str, n: int) -> None:
    tally[flow] = tally.get(flow, 0) + n
    print(f"tear sweep: {flow}: {n} cases run")


@pytest.fixture
def directories(tmp_path: Path) -> Callable[[], Path]:
    made = 0

    def make() -> Path:
        nonlocal made
        made += 1
        directory = tmp_path / str(made)
        directory.mkdir()
        return directory

    return make


@pytest.fixture
def fresh(
    issued: Callable[[str], IssuedCard], hsm: MockHsm, directories: Callable[[], Path]
) -> Callable[[], Station]:
    return lambda: Station(issued, hsm, directories())


def test_fuelling_crash_at_every_apdu_boundary(
    fresh: Callable[[], Station], sweep_tally: dict[str, int]
) -> None:
    probe = fresh()
    total = Fault()
    fuelling(probe.pump("pump-1", total))
    assert total.apdus >= 15 and probe.journal.unfinished() == []
    check_fuelling(probe, "untorn")
    cases, failures, gaps = 0, list[str](), list[str]()
    for k in range(total.apdus + 1):
        for ran in (False, True):
            for card_present in (True, False):
                station = fresh()
                fault = Fault(apdu=k, ran=ran)
                run_interrupted(station, fault)
                assert fault.fired == (k < total.apdus)
                recover_and_settle(station, card_present)
                label = f"crash after APDU {k} ran={ran} card={card_present}"
                failures += check(station, label, gaps)
                cases += 1
    assert not failures, "\n".join(failures)
    # GREY LOCK ran (answer lost) or PSAM E0 42 not reached, and the card gone at recovery
    assert len(gaps) == 3 and all("card=False" in gap for gap in gaps), gaps
    count(sweep_tally, "fuelling crash", cases)
    assert cases == (total.apdus + 1) * 4 == 84


def test_fuelling_power_cut_at_every_card_write(
    fresh: Callable[[], Station], sweep_tally: dict[str, int]
) -> None:
    probe = fresh()
    total = Fault()
    arm_tear(probe.card, total)
    fuelling(probe.pump("pump-1", total))
    steps = {p.step for p in total.points}
    assert total.writes >= 9 and steps == {"stage", "journal", "apply"}
    cases, failures, gaps = 0, list[str](), list[str]()
    for w in range(total.writes):
        for card_present in (True, False):
            station = fresh()
            fault = Fault(write=w)
            arm_tear(station.card, fault)
            run_interrupted(station, fault)
            assert fault.fired
            recover_and_settle(station, card_present)
            label = f"power cut at write {w} {fault.points[-1]} card={card_present}"
            failures += check(station, label, gaps)
            cases += 1
    assert not failures, "\n".join(failures)
    # power cut at GREY LOCK's "journal" and "apply" points, and the card gone at recovery
    assert len(gaps) == 2 and all("card=False" in gap for gap in gaps), gaps
    count(sweep_tally, "fuelling tear", cases)
    assert cases == total.writes * 2 == 34


def test_grey_lock_done_but_not_journaled_is_recovered(fresh: Callable[[], Station]) -> None:
    station = fresh()
    grey_lock = 12  # the APDU index of GREY LOCK in this flow (the card is grey just after it)
    run_interrupted(station, Fault(apdu=grey_lock, ran=True))
    assert lock_record(station.card).status == LockStatus.GREY
    recover_and_settle(station, card_present=True)
    check_fuelling(station, "GREY LOCK done, answer lost")


# Store purchase -------------------------------------------------------------------------------
class Store:
    """A store POS of the station with its card, PSAM, journal and the host's books."""

    def __init__(self, issued: Callable[[str], IssuedCard], hsm: MockHsm, directory: Path) -> None:
        card = in_memory(dict(issued("store-enabled").cells), SeededRng(1))
        psam = in_memory(dict(issued("psam-store").cells), SeededRng(5))
        assert isinstance(card, FuelCard) and isinstance(psam, Psam)
        self.card, self.psam, self.hsm = card, psam, hsm
        self.clock = ManualClock(START)
        self.journal = Journal(directory / "journal.sqlite")
        self.host = HostBooks(directory, hsm)
        self.initial = balance(card)

    def pos(self, fault: Fault | None = None) -> StorePos:
        """The POS as it starts: a restarted one finds its unfinished sale in the journal."""
        fault = fault or Fault()
        pos = StorePos(
            "store-1",
            FaultyReader(self.card, "card", fault),
            FaultyReader(self.psam, "psam", fault),
            InProcessHost(self.hsm, self.clock),
            EventBus(),
            self.clock,
            blacklisted=lambda asn: False,
            journal=self.journal,
        )
        pos.start()
        fault.apdus = 0  # count from the sale's first card command
        return pos


def store_sale(pos: StorePos) -> None:
    pos.pay(PIN, 700, [Item("coffee", 700)])


def run_sale_interrupted(store: Store, fault: Fault) -> None:
    with contextlib.suppress(Crash, CardLost, CardRefused, StoreRefused):
        store_sale(store.pos(fault))
    store.card.nvm.tear_hook = None
    store.card.power_off()
    store.psam.power_off()


def recover_sale(store: Store, card_present: bool) -> None:
    """Restart the POS; recover the sale in doubt (after the card comes back when it was gone),
    then sell again: the POS must take sales after recovery."""
    restarted = store.pos()
    reader = restarted.card_reader
    assert isinstance(reader, InProcReader)
    if restarted.in_doubt is not None:
        if not card_present:
            reader.remove()
            with pytest.raises(StoreRefused, match=IN_DOUBT):
                restarted.pay(PIN, 100)
            reader.insert()
        restarted.recover()
    assert store.journal.unfinished() == [], "a journaled sale is left unfinished"
    restarted.pay(PIN, 100)


def check_store(store: Store, label: str) -> list[str]:
    try:
        done = [e.data("done") or {} for e in store.journal.finished("store-1")]
        sales = [StoreSale.from_bytes(d["sale"]) for d in done if "sale" in d]
        assert all("sale" in d or d.get("aborted") for d in done), f"{label}: {done}"
        lost = store.initial - balance(store.card)
        assert sum(s.amount for s in sales) == lost, f"{label}: receipts {sales} vs card -{lost}"
        keys = [(s.term, s.psam_ttc) for s in sales]
        assert len(keys) == len(set(keys)), f"{label}: one sale journaled twice"
        store.host.book_sales(sales, label)
        assert store.host.card_spent(store.card) == lost, f"{label}: host ledger vs card"
    except AssertionError as failed:
        return [str(failed).splitlines()[0]]
    return []


@pytest.fixture
def store(
    issued: Callable[[str], IssuedCard], hsm: MockHsm, directories: Callable[[], Path]
) -> Callable[[], Store]:
    return lambda: Store(issued, hsm, directories())


# Load at the issuing office -------------------------------------------------------------------
class Office:
    """An issuing office with its card, journal and the host that authorises and books loads."""

    def __init__(self, issued: Callable[[str], IssuedCard], hsm: MockHsm, directory: Path) -> None:
        card = in_memory(dict(issued("normal").cells), SeededRng(1))
        assert isinstance(card, FuelCard)
        self.card = card
        self.clock = ManualClock(START)
        self.journal = Journal(directory / "journal.sqlite")
        self.host = InProcessHost(hsm, self.clock, db=directory / "host.sqlite")
        self.initial = balance(card)

    def office(self, fault: Fault | None = None) -> IssuingOffice:
        """The office as it starts: a restarted one finds its unfinished load in the journal."""
        reader = FaultyReader(self.card, "card", fault or Fault())
        return IssuingOffice(
            "office-1", reader, self.host, EventBus(), self.clock, OFFICE_TERM, self.journal
        )

    def loaded(self) -> int:
        """What the host's ledger says was loaded onto the card (credit-normal account)."""
        asn = self.card.nvm.cells["ef15"][10:20].hex().upper()
        with self.host.db.connect() as conn:
            return ledger.balance(conn, ledger.card_account(asn))


def load(office: IssuingOffice) -> None:
    office.load(PIN, 10_000)


def run_load_interrupted(office: Office, fault: Fault) -> None:
    with contextlib.suppress(Crash, CardLost, CardRefused, OfficeRefused):
        load(office.office(fault))
    office.card.nvm.tear_hook = None
    office.card.power_off()


def recover_load(office: Office, card_present: bool) -> None:
    """Restart the office: confirm to the host what the card did, recover a load in doubt (after
    the card comes back when it was gone), then load again: the counter works after recovery."""
    restarted = office.office()
    restarted.confirm()
    reader = restarted.card_reader
    assert isinstance(reader, InProcReader)
    if restarted.in_doubt is not None:
        if not card_present:
            reader.remove()
            with pytest.raises(OfficeRefused, match="unfinished operation"):
                restarted.load(PIN, 100)
            reader.insert()
        restarted.recover()
    assert office.journal.unfinished() == [], "a journaled load is left unfinished"
    restarted.load(PIN, 100)


def check_load(office: Office, label: str) -> list[str]:
    try:
        gained = balance(office.card) - office.initial
        done = [e.data("done") or {} for e in office.journal.finished("office-1")]
        proven = [e.data("begin") for e in office.journal.finished("office-1") if e.data("proof")]
        assert sum(b["amount"] for b in proven if b) == gained, f"{label}: journal vs card"
        assert all(d == {} or d.get("aborted") for d in done), f"{label}: {done}"
        keys = [(x.asn8, x.online_ctc) for x in office.host.loads]
        assert len(keys) == len(set(keys)), f"{label}: a load booked twice"
        assert office.loaded() == gained, f"{label}: host booked {office.loaded()}, card +{gained}"
    except AssertionError as failed:
        return [str(failed).splitlines()[0]]
    return []


@pytest.fixture
def counter(
    issued: Callable[[str], IssuedCard], hsm: MockHsm, directories: Callable[[], Path]
) -> Callable[[], Office]:
    return lambda: Office(issued, hsm, directories())


class HostDownAtConfirm:
    """The host goes down just after it authorised the load: the confirmation does not reach it."""

    def __init__(self, host: InProcessHost) -> None:
        self.host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self.host, name)

    def confirm_load(self, *args: Any, **kwargs: Any) -> None:
        self.host.available = False
        self.host.confirm_load(*args, **kwargs)


def test_load_confirmed_after_the_host_comes_back(counter: Callable[[], Office]) -> None:
    office = counter()
    healthy = office.host
    office.host = HostDownAtConfirm(healthy)  # type: ignore[assignment]
    with pytest.raises(OfficeRefused, match="host unreachable"):
        load(office.office())
    assert balance(office.card) == office.initial + 10_000 and office.host.loads == []
    assert [e.last for e in office.journal.unfinished()] == ["proof"]
    office.host, healthy.available = healthy, True  # back up; the office restarts, confirms
    restarted = office.office()
    assert [r.amount for r in restarted.confirm()] == [10_000]
    assert restarted.confirm() == [] and office.journal.unfinished() == []
    assert check_load(office, "host down at confirmation") == []


# The store and load sweeps ---------------------------------------------------------------------
@dataclass
class Flow:
    """A terminal flow for the sweeps: make its rig, run it with reader faults armed (and stop
    there when they fire), restart and recover with the card present or not, check the books."""

    name: str
    make: Callable[[], Any]
    run: Callable[[Any, Fault], None]
    interrupted: Callable[[Any, Fault], None]
    recover: Callable[[Any, bool], None]
    check: Callable[[Any, str], list[str]]
    tally: dict[str, int]


def sweep_crashes(flow: Flow) -> None:
    """Crash after every APDU (its answer received or lost), recover with the card or without."""
    probe, total = flow.make(), Fault()
    flow.run(probe, total)
    assert flow.check(probe, "untorn") == [] and total.apdus >= 6
    cases, failures = 0, list[str]()
    for k in range(total.apdus + 1):
        for ran in (False, True):
            for card_present in (True, False):
                rig, fault = flow.make(), Fault(apdu=k, ran=ran)
                flow.interrupted(rig, fault)
                assert fault.fired == (k < total.apdus)
                flow.recover(rig, card_present)
                failures += flow.check(rig, f"crash after APDU {k} ran={ran} card={card_present}")
                cases += 1
    assert not failures, "\n".join(failures)
    count(flow.tally, f"{flow.name} crash", cases)
    assert cases == (total.apdus + 1) * 4


def sweep_power_cuts(flow: Flow) -> None:
    """Cut the card's power at every write point of the flow, recover with the card or not."""
    probe, total = flow.make(), Fault()
    arm_tear(probe.card, total)
    flow.run(probe, total)
    assert total.writes >= 3
    cases, failures = 0, list[str]()
    for w in range(total.writes):
        for card_present in (True, False):
            rig, fault = flow.make(), Fault(write=w)
            arm_tear(rig.card, fault)
            flow.interrupted(rig, fault)
            assert fault.fired
            flow.recover(rig, card_present)
            label = f"power cut at write {w} {fault.points[-1]} card={card_present}"
            failures += flow.check(rig, label)
            cases += 1
    assert not failures, "\n".join(failures)
    count(flow.tally, f"{flow.name} tear", cases)
    assert cases == total.writes * 2


@pytest.fixture
def store_flow(store: Callable[[], Store], sweep_tally: dict[str, int]) -> Flow:
    return Flow(
        "store sale",
        store,
        lambda shop, fault: store_sale(shop.pos(fault)),
        run_sale_interrupted,
        recover_sale,
        check_store,
        sweep_tally,
    )


@pytest.fixture
def load_flow(counter: Callable[[], Office], sweep_tally: dict[str, int]) -> Flow:
    return Flow(
        "load",
        counter,
        lambda office, fault: load(office.office(fault)),
        run_load_interrupted,
        recover_load,
        check_load,
        sweep_tally,
    )


def test_store_sale_crash_at_every_apdu_boundary(store_flow: Flow) -> None:
    sweep_crashes(store_flow)


def test_store_sale_power_cut_at_every_card_write(store_flow: Flow) -> None:
    sweep_power_cuts(store_flow)


def test_load_crash_at_every_apdu_boundary(load_flow: Flow) -> None:
    sweep_crashes(load_flow)


def test_load_power_cut_at_every_card_write(load_flow: Flow) -> None:
    sweep_power_cuts(load_flow)
