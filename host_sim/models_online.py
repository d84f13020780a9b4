"""The JSON bodies of the online operations (load, online unlock, maintenance MACs).

Strict: no extra fields, no strings where numbers belong. Binary fields are hex of a fixed
length (upper or lower case); `dt` is the 14 BCD digits of the card's date-time.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Hex4 = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{8}$", examples=["1A2B3C4D"])]
Challenge = Annotated[
    str,
    Field(
        pattern=r"^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16})$",
        description="GET CHALLENGE's answer: 4 or 8 bytes of hex.",
    ),
]
Term = Annotated[
    str,
    Field(
        pattern=r"^[0-9A-Fa-f]{12}$",
        description="The terminal id (6 bytes) the card was given.",
        examples=["440101000901"],
    ),
]
Dt = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{14}$",
        description="The host's date-time given with MAC2 (BCD YYYYMMDDhhmmss).",
        examples=["20261125090000"],
    ),
]
Ctc = Annotated[int, Field(ge=0, le=0xFFFF)]
Fen = Annotated[int, Field(ge=0, le=0xFFFFFFFF, description="fen")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoadAuthorizeRequest(Strict):
    term: Term
    rand: Hex4 = Field(description="The card's random from INITIALIZE FOR LOAD.")
    online_ctc: Ctc
    old_balance: Fen
    amount: Annotated[int, Field(ge=1, le=0xFFFFFFFF, description="fen, more than 0")]
    mac1: Hex4


class LoadAuthorizeResponse(BaseModel):
    asn: str
    mac2: str = Field(description="For CREDIT FOR LOAD, hex.")
    dt: str = Field(description="For CREDIT FOR LOAD: BCD YYYYMMDDhhmmss.")


class LoadConfirmRequest(Strict):
    term: Term
    online_ctc: Ctc
    new_balance: Fen
    amount: Annotated[int, Field(ge=1, le=0xFFFFFFFF)]
    dt: Dt
    tac: Hex4 = Field(description="The card's TAC from CREDIT FOR LOAD.")


class LoadConfirmResponse(BaseModel):
    asn: str
    online_ctc: int
    amount: int
    new_balance: int
    transaction_id: int = Field(description="The ledger transaction that booked the load.")
    booked_now: bool = Field(description="False when a repeated confirmation found it booked.")


class UnlockAuthorizeRequest(Strict):
    term: Term
    rand: Hex4 = Field(description="The card's random from INITIALIZE FOR ONLINE UNLOCK.")
    online_ctc: Ctc
    balance: Fen
    offline_ctc: Ctc = Field(description="The card's offline CTC (lock CTC + 1).")
    mac1: Hex4


class UnlockAuthorizeResponse(BaseModel):
    asn: str
    lock_ctc: int
    amount: int = Field(description="What the escape bill says, in fen: ONLINE UNLOCK debits it.")
    dt: str
    mac2: str


class UnlockConfirmRequest(Strict):
    term: Term
    rand: Hex4
    online_ctc: Ctc
    balance_after: Fen
    amount: Fen
    dt: Dt
    mac3: Hex4 = Field(description="The card's MAC3 from ONLINE UNLOCK.")


class UnlockConfirmResponse(BaseModel):
    asn: str
    lock_ctc: int
    amount: int
    balance_after: int
    transaction_id: int | None = Field(
        description="The grey record's sale, booked when its escape bill was uploaded."
    )
    confirmed_now: bool = Field(description="False when a repeated confirmation found it done.")


class StoreFlagMacRequest(Strict):
    command: str = Field(
        pattern=r"^[0-9A-Fa-f]{2,64}$",
        description="CLA‖INS‖P1‖P2‖Lc‖data of the UPDATE BINARY writing EF15 byte 29 (00 or 01).",
        examples=["04D6951D0501"],
    )
    challenge: Challenge


class BlockMacRequest(Strict):
    challenge: Challenge
    permanent: bool = False


class UnblockMacRequest(Strict):
    challenge: Challenge


class PinReloadMacRequest(Strict):
    pin_block: str = Field(
        pattern=r"^([0-9A-Fa-f]{2}){1,6}$",
        description="The new PIN as compressed BCD (2–12 digits, F-padded).",
        examples=["123456"],
    )


class MacResponse(BaseModel):
    asn: str
    mac: str = Field(description="4 bytes of hex, for the card command.")
