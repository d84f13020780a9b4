"""Promotion rules, the pump's quote, coupon redemption and refunds of wallet payments.

The rule logic is `host_sim.promotions` (pure); storage is `host_sim.promotion_store`; refunds are
`host_sim.refunds`. The bodies are defined here: they belong to these routes alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field

from host_sim import promotion_store, refunds
from host_sim.access import AccessKey, normalise_terminal, station_of
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, host, scoped
from host_sim.errors import ApiError, bad_request
from host_sim.models import ErrorBody
from host_sim.promotions import (
    PromotionError,
    QuoteRequest,
    Rule,
    check_asn,
    province_of,
    rule_from_dict,
)

router = APIRouter(prefix="/v1", tags=["promotions"], route_class=SignedRoute)

_RULE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "E_UNKNOWN_RULE"}
}


class RuleBody(BaseModel):
    """A promotion rule (without its id, which is the path's). Money in fen."""

    level: Literal["national", "province", "station"]
    region: str = Field(
        "",
        max_length=64,
        description="Empty for national; the 2-digit province code; the station id.",
    )
    kind: Literal["per_litre", "fixed", "percent"]
    value: int = Field(
        ge=1,
        lt=1 << 31,
        description="per_litre: fen per litre; fixed: fen; percent: basis points (300 = 3 %).",
    )
    grades: list[Annotated[int, Field(ge=0, le=0xFFFF)]] = Field(
        default_factory=list, max_length=64, description="Grade codes; empty: every grade."
    )
    min_amount: int = Field(0, ge=0, lt=1 << 31, description="Gross fen the sale must reach.")
    max_discount: int | None = Field(None, ge=1, lt=1 << 31, description="Cap in fen.")
    coupon: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Applies only when presented."
    )
    limit_per_card: int | None = Field(None, ge=1, lt=1 << 31)
    limit_per_day: int | None = Field(None, ge=1, lt=1 << 31, description="All cards, UTC day.")
    limit_total: int | None = Field(None, ge=1, lt=1 << 31)
    starts: datetime | None = None
    ends: datetime | None = None
    text: str = Field("", max_length=40, description="The pump's display text.")
    enabled: bool = True


class RuleOut(RuleBody):
    id: str


class RuleList(BaseModel):
    rules: list[RuleOut]


class RuleStored(BaseModel):
    rule: RuleOut
    created: bool


class QuoteIn(BaseModel):
    terminal_id: str = Field(description="The pump, 12 hex digits (the key's terminal).")
    asn: str = Field(description="20 decimal digits.")
    grade: int = Field(ge=0, le=0xFFFF, description="The nozzle's grade code, e.g. 146 = 0x0092.")
    amount: int = Field(ge=0, lt=1 << 24, description="Gross fen at list price (the preset).")
    volume: int = Field(0, ge=0, lt=1 << 24, description="0.01 L (0 for a preset by amount).")
    coupon: str | None = Field(None, max_length=64)


class RedeemIn(BaseModel):
    terminal_id: str
    asn: str
    grade: int = Field(ge=0, le=0xFFFF)
    amount: int = Field(ge=0, lt=1 << 24)
    volume: int = Field(0, ge=0, lt=1 << 24)


class Quote(BaseModel):
    """`rule_id` null: no promotion applies, `discount` 0. Otherwise the sale is priced at the
    end by the rule's terms (kind, value, min_amount, max_discount) for what was delivered."""

    quote_id: str | None
    rule_id: str | None
    level: Literal["national", "province", "station"] | None
    kind: Literal["per_litre", "fixed", "percent"] | None
    value: int
    min_amount: int
    max_discount: int | None
    discount: int = Field(description="Fen off the quoted amount.")
    pay: int = Field(description="What the customer pays for the quoted amount.")
    text: str
    station_id: str


class RefundIn(BaseModel):
    amount: int = Field(ge=1, lt=1 << 31, description="Fen to give back.")
    reason: str = Field("", max_length=200)


class RefundOut(BaseModel):
    refund_id: int
    payment_transaction_id: int
    refund_transaction_id: int
    amount: int
    refunded_total: int
    refundable_left: int


def _rule_out(rule: Rule) -> RuleOut:
    return RuleOut.model_validate(rule.to_dict())


def _rule_id(rule_id: str) -> str:
    if not _RULE_ID.fullmatch(rule_id):
        raise bad_request("rule_id", "1–64 characters of A–Z a–z 0–9 . _ -")
    return rule_id


