"""Reconciliation on the real path: real bills uploaded over HTTP, forged TACs caught by the
HSM into `exceptions`, the host's SQLite file read back and compared with a station day file."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardcore.records import Bill
from host_sim.access import add_access_key, add_terminal
from host_sim.billgen import FUELLING, BillFactory, asn_for, term_for
from host_sim.reconcile import PAID_TYPES, reconcile
from host_sim.reconcile_db import (
    STATION_DAY_FORMAT,
    ReconcileInputError,
    host_records,
    save_run,
    station_day_from_json,
)
from hsm_mock.hsm import MockHsm
from terminal_sim.cli import main

from .conftest import TERMINAL, Flows, Host

DAY = date(2026, 11, 22)
STATION = "ST-1"
STATION_AK, STATION_SK = "station-1", "station-secret-0123456789abcdef"
PUMP = term_for(1, 1)


@dataclass(frozen=True)
class StationDayBills:
    """What the station holds for the day, and which bills were planted how."""

    bills: list[Bill]  # the station's own records (the altered one as the station has it)
    withheld: Bill  # never uploaded
    forged: Bill  # uploaded with a forged TAC
    altered: Bill  # the station's record says another amount than the uploaded bill


def setup_station(host: Host, hsm: MockHsm, flows: Flows) -> StationDayBills:
    """Register the station, upload its day (but the withheld bill) with a station key."""
    add_access_key(
        host.db, STATION_AK, STATION_SK, "station", ["bills.write", "reports.read"], STATION
    )
    add_terminal(host.db, TERMINAL, STATION)
    add_terminal(host.db, PUMP.hex(), STATION)
    factory = BillFactory(hsm)
    made = [
        factory.paid(
            bill_type=FUELLING,
            term=PUMP,
            psam_ttc=n,
            asn=asn_for(n % 3),
            ctc=2 * n,
            amount=1000 + n,
            volume=130 + n,
            debit_source=n % 2,
            when=datetime(2026, 11, 22, 12, 0) + timedelta(minutes=n),
        )
        for n in range(1, 9)
    ]
    withheld, altered = made[1], made[2]
    forged = factory.forge_tac(made[3])
    uploaded = [*flows.fuellings, flows.escape, flows.redebit]
    with host.client(STATION_AK, STATION_SK) as client:
        real = client.upload_bills(uploaded, terminal_id=TERMINAL)
        mine = client.upload_bills(
            [b for b in made if b not in (withheld, made[3])] + [forged], terminal_id=PUMP.hex()
        )
    assert [r.status for r in real] == ["accepted"] * 5
    assert [r.status for r in mine][-1] == "rejected" and mine[-1].reason == "E_BILL_TAC"
    station_bills = [*uploaded, *made]
    station_bills[station_bills.index(altered)] = replace(altered, amount=altered.amount + 40)
    return StationDayBills(station_bills, withheld, forged, altered)


def station_file(bills: list[Bill]) -> dict[str, object]:
    return {
        "format": STATION_DAY_FORMAT,
        "station": STATION,
        "day": DAY.isoformat(),
        "bills": [b.to_bytes().hex() for b in bills],
        "report_amount": sum(b.amount for b in bills if b.tx_type in PAID_TYPES),
        "pos_receipts_total": 0,
        "store_system_total": 0,
        "report_store_amount": 0,
    }


def test_the_host_database_reconciles_against_a_station_day(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    day = setup_station(host, hsm, flows)
    station = station_day_from_json(station_file(day.bills), DAY)
    result = reconcile(host_records(host.db, DAY, [station]))
    found = {(f.kind, f.term, f.psam_ttc) for f in result.findings}
    pump = PUMP.hex().upper()
    assert found == {
        ("missing_upload", pump, day.withheld.psam_ttc),
        ("bad_tac", pump, day.forged.psam_ttc),
        ("amount_mismatch", pump, day.altered.psam_ttc),
    }
    [totals] = result.totals
    assert totals.station_bills == 13 and totals.host_bills == 11
    assert totals.host_amount == totals.card_amount  # no duplicates on a real host

    run = save_run(host.db, result, "test", host.clock.now())
    answer = host.call("GET", f"/v1/reconciliation/{DAY}", ak=STATION_AK, sk=STATION_SK)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["run"] == run
    assert body["counts"] == {"missing_upload": 1, "bad_tac": 1, "amount_mismatch": 1}
    handling = {f["kind"]: (f["handling"], f["action"]) for f in body["findings"]}
    assert handling["missing_upload"] == ("auto", "rerequest")
    assert handling["bad_tac"] == ("manual", "review")


def test_a_rerequested_bill_uploaded_again_clears_the_finding(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    day = setup_station(host, hsm, flows)
    station = station_day_from_json(station_file(day.bills), DAY)
    save_run(host.db, reconcile(host_records(host.db, DAY, [station])), "test", host.clock.now())
    asked = host.call("GET", f"/v1/reconciliation/{DAY}/rerequests", ak=STATION_AK, sk=STATION_SK)
    assert asked.status_code == 200, asked.text
    assert asked.json()["bills"] == [
        {"term": PUMP.hex().upper(), "psam_ttc": day.withheld.psam_ttc, "bill_type": 0}
    ]
    with host.client(STATION_AK, STATION_SK) as client:
        [again] = client.upload_bills([day.withheld], terminal_id=PUMP.hex())
    assert again.status == "accepted"
    kinds = {f.kind for f in reconcile(host_records(host.db, DAY, [station])).findings}
    assert kinds == {"bad_tac", "amount_mismatch"}


def test_the_cli_reconciles_the_database_and_stores_the_run(
    host: Host, hsm: MockHsm, flows: Flows, tmp_path: Path
) -> None:
    day = setup_station(host, hsm, flows)
    path = tmp_path / "st-1.json"
    path.write_text(json.dumps(station_file(day.bills)))
    out = tmp_path / "findings.csv"
    result = CliRunner().invoke(
        main,
        [
            "host",
            "reconcile",
            "--db",
            str(host.path),
            "--day",
            DAY.isoformat(),
            "--station-file",
            str(path),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "missing_upload        1" in result.output
    assert "auto-handled 1, for a person 2" in result.output
    assert host.scalar("SELECT COUNT(*) FROM recon_findings") == 3
    lines = out.read_text().splitlines()
    assert lines[0].startswith("kind,station,term,psam_ttc") and len(lines) == 4


def test_a_bad_station_file_is_a_clear_error_and_stores_nothing(host: Host, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": STATION_DAY_FORMAT, "station": "ST-1", "day": "x"}))
    args = ["host", "reconcile", "--db", str(host.path), "--day", DAY.isoformat()]
    result = CliRunner().invoke(main, [*args, "--station-file", str(path)])
    assert result.exit_code == 1
    assert "day is 'x', not 2026-11-22" in result.output
    assert host.scalar("SELECT COUNT(*) FROM recon_runs") == 0
    missing = CliRunner().invoke(main, ["host", "reconcile", "--db", str(host.path)])
    assert missing.exit_code == 2
    assert "--station-file" in missing.output


def test_other_stations_bills_are_left_out_of_a_stations_reconciliation(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    day = setup_station(host, hsm, flows)
    other = term_for(9, 1)
    add_access_key(
        host.db, "st-9", "station-nine-secret-0123456789", "station", ["bills.write"], "ST-9"
    )
    add_terminal(host.db, other.hex(), "ST-9")
    bill = BillFactory(hsm).paid(
        bill_type=FUELLING,
        term=other,
        psam_ttc=1,
        asn=asn_for(99),
        ctc=2,
        amount=777,
        when=datetime(2026, 11, 22, 15, 0),
    )
    with host.client("st-9", "station-nine-secret-0123456789") as client:
        assert client.upload_bills([bill], terminal_id=other.hex())[0].status == "accepted"
    station = station_day_from_json(station_file(day.bills), DAY)
    kinds = sorted(f.kind for f in reconcile(host_records(host.db, DAY, [station])).findings)
    assert kinds == ["amount_mismatch", "bad_tac", "missing_upload"]
    with pytest.raises(ReconcileInputError, match="same station"):
        host_records(host.db, DAY, [station, station])
