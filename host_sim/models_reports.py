"""The JSON bodies of the report, clearing and reconciliation routes (pydantic)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SalesReport(BaseModel):
    title: str
    columns: list[str] = Field(description="The grouping dimensions, then count, volume, amount")
    rows: list[list[str | int]] = Field(description="Volume in 0.01 L, amount in fen")


class ClearingLineBody(BaseModel):
    station: str
    merchant: str
    payment_type: str
    count: int
    gross: int = Field(description="fen")
    basis_points: int
    fee: int = Field(description="fen, rounded half up")
    net: int = Field(description="fen: gross − fee")
    settled_in_transaction: int | None = Field(description="The ledger transaction, once paid")


class ClearingDayBody(BaseModel):
    day: str
    settle_date: str = Field(description="T+1 by default")
    settled_at: str | None
    gross: int
    fee: int
    net: int
    lines: list[ClearingLineBody]


class FindingBody(BaseModel):
    kind: str = Field(
        description="missing_upload, duplicate, amount_mismatch, bad_tac, rejected, "
        "not_at_station, surplus, shortfall"
    )
    station: str
    term: str
    psam_ttc: int
    bill_type: int = Field(description="-1 for a totals finding")
    station_amount: int | None
    host_amount: int | None
    check: str = Field(
        description="Totals findings: fuel_report, store_pos, store_report, store_centre"
    )
    detail: str
    handling: str = Field(description="auto or manual")
    action: str = Field(description="rerequest, drop_duplicate or review")


class ReconciliationBody(BaseModel):
    run: int
    day: str
    source: str
    ran_at: str
    stations: int
    station_bills: int
    host_bills: int
    counts: dict[str, int]
    findings: list[FindingBody]


class RerequestBody(BaseModel):
    term: str
    psam_ttc: int
    bill_type: int


class RerequestList(BaseModel):
    day: str
    station: str
    run: int | None = Field(description="The reconciliation run they come from")
    bills: list[RerequestBody] = Field(description="Bills to upload again from the outbox")
