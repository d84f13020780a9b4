"""Sales reports, clearing days and reconciliation results, read over the signed API.

Scope `reports.read`. A station or terminal key sees its own station's rows only; app and
partner keys see every station. `GET /v1/reconciliation/{day}/rerequests` (scope
`bills.write`) tells a station which bills reconciliation found missing, to upload again.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from host_sim import clearing, reports
from host_sim.access import AccessKey, station_of
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, host, scoped
from host_sim.errors import ApiError, bad_request
from host_sim.models import ErrorBody
from host_sim.models_reports import (
    ClearingDayBody,
    ClearingLineBody,
    FindingBody,
    ReconciliationBody,
    RerequestBody,
    RerequestList,
    SalesReport,
)
from host_sim.reconcile_db import latest_run

router = APIRouter(prefix="/v1", tags=["reports"], route_class=SignedRoute)

MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/csv": {}, MEDIA["xlsx"]: {}}, "description": "The report"},
}


def parse_day(text: str, field: str = "day") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise bad_request(field, f"must be a date YYYY-MM-DD, got {text!r}") from None


def path_day(day: Annotated[str, Path(description="Business day, YYYY-MM-DD")]) -> date:
    return parse_day(day)


Day = Annotated[date, Depends(path_day)]
Format = Literal["json", "csv", "xlsx"]


def own_station(conn: sqlite3.Connection, key: AccessKey) -> str | None:
    """The one station a key may see (None: every station)."""
    if key.kind == "station":
        return key.owner
    if key.kind == "terminal":
        return station_of(conn, key.owner)[0]
    return None


def _file(report: reports.Report, fmt: Format, name: str) -> Response:
    body = reports.to_csv(report).encode() if fmt == "csv" else reports.to_xlsx(report)
    return Response(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get(
    "/reports/sales",
    openapi_extra=scoped("reports.read"),
    response_model=SalesReport,
    summary="Sales by day, station, product and payment type",
    description=(
        "Booked sales (one per fuelling or grey record, and store sales) of the days "
        "[from, to], grouped by `by` (comma-separated: day, station, product, payment_type). "
        "`format` json, csv or xlsx. Scope `reports.read`."
    ),
    responses={**AUTH_ERRORS, **FILE_RESPONSES},
)
def sales(
    key: Caller,
    request: Request,
    from_: Annotated[str, Query(alias="from", description="First day, YYYY-MM-DD")],
    to: Annotated[str | None, Query(description="Last day (default: from)")] = None,
    by: Annotated[str, Query(description="Dimensions, comma-separated")] = "station",
    format: Annotated[Format, Query(description="json, csv or xlsx")] = "json",
) -> SalesReport | Response:
    start = parse_day(from_, "from")
    end = parse_day(to, "to") if to else start
    try:
        dims = reports.parse_dimensions(by)
    except reports.ReportError as exc:
        raise bad_request("by", str(exc)) from None
    with host(request).db.connect() as conn:
        only = own_station(conn, key)
        try:
            report = reports.sales_report(conn, dims, start, end, station=only)
        except reports.ReportError as exc:
            raise bad_request("to", str(exc)) from None
    if format != "json":
        return _file(report, format, f"sales-{start.isoformat()}")
    return SalesReport(title=report.title, columns=report.columns, rows=report.rows)


@router.get(
    "/clearing/{day}",
    openapi_extra=scoped("reports.read"),
    response_model=ClearingDayBody,
    summary="A cleared day: lines per station and payment type, fees, settlement date",
    description="404 E_NOT_CLEARED when the day is not cleared. Scope `reports.read`.",
    responses={
        **AUTH_ERRORS,
        **FILE_RESPONSES,
        404: {"model": ErrorBody, "description": "E_NOT_CLEARED"},
    },
)
def clearing_day(
    key: Caller,
    day: Day,
    request: Request,
    format: Annotated[Format, Query(description="json, csv or xlsx")] = "json",
) -> ClearingDayBody | Response:
    with host(request).db.connect() as conn:
        only = own_station(conn, key)
        found = clearing.cleared_day(conn, day)
    if found is None:
        raise ApiError("E_NOT_CLEARED", 404, f"day {day.isoformat()} is not cleared", day=str(day))
    lines = [line for line in found.lines if only is None or line.station_id == only]
    shown = clearing.ClearedDay(found.day, found.settle_date, found.settled_at, lines)
    if format != "json":
        return _file(reports.clearing_report(shown), format, f"clearing-{found.day}")
    return ClearingDayBody(
        day=shown.day,
        settle_date=shown.settle_date,
        settled_at=shown.settled_at,
        gross=shown.gross,
        fee=shown.fee,
        net=shown.net,
        lines=[
            ClearingLineBody(
                station=line.station_id,
                merchant=line.merchant_id,
                payment_type=line.payment_type,
                count=line.count,
                gross=line.gross,
                basis_points=line.basis_points,
                fee=line.fee,
                net=line.net,
                settled_in_transaction=line.txn_id,
            )
            for line in lines
        ],
    )


@router.get(
    "/reconciliation/{day}",
    openapi_extra=scoped("reports.read"),
    response_model=ReconciliationBody,
    summary="The latest reconciliation run of a day, with its findings",
    description="404 E_NOT_RECONCILED when no run is stored. Scope `reports.read`.",
    responses={**AUTH_ERRORS, 404: {"model": ErrorBody, "description": "E_NOT_RECONCILED"}},
)
def reconciliation(key: Caller, day: Day, request: Request) -> ReconciliationBody:
    with host(request).db.connect() as conn:
        only = own_station(conn, key)
        found = latest_run(conn, day)
    if found is None:
        raise ApiError(
            "E_NOT_RECONCILED",
            404,
            f"day {day.isoformat()} has no reconciliation run",
            day=str(day),
        )
    run, rows = found
    rows = [r for r in rows if only is None or r["station_id"] == only]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return ReconciliationBody(
        run=run["id"],
        day=run["day"],
        source=run["source"],
        ran_at=run["ran_at"],
        stations=run["stations"],
        station_bills=run["station_bills"],
        host_bills=run["host_bills"],
        counts=counts,
        findings=[
            FindingBody(
                kind=r["kind"],
                station=r["station_id"],
                term=r["term"],
                psam_ttc=r["psam_ttc"],
                bill_type=r["bill_type"],
                station_amount=r["station_amount"],
                host_amount=r["host_amount"],
                check=r["check_name"],
                detail=r["detail"],
                handling=r["handling"],
                action=r["action"],
            )
            for r in rows
        ],
    )


@router.get(
    "/reconciliation/{day}/rerequests",
    openapi_extra=scoped("bills.write"),
    response_model=RerequestList,
    summary="Bills of the caller's station that reconciliation found missing",
    description=(
        "From the latest run of the day: the bills to upload again (POST /v1/bills answers "
        "`duplicate` for any the host got meanwhile). A station or terminal key; scope "
        "`bills.write`."
    ),
    responses={**AUTH_ERRORS},
)
def rerequests(key: Caller, day: Day, request: Request) -> RerequestList:
    with host(request).db.connect() as conn:
        station = own_station(conn, key)
        found = latest_run(conn, day)
    if station is None:
        raise ApiError(
            "E_SCOPE", 403, "re-requests are for a station or terminal key", required="station"
        )
    run, rows = found if found is not None else (None, [])
    return RerequestList(
        day=day.isoformat(),
        station=station,
        run=None if run is None else run["id"],
        bills=[
            RerequestBody(term=r["term"], psam_ttc=r["psam_ttc"], bill_type=r["bill_type"])
            for r in rows
            if r["station_id"] == station and r["action"] == "rerequest"
        ],
    )
