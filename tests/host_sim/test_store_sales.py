"""Store sale upload over real HTTP, checked in the SQLite file: the card's purchase TAC verified
through the HSM, booked once (card debited, station credited), refusals in the exceptions table."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import httpx
import pytest

from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.clockrng import ManualClock
from cardcore.records import StoreSale
from host_sim.access import add_access_key, add_terminal
from hsm_mock.hsm import MockHsm
from terminal_sim.events import EventBus
from terminal_sim.online import InProcessHost
from terminal_sim.readers import InProcReader
from terminal_sim.store_pos import StorePos

from .conftest import Host

STORE = "440101000101"  # the psam-store profile's terminal
STATION_AK, STATION_SK = "st-1", "station-secret-0123456789abcdef"


@pytest.fixture
def sales(
    make_card: Callable[..., FuelCard], make_psam: Callable[..., Psam], hsm: MockHsm
) -> list[StoreSale]:
    """Two real sales of the store POS (card `store-enabled`, PSAM `psam-store`)."""
    clock = ManualClock(datetime(2026, 11, 22, 12, 0, 0))
    pos = StorePos(
        "store-1",
        InProcReader(make_card("store-enabled"), "card"),
        InProcReader(make_psam("psam-store"), "psam"),
        InProcessHost(hsm, clock),
        EventBus(),
        clock,
    )
    return [pos.pay("999999", amount).sale() for amount in (700, 1250)]


@pytest.fixture
def station(host: Host) -> Host:
    add_access_key(host.db, STATION_AK, STATION_SK, "station", ["bills.write"], "ST-1")
    add_terminal(host.db, STORE, "ST-1")
    return host


def upload(host: Host, sales: list[StoreSale], terminal: str = STORE) -> httpx.Response:
    body = {"terminal_id": terminal, "sales": [sale.to_bytes().hex() for sale in sales]}
    return post(host, body)


def post(host: Host, body: dict[str, object]) -> httpx.Response:
    raw = json.dumps(body).encode()
    return host.call("POST", "/v1/store-sales", body=raw, ak=STATION_AK, sk=STATION_SK)


def card_spent(host: Host, asn: str, account: str = "") -> int:
    """The debits on the card's account (or on `account`), read straight from SQLite."""
    return int(
        host.scalar(
            "SELECT COALESCE(SUM(p.amount), 0) FROM postings p"
            " JOIN accounts a ON a.id = p.account_id WHERE a.code = ?",
            account or f"card:{asn}",
        )
    )


def test_sales_are_booked_once(station: Host, sales: list[StoreSale]) -> None:
    first = upload(station, sales)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 0)
    rows = station.sql("SELECT * FROM store_sales ORDER BY id")
    assert [bytes(r["raw"]) for r in rows] == [s.to_bytes() for s in sales]
    assert [r["station_id"] for r in rows] == ["ST-1", "ST-1"]
    asn = sales[0].asn.hex().upper()
    assert card_spent(station, asn) == 1950
    assert card_spent(station, asn, "station:ST-1") == -1950
    again = upload(station, sales).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert [r["sale_id"] for r in again["results"]] == [r["id"] for r in rows]
    assert card_spent(station, asn) == 1950
    assert station.scalar("SELECT COALESCE(SUM(amount), 0) FROM postings") == 0


def test_a_forged_tac_goes_to_exceptions_not_the_ledger(
    station: Host, sales: list[StoreSale]
) -> None:
    forged = replace(sales[0], tac=bytes(4))
    answer = upload(station, [forged, sales[1]]).json()
    assert [r["status"] for r in answer["results"]] == ["rejected", "accepted"]
    assert answer["results"][0]["reason"] == "E_SALE_TAC"
    row = station.sql("SELECT * FROM exceptions")[0]
    assert (row["record"], row["reason"], row["term"]) == ("store_sale", "E_SALE_TAC", STORE)
    assert bytes(row["raw"]) == forged.to_bytes()
    assert card_spent(station, sales[0].asn.hex().upper()) == 1250


def test_an_amount_changed_after_the_sale_fails_its_tac(
    station: Host, sales: list[StoreSale]
) -> None:
    answer = upload(station, [replace(sales[0], amount=70)]).json()
    assert answer["results"][0]["reason"] == "E_SALE_TAC"
    assert station.scalar("SELECT COUNT(*) FROM store_sales") == 0


def test_same_key_different_bytes_is_a_conflict(station: Host, sales: list[StoreSale]) -> None:
    upload(station, [sales[0]])
    renumbered = replace(sales[0], number=99)  # outside the TAC: the TAC still verifies
    answer = upload(station, [renumbered]).json()
    assert answer["results"][0]["reason"] == "E_SALE_CONFLICT"
    assert station.scalar("SELECT COUNT(*) FROM store_sales") == 1


def test_a_sale_of_a_terminal_of_another_station(station: Host, sales: list[StoreSale]) -> None:
    add_terminal(station.db, STORE, "ST-2")
    add_terminal(station.db, "440101000201", "ST-1")
    answer = upload(station, [sales[0]], terminal="440101000201").json()
    assert answer["results"][0]["reason"] == "E_SALE_TERMINAL"
    assert station.scalar("SELECT COUNT(*) FROM store_sales") == 0


def test_a_key_of_another_station_may_not_upload(station: Host, sales: list[StoreSale]) -> None:
    add_terminal(station.db, STORE, "ST-2")
    refused = upload(station, sales)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "E_TERMINAL_MISMATCH"


@pytest.mark.parametrize(
    ("sales_field", "field"),
    [
        (["zz" * 45], "sales[0]"),
        (["00" * 44], "sales[0]"),
        (["00" * 45] * 501, "sales"),
    ],
)
def test_bad_hex_and_lengths_are_400_naming_the_field(
    station: Host, sales_field: list[str], field: str
) -> None:
    refused = post(station, {"terminal_id": STORE, "sales": sales_field})
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == field
    assert station.scalar("SELECT COUNT(*) FROM exceptions") == 0


def test_a_malformed_record_is_refused_by_field(station: Host) -> None:
    answer = post(station, {"terminal_id": STORE, "sales": ["FF" * 45]}).json()
    assert answer["results"][0]["reason"] == "E_SALE_FIELD"
    assert StoreSale.from_bytes(bytes.fromhex("FF" * 45)).psam_ttc > 0
