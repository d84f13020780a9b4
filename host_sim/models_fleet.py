"""The JSON bodies of the fleet and virtual card routes (pydantic), as OpenAPI shows them.

Amounts are integer fen; times ISO 8601 UTC; key bytes hex.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid")


class LimitsBody(BaseModel):
    model_config = _STRICT

    per_day_amount: int | None = Field(None, ge=0, description="Fen per UTC day (None: no limit)")
    per_day_count: int | None = Field(None, ge=0, description="Payments per UTC day")
    per_fill_amount: int | None = Field(None, ge=0, description="Fen per payment")
    products: list[str] | None = Field(None, description="Allowed product codes (None: any)")
    stations: list[str] | None = Field(None, description="Allowed station ids (None: any)")


class CardView(BaseModel):
    card_id: str = Field(examples=["VFC12345678"])
    alias: str = Field(description="8 digits: the numeric code's card part")
    card_number: str = Field(description="16 digits, the token's tag 5A")
    expiry: date
    kv: int = Field(description="IMK_VFC key version of the card's keys")
    driver_id: str | None
    status: Literal["active", "blocked"]
    block_reason: str
    limits: LimitsBody


class CardList(BaseModel):
    cards: list[CardView]


class IssueCard(BaseModel):
    model_config = _STRICT

    driver_id: str | None = Field(None, description="Bind at once to this driver")
    expiry: date | None = Field(None, description="Default: three years from today")


class BindCard(BaseModel):
    model_config = _STRICT

    driver_id: str


class BlockCard(BaseModel):
    model_config = _STRICT

    reason: str = Field("", max_length=200)


class TopUpBody(BaseModel):
    model_config = _STRICT

    amount: int = Field(gt=0, le=100_000_000, description="Fen")
    card_number: str = Field(description="The bank card (see the acquirer's test numbers)")


class TopUpView(BaseModel):
    topup_id: int
    status: Literal["approved"]
    amount: int
    acquirer_ref: str
    transaction_id: int
    balance: int = Field(description="The company account after the top-up, fen")


class CompanyAccount(BaseModel):
    company_id: str
    account: str
    balance: int = Field(description="Fen available to pay with")
    held: int = Field(description="Fen held by open prepaid authorisations")
    currency: Literal["CNY"] = "CNY"
    unit: Literal["fen"] = "fen"


class KeysRequest(BaseModel):
    model_config = _STRICT

    count: int | None = Field(None, ge=1, le=20, description="Default: the host's batch size")


class LukView(BaseModel):
    index: int
    key: str = Field(description="32 bytes, hex")
    kv: int
    expires_at: int = Field(description="Unix seconds")
    ttl_s: int
    budget: int


class KeysView(BaseModel):
    card_id: str
    alias: str
    card_number: str
    expiry: date
    kv: int
    keys: list[LukView]


class PumpFields(BaseModel):
    model_config = _STRICT

    terminal_id: str = Field(description="12 hex digits: the signing key's terminal")
    method: Literal["qr", "nfc", "numeric"]
    data: str = Field(
        max_length=512,
        description="qr/nfc: the token as base64 (QR text; NFC: the R-APDU's token bytes); "
        "numeric: the 19-digit code",
    )
    pump: int = Field(ge=1, le=255)
    product: str = Field(min_length=1, max_length=16)
    amount: int = Field(
        gt=0,
        le=999_999_999,
        description="Prepaid: the amount limit; flash "
        "pay: the sale's amount (NFC: the amount limit given to the phone)",
    )


class AuthorizeBody(PumpFields):
    pass


class FlashPayBody(PumpFields):
    sale_id: str = Field(min_length=1, max_length=64, description="The pump's sale")


class CompleteBody(BaseModel):
    model_config = _STRICT

    terminal_id: str
    hold_id: int
    amount: int = Field(ge=0, description="Delivered, fen (at most the hold)")


class ReleaseBody(BaseModel):
    model_config = _STRICT

    terminal_id: str
    hold_id: int


class LukUse(BaseModel):
    index: int
    used: int
    budget: int
    remaining: int
    expires_at: int


class PaymentView(BaseModel):
    payment_id: int
    hold_id: int | None = Field(description="Prepaid: the hold to complete or release")
    model: Literal["prepaid", "flash"]
    status: Literal["held", "completed", "released", "captured"]
    card_id: str
    company_id: str
    station_id: str
    terminal_id: str
    pump: int
    product: str
    held_amount: int
    amount: int
    released_amount: int = 0
    sale_id: str | None
    method: str
    atc: int
    transaction_id: int | None = Field(description="The ledger transaction of this step")
    warnings: list[dict[str, Any]] = []
    delta_s: int | None = Field(None, description="server time − code time, seconds")
    skew_steps: int | None = Field(None, description="Numeric codes: code step − host step")
    luk: LukUse | None = None
