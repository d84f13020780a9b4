"""Fleet and virtual card routes: admin (`/v1/fleet`, scope fleet.admin), driver (`/v1/vfc/cards`,
scope fleet.driver) and pump (`/v1/vfc/authorize|complete|release|flash-pay`, scope vfc.pay).

Refusals carry the rule's code and figures (host_sim.vfc_validate); docs/virtual-cards.md has
the table.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from host_sim import fleet, ledger, vfc_money
from host_sim.access import AccessKey, station_of
from host_sim.db import transaction
from host_sim.deps import AUTH_ERRORS, Caller, HostContext, SignedRoute, host, scoped
from host_sim.errors import ApiError
from host_sim.models import ErrorBody
from host_sim.models_fleet import (
    AuthorizeBody,
    BindCard,
    BlockCard,
    CardList,
    CardView,
    CompanyAccount,
    CompleteBody,
    FlashPayBody,
    IssueCard,
    KeysRequest,
    KeysView,
    LimitsBody,
    LukUse,
    LukView,
    PaymentView,
    PumpFields,
    ReleaseBody,
    TopUpBody,
    TopUpView,
)
from host_sim.routes_bills import uploader_terminal
from host_sim.vfc_policy import DEFAULT_POLICY, VfcKeySource, VfcPolicy
from host_sim.vfc_validate import Authorisation, Presented, authorise, validate

router = APIRouter(prefix="/v1", tags=["fleet"], route_class=SignedRoute)

CardId = Annotated[str, Path(max_length=32, description="The card id, e.g. VFC12345678")]


def _errors(**codes: str) -> dict[int | str, dict[str, Any]]:
    extra: dict[int | str, dict[str, Any]] = {
        int(status[1:]): {"model": ErrorBody, "description": text} for status, text in codes.items()
    }
    return {**AUTH_ERRORS, **extra}


def policy_of(request: Request) -> VfcPolicy:
    policy = getattr(request.app.state, "vfc_policy", DEFAULT_POLICY)
    assert isinstance(policy, VfcPolicy)
    return policy


def vfc_hsm(context: HostContext) -> VfcKeySource:
    hsm = context.hsm
    if not isinstance(hsm, VfcKeySource):
        raise ApiError("E_HSM_NO_VFC", 503, "the host's HSM holds no IMK_VFC")
    return hsm


def card_view(card: fleet.Card) -> CardView:
    limits = card.limits
    return CardView(
        card_id=card.card_id,
        alias=card.alias,
        card_number=card.card_number,
        expiry=card.expiry,
        kv=card.kv,
        driver_id=card.driver_id,
        status="blocked" if card.status == "blocked" else "active",
        block_reason=card.block_reason,
        limits=LimitsBody(
            per_day_amount=limits.per_day_amount,
            per_day_count=limits.per_day_count,
            per_fill_amount=limits.per_fill_amount,
            products=None if limits.products is None else list(limits.products),
            stations=None if limits.stations is None else list(limits.stations),
        ),
    )


# Admin ----------------------------------------------------------------------------------------


@router.get(
    "/fleet/account",
    openapi_extra=scoped("fleet.admin"),
    response_model=CompanyAccount,
    summary="The company account: available and held fen",
    responses=AUTH_ERRORS,
)
def company_account(key: Caller, request: Request) -> CompanyAccount:
    with host(request).db.connect() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        return CompanyAccount(
            company_id=admin.company_id,
            account=fleet.fleet_account(admin.company_id),
            balance=ledger.balance(conn, fleet.fleet_account(admin.company_id)),
            held=ledger.balance(conn, fleet.hold_account(admin.company_id)),
        )


@router.get(
    "/fleet/cards",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardList,
    summary="The company's virtual cards",
    responses=AUTH_ERRORS,
)
def company_cards(key: Caller, request: Request) -> CardList:
    with host(request).db.connect() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        return CardList(cards=[card_view(c) for c in fleet.cards_of(conn, admin)])


@router.post(
    "/fleet/cards",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardView,
    summary="Issue a virtual card at once (optionally bound to a driver)",
    responses=_errors(s404="E_UNKNOWN_USER"),
)
def issue(key: Caller, body: IssueCard, request: Request) -> CardView:
    context = host(request)
    kv = vfc_hsm(context).vfc_key_version(context.key_set)
    with context.db.write() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        card = fleet.issue_card(
            conn, admin, kv, context.now(), driver_id=body.driver_id, expiry=body.expiry
        )
    return card_view(card)


@router.post(
    "/fleet/cards/{card_id}/bind",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardView,
    summary="Bind or re-bind a card to a driver (revokes the previous phone's keys)",
    responses=_errors(s404="E_UNKNOWN_CARD, E_UNKNOWN_USER"),
)
def bind(key: Caller, card_id: CardId, body: BindCard, request: Request) -> CardView:
    with host(request).db.write() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        return card_view(fleet.bind_card(conn, admin, card_id, body.driver_id))


def _block(key: AccessKey, card_id: str, blocked: bool, reason: str, request: Request) -> CardView:
    with host(request).db.write() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        return card_view(fleet.block_card(conn, admin, card_id, blocked, reason))


@router.post(
    "/fleet/cards/{card_id}/block",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardView,
    summary="Block a card: payments and key requests are refused",
    responses=_errors(s404="E_UNKNOWN_CARD"),
)
def block(key: Caller, card_id: CardId, body: BlockCard, request: Request) -> CardView:
    return _block(key, card_id, True, body.reason, request)


@router.post(
    "/fleet/cards/{card_id}/unblock",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardView,
    summary="Unblock a card (the driver fetches new keys)",
    responses=_errors(s404="E_UNKNOWN_CARD"),
)
def unblock(key: Caller, card_id: CardId, body: BlockCard, request: Request) -> CardView:
    return _block(key, card_id, False, body.reason, request)


@router.put(
    "/fleet/cards/{card_id}/limits",
    openapi_extra=scoped("fleet.admin"),
    response_model=CardView,
    summary="Set a card's limits (replaces them all)",
    responses=_errors(s404="E_UNKNOWN_CARD"),
)
def limits(key: Caller, card_id: CardId, body: LimitsBody, request: Request) -> CardView:
    rules = fleet.Limits(
        body.per_day_amount,
        body.per_day_count,
        body.per_fill_amount,
        None if body.products is None else tuple(body.products),
        None if body.stations is None else tuple(body.stations),
    )
    with host(request).db.write() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        return card_view(fleet.set_limits(conn, admin, card_id, rules))


@router.post(
    "/fleet/topups",
    openapi_extra=scoped("fleet.admin"),
    response_model=TopUpView,
    summary="Top up the company account by bank card (simulated acquirer)",
    responses=_errors(s402="E_TOPUP_DECLINED (decline_code)"),
)
def topup(key: Caller, body: TopUpBody, request: Request) -> TopUpView:
    context = host(request)
    with context.db.write() as conn:
        admin = fleet.user_of_key(conn, key, "admin")
        result = fleet.top_up(conn, admin, body.amount, body.card_number, context.now())
    if result.status != "approved" or result.transaction_id is None:
        raise ApiError(
            "E_TOPUP_DECLINED",
            402,
            f"the acquirer declined the card: {result.decline_code}",
            decline_code=result.decline_code,
            topup_id=result.topup_id,
            acquirer_ref=result.acquirer_ref,
            balance=result.balance,
        )
    return TopUpView(
        topup_id=result.topup_id,
        status="approved",
        amount=result.amount,
        acquirer_ref=result.acquirer_ref,
        transaction_id=result.transaction_id,
        balance=result.balance,
    )


# Driver ---------------------------------------------------------------------------------------


@router.get(
    "/vfc/cards",
    openapi_extra=scoped("fleet.driver"),
    response_model=CardList,
    summary="The cards bound to the calling driver",
    responses=AUTH_ERRORS,
)
def driver_cards(key: Caller, request: Request) -> CardList:
    with host(request).db.connect() as conn:
        driver = fleet.user_of_key(conn, key, "driver")
        return CardList(cards=[card_view(c) for c in fleet.cards_of(conn, driver)])


@router.post(
    "/vfc/cards/{card_id}/keys",
    openapi_extra=scoped("fleet.driver"),
    response_model=KeysView,
    summary="Limited-use keys for the bound driver's phone (also: replenish)",
    responses=_errors(s404="E_UNKNOWN_CARD", s409="E_TOO_MANY_KEYS"),
)
def keys(
    key: Caller, card_id: CardId, request: Request, body: KeysRequest | None = None
) -> KeysView:
    context = host(request)
    policy = policy_of(request)
    hsm = vfc_hsm(context)
    count = body.count if body and body.count else policy.keys_per_request
    with context.db.write() as conn:
        driver = fleet.user_of_key(conn, key, "driver")
        card, luks = fleet.provision_keys(
            conn, hsm, context.key_set, driver, card_id, count, policy, context.now()
        )
    return KeysView(
        card_id=card.card_id,
        alias=card.alias,
        card_number=card.card_number,
        expiry=card.expiry,
        kv=card.kv,
        keys=[
            LukView(
                index=k.index,
                key=k.key.hex(),
                kv=k.kv,
                expires_at=k.expires_at,
                ttl_s=policy.luk_ttl_s,
                budget=k.budget,
            )
            for k in luks
        ],
    )


# Pump -----------------------------------------------------------------------------------------

PAY_ERRORS = _errors(
    s400="E_FORMAT, E_VERSION",
    s403="E_SCOPE, E_TERMINAL_MISMATCH, E_KEY_INVALID, E_CRYPTOGRAM, E_CARD_BLOCKED, "
    "E_CARD_EXPIRED, E_KEY_EXHAUSTED, E_RESTRICTED",
    s429="E_RATE_LIMITED, E_THROTTLED (retry_after_s)",
    s402="E_LIMIT_EXCEEDED, E_INSUFFICIENT_FUNDS",
    s404="E_UNKNOWN_CARD",
    s409="E_REPLAYED, E_SALE_ALREADY_PAID",
    s422="E_CLOCK_SKEW, E_EXPIRED, E_ATC_OUT_OF_RANGE",
)


def _sale(
    key: AccessKey, body: PumpFields, context: HostContext, sale_id: str | None = None
) -> vfc_money.Sale:
    terminal = uploader_terminal(key, body.terminal_id, context)
    with context.db.connect() as conn:
        station = station_of(conn, terminal)[0]
    return vfc_money.Sale(terminal, station, body.pump, body.product, body.amount, sale_id)


def payment_view(
    payment: vfc_money.Payment, txn: int | None, auth: Authorisation | None = None
) -> PaymentView:
    view = PaymentView(
        payment_id=payment.payment_id,
        hold_id=payment.payment_id if payment.model == "prepaid" else None,
        model="flash" if payment.model == "flash" else "prepaid",
        status=payment.status,  # type: ignore[arg-type]
        card_id=payment.card_id,
        company_id=payment.company_id,
        station_id=payment.station_id,
        terminal_id=payment.terminal_id,
        pump=payment.pump,
        product=payment.product,
        held_amount=payment.held_amount,
        amount=payment.amount,
        released_amount=payment.held_amount - payment.amount
        if payment.status in ("completed", "released")
        else 0,
        sale_id=payment.sale_id,
        method=payment.method,
        atc=payment.atc,
        transaction_id=txn,
        delta_s=None,
        skew_steps=None,
    )
    if auth is not None:
        v = auth.validated
        view.warnings = v.warnings
        view.delta_s = v.delta_s
        view.skew_steps = v.skew_steps
        view.luk = LukUse(
            index=v.luk_index,
            used=auth.luk_used,
            budget=auth.luk_budget,
            remaining=auth.luk_budget - auth.luk_used,
            expires_at=auth.luk_expires_at,
        )
    return view


def _pay(
    key: AccessKey, body: PumpFields, request: Request, model: str, sale_id: str | None
) -> PaymentView:
    context = host(request)
    policy = policy_of(request)
    sale = _sale(key, body, context, sale_id)
    now = context.now()
    presented = Presented(body.method, body.data)
    validated = validate(
        context.db, vfc_hsm(context), context.key_set, presented, sale, policy, now
    )
    auth = authorise(context.db, validated, sale, model, policy, now)
    payment = auth.payment
    txn = payment.hold_txn_id if model == "prepaid" else payment.settle_txn_id
    return payment_view(payment, txn, auth)


@router.post(
    "/vfc/authorize",
    openapi_extra=scoped("vfc.pay"),
    response_model=PaymentView,
    summary="Prepaid: validate a code and hold the amount limit (unlock the nozzle)",
    responses=PAY_ERRORS,
)
def authorize(key: Caller, body: AuthorizeBody, request: Request) -> PaymentView:
    return _pay(key, body, request, "prepaid", None)


@router.post(
    "/vfc/flash-pay",
    openapi_extra=scoped("vfc.pay"),
    response_model=PaymentView,
    summary="Post-paid: validate a code and pay the pump's finished sale once",
    responses=PAY_ERRORS,
)
def flash_pay(key: Caller, body: FlashPayBody, request: Request) -> PaymentView:
    return _pay(key, body, request, "flash", body.sale_id)


def _close(
    key: AccessKey, terminal_id: str, hold_id: int, delivered: int | None, request: Request
) -> PaymentView:
    context = host(request)
    terminal = uploader_terminal(key, terminal_id, context)
    with context.db.connect() as conn, transaction(conn):
        station = station_of(conn, terminal)[0]
        held = vfc_money.open_hold_of(conn, hold_id, station)
        closed = vfc_money.complete(
            conn, held, 0 if delivered is None else delivered, context.now()
        )
    return payment_view(closed, closed.settle_txn_id)


@router.post(
    "/vfc/complete",
    openapi_extra=scoped("vfc.pay"),
    response_model=PaymentView,
    summary="Prepaid: settle the delivered amount, release the rest",
    responses=_errors(s404="E_UNKNOWN_HOLD", s409="E_HOLD_CLOSED", s422="E_OVER_HOLD"),
)
def complete(key: Caller, body: CompleteBody, request: Request) -> PaymentView:
    return _close(key, body.terminal_id, body.hold_id, body.amount, request)


@router.post(
    "/vfc/release",
    openapi_extra=scoped("vfc.pay"),
    response_model=PaymentView,
    summary="Prepaid: nothing delivered, release the whole hold",
    responses=_errors(s404="E_UNKNOWN_HOLD", s409="E_HOLD_CLOSED"),
)
def release(key: Caller, body: ReleaseBody, request: Request) -> PaymentView:
    return _close(key, body.terminal_id, body.hold_id, None, request)
