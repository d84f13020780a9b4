"""Reconciliation of generated days: every planted discrepancy found, nothing else."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from host_sim.daygen import generate_day
from host_sim.reconcile import (
    ESCAPE,
    FUELLING,
    REDEBIT,
    BillLine,
    DayRecords,
    HostDay,
    StationDay,
    reconcile,
    station_day,
)
from terminal_sim.bench_host import bench_host_ingest, bench_reconcile
from terminal_sim.cli import main

DAY = date(2026, 11, 22)


def test_a_day_of_100k_bills_finds_exactly_what_was_planted() -> None:
    made = generate_day(bills=100_000, stations=50, seed=7, plant=12)
    result = reconcile(made.records)
    assert sum(len(s.bills) for s in made.records.stations) == 100_000
    assert result.identities() == made.truth.identities()
    assert len(result.findings) == len(made.truth.planted) == 12 * 6
    assert result.counts() == {
        "missing_upload": 12,
        "duplicate": 12,
        "amount_mismatch": 12,
        "bad_tac": 12,
        "surplus": 12,
        "shortfall": 12,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_clean_day_has_no_findings(seed: int) -> None:
    made = generate_day(bills=20_000, stations=13, seed=seed, plant=0)
    assert made.truth.planted == []
    assert reconcile(made.records).findings == []


def test_generation_is_deterministic_per_seed() -> None:
    first = generate_day(bills=5_000, stations=5, seed=11, plant=3)
    again = generate_day(bills=5_000, stations=5, seed=11, plant=3)
    other = generate_day(bills=5_000, stations=5, seed=12, plant=3)
    assert first.truth == again.truth
    assert first.records == again.records
    assert first.truth != other.truth


def test_generated_days_hold_escape_bills_settled_by_redebits() -> None:
    made = generate_day(bills=5_000, stations=5, seed=1, plant=0)
    lines = [b for s in made.records.stations for b in s.bills]
    escapes = {(b.asn, b.ctc) for b in lines if b.bill_type == ESCAPE}
    redebits = {(b.asn, b.ctc - 1) for b in lines if b.bill_type == REDEBIT}
    assert escapes and escapes == redebits
    # A card spends each CTC once: the identity the duplicate check relies on.
    assert len({(b.asn, b.ctc) for b in lines}) == len(lines)


def test_bad_generation_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        generate_day(bills=0, stations=5, seed=1)
    with pytest.raises(ValueError, match="too few"):
        generate_day(bills=100, stations=1, seed=1, plant=10)


def line(
    term: str,
    ttc: int,
    amount: int,
    *,
    ctc: int | None = None,
    bill_type: int = FUELLING,
    asn: str = "01000114000000000001",
) -> BillLine:
    """A station's bill; its card CTC defaults to twice its PSAM TTC (distinct per bill)."""
    return BillLine("ST-1", term, ttc, bill_type, asn, ttc * 2 if ctc is None else ctc, amount)


T = "440100001001"


def test_each_kind_is_classified_and_handled() -> None:
    station = [line(T, n, 1000 + n) for n in range(1, 8)]
    host = [
        station[0],  # matches
        # station[1] never reached the host: missing upload
        station[2]._replace(amount=999),  # amount mismatch (the host's bill is verified)
        station[3]._replace(verified=False, reason="E_BILL_TAC"),  # forged TAC
        station[4]._replace(verified=False, reason="E_BILL_CONFLICT"),  # other refusal
        station[5],
        station[6],
        station[5]._replace(psam_ttc=50),  # a second copy of card transaction 5
        line(T, 60, 700, ctc=999),  # a bill the station does not list
    ]
    result = reconcile(DayRecords(DAY, [station_day("ST-1", station)], HostDay(host, {"ST-1": 0})))
    kinds = {(f.kind, f.psam_ttc) for f in result.findings}
    assert kinds == {
        ("missing_upload", 2),
        ("amount_mismatch", 3),
        ("bad_tac", 4),
        ("rejected", 5),
        ("duplicate", 50),
        ("not_at_station", 60),
    }
    auto = {(f.kind, f.action) for f in result.auto()}
    assert auto == {("missing_upload", "rerequest"), ("duplicate", "drop_duplicate")}
    assert all(f.action == "review" for f in result.manual())
    [totals] = result.totals
    # Card side against host side: the gap is exactly the duplicate.
    assert totals.host_amount - totals.card_amount == totals.duplicate_amount == 1006
    mismatch = next(f for f in result.findings if f.kind == "amount_mismatch")
    assert (mismatch.station_amount, mismatch.host_amount) == (1003, 999)


def test_store_three_way_check_and_report_totals() -> None:
    bills = [line(T, 1, 5000)]
    day = DayRecords(
        DAY,
        [
            StationDay(
                "ST-1",
                bills,
                report_amount=5100,  # the report claims 100 fen more than its bills
                pos_receipts_total=2000,
                store_system_total=2000,
                report_store_amount=1990,  # the report's store amount is 10 fen short
            )
        ],
        HostDay(bills, {"ST-1": 2050}),  # the centre booked 50 fen more than the store system
    )
    found = {(f.kind, f.check, f.station_amount, f.host_amount) for f in reconcile(day).findings}
    assert found == {
        ("surplus", "fuel_report", 5100, 5000),
        ("shortfall", "store_report", 1990, 2000),
        ("surplus", "store_centre", 2050, 2000),
    }


def test_escape_bills_are_matched_but_not_counted_as_paid() -> None:
    escape = line(T, 1, 4000, bill_type=ESCAPE, ctc=1)
    redebit = line(T, 2, 4000, bill_type=REDEBIT, ctc=2)
    day = DayRecords(DAY, [station_day("ST-1", [escape, redebit])], HostDay([escape, redebit]))
    result = reconcile(day)
    assert result.findings == []
    assert result.totals[0].report_amount == result.totals[0].host_amount == 4000


def test_the_cli_reconciles_a_generated_day_against_its_truth(tmp_path: Path) -> None:
    truth, out = tmp_path / "truth.json", tmp_path / "findings.xlsx"
    args = ["host", "reconcile", "--generate", "20000", "--stations", "10", "--plant", "3"]
    result = CliRunner().invoke(main, [*args, "--truth", str(truth), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "planted 18: missed 0, false 0" in result.output
    assert "auto-handled 6, for a person 12" in result.output
    planted = json.loads(truth.read_text())
    assert len(planted) == 18 and {p[0] for p in planted} >= {"bad_tac", "duplicate"}
    sheet = load_workbook(out, read_only=True).worksheets[0]
    assert len(list(sheet.iter_rows(values_only=True))) == 2 + 18
    mixed = CliRunner().invoke(main, [*args, "--db", str(truth)])
    assert mixed.exit_code == 2 and "works alone" in mixed.output


def test_the_host_benchmarks_run_and_check_their_own_results() -> None:
    # The figures themselves are `fuelsim bench`'s; here: they are measured over work that
    # was checked (every bill accepted, every planted discrepancy found).
    assert bench_reconcile(20_000) > 0
    assert bench_host_ingest(0.05) > 0
