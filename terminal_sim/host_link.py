"""The host a simulated station talks to, and the way to take it down and bring it back.

`open_host("inproc" | "http", …)` gives a `HostLink`:
- `inproc`: an `InProcessHost` over a host database file; `down()` makes every call raise
  `HostUnavailable`;
- `http`: the real host app (`host_sim.app.create_app`) served by uvicorn on 127.0.0.1 over an
  SQLite file (`HostServer`), reached with `HttpOnlineHost` and a station key; `down()` stops the
  server, `up()` starts it again on the same port and file.

The link is also the station's escape-bill outbox: an escape bill that cannot be uploaded while
the host is down is kept, and sent when the host is back (`up()`), once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from cardcore.clockrng import ManualClock
from cardcore.errors import FuelsimError
from cardcore.records import Bill
from host_sim import ledger
from host_sim.access import DEFAULT_SCOPES, OFFICE_SCOPES, add_access_key, add_terminal
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.routes_online import set_escape_wait
from host_sim.server import BackgroundServer
from hsm_mock.hsm import MockHsm
from terminal_sim.events import MESSAGE, Event, EventBus
from terminal_sim.host_client import HostClient, HostUnavailable
from terminal_sim.online import ESCAPE_WAIT, HostRefused, InProcessHost, OnlineHost
from terminal_sim.online_http import HttpOnlineHost

HOSTS = ("inproc", "http")
STATION_ID = "ST-SIM"
STATION_AK = "station-sim"
LINK = "host link"  # the name on the link's messages


class HostServer:
    """The real host over HTTP on a free 127.0.0.1 port; `stop()`/`start()` keep file and port."""

    def __init__(
        self,
        path: Path,
        hsm: MockHsm,
        clock: ManualClock,
        *,
        station_id: str = STATION_ID,
        escape_wait: timedelta = ESCAPE_WAIT,
    ) -> None:
        self.path, self.hsm, self.clock = path, hsm, clock
        self.station_id = station_id
        self.escape_wait = escape_wait
        self.port = 0
        self.server: BackgroundServer | None = None
        self.start()
        self.db = Database(path)  # the admin's handle: keys and terminals (no admin API yet)
        self.ak, self.sk = STATION_AK, secrets.token_hex(24)
        scopes = {*DEFAULT_SCOPES["station"], *OFFICE_SCOPES}
        add_access_key(self.db, self.ak, self.sk, "station", scopes, station_id)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.server is not None

    def start(self) -> None:
        app = create_app(self.path, self.hsm, self.clock, rate_limit_per_minute=None)
        set_escape_wait(app, self.escape_wait)
        server = BackgroundServer(app, port=self.port)
        server.start()
        self.server, self.port = server, server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def register(self, terminals: Iterable[bytes]) -> None:
        """Terminals of the station: its key may act and upload for them."""
        for term in terminals:
            add_terminal(self.db, term.hex().upper(), self.station_id)

    def client(self) -> HostClient:
        return HostClient(self.base_url, self.ak, self.sk, self.clock, timeout=5.0)


class HostLink:
    def __init__(
        self,
        kind: str,
        host: OnlineHost,
        bus: EventBus,
        server: HostServer | None = None,
    ) -> None:
        self.kind = kind
        self.host = host
        self.bus = bus
        self.server = server
        self.pending: list[Bill] = []  # escape bills waiting for the host

    @property
    def up_now(self) -> bool:
        if self.server is not None:
            return self.server.running
        return not isinstance(self.host, InProcessHost) or self.host.available

    def show(self, text: str) -> None:
        self.bus.publish(Event(MESSAGE, LINK, {"text": text}))

    def down(self) -> None:
        if not self.up_now:
            raise FuelsimError("the host is down already")
        if self.server is not None:
            self.server.stop()
        elif isinstance(self.host, InProcessHost):
            self.host.available = False
        self.show("host down")

    def up(self) -> int:
        """Bring the host back and send the escape bills kept meanwhile; returns how many."""
        if self.up_now:
            raise FuelsimError("the host is up already")
        if self.server is not None:
            self.server.start()
        elif isinstance(self.host, InProcessHost):
            self.host.available = True
        self.show("host up")
        return self.flush()

    def register(self, terminals: Iterable[bytes]) -> None:
        if self.server is not None:
            self.server.register(terminals)

    def card_balance(self, asn: bytes) -> int:
        """The card's balance in the host's ledger (loads less booked sales), read straight
        from the host's database, as a tester would (HTTP: the server's SQLite file)."""
        db = self.server.db if self.server is not None else getattr(self.host, "db", None)
        if not isinstance(db, Database):
            raise FuelsimError("this host's database cannot be read from here")
        with db.connect() as conn:
            return ledger.balance(conn, ledger.card_account(asn.hex().upper()))

    def record_escape_bill(self, bill: Bill) -> None:
        """Upload an escape bill now (its pump is registered with the station first)."""
        self.register([bill.term])
        self.host.record_escape_bill(bill)

    def send_escape_bill(self, bill: Bill) -> bool:
        """Upload an escape bill now (True), or keep it for when the host is back; never raises."""
        if self.pending:  # keep the order: older bills first
            self.pending.append(bill)
            self.flush()
            return bill not in self.pending
        try:
            self.record_escape_bill(bill)
        except HostUnavailable:
            self.pending.append(bill)
            self.show(f"escape bill of card {bill.asn.hex()} kept: the host is unreachable")
            return False
        except HostRefused as refused:  # said, never raised: this runs as an event subscriber
            self.show(f"escape bill of card {bill.asn.hex()} refused: {refused}")
            return False
        return True

    def flush(self) -> int:
        sent = 0
        while self.pending:
            bill = self.pending[0]
            try:
                self.record_escape_bill(bill)
            except HostUnavailable:
                break
            except HostRefused as refused:
                self.show(f"escape bill of card {bill.asn.hex()} refused: {refused}")
            self.pending.pop(0)
            sent += 1
        if sent:
            self.show(f"uploaded {sent} kept escape bill{'s' if sent > 1 else ''}")
        return sent

    def close(self) -> None:
        if isinstance(self.host, HttpOnlineHost):
            self.host.close()
        if isinstance(self.host, InProcessHost):
            self.host.close()
        if self.server is not None:
            self.server.stop()


def open_host(
    kind: str, hsm: MockHsm, clock: ManualClock, bus: EventBus, workdir: Path
) -> HostLink:
    """The scenario's host: `inproc` (a temporary database) or `http` (`workdir/host.sqlite`)."""
    if kind not in HOSTS:
        raise FuelsimError(f"host {kind!r}: expected one of {', '.join(HOSTS)}")
    if kind == "inproc":
        return HostLink(kind, InProcessHost(hsm, clock), bus)
    server = HostServer(workdir / "host.sqlite", hsm, clock)
    return HostLink(kind, HttpOnlineHost(server.client()), bus, server)
