"""Money models over real HTTP: prepaid hold → complete/release with exact ledger amounts, flash
pay once, and the `vfc_payments` rows reconciliation reads."""

from __future__ import annotations

import pytest

from host_sim import ledger
from terminal_sim.host_client import HostError

from .conftest import TERMINAL, Host
from .fleet_helpers import (
    COMPANY,
    STATION,
    TokenMaker,
    issue_and_provision,
    setup_fleet,
    terminal,
    top_up,
)

FLEET, HOLD, STATION_ACCOUNT = f"fleet:{COMPANY}", f"fleet:{COMPANY}:hold", f"station:{STATION}"


@pytest.fixture
def phone(host: Host) -> TokenMaker:
    setup_fleet(host)
    top_up(host, 100_000)
    return issue_and_provision(host)


def balances(host: Host) -> tuple[int, int, int]:
    with host.db.connect() as conn:
        assert ledger.unbalanced_transactions(conn) == []
        return (
            ledger.balance(conn, FLEET),
            ledger.balance(conn, HOLD),
            ledger.balance(conn, STATION_ACCOUNT),
        )


def test_prepaid_hold_complete_releases_the_rest(host: Host, phone: TokenMaker) -> None:
    with terminal(host) as pump:
        held = pump.vfc_authorize(
            "qr", phone.qr(host.clock.now()), pump=2, product="95", amount=30_000
        )
        assert (held["hold_id"], held["status"]) == (1, "held")
        assert balances(host) == (70_000, 30_000, 0)
        host.clock.advance(240)
        done = pump.vfc_complete(held["hold_id"], 21_780)
    assert (done["status"], done["amount"], done["released_amount"]) == ("completed", 21_780, 8_220)
    assert balances(host) == (78_220, 0, 21_780)
    kinds = host.sql("SELECT kind FROM ledger_transactions ORDER BY id")
    assert [r["kind"] for r in kinds] == ["fleet.topup", "vfc.hold", "vfc.complete"]
    row = host.sql("SELECT * FROM vfc_payments")[0]
    assert (row["model"], row["status"], row["station_id"], row["terminal_id"]) == (
        "prepaid",
        "completed",
        STATION,
        TERMINAL,
    )
    assert (row["pump"], row["product"], row["held_amount"], row["amount"]) == (
        2,
        "95",
        30_000,
        21_780,
    )
    assert (row["created_at"], row["closed_at"]) == ("2026-11-22T02:00:00Z", "2026-11-22T02:04:00Z")
    assert row["settle_txn_id"] == done["transaction_id"] == 3


def test_prepaid_release_gives_everything_back(host: Host, phone: TokenMaker) -> None:
    with terminal(host) as pump:
        held = pump.vfc_authorize(
            "qr", phone.qr(host.clock.now()), pump=2, product="95", amount=30_000
        )
        released = pump.vfc_release(held["hold_id"])
        assert (released["status"], released["amount"], released["released_amount"]) == (
            "released",
            0,
            30_000,
        )
        with pytest.raises(HostError) as again:
            pump.vfc_complete(held["hold_id"], 100)
    assert (again.value.code, again.value.details["hold_status"]) == ("E_HOLD_CLOSED", "released")
    assert balances(host) == (100_000, 0, 0)


def test_complete_more_than_held_changes_nothing(host: Host, phone: TokenMaker) -> None:
    with terminal(host) as pump:
        held = pump.vfc_authorize(
            "qr", phone.qr(host.clock.now()), pump=1, product="92", amount=10_000
        )
        with pytest.raises(HostError) as over:
            pump.vfc_complete(held["hold_id"], 10_001)
    assert (over.value.code, over.value.details["held_amount"]) == ("E_OVER_HOLD", 10_000)
    assert balances(host) == (90_000, 10_000, 0)
    assert host.scalar("SELECT status FROM vfc_payments") == "held"


def test_hold_of_another_station_is_unknown(host: Host, phone: TokenMaker) -> None:
    from host_sim.access import add_terminal

    from .fleet_helpers import TERMINAL2

    with terminal(host) as pump:
        held = pump.vfc_authorize(
            "qr", phone.qr(host.clock.now()), pump=1, product="92", amount=10_000
        )
    add_terminal(host.db, TERMINAL2, "ST02")
    with terminal(host, second=True) as elsewhere, pytest.raises(HostError) as unknown:
        elsewhere.vfc_complete(held["hold_id"], 5_000)
    assert (unknown.value.code, unknown.value.status) == ("E_UNKNOWN_HOLD", 404)
    assert balances(host) == (90_000, 10_000, 0)


def test_flash_pay_captures_the_sale_once(host: Host, phone: TokenMaker) -> None:
    with terminal(host) as pump:
        paid = pump.vfc_flash_pay(
            "qr",
            phone.qr(host.clock.now()),
            pump=4,
            product="0",
            amount=45_600,
            sale_id="P4-000123",
        )
        assert (paid["status"], paid["hold_id"], paid["amount"]) == ("captured", None, 45_600)
        with pytest.raises(HostError) as twice:
            pump.vfc_flash_pay(
                "qr",
                phone.qr(host.clock.now()),
                pump=4,
                product="0",
                amount=45_600,
                sale_id="P4-000123",
            )
        other = pump.vfc_flash_pay(
            "qr", phone.qr(host.clock.now()), pump=4, product="0", amount=1_000, sale_id="P4-000124"
        )
    assert (twice.value.code, twice.value.details["paid_amount"]) == ("E_SALE_ALREADY_PAID", 45_600)
    assert other["status"] == "captured"
    assert balances(host) == (53_400, 0, 46_600)
    rows = host.sql("SELECT sale_id, status, amount FROM vfc_payments ORDER BY payment_id")
    assert [tuple(r) for r in rows] == [
        ("P4-000123", "captured", 45_600),
        ("P4-000124", "captured", 1_000),
    ]
    assert host.scalar("SELECT outcome FROM vfc_uses WHERE atc = 2") == "E_SALE_ALREADY_PAID"
