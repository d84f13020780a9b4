"""The card registry over HTTP: issue a card, read it, allocate a master's funds to a sub card.

The decisions are `host_sim.cards`'s; each refusal code has one status: 404 a card named is not
in the registry, 409 the registry does not allow it, 402 the master holds too little.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from host_sim import blacklist, cards, ledger
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, host, scoped
from host_sim.models import ErrorBody
from host_sim.models_cards import (
    AllocationRequest,
    AllocationResult,
    CardIssueRequest,
    CardView,
    SubCard,
)
from host_sim.routes_cards import Asn

router = APIRouter(prefix="/v1", tags=["cards"], route_class=SignedRoute)


def _responses(errors: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    responses = dict(AUTH_ERRORS)
    for status, text in errors.items():
        responses[status] = {"model": ErrorBody, "description": text}
    return responses


def card_view(conn: sqlite3.Connection, card: cards.Card) -> CardView:
    is_sub = card.kind == "sub"
    return CardView(
        asn=card.asn,
        kind=card.kind,  # type: ignore[arg-type]  # the schema's CHECK holds it to KINDS
        master=card.master,
        holder=card.holder,
        profile=card.profile,
        status=card.status,  # type: ignore[arg-type]
        blacklisted=blacklist.is_listed(conn, card.asn),
        issued_at=card.issued_at,
        issued_by=card.issued_by,
        account=ledger.card_account(card.asn),
        balance=ledger.balance(conn, ledger.card_account(card.asn)),
        reserve=ledger.balance(conn, cards.reserve_account(card.asn)) if is_sub else None,
        subs=[
            SubCard(
                asn=sub.asn,
                holder=sub.holder,
                status=sub.status,
                balance=ledger.balance(conn, ledger.card_account(sub.asn)),
                reserve=ledger.balance(conn, cards.reserve_account(sub.asn)),
            )
            for sub in cards.subs_of(conn, card.asn)
        ],
    )


@router.post(
    "/cards",
    openapi_extra=scoped("cards.issue"),
    response_model=CardView,
    summary="Issue a card: single, master, or a sub card of a master",
    description="Allocates the next ASN of the host's range unless `asn` is given, checks the HSM "
    "can personalise the card (no key leaves the HSM), records it and opens its ledger account "
    "(and a sub card's reserve). A sub card names its `master`, which must be an active master "
    "card. Scope `cards.issue`.",
    responses=_responses(
        {
            400: "E_BAD_REQUEST: a sub card without `master`, or `master` on another kind",
            404: "E_UNKNOWN_CARD: the master is not in the registry",
            409: "E_CARD_EXISTS; E_NOT_MASTER: the master is not a master card; "
            "E_CARD_NOT_ACTIVE: the master is closed or reported lost; E_ASN_EXHAUSTED",
            422: "E_VALIDATION; E_HSM_REFUSED: the HSM cannot personalise the ASN",
        }
    ),
)
def issue_card(key: Caller, body: CardIssueRequest, request: Request) -> CardView:
    context = host(request)
    card = cards.issue(
        context.db,
        context.hsm,
        kind=body.kind,
        holder=body.holder,
        profile=body.profile,
        master=body.master,
        asn=body.asn,
        ak=key.ak,
        now=context.now(),
        key_set=context.key_set,
    )
    with context.db.connect() as conn:
        return card_view(conn, card)


@router.get(
    "/cards/{asn}",
    openapi_extra=scoped("accounts.read"),
    response_model=CardView,
    summary="A registered card, its ledger balance and, for a master, its sub cards",
    description="Scope `accounts.read`.",
    responses=_responses({404: "E_UNKNOWN_CARD: not in the registry"}),
)
def get_card(key: Caller, asn: Asn, request: Request) -> CardView:
    with host(request).db.connect() as conn:
        card = cards.find(conn, asn)
        if card is None:
            raise cards.unknown_card(asn)
        return card_view(conn, card)


@router.post(
    "/cards/{asn}/allocate",
    openapi_extra=scoped("cards.allocate"),
    response_model=AllocationResult,
    summary="Set a master card's funds aside for one of its sub cards",
    description="Books debit `card:<master>`, credit `reserve:<sub>` in one transaction, never "
    "more than the master's balance. The same `request_id` again answers the first booking "
    "(`booked_now: false`); with other values it is refused. A load of the sub card at the "
    "office then draws on the reserve when it covers the amount. Scope `cards.allocate`.",
    responses=_responses(
        {
            402: "E_INSUFFICIENT_FUNDS: the master's balance is below the amount",
            404: "E_UNKNOWN_CARD: the master or the sub is not in the registry",
            409: "E_NOT_MASTER; E_NOT_SUB_OF: the sub is not a sub card of this master; "
            "E_CARD_NOT_ACTIVE; E_REQUEST_ID_REUSED: the id booked another allocation",
        }
    ),
)
def allocate(
    key: Caller,
    asn: Asn,
    body: Annotated[AllocationRequest, Body()],
    request: Request,
) -> AllocationResult:
    context = host(request)
    booked = cards.allocate(
        context.db,
        master=asn,
        sub=body.sub,
        amount=body.amount,
        request_id=body.request_id,
        ak=key.ak,
        now=context.now(),
    )
    with context.db.connect() as conn:
        return AllocationResult(
            request_id=booked.request_id,
            master=booked.master,
            sub=booked.sub,
            amount=booked.amount,
            transaction_id=booked.transaction_id,
            allocated_at=booked.allocated_at,
            booked_now=booked.booked_now,
            master_balance=ledger.balance(conn, ledger.card_account(booked.master)),
            sub_reserve=ledger.balance(conn, cards.reserve_account(booked.sub)),
        )
