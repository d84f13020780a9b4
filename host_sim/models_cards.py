"""The JSON bodies of the card registry: issuing, a card's view, master→sub allocations.

Requests are strict: no extra fields, no strings where numbers belong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

AsnText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{20}$",
        description="An ASN: 20 decimal digits (10-byte BCD).",
        examples=["01000114500000000001"],
    ),
]
RequestId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description="The client's id for this allocation: the same id again books nothing more.",
        examples=["alloc-2026-11-26-0001"],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CardIssueRequest(Strict):
    kind: Literal["single", "master", "sub"] = "single"
    holder: str = Field(min_length=1, max_length=80, description="The cardholder's name.")
    profile: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,39}$",
        description="The card profile the card is personalised from (card_profiles/profiles).",
        examples=["normal"],
    )
    master: AsnText | None = Field(default=None, description="A sub card's master card.")
    asn: AsnText | None = Field(
        default=None, description="The card's ASN; omitted, the host allocates the next one."
    )


class SubCard(BaseModel):
    asn: str
    holder: str
    status: str
    balance: int = Field(description="fen, the sub card's account in the ledger")
    reserve: int = Field(description="fen its master set aside for its loads")


class CardView(BaseModel):
    asn: str
    kind: Literal["single", "master", "sub"]
    master: str | None
    holder: str
    profile: str
    status: Literal["active", "closed"]
    blacklisted: bool
    issued_at: str
    issued_by: str
    account: str = Field(description="The card's ledger account, `card:<ASN>`.")
    balance: int = Field(description="fen, the ledger's balance of `card:<ASN>`")
    reserve: int | None = Field(
        description="fen in `reserve:<ASN>` (a sub card only): what its next loads draw on"
    )
    subs: list[SubCard] = Field(description="A master's sub cards (empty for other cards).")


class AllocationRequest(Strict):
    sub: AsnText
    amount: Annotated[int, Field(ge=1, le=0xFFFFFFFF, description="fen, more than 0")]
    request_id: RequestId


class AllocationResult(BaseModel):
    request_id: str
    master: str
    sub: str
    amount: int
    transaction_id: int
    allocated_at: str
    booked_now: bool = Field(description="False: this request id was booked before.")
    master_balance: int = Field(description="fen left on the master's account")
    sub_reserve: int = Field(description="fen in the sub card's reserve")
