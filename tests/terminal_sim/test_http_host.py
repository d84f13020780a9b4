"""Terminal flows against the real HTTP host (uvicorn on 127.0.0.1, an SQLite file), through
`HttpOnlineHost`; each test then opens the file and reads the rows the flow left."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from card_profiles.fuel_card import FuelCard
from cardcore.clockrng import ManualClock
from cardcore.records import Bill, PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.events import EventBus, Recorder
from terminal_sim.host_client import HostUnavailable
from terminal_sim.host_link import STATION_ID, HostServer
from terminal_sim.issuing import IssuedCard
from terminal_sim.office import IssuingOffice, OfficeRefused
from terminal_sim.online import E_TOO_EARLY, LoadAuthorization
from terminal_sim.online_http import HttpOnlineHost
from terminal_sim.readers import InProcReader

PIN = "999999"
OFFICE = bytes.fromhex("440101000901")  # station 44010100, where the grey-locked card was locked
ELSEWHERE = bytes.fromhex("440202000901")


@dataclass
class Desk:
    server: HostServer
    host: HttpOnlineHost
    card: FuelCard
    office: IssuingOffice
    clock: ManualClock
    events: Recorder

    def rows(self, query: str, *args: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.server.path)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def scalar(self, query: str, *args: Any) -> Any:
        return self.rows(query, *args)[0][0]

    @property
    def asn(self) -> bytes:
        return PublicAppData.from_bytes(self.card.nvm.cells["ef15"]).asn

    def balance(self) -> int:
        return int.from_bytes(self.card.nvm.cells["et.balance"], "big")

    def account(self) -> int:
        """The card's balance in the host's ledger (credits − debits)."""
        return -int(
            self.scalar(
                "SELECT COALESCE(SUM(p.amount), 0) FROM postings p"
                " JOIN accounts a ON a.id = p.account_id WHERE a.code = ?",
                f"card:{self.asn.hex()}",
            )
        )


@pytest.fixture
def desk(
    tmp_path: Path, hsm: MockHsm, make_card: Callable[..., FuelCard]
) -> Iterator[Callable[..., Desk]]:
    servers: list[HostServer] = []

    def make(
        profile: str = "normal",
        term: bytes = OFFICE,
        now: datetime = datetime(2026, 11, 22, 12, 0, 0),
    ) -> Desk:
        clock = ManualClock(now)
        server = HostServer(tmp_path / "host.sqlite", hsm, clock)
        servers.append(server)
        server.register([term])
        host = HttpOnlineHost(server.client())
        card = make_card(profile)
        bus, events = EventBus(), Recorder()
        bus.subscribe(events)
        office = IssuingOffice("office", InProcReader(card, "card"), host, bus, clock, term)
        return Desk(server, host, card, office, clock, events)

    yield make
    for server in servers:
        server.stop()


def test_load_over_http_is_booked_in_the_ledger_file(desk: Callable[..., Desk]) -> None:
    d = desk()
    result = d.office.load(PIN, 20_000)
    assert d.balance() == 120_000 == result.balance_after
    (row,) = d.rows("SELECT * FROM load_authorizations")
    assert (row["status"], row["amount"], row["term"]) == ("booked", 20_000, OFFICE.hex())
    assert (row["station_id"], row["ak"]) == (STATION_ID, d.server.ak)  # a registered terminal
    assert row["tac"] == result.tac.hex().upper() and row["dt"] == "20261122120000"
    assert d.account() == 20_000
    cash = d.scalar(
        "SELECT SUM(p.amount) FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE a.code = ?",
        f"cash:{STATION_ID}",
    )
    assert cash == 20_000
    d.office.set_store_flag(True)
    d.office.reload_pin("123456")
    assert d.office.load("123456", 1).balance_after == 120_001
    assert d.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'load'") == 2


def test_a_load_authorised_before_a_restart_is_confirmed_after_it(
    desk: Callable[..., Desk],
) -> None:
    d = desk("new")
    seen: list[LoadAuthorization] = []
    authorize = d.host.authorize_load

    def authorize_then_restart(asn: bytes, **request: Any) -> LoadAuthorization:
        auth = authorize(asn, **request)
        seen.append(auth)
        d.server.stop()  # the host restarts on the same file and port before the confirmation
        d.server.start()
        return auth

    d.host.authorize_load = authorize_then_restart  # type: ignore[method-assign]
    result = d.office.load(PIN, 3_000)
    assert seen and result.dt == seen[0].dt
    assert d.scalar("SELECT status FROM load_authorizations") == "booked"
    assert d.account() == 3_000


def test_host_down_refuses_at_the_office_and_nothing_moves(desk: Callable[..., Desk]) -> None:
    d = desk("grey-locked")
    d.host.report_loss(d.asn)
    assert d.host.blacklisted(d.asn) and d.host.blacklist_version == 1
    d.server.stop()
    assert d.host.blacklisted(d.asn)  # the list as last synced
    d.server.start()
    d.host.unblock(d.asn)
    assert not d.host.blacklisted(d.asn) and d.host.blacklist_version == 2
    before = dict(d.card.nvm.cells)
    d.server.stop()
    with pytest.raises(HostUnavailable):
        d.host.report_loss(d.asn)
    assert not d.host.blacklisted(d.asn)
    with pytest.raises(OfficeRefused, match="host unreachable") as refused:
        d.office.online_unlock(PIN)
    assert refused.value.code == "E_UNREACHABLE"
    assert d.events.messages()[-1] == "host unreachable: try again when it is back"
    assert dict(d.card.nvm.cells) == before
    d.server.start()
    assert d.scalar("SELECT COUNT(*) FROM online_unlocks") == 0
    assert d.scalar("SELECT version FROM blacklist_changes ORDER BY version DESC") == 2


def test_online_unlock_over_http_with_the_uploaded_escape_bill(
    desk: Callable[..., Desk], issued: Callable[[str], IssuedCard]
) -> None:
    escape = issued("grey-locked").escape_bill
    assert isinstance(escape, Bill)
    d = desk("grey-locked", term=ELSEWHERE)
    with pytest.raises(OfficeRefused, match="E_NO_ESCAPE_BILL"):
        d.office.online_unlock(PIN)
    d.server.register([escape.term])  # the locking pump is one of the station's terminals
    d.host.record_escape_bill(escape)
    d.host.record_escape_bill(escape)  # the same bill again: a duplicate, nothing more
    (bill,) = d.rows("SELECT * FROM bills")
    assert (bill["bill_type"], bill["amount"], bill["lock_ctc"]) == (1, 20_000, escape.ctc)
    assert d.account() == -20_000  # the grey record's sale, booked at the upload
    with pytest.raises(OfficeRefused, match="from 2026-11-24 10:00:00") as refused:
        d.office.online_unlock(PIN)
    assert refused.value.code == E_TOO_EARLY
    d.clock.set(datetime(2026, 11, 24, 10, 0, 0))
    result = d.office.online_unlock(PIN)
    assert (result.balance_after, d.balance()) == (80_000, 80_000)
    (unlock,) = d.rows("SELECT * FROM online_unlocks")
    assert (unlock["status"], unlock["mac3"]) == ("confirmed", result.mac3.hex().upper())
    assert unlock["txn_id"] == bill["txn_id"] and d.account() == -20_000  # not booked again
    assert d.scalar("SELECT unlocked_at FROM grey_records") == "2026-11-24T10:00:00Z"


def test_a_confirmation_the_host_missed_is_sent_when_it_is_back(
    desk: Callable[..., Desk],
) -> None:
    d = desk("new")
    authorize = d.host.authorize_load

    def authorize_then_go_down(asn: bytes, **request: Any) -> LoadAuthorization:
        auth = authorize(asn, **request)
        d.server.stop()  # gone after MAC2: the card is credited, the host hears nothing
        return auth

    d.host.authorize_load = authorize_then_go_down  # type: ignore[method-assign]
    with pytest.raises(OfficeRefused, match="host unreachable"):
        d.office.load(PIN, 4_000)
    assert d.balance() == 4_000 and len(d.office.unconfirmed) == 1
    assert "the card did the load; it is confirmed when the host is back" in d.events.messages()
    d.server.start()
    assert d.scalar("SELECT status FROM load_authorizations") == "authorized"
    (confirmed,) = d.office.confirm()
    assert confirmed.amount == 4_000 and d.office.unconfirmed == []
    assert d.scalar("SELECT status FROM load_authorizations") == "booked"
    assert d.account() == 4_000
