"""The host over real HTTP (uvicorn in a thread on a free 127.0.0.1 port), its SQLite file, and
bills made by the real emulated card and PSAM."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from cardcore import commands as cmd
from cardcore.bcd import bcd_dt
from cardcore.clockrng import ManualClock
from cardcore.records import Bill
from host_sim.access import DEFAULT_SCOPES, add_access_key
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.server import BackgroundServer
from host_sim.signing import sign_request
from hsm_mock.hsm import MockHsm
from terminal_sim.bench import make_rig
from terminal_sim.fuelling import (
    BillType,
    Sale,
    fuel,
    lock,
    lock_bill,
    make_bill,
    read_card,
    unlock_answer,
)
from terminal_sim.host_client import HostClient

START = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
TERMINAL = "440101000001"  # the psam-dispenser profile's terminal: the bills' term
TERMINAL_AK, TERMINAL_SK = "term-1", "terminal-secret-0123456789abcdef"
OPS_AK, OPS_SK = "ops-1", "operations-secret-0123456789abcd"
OPS_SCOPES = ("cards.loss", "cards.unblock", "accounts.read", "blacklist.read")
WHEN = datetime(2026, 11, 22, 10, 0, 0)  # the dispenser's local wall time


@dataclass
class Host:
    app: FastAPI
    db: Database
    path: Path
    clock: ManualClock
    server: BackgroundServer

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def netloc(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def sql(self, query: str, *args: Any) -> list[sqlite3.Row]:
        """Read the SQLite file directly, on a connection of the test's own."""
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def scalar(self, query: str, *args: Any) -> Any:
        return self.sql(query, *args)[0][0]

    def client(self, ak: str = TERMINAL_AK, sk: str = TERMINAL_SK, **kw: Any) -> HostClient:
        return HostClient(self.base_url, ak, sk, self.clock, **kw)

    def call(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        ak: str = TERMINAL_AK,
        sk: str = TERMINAL_SK,
        now: datetime | None = None,
        nonce: str | None = None,
        sign_query: Any = None,
        sign_body: bytes | None = None,
        drop: Sequence[str] = (),
        override: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A hand-signed request, with knobs to break exactly one thing."""
        headers = sign_request(
            method,
            path,
            query if sign_query is None else sign_query,
            body if sign_body is None else sign_body,
            ak,
            sk,
            now or self.clock.now(),
            nonce,
            host=self.netloc,
        )
        for name in drop:
            del headers[name]
        headers.update(override or {})
        if body:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path + (f"?{query}" if query else "")
        return httpx.request(method, url, content=body, headers=headers, timeout=10)


class Switch:
    """An ASGI app that forwards to the app of the current test: one real uvicorn server for
    the session, a fresh host (database, keys, clock) per test."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "no host app is being served"
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
def served() -> Iterator[tuple[BackgroundServer, Switch]]:
    switch = Switch()
    server = BackgroundServer(switch)
    server.start()
    try:
        yield server, switch
    finally:
        server.stop()


@pytest.fixture
def host(hsm: MockHsm, tmp_path: Path, served: tuple[BackgroundServer, Switch]) -> Iterator[Host]:
    server, switch = served
    clock = ManualClock(START)
    path = tmp_path / "host.sqlite"
    app = create_app(path, hsm, clock)
    db: Database = app.state.host.db
    add_access_key(db, TERMINAL_AK, TERMINAL_SK, "terminal", DEFAULT_SCOPES["terminal"], TERMINAL)
    add_access_key(db, OPS_AK, OPS_SK, "app", OPS_SCOPES, "operations")
    switch.target = app
    try:
        yield Host(app, db, path, clock, server)
    finally:
        switch.target = None


@dataclass(frozen=True)
class Flows:
    """Bills of the real grey-lock flow: complete fuellings, and an escape bill with the
    re-debit that settled it after the card was pulled and put back."""

    fuellings: list[Bill]
    escape: Bill
    redebit: Bill


def retmac(hsm: MockHsm, bill: Bill) -> Bill:
    """A bill changed after the PSAM signed it, signed again (to reach the checks past TMAC)."""
    return replace(bill, tmac=hsm.bill_tmac(bill.body()))


@pytest.fixture(scope="session")
def flows() -> Flows:
    station = make_rig().station()
    fuellings = []
    for number, volume in enumerate((1000, 2000, 3000), 1):
        station.card_reader.connect()
        result = fuel(
            station.card,
            station.psam,
            station.psam_data,
            pin="999999",
            sale=Sale(nozzle=1, grade=0x0092, price=750, volume=volume),
            clock_now=WHEN + timedelta(minutes=number),
            unlock_at=WHEN + timedelta(minutes=number, seconds=90),
            bill_ttc=number,
        )
        fuellings.append(result.bill)
    # The card is pulled while the nozzle is open: the dispenser keeps an escape bill.
    card, psam, psam_data = station.card, station.psam, station.psam_data
    station.card_reader.connect()
    data = read_card(card)
    card.send(cmd.verify("999999"))
    sale = Sale(nozzle=2, grade=0x0095, price=800, volume=1250)
    locked = lock(card, psam, data, psam_data.term, WHEN + timedelta(minutes=10))
    unlock = unlock_answer(psam, data.public.asn8, locked, sale.amount)
    escape = lock_bill(
        psam, BillType.ESCAPE, data, psam_data, locked, unlock, sale=sale, bill_ttc=4
    )
    # Re-inserted later at the station: re-debit (补扣) from the escape bill.
    station.card_reader.connect()
    read_card(card)
    card.send(cmd.verify("999999"))
    dt = bcd_dt(WHEN + timedelta(minutes=30))
    tac = card.send(
        cmd.debit_for_unlock(
            escape.amount, escape.ctc + 1, escape.term, escape.psam_ttc, dt, escape.gmac
        )
    )
    card.send(cmd.clear_tac_unread())
    redebit = make_bill(
        psam,
        replace(escape, bill_ttc=5, tx_type=BillType.REDEBIT, dt=dt, ctc=escape.ctc + 1, tac=tac),
    )
    return Flows(fuellings, escape, redebit)
