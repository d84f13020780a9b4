"""What the TUI drives: the station's forecourt, its bill outbox and its host, put together.

`Session.open(config)` builds, with no set-up, the TUI's station (cards, two pumps, a store POS and
an issuing office, all emulated in process) and connects it to one host: the embedded one (the
host app over HTTP on 127.0.0.1, its SQLite file in the data directory, started the way a
scenario's `http` host is) or a remote one by URL with AK/SK. The office's online operations, the
store's host calls and the bill uploads all go to that host. Bills go into the station's outbox
(a file in the data directory) and are uploaded after each sale.

On the embedded host there is also a fleet with a virtual card on a driver's phone
(`tui.phone_desk`), and the day can be reconciled (`tui.reconciliation`).

Nothing here imports textual: the screens call these methods from thread workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cardcore.clockrng import ManualClock
from cardcore.records import Bill
from host_sim.db import Database
from terminal_sim import host_link
from terminal_sim.events import APDU, BILL, MESSAGE, RECEIPT, Event
from terminal_sim.host_client import HostClient
from terminal_sim.host_link import HostServer
from terminal_sim.office import LossReport, UnblockResult
from terminal_sim.online_http import HttpOnlineHost
from terminal_sim.service import Forecourt
from terminal_sim.station import BlacklistSync, Station, UploadReport
from terminal_sim.store_pos import Receipt
from tui.phone_desk import PhoneDesk
from tui.reconciliation import DayReconciliation, reconcile_day

STATION_ID = host_link.STATION_ID  # the embedded host's station (its key signs every call)
SHIFT_STAFF = "tui"
DISPLAY_LINES = 2
PUMP_TERMS = {"pump1": "440101000001", "pump2": "440101000002"}
STORE_TERM = "440101000101"  # the store PSAM's terminal id

CARDS: dict[str, Any] = {
    "alice": "normal",
    "bob": "store-enabled",
    "carol": {"profile": "grey-locked", "escape_bill": "station"},
    "dave": "low-balance",
    "erin": "restricted",
    "frank": "staff",
}


@dataclass(frozen=True)
class SessionConfig:
    data_dir: Path
    start: datetime | None = None  # None: the wall clock (the forecourt clock follows it)
    seed: int = 1
    transport: str = "inproc"  # inproc | vpcd (cards served through the virtual PC/SC reader)
    host_url: str | None = None  # None: the embedded host
    ak: str | None = None
    sk: str | None = None
    readers: tuple[tuple[str, str], ...] = ()  # extra cards: (name, reader URL)
    timer: Callable[[], float] | None = None  # APDU timings; None: perf_counter
    tick_delay: float = 0.15  # seconds between pump ticks on screen
    scenario_dir: Path = field(default_factory=lambda: Path("scenarios"))

    @property
    def live_clock(self) -> bool:
        return self.start is None


class Session:
    def __init__(
        self,
        config: SessionConfig,
        forecourt: Forecourt,
        station: Station,
        host: HostClient,
        server: HostServer | None,
        phone: PhoneDesk | None = None,
        remote: HttpOnlineHost | None = None,
    ) -> None:
        self.config = config
        self.forecourt = forecourt
        self.station = station
        self.host = host
        self.server = server
        self.host_db: Database | None = None if server is None else server.db
        self.phone = phone
        self.remote = remote  # the terminals' host calls when the host is remote
        self.closed = False
        self.apdus: list[Event] = []
        self.displays: dict[str, list[str]] = {}  # the last few display texts per terminal
        self.bills: dict[str, Bill] = {}
        self.receipts: dict[str, Receipt] = {}
        self._lock = threading.Lock()
        forecourt.subscribe(self._remember)

    @property
    def host_label(self) -> str:
        return "embedded host" if self.server is not None else "remote host"

    @classmethod
    def open(cls, config: SessionConfig) -> Session:
        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        fresh_files(data)
        if config.host_url is not None and (not config.ak or not config.sk):
            raise ValueError("a remote host needs --ak and --sk")
        clock = ManualClock(config.start or datetime.now())
        outbox = data / "outbox.sqlite"
        actors = {"cards": CARDS, "terminals": terminals(data)}
        extra = {}
        if config.timer is not None:
            extra["timer"] = config.timer
        # The embedded host is the scenarios' `http` host: the host app on 127.0.0.1 over
        # `host.sqlite` in the data directory, reached by the terminals through HttpOnlineHost.
        forecourt = Forecourt.open(
            actors,
            start=clock.now(),
            workdir=data,
            transport=config.transport,
            seed=config.seed,
            host_kind="inproc" if config.host_url else "http",
            **extra,
        )
        clock = forecourt.world.clock
        link = forecourt.world.link
        server = link.server if link is not None and config.host_url is None else None
        remote: HttpOnlineHost | None = None
        phone: PhoneDesk | None = None
        host: HostClient | None = None
        try:
            if server is not None:
                server.register(bytes.fromhex(t) for t in (*PUMP_TERMS.values(), STORE_TERM))
                host = server.client()
                phone = PhoneDesk.open(
                    server.db,
                    server.base_url,
                    clock,
                    data,
                    config.seed,
                    {
                        name: (number, term)
                        for number, (name, term) in enumerate(PUMP_TERMS.items(), 1)
                    },
                    (server.ak, server.sk),
                    STATION_ID,
                    forecourt.world.bus.publish,
                    forecourt.timer,
                )
            else:
                assert config.host_url and config.ak and config.sk
                host = HostClient(config.host_url, config.ak, config.sk, clock, timeout=5.0)
                remote = HttpOnlineHost(
                    HostClient(config.host_url, config.ak, config.sk, clock, timeout=5.0)
                )
                forecourt.use_host(remote)
            for name, url in config.readers:
                forecourt.add_card(name, url)
            terminals_of = forecourt.terminals()
            station = Station(
                "station",
                STATION_ID,
                [forecourt.dispenser(n) for n, kind in terminals_of.items() if kind == "dispenser"],
                [forecourt.pos(n) for n, kind in terminals_of.items() if kind == "pos"],
                host,
                forecourt.world.bus,
                clock,
                outbox,
            )
            station.open_shift(SHIFT_STAFF)
            # The escape bill a pre-issued grey card left at this station is in its books too.
            pump_of = {term: name for name, term in PUMP_TERMS.items()}
            for bill in forecourt.world.station.escape.values():
                station.record_bill(bill, pump_of.get(bill.term.hex().upper(), "station"))
        except BaseException:
            for opened in (phone, remote, host):
                if opened is not None:
                    opened.close()
            forecourt.close()
            if server is not None:
                server.db.close()
            raise
        return cls(config, forecourt, station, host, server, phone, remote)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.station.close()
        self.host.close()
        if self.phone is not None:
            self.phone.close()
        if self.remote is not None:
            self.remote.close()
        self.forecourt.close()  # stops the embedded host too
        if self.host_db is not None:
            self.host_db.close()

    def _remember(self, event: Event) -> None:
        with self._lock:
            if event.kind == APDU:
                self.apdus.append(event)
            elif event.kind == MESSAGE:
                lines = self.displays.setdefault(event.terminal, [])
                lines[:] = [*lines, str(event.data["text"])][-DISPLAY_LINES:]
            elif event.kind == BILL:
                self.bills[event.terminal] = event.data["bill"]
            elif event.kind == RECEIPT:
                self.receipts[event.terminal] = event.data["receipt"]

    def display(self, terminal: str) -> str:
        """What the terminal's display showed last, newest last."""
        with self._lock:
            return " | ".join(self.displays.get(terminal, []))

    def apdu_events(self) -> list[Event]:
        with self._lock:
            return list(self.apdus)

    def follow_clock(self) -> None:
        """With a live clock the forecourt's time moves with the wall clock."""
        if not self.config.live_clock:
            return
        behind = (datetime.now() - self.forecourt.world.clock.now()).total_seconds()
        if behind > 0:
            self.forecourt.advance_clock(behind)

    # Host ------------------------------------------------------------------------------------
    def upload(self) -> UploadReport:
        return self.station.upload(force=True)

    def sync_blacklist(self) -> BlacklistSync:
        return self.station.sync_blacklist()

    # The office, through the host -------------------------------------------------------------
    def report_loss(self, at: str, card: str) -> LossReport:
        """The office reports the card lost at the host, which blacklists it; the station then
        syncs the list its pumps and store check."""
        result = self.forecourt.report_loss(at, card)
        self.station.sync_blacklist()
        return result

    def unblock(self, at: str, card: str) -> UnblockResult:
        result = self.forecourt.unblock(at, card)
        self.station.sync_blacklist()
        return result

    # Reconciliation -----------------------------------------------------------------------------
    def reconcile(self) -> DayReconciliation:
        """Close the shift (班结), reconcile today's business day of this station against the
        embedded host's books (the run is stored at the host), and open the next shift."""
        if self.host_db is None:
            raise ValueError("reconciliation reads the host's database: embedded host only")
        self.station.close_shift()
        try:
            return reconcile_day(self.station, self.host_db, self.forecourt.world.clock.now())
        finally:
            self.station.open_shift(SHIFT_STAFF)


