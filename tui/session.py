"""What the TUI drives: the station's forecourt, its bill outbox and its host, put together.

`Session.open(config)` builds, with no set-up, the TUI's station (cards, two pumps, a store POS and
an issuing office, all emulated in process) and connects it to a host: the embedded one (host_sim
on 127.0.0.1, its SQLite file in the data directory) or a remote one by URL with AK/SK. Bills go
into the station's outbox (a file in the data directory) and are uploaded after each sale.

Nothing here imports textual: the screens call these methods from thread workers.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cardcore.clockrng import ManualClock
from cardcore.records import Bill
from host_sim.access import DEFAULT_SCOPES, add_access_key, add_terminal, load_access_key
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.server import BackgroundServer
from terminal_sim.events import APDU, BILL, MESSAGE, RECEIPT, Event
from terminal_sim.host_client import HostClient, HostError
from terminal_sim.service import Forecourt
from terminal_sim.station import BlacklistSync, Station, UploadReport
from terminal_sim.store_pos import Receipt

STATION_ID = "ST-TUI"
STATION_AK = "tui-station"
OPS_AK = "tui-operations"
DISPLAY_LINES = 2
PUMP_TERMS = {"pump1": "440101000001", "pump2": "440101000002"}

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
        ops: HostClient | None,
        host_db: Database | None,
        server: BackgroundServer | None,
    ) -> None:
        self.config = config
        self.forecourt = forecourt
        self.station = station
        self.host = host
        self.ops = ops
        self.host_db = host_db
        self.server = server
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
        clock = ManualClock(config.start or datetime.now())
        outbox = data / "outbox.sqlite"
        actors = {"cards": CARDS, "terminals": terminals(data)}
        extra = {}
        if config.timer is not None:
            extra["timer"] = config.timer
        forecourt = Forecourt.open(
            actors,
            start=clock.now(),
            workdir=data,
            transport=config.transport,
            seed=config.seed,
            **extra,
        )
        clock = forecourt.world.clock
        server: BackgroundServer | None = None
        host_db: Database | None = None
        ops: HostClient | None = None
        try:
            if config.host_url is None:
                app = create_app(data / "host.sqlite", forecourt.world.hsm, clock)
                host_db = app.state.host.db
                assert host_db is not None
                station_sk, ops_sk = embedded_keys(host_db)
                server = BackgroundServer(app)
                url = server.start()
                host = HostClient(url, STATION_AK, station_sk, clock, timeout=5.0)
                ops = HostClient(url, OPS_AK, ops_sk, clock, timeout=5.0)
            else:
                if not config.ak or not config.sk:
                    raise ValueError("a remote host needs --ak and --sk")
                host = HostClient(config.host_url, config.ak, config.sk, clock, timeout=5.0)
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
        except BaseException:
            if server is not None:
                server.stop()
            forecourt.close()
            raise
        return cls(config, forecourt, station, host, ops, host_db, server)

    def close(self) -> None:
        self.station.close()
        self.host.close()
        if self.ops is not None:
            self.ops.close()
        if self.server is not None:
            self.server.stop()
        if self.host_db is not None:
            self.host_db.close()
        self.forecourt.close()

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

    def report_loss_at_host(self, asn: bytes) -> None:
        """The office's loss report also goes to the host's blacklist the pumps sync from."""
        if self.ops is not None:
            self.ops.report_loss(asn, "reported lost at the issuing office")
            self.station.sync_blacklist()

    def unblock_at_host(self, asn: bytes) -> None:
        if self.ops is not None:
            try:
                self.ops.unblock(asn, "unblocked at the issuing office")
            except HostError as exc:
                if exc.code != "E_NOT_LISTED":
                    raise
            self.station.sync_blacklist()


def embedded_keys(db: Database) -> tuple[str, str]:
    """The station's and the operations' keys in the embedded host (created once)."""
    secrets_of: list[str] = []
    for ak, kind, scopes, owner in (
        (STATION_AK, "station", DEFAULT_SCOPES["station"], STATION_ID),
        (OPS_AK, "app", ("cards.loss", "cards.unblock", "accounts.read"), "operations"),
    ):
        with db.connect() as conn:
            key = load_access_key(conn, ak)
        if key is None:
            key = add_access_key(db, ak, secrets.token_hex(24), kind, scopes, owner)
        secrets_of.append(key.sk)
    for term in (*PUMP_TERMS.values(), "440101000101"):
        add_terminal(db, term, STATION_ID)
    return secrets_of[0], secrets_of[1]


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
