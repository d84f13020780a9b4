"""Daily clearing with fees and T+1 settlement, over bills uploaded to the real host."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner

from host_sim import clearing, ledger
from host_sim.access import add_access_key, add_terminal
from host_sim.clearing import ClearingError, clear_day, fee_of, settle_day
from hsm_mock.hsm import MockHsm
from terminal_sim.cli import main

from .conftest import TERMINAL, Flows, Host
from .test_reconcile_host import STATION, STATION_AK, STATION_SK, setup_station

DAY = date(2026, 11, 22)
BEFORE = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("gross", "bp", "fee"),
    [(10_050, 50, 50), (10_100, 50, 51), (10_099, 50, 50), (0, 30, 0), (123_456, 10_000, 123_456)],
)
def test_fees_round_half_up_to_the_fen(gross: int, bp: int, fee: int) -> None:
    assert fee_of(gross, bp) == fee


def test_fee_rules_are_checked(host: Host) -> None:
    for bad in (-1, 10_001):
        with pytest.raises(ClearingError, match=r"0\.\.10000"):
            clearing.set_fee(host.db, "et", bad)
    with pytest.raises(ClearingError, match="TYPE=BP"):
        clearing.parse_fee("et=3.5")
    assert clearing.parse_fee("M-1:loyalty=125") == ("M-1", "loyalty", 125)
    assert clearing.parse_fee("et=30") == ("*", "et", 30)
    assert host.scalar("SELECT COUNT(*) FROM fee_rules") == 0


def test_a_day_clears_per_station_and_payment_type_with_merchant_fees(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    setup_station(host, hsm, flows)
    clearing.set_merchant(host.db, STATION, "M-1")
    clearing.set_fee(host.db, "et", 30)
    clearing.set_fee(host.db, "loyalty", 50)
    clearing.set_fee(host.db, "loyalty", 125, merchant="M-1")  # the merchant's own rule wins
    cleared = clear_day(host.db, DAY, BEFORE)
    # Booked: the three real fuellings and the escape (its re-debit is the same grey record),
    # and the generated bills 1, 3, 5, 6, 7, 8 (2 was withheld, 4 forged); odd ones loyalty.
    et = sum(b.amount for b in flows.fuellings) + flows.escape.amount + 1006 + 1008
    assert [
        (x.payment_type, x.count, x.gross, x.basis_points, x.fee, x.net) for x in cleared.lines
    ] == [
        ("et", 6, et, 30, fee_of(et, 30), et - fee_of(et, 30)),
        ("loyalty", 4, 4016, 125, 50, 3966),
    ]
    assert {x.merchant_id for x in cleared.lines} == {"M-1"}
    assert cleared.settle_date == "2026-11-23"  # T+1
    with pytest.raises(ClearingError, match="already cleared"):
        clear_day(host.db, DAY, BEFORE)
    assert host.scalar("SELECT COUNT(*) FROM clearing_lines") == 2


def test_settlement_waits_for_t_plus_1_then_pays_and_settles_escape_bills(
    host: Host, flows: Flows
) -> None:
    add_terminal(host.db, TERMINAL, STATION)
    with host.client() as client:  # the pump's own key; the card was pulled: escape bill only
        results = client.upload_bills([*flows.fuellings, flows.escape])
    assert [r.status for r in results] == ["accepted"] * 4
    clearing.set_fee(host.db, "et", 30)
    cleared = clear_day(host.db, DAY, BEFORE)
    grey = "SELECT status FROM grey_records WHERE escape_bill_id IS NOT NULL"
    assert host.scalar(grey) == "open"

    with pytest.raises(ClearingError, match="settles on 2026-11-23"):
        settle_day(host.db, DAY, BEFORE)
    assert host.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'settlement'") == 0
    assert host.scalar(grey) == "open"

    done = settle_day(host.db, DAY, DUE)
    assert done.escape_bills_settled == 1 and done.paid == cleared.net
    assert host.scalar(grey) == "settled"
    with host.db.connect() as conn:
        assert ledger.unbalanced_transactions(conn) == []
        assert ledger.balance(conn, f"station:{STATION}") == 0  # everything owed was paid
        assert ledger.balance(conn, clearing.FEES_ACCOUNT) == -cleared.fee  # credit (debit-normal)
        assert clearing.cleared_day(conn, DAY).settled_at is not None  # type: ignore[union-attr]
    with pytest.raises(ClearingError, match="was settled"):
        settle_day(host.db, DAY, DUE)
    with pytest.raises(ClearingError, match="not cleared"):
        settle_day(host.db, date(2026, 11, 21), DUE)


def test_clearing_is_read_over_http_scoped_to_the_station(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    setup_station(host, hsm, flows)
    clear_day(host.db, DAY, BEFORE)
    path = f"/v1/clearing/{DAY}"
    mine = host.call("GET", path, ak=STATION_AK, sk=STATION_SK)
    assert mine.status_code == 200, mine.text
    assert {line["station"] for line in mine.json()["lines"]} == {STATION}
    assert mine.json()["settle_date"] == "2026-11-23"
    as_csv = host.call("GET", path, query="format=csv", ak=STATION_AK, sk=STATION_SK)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sum(int(r["gross"]) for r in rows) == mine.json()["gross"]

    add_access_key(
        host.db, "st-2", "station-two-secret-0123456789", "station", ["reports.read"], "ST-2"
    )
    other = host.call("GET", path, ak="st-2", sk="station-two-secret-0123456789")
    assert other.status_code == 200 and other.json()["lines"] == []
    unscoped = host.call("GET", path)  # the terminal key has no reports.read
    assert unscoped.status_code == 403 and unscoped.json()["error"]["code"] == "E_SCOPE"
    nothing = host.call("GET", "/v1/clearing/2026-11-20", ak=STATION_AK, sk=STATION_SK)
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "E_NOT_CLEARED"
    bad = host.call("GET", "/v1/clearing/22-11-2026", ak=STATION_AK, sk=STATION_SK)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "day"


def test_the_cli_clears_and_settles(host: Host, hsm: MockHsm, flows: Flows) -> None:
    setup_station(host, hsm, flows)
    db = ["--db", str(host.path), "--day", DAY.isoformat()]
    at = ["--at", "2026-11-22T23:00:00Z"]
    cleared = CliRunner().invoke(
        main, ["host", "clear", *db, "--fee", "et=30", "--merchant", f"{STATION}=M-9", *at]
    )
    assert cleared.exit_code == 0, cleared.output
    assert f"{DAY},{STATION},M-9,et," in cleared.output
    early = CliRunner().invoke(main, ["host", "clear", *db, "--settle", *at])
    assert early.exit_code == 1 and "settles on 2026-11-23" in early.output
    forced = CliRunner().invoke(main, ["host", "clear", *db, "--settle", "--force", *at])
    assert forced.exit_code == 0, forced.output
    assert "2 ledger transactions" in forced.output
    bad = CliRunner().invoke(main, ["host", "clear", *db, "--fee", "et=lots"])
    assert bad.exit_code == 1 and "TYPE=BP" in bad.output
