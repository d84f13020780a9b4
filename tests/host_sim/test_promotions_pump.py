"""A pump quoting the real host over HTTP: the discount shown, charged, billed and booked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from host_sim.access import add_terminal
from host_sim.db import transaction
from host_sim.promotion_store import put_rule
from host_sim.promotions import rule_from_dict
from terminal_sim.dispenser import Preset
from terminal_sim.events import MESSAGE
from terminal_sim.host_client import HostClient
from terminal_sim.promotions import HostQuoter
from terminal_sim.scenarios import DEFAULT_START
from terminal_sim.service import Forecourt

from .conftest import TERMINAL, Host

ACTORS = {"cards": {"alice": "normal"}, "terminals": {"pump1": {"kind": "dispenser"}}}


@pytest.fixture
def forecourt(tmp_path: Path) -> Iterator[Forecourt]:
    court = Forecourt.open(ACTORS, start=DEFAULT_START, workdir=tmp_path)
    try:
        yield court
    finally:
        court.close()


def test_the_pump_charges_and_bills_the_hosts_discount(host: Host, forecourt: Forecourt) -> None:
    add_terminal(host.db, TERMINAL, "ST-0001")
    with host.db.connect() as conn, transaction(conn):
        rule = {"id": "S-92", "level": "station", "region": "ST-0001", "kind": "per_litre"}
        put_rule(conn, rule_from_dict({**rule, "value": 30}), ak="test", now=host.clock.now())
    client = host.client()
    pump = forecourt.dispenser("pump1")
    pump.quoter = HostQuoter(client)
    bill = forecourt.fuel("pump1", Preset(1, volume=2_000), card="alice")
    assert (bill.volume, bill.price, bill.amount) == (2_000, 750, 14_400)
    shown = [str(e.data["text"]) for e in forecourt.world.events.of(MESSAGE)]
    assert "92#: discount 0.30/L" in shown
    assert forecourt.card_status("alice").balance == 100_000 - 14_400
    assert host.scalar("SELECT discount FROM promotion_quotes WHERE rule_id = 'S-92'") == 600
    (result,) = client.upload_bills([bill])
    assert (result.status, result.booked) == ("accepted", True)
    assert host.scalar("SELECT amount FROM bills") == 14_400  # the host books what was paid


def test_an_unreachable_host_gives_list_price_and_the_sale_goes_on(
    host: Host, forecourt: Forecourt
) -> None:
    gone = HostClient("http://127.0.0.1:9", "term-1", "x" * 32, host.clock, timeout=2)
    quoter = HostQuoter(gone)
    forecourt.dispenser("pump1").quoter = quoter
    bill = forecourt.fuel("pump1", Preset(1, volume=1_000), card="alice")
    assert bill.amount == 7_500
    assert quoter.unreachable and "E_UNREACHABLE" in quoter.unreachable[0]
