"""Sales reports by day, station, product and payment type; CSV and XLSX; HTTP and CLI."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from host_sim import reports
from host_sim.access import add_access_key
from host_sim.reports import ReportError, sales_report
from hsm_mock.hsm import MockHsm
from terminal_sim.cli import main

from .conftest import Flows, Host
from .test_reconcile_host import STATION, STATION_AK, STATION_SK, setup_station

DAY = date(2026, 11, 22)


def xlsx_rows(data: bytes) -> list[list[object]]:
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_sales_group_by_each_dimension(host: Host, hsm: MockHsm, flows: Flows) -> None:
    setup_station(host, hsm, flows)
    total = sum(b.amount for b in flows.fuellings) + flows.escape.amount
    total += 1001 + 1003 + 1005 + 1006 + 1007 + 1008  # generated bills: 2 withheld, 4 forged
    with host.db.connect() as conn:
        by_day = sales_report(conn, ["day"], DAY)
        by_product = sales_report(conn, "product", DAY)
        by_type = sales_report(conn, "station,payment_type", DAY)
        everything = sales_report(conn, ["day", "station", "product", "payment_type"], DAY)
        other_day = sales_report(conn, ["day"], date(2026, 11, 23))
    assert by_day.columns == ["day", "count", "volume", "amount"]
    assert by_day.rows == [["2026-11-22", 10, by_day.rows[0][2], total]]
    assert [(r[0], r[1]) for r in by_product.rows] == [("0092", 9), ("0095", 1)]
    assert by_product.rows[1][2:] == [flows.escape.volume, flows.escape.amount]
    assert [r[:3] for r in by_type.rows] == [[STATION, "et", 6], [STATION, "loyalty", 4]]
    for report in (by_product, by_type, everything):
        assert sum(int(r[-1]) for r in report.rows) == total
        assert sum(int(r[-2]) for r in report.rows) == by_day.rows[0][2]
    assert other_day.rows == []


def test_csv_and_xlsx_carry_the_same_rows(host: Host, hsm: MockHsm, flows: Flows) -> None:
    setup_station(host, hsm, flows)
    with host.db.connect() as conn:
        report = sales_report(conn, ["product", "payment_type"], DAY)
    parsed = list(csv.reader(io.StringIO(reports.to_csv(report))))
    assert parsed[0] == report.columns
    assert parsed[1:] == [[str(v) for v in row] for row in report.rows]
    rows = xlsx_rows(reports.to_xlsx(report))
    assert rows[0] == [report.title]
    assert rows[1] == report.columns
    assert rows[2:] == report.rows  # numbers stay numbers


@pytest.mark.parametrize(
    ("by", "message"),
    [("station,station", "no repeats"), ("pump", "group by one or more"), ("", "group by")],
)
def test_bad_dimensions_are_refused(host: Host, by: str, message: str) -> None:
    with host.db.connect() as conn, pytest.raises(ReportError, match=message):
        sales_report(conn, by, DAY)


def test_a_period_that_ends_before_it_starts_is_refused(host: Host) -> None:
    with host.db.connect() as conn, pytest.raises(ReportError, match="before it starts"):
        sales_report(conn, ["day"], DAY, date(2026, 11, 21))


def test_reports_over_http_in_three_formats_scoped_to_the_station(
    host: Host, hsm: MockHsm, flows: Flows
) -> None:
    setup_station(host, hsm, flows)
    query = f"from={DAY}&by=product,payment_type"
    as_json = host.call("GET", "/v1/reports/sales", query=query, ak=STATION_AK, sk=STATION_SK)
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert body["columns"] == ["product", "payment_type", "count", "volume", "amount"]
    as_xlsx = host.call(
        "GET", "/v1/reports/sales", query=f"{query}&format=xlsx", ak=STATION_AK, sk=STATION_SK
    )
    assert as_xlsx.status_code == 200
    assert "attachment" in as_xlsx.headers["content-disposition"]
    assert xlsx_rows(as_xlsx.content)[2:] == body["rows"]
    as_csv = host.call(
        "GET", "/v1/reports/sales", query=f"{query}&format=csv", ak=STATION_AK, sk=STATION_SK
    )
    assert list(csv.reader(io.StringIO(as_csv.text)))[1:] == [
        [str(v) for v in row] for row in body["rows"]
    ]

    sk = "station-two-secret-0123456789"
    add_access_key(host.db, "st-2", sk, "station", ["reports.read"], "ST-2")
    other = host.call("GET", "/v1/reports/sales", query=query, ak="st-2", sk=sk)
    assert other.status_code == 200 and other.json()["rows"] == []
    bad = host.call("GET", "/v1/reports/sales", query=f"from={DAY}&by=pump", ak="st-2", sk=sk)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "by"
    no_day = host.call("GET", "/v1/reports/sales", query="from=yesterday", ak="st-2", sk=sk)
    assert no_day.status_code == 400 and no_day.json()["error"]["field"] == "from"


def test_the_cli_writes_csv_and_xlsx(
    host: Host, hsm: MockHsm, flows: Flows, tmp_path: Path
) -> None:
    setup_station(host, hsm, flows)
    args = ["host", "report", "--db", str(host.path), "--from", DAY.isoformat(), "--by", "product"]
    printed = CliRunner().invoke(main, args)
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "product,count,volume,amount"
    assert lines[1].startswith("0092,9,") and lines[2].startswith("0095,1,")
    out = tmp_path / "sales.xlsx"
    written = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert [row[0] for row in xlsx_rows(out.read_bytes())[2:]] == ["0092", "0095"]
    wrong = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "sales.pdf")])
    assert wrong.exit_code == 2 and ".csv or .xlsx" in wrong.output
    bad = CliRunner().invoke(main, [*args[:-2], "--by", "pump"])
    assert bad.exit_code == 1 and "group by one or more" in bad.output
    assert not (tmp_path / "sales.pdf").exists()
