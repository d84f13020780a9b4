"""The blacklist (incremental, versioned), loss reports, unblocking, and a card's account."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from host_sim import blacklist, ledger
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, host, scoped
from host_sim.errors import ApiError, bad_request
from host_sim.models import (
    AccountEntry,
    BlacklistChange,
    BlacklistDelta,
    BlacklistUpdate,
    CardAccount,
    CardReport,
    ErrorBody,
)

router = APIRouter(prefix="/v1", tags=["cards"], route_class=SignedRoute)

_ASN = re.compile(r"[0-9]{20}")
_ASN_DOC = "The card's ASN: 20 decimal digits (10-byte BCD), e.g. 01000114400000000001."


def parse_asn(text: str) -> str:
    if not _ASN.fullmatch(text):
        raise bad_request("asn", f"must be 20 decimal digits (10-byte BCD ASN), got {text!r}")
    return text


def card_asn(asn: Annotated[str, Path(description=_ASN_DOC)]) -> str:
    """The `{asn}` path parameter, checked (400 E_BAD_REQUEST naming `asn`)."""
    return parse_asn(asn)


Asn = Annotated[str, Depends(card_asn)]


@router.get(
    "/blacklist",
    openapi_extra=scoped("blacklist.read"),
    response_model=BlacklistDelta,
    summary="Blacklist changes since a version",
    description=(
        "Every add or remove bumps one global version. Apply `changes` in order, keep "
        "`next_since`, and ask again while `more` is true. A `since` above the current version "
        "is answered 409 E_VERSION_AHEAD: start again from 0. Scope `blacklist.read`."
    ),
    responses={
        **AUTH_ERRORS,
        409: {"model": ErrorBody, "description": "E_VERSION_AHEAD"},
    },
)
def get_blacklist(
    key: Caller,
    request: Request,
    since: Annotated[int, Query(ge=0, description="The last version applied (0: all).")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many.")] = 1000,
) -> BlacklistDelta:
    with host(request).db.connect() as conn:
        version = blacklist.current_version(conn)
        if since > version:
            raise ApiError(
                "E_VERSION_AHEAD",
                409,
                f"since={since} is ahead of the current blacklist version {version}",
                since=since,
                version=version,
            )
        changes = blacklist.changes_since(conn, since, limit)
    next_since = changes[-1].version if changes else since
    return BlacklistDelta(
        since=since,
        version=version,
        next_since=next_since,
        more=next_since < version,
        changes=[
            BlacklistChange(
                version=c.version,
                asn=c.asn,
                action="add" if c.action == "add" else "remove",
                reason=c.reason,
                changed_at=c.changed_at,
            )
            for c in changes
        ],
    )


def _update(update: blacklist.Update) -> BlacklistUpdate:
    return BlacklistUpdate(
        asn=update.asn,
        blacklisted=update.blacklisted,
        changed=update.changed,
        version=update.version,
    )


@router.post(
    "/cards/{asn}/loss",
    openapi_extra=scoped("cards.loss"),
    response_model=BlacklistUpdate,
    summary="Report a card lost (blacklist it)",
    description="Idempotent: a card already listed is answered `changed: false`. "
    "Scope `cards.loss`.",
    responses=AUTH_ERRORS,
)
def report_loss(
    key: Caller,
    asn: Asn,
    request: Request,
    report: Annotated[CardReport | None, Body()] = None,
) -> BlacklistUpdate:
    context = host(request)
    reason = report.reason if report else ""
    with context.db.connect() as conn:
        return _update(blacklist.report_loss(conn, asn, reason, key.ak, context.now()))


@router.post(
    "/cards/{asn}/unblock",
    openapi_extra=scoped("cards.unblock"),
    response_model=BlacklistUpdate,
    summary="Take a card off the blacklist",
    description="Idempotent: a card not listed is answered `changed: false`. "
    "Scope `cards.unblock`.",
    responses=AUTH_ERRORS,
)
def unblock(
    key: Caller,
    asn: Asn,
    request: Request,
    report: Annotated[CardReport | None, Body()] = None,
) -> BlacklistUpdate:
    context = host(request)
    reason = report.reason if report else ""
    with context.db.connect() as conn:
        return _update(blacklist.unblock(conn, asn, reason, key.ak, context.now()))


@router.get(
    "/cards/{asn}/account",
    openapi_extra=scoped("accounts.read"),
    response_model=CardAccount,
    summary="A card's balance and entries, as the host's ledger has them",
    description="404 E_UNKNOWN_CARD when the ledger has no account for the card yet. "
    "Scope `accounts.read`.",
    responses={**AUTH_ERRORS, 404: {"model": ErrorBody, "description": "E_UNKNOWN_CARD"}},
)
def account(
    key: Caller,
    asn: Asn,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest entries, at most.")] = 100,
) -> CardAccount:
    code = ledger.card_account(asn)
    with host(request).db.connect() as conn:
        if not ledger.exists(conn, code):
            raise ApiError(
                "E_UNKNOWN_CARD", 404, f"the ledger has no account for card {asn}", asn=asn
            )
        return CardAccount(
            asn=asn,
            account=code,
            balance=ledger.balance(conn, code),
            blacklisted=blacklist.is_listed(conn, asn),
            entries=[
                AccountEntry(
                    transaction_id=e.transaction_id,
                    kind=e.kind,
                    memo=e.memo,
                    posted_at=e.posted_at,
                    amount=-e.amount,  # credit-normal: a debit lowers the card's balance
                )
                for e in ledger.entries(conn, code, limit)
            ],
        )