def _promotion_error(exc: PromotionError) -> ApiError:
    return bad_request(exc.field, str(exc).partition(": ")[2])


@router.get(
    "/promotions/rules",
    openapi_extra=scoped("promotions.manage"),
    response_model=RuleList,
    summary="Every promotion rule",
    description="Sorted by id. Scope `promotions.manage`.",
    responses=AUTH_ERRORS,
)
def list_rules(key: Caller, request: Request) -> RuleList:
    with host(request).db.connect() as conn:
        return RuleList(rules=[_rule_out(r) for r in promotion_store.list_rules(conn)])


@router.put(
    "/promotions/rules/{rule_id}",
    openapi_extra=scoped("promotions.manage"),
    response_model=RuleStored,
    summary="Create or replace a promotion rule",
    description=(
        "Levels national / province (region = 2-digit province code) / station (region = "
        "station id). Kinds per_litre (明折明扣, fen/L), fixed (fen, from min_amount), "
        "percent (basis points). Uses already granted still count against the new limits. "
        "Scope `promotions.manage`."
    ),
    responses=AUTH_ERRORS,
)
def put_rule(
    key: Caller, request: Request, rule_id: Annotated[str, Path()], body: RuleBody
) -> RuleStored:
    context = host(request)
    try:
        rule = rule_from_dict(
            {"id": _rule_id(rule_id), **body.model_dump(mode="json", exclude_none=True)}
        )
    except PromotionError as exc:
        raise _promotion_error(exc) from None
    with context.db.write() as conn:
        created = promotion_store.put_rule(conn, rule, ak=key.ak, now=context.now())
    return RuleStored(rule=_rule_out(rule), created=created)


@router.delete(
    "/promotions/rules/{rule_id}",
    openapi_extra=scoped("promotions.manage"),
    response_model=RuleOut,
    summary="Delete a promotion rule",
    description="Granted quotes stay on file. Scope `promotions.manage`.",
    responses={**AUTH_ERRORS, **_NOT_FOUND},
)
def delete_rule(key: Caller, request: Request, rule_id: Annotated[str, Path()]) -> RuleOut:
    with host(request).db.write() as conn:
        rule = promotion_store.get_rule(conn, _rule_id(rule_id))
        if rule is None:
            raise ApiError("E_UNKNOWN_RULE", 404, f"no promotion rule {rule_id!r}", rule_id=rule_id)
        promotion_store.delete_rule(conn, rule.rule_id)
    return _rule_out(rule)


def _pump(key: AccessKey, request: Request, terminal_id: str) -> tuple[str, str]:
    """The terminal (normalised) and its station, if the key may speak for that terminal."""
    try:
        terminal = normalise_terminal(terminal_id)
    except ValueError:
        raise bad_request("terminal_id", "must be 12 hex digits") from None
    with host(request).db.connect() as conn:
        station, registered = station_of(conn, terminal)
    allowed = (
        (key.kind == "terminal" and key.owner == terminal)
        or (key.kind == "station" and registered and station == key.owner)
        or key.kind in ("app", "partner")
    )
    if not allowed:
        raise ApiError(
            "E_TERMINAL_MISMATCH",
            403,
            f"access key {key.ak!r} ({key.kind} {key.owner}) may not quote for terminal {terminal}",
            terminal_id=terminal,
            key_owner=key.owner,
        )
    return terminal, station


def _quote(
    key: AccessKey,
    request: Request,
    body: QuoteIn | RedeemIn,
    coupon: str | None,
    *,
    coupon_only: bool,
) -> tuple[Quote, int]:
    context = host(request)
    terminal, station = _pump(key, request, body.terminal_id)
    try:
        asn = check_asn(body.asn)
    except PromotionError as exc:
        raise _promotion_error(exc) from None
    sale = QuoteRequest(
        asn=asn,
        station=station,
        province=province_of(terminal),
        grade=body.grade,
        amount=body.amount,
        volume=body.volume,
        at=context.now(),
        coupon=coupon,
    )
    granted = promotion_store.grant(
        context.db,
        sale,
        terminal_id=terminal,
        ak=key.ak,
        now=context.now(),
        coupon_only=coupon_only,
    )
    offer = granted.offer
    if offer is None:
        return Quote(
            quote_id=None,
            rule_id=None,
            level=None,
            kind=None,
            value=0,
            min_amount=0,
            max_discount=None,
            discount=0,
            pay=body.amount,
            text="",
            station_id=station,
        ), 0
    rule = offer.rule
    return Quote(
        quote_id=granted.quote_id,
        rule_id=rule.rule_id,
        level=rule.level,
        kind=rule.kind,
        value=rule.value,
        min_amount=rule.min_amount,
        max_discount=rule.max_discount,
        discount=offer.quoted_discount,
        pay=body.amount - offer.quoted_discount,
        text=offer.text,
        station_id=station,
    ), offer.quoted_discount