def terminals(data: Path) -> dict[str, Any]:
    """The station's terminals: two pumps (each PSAM with its own terminal id), store, office."""
    layout: dict[str, Any] = {}
    for pump, term in PUMP_TERMS.items():
        layout[pump] = {"kind": "dispenser", "psam": str(psam_image(data, pump, term))}
    layout["pos1"] = {"kind": "pos"}
    layout["office1"] = {"kind": "office"}
    return layout


def psam_image(data: Path, pump: str, term: str) -> Path:
    """A copy of the shipped dispenser PSAM with the pump's own terminal id and serial."""
    raw = yaml.safe_load(shipped_psam().read_text(encoding="utf-8"))
    raw["name"] = f"psam-{pump}"
    raw["description"] = f"The PSAM of {pump}, terminal {term}."
    raw["psam"]["terminal_id"] = term
    raw["psam"]["serial"] = f"4401010000000000{term[-4:]}"
    path = data / "psam" / f"{pump}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def shipped_psam() -> Path:
    import card_profiles

    return Path(card_profiles.__file__).parent / "profiles" / "psam-dispenser.yaml"


def fresh_files(data: Path) -> None:
    """The emulated cards are issued afresh at every start, so the station's outbox and the
    embedded host's books start afresh too (old books would not match the new cards)."""
    for name in ("outbox.sqlite", "host.sqlite", "journal.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (data / f"{name}{suffix}").unlink(missing_ok=True)
    PhoneDesk.forget(data)
