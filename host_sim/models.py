"""The JSON bodies of the host API (pydantic), as the OpenAPI document shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from host_sim.bills import MAX_BATCH


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable error code, E_…", examples=["E_SIGNATURE"])
    message: str = Field(description="What went wrong, for a human.")


class ErrorBody(BaseModel):
    """Every refusal; extra fields carry the figures (skew_s, server_time, required, …)."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    server_time: str = Field(description="ISO 8601 UTC")
    schema_version: int


class BillBatch(BaseModel):
    terminal_id: str = Field(
        description="The uploading terminal, 12 hex digits; must be the signing key's terminal "
        "(or, for a station key, a terminal registered to that station).",
        examples=["440101000001"],
    )
    bills: list[str] = Field(
        description=f"Up to {MAX_BATCH} dispenser bills, each 128 bytes as 256 hex digits.",
    )


class BillResult(BaseModel):
    index: int = Field(description="Position of the bill in the batch.")
    status: Literal["accepted", "duplicate", "rejected"]
    bill_id: int | None = Field(
        None, description="The stored bill (the original one for a duplicate)."
    )
    reason: str | None = Field(None, description="E_BILL_… code of a rejected bill.")
    message: str = ""
    booked: bool = Field(False, description="True when this bill moved money in the ledger.")
    transaction_id: int | None = Field(
        None, description="The ledger transaction of the bill's grey record."
    )
    exception_id: int | None = Field(None, description="The exceptions row of a rejected bill.")


class BillBatchResult(BaseModel):
    terminal_id: str
    accepted: int
    duplicates: int
    rejected: int
    results: list[BillResult]


class BlacklistChange(BaseModel):
    version: int
    asn: str = Field(description="20 decimal digits (the 10-byte BCD ASN).")
    action: Literal["add", "remove"]
    reason: str
    changed_at: str


class BlacklistDelta(BaseModel):
    since: int = Field(description="The version asked for.")
    version: int = Field(description="The current blacklist version.")
    next_since: int = Field(description="Ask again with this when `more` is true.")
    more: bool = Field(description="More changes than `limit` were pending.")
    changes: list[BlacklistChange]


class CardReport(BaseModel):
    reason: str = Field("", max_length=200, description="Free text kept with the change.")


class BlacklistUpdate(BaseModel):
    asn: str
    blacklisted: bool
    changed: bool = Field(description="False when the card was already in that state.")
    version: int = Field(description="The blacklist version after the call.")


class AccountEntry(BaseModel):
    transaction_id: int
    kind: str = Field(examples=["sale.fuelling"])
    memo: str
    posted_at: str
    amount: int = Field(description="Change of the card's balance in fen (a sale is negative).")


class CardAccount(BaseModel):
    asn: str
    account: str = Field(examples=["card:01000114400000000001"])
    balance: int = Field(
        description="Fen the host owes the cardholder: credits − debits of the card account."
    )
    currency: Literal["CNY"] = "CNY"
    unit: Literal["fen"] = "fen"
    blacklisted: bool
    entries: list[AccountEntry] = Field(description="Newest first, at most `limit`.")


class StoreSaleBatch(BaseModel):
    terminal_id: str = Field(
        description="The uploading terminal (12 hex digits): the key's own, or of its station.",
        examples=["440101000201"],
    )
    sales: list[str] = Field(
        description="Store sales, each 90 hex digits (the 45-byte record of docs/host-api.md)."
    )


class StoreSaleResult(BaseModel):
    index: int = Field(description="Position of the sale in the batch.")
    status: Literal["accepted", "duplicate", "rejected"]
    sale_id: int | None = None
    reason: str | None = Field(None, description="E_SALE_… code of a rejected sale.")
    message: str = ""
    transaction_id: int | None = None
    exception_id: int | None = None


class StoreSaleBatchResult(BaseModel):
    terminal_id: str
    accepted: int
    duplicates: int
    rejected: int
    results: list[StoreSaleResult]