@router.post(
    "/promotions/quote",
    openapi_extra=scoped("promotions.quote"),
    response_model=Quote,
    summary="The discount of a sale, at the pump's authorisation",
    description=(
        "Every rule that applies (level, region, grade, validity, presented coupon, limits) is "
        "priced for the quoted amount; the largest discount wins, ties to the most specific "
        "level. A granted quote is recorded and counts as one use of its rule. Scope "
        "`promotions.quote`."
    ),
    responses={**AUTH_ERRORS, 403: {"model": ErrorBody, "description": "E_TERMINAL_MISMATCH"}},
)
def quote(key: Caller, request: Request, body: QuoteIn) -> Quote:
    return _quote(key, request, body, body.coupon, coupon_only=False)[0]


@router.post(
    "/promotions/coupons/{code}/redeem",
    openapi_extra=scoped("coupons.redeem"),
    response_model=Quote,
    summary="Redeem a coupon for a card",
    description=(
        "Only the rules of this coupon code are considered. 409 E_COUPON_UNAVAILABLE when "
        "none applies (unknown code, wrong grade or place, outside its window, a limit "
        "reached, below its minimum). Scope `coupons.redeem`."
    ),
    responses={
        **AUTH_ERRORS,
        403: {"model": ErrorBody, "description": "E_TERMINAL_MISMATCH"},
        409: {"model": ErrorBody, "description": "E_COUPON_UNAVAILABLE"},
    },
)
def redeem(key: Caller, request: Request, code: Annotated[str, Path()], body: RedeemIn) -> Quote:
    if not _RULE_ID.fullmatch(code):
        raise bad_request("code", "1–64 characters of A–Z a–z 0–9 . _ -")
    answer, discount = _quote(key, request, body, code, coupon_only=True)
    if discount == 0:
        raise ApiError(
            "E_COUPON_UNAVAILABLE",
            409,
            f"coupon {code!r} gives nothing for this sale: unknown, not for this grade or "
            "place, outside its window, below its minimum, or a use limit is reached",
            coupon=code,
        )
    return answer


@router.post(
    "/payments/{transaction_id}/refunds",
    openapi_extra=scoped("payments.refund"),
    response_model=RefundOut,
    summary="Refund (part of) a wallet payment",
    description=(
        "Books the payment's two legs reversed for `amount`. The refunds of one payment never "
        "exceed what it moved (409 E_REFUND_EXCEEDS_PAYMENT with paid, refunded, refundable). "
        "Only `payment.…`/`wallet.…` transactions (409 E_NOT_REFUNDABLE). Scope "
        "`payments.refund`."
    ),
    responses={
        **AUTH_ERRORS,
        404: {"model": ErrorBody, "description": "E_UNKNOWN_PAYMENT"},
        409: {"model": ErrorBody, "description": "E_NOT_REFUNDABLE, E_REFUND_EXCEEDS_PAYMENT"},
    },
)
def refund(
    key: Caller,
    request: Request,
    transaction_id: Annotated[int, Path(ge=1, lt=1 << 62)],
    body: Annotated[RefundIn, Body()],
) -> RefundOut:
    context = host(request)
    try:
        with context.db.connect() as conn:
            done = refunds.refund(
                conn,
                transaction_id,
                body.amount,
                reason=body.reason,
                ak=key.ak,
                now=context.now(),
            )
    except refunds.RefundRefused as exc:
        figures: dict[str, Any] = dict(exc.figures)
        raise ApiError(exc.code, exc.status, str(exc), **figures) from None
    return RefundOut(
        refund_id=done.refund_id,
        payment_transaction_id=done.payment_txn_id,
        refund_transaction_id=done.refund_txn_id,
        amount=done.amount,
        refunded_total=done.refunded_total,
        refundable_left=done.refundable_left,
    )
