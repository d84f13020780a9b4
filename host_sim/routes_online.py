"""The online operations over HTTP: load (圈存), online unlock (联机解扣), maintenance MACs.

Every route is signed and scoped (`cards.load`, `cards.unlock`, `cards.maintain`); the decisions
are `host_sim.online_ops`'s, and each refusal code has one HTTP status (`STATUS`). A load or an
unlock names the terminal the card was given (`term`): a terminal key may act only for itself,
a station key for the terminals registered to its station (403 `E_TERMINAL_MISMATCH`), because
the term decides where the money is booked and whether a grey card may be unlocked at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request

from host_sim.access import AccessKey, normalise_terminal, station_of
from host_sim.deps import AUTH_ERRORS, Caller, HostContext, SignedRoute, host, scoped
from host_sim.errors import ApiError
from host_sim.models import ErrorBody
from host_sim.models_online import (
    BlockMacRequest,
    LoadAuthorizeRequest,
    LoadAuthorizeResponse,
    LoadConfirmRequest,
    LoadConfirmResponse,
    MacResponse,
    PinReloadMacRequest,
    StoreFlagMacRequest,
    UnblockMacRequest,
    UnlockAuthorizeRequest,
    UnlockAuthorizeResponse,
    UnlockConfirmRequest,
    UnlockConfirmResponse,
)
from host_sim.online_ops import (
    E_ALREADY_UNLOCKED,
    E_BAD_MAC1,
    E_BAD_MAC3,
    E_BAD_TAC,
    E_BILL_MISMATCH,
    E_CARD_BLOCKED,
    E_CTC_REUSED,
    E_FORMAT,
    E_NO_ESCAPE_BILL,
    E_NOT_AUTHORIZED,
    E_TOO_EARLY,
    ESCAPE_WAIT,
    OnlineOps,
    OnlineRefused,
)
from host_sim.routes_cards import Asn

router = APIRouter(prefix="/v1/cards/{asn}", tags=["online"], route_class=SignedRoute)

STATUS = {
    E_FORMAT: 422,
    E_BAD_MAC1: 422,
    E_BAD_TAC: 422,
    E_BAD_MAC3: 422,
    E_CARD_BLOCKED: 403,
    E_NOT_AUTHORIZED: 409,
    E_CTC_REUSED: 409,
    E_NO_ESCAPE_BILL: 409,
    E_BILL_MISMATCH: 409,
    E_TOO_EARLY: 409,
    E_ALREADY_UNLOCKED: 409,
}
"""The HTTP status of each refusal: 422 the request's own fields or cryptograms are wrong, 403
the card may not be served, 409 the host's records do not allow it (yet)."""

T = TypeVar("T")


def set_escape_wait(app: FastAPI, wait: timedelta) -> None:
    """How long after an escape bill's dt another station may unlock the card (default 48 h)."""
    app.state.online_escape_wait = wait


def operations(request: Request) -> tuple[OnlineOps, HostContext]:
    context = host(request)
    wait = getattr(request.app.state, "online_escape_wait", ESCAPE_WAIT)
    return OnlineOps(context.db, context.hsm, key_set=context.key_set, escape_wait=wait), context


def decide(call: Callable[[], T]) -> T:
    """Run one decision; a refusal becomes the API's error with the code's status."""
    try:
        return call()
    except OnlineRefused as refused:
        raise ApiError(
            refused.code, STATUS[refused.code], refused.reason, **refused.figures
        ) from None


def acting_terminal(key: AccessKey, term: str, context: HostContext) -> bytes:
    """The terminal of a load or unlock: the key's own, or one of the key's station."""
    terminal = normalise_terminal(term)  # the model's pattern already holds it to 12 hex digits
    with context.db.connect() as conn:
        station, registered = station_of(conn, terminal)
    if not (
        (key.kind == "terminal" and key.owner == terminal)
        or (key.kind == "station" and registered and station == key.owner)
    ):
        raise ApiError(
            "E_TERMINAL_MISMATCH",
            403,
            f"access key {key.ak!r} ({key.kind} {key.owner}) may not act for terminal {terminal}",
            terminal_id=terminal,
            key_owner=key.owner,
        )
    return bytes.fromhex(terminal)


def _responses(errors: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The route's refusals for the OpenAPI document, over the signature and scope ones."""
    responses = dict(AUTH_ERRORS)
    for status, text in errors.items():
        responses[status] = {"model": ErrorBody, "description": text}
    return responses


_TERMINAL = "E_SCOPE; E_TERMINAL_MISMATCH: the key may not act for `term`"


@router.post(
    "/load/authorize",
    openapi_extra=scoped("cards.load"),
    response_model=LoadAuthorizeResponse,
    summary="Load (圈存), step 1: check MAC1, answer MAC2",
    description="MAC1 of INITIALIZE FOR LOAD is checked first, then the blacklist. The "
    "authorisation is stored under (ASN, online CTC) before the answer; asking again for the same "
    "online CTC replaces it. Scope `cards.load`.",
    responses=_responses(
        {
            403: f"E_CARD_BLOCKED: the card is blacklisted; {_TERMINAL}",
            409: "E_CTC_REUSED: the load of this online CTC is booked already",
            422: "E_BAD_MAC1; E_FORMAT; E_VALIDATION",
        }
    ),
)
def load_authorize(
    key: Caller, asn: Asn, body: LoadAuthorizeRequest, request: Request
) -> LoadAuthorizeResponse:
    ops, context = operations(request)
    term = acting_terminal(key, body.term, context)
    auth = decide(
        lambda: ops.authorize_load(
            bytes.fromhex(asn),
            rand=bytes.fromhex(body.rand),
            online_ctc=body.online_ctc,
            old_balance=body.old_balance,
            amount=body.amount,
            term=term,
            mac1=bytes.fromhex(body.mac1),
            now=context.now(),
            ak=key.ak,
        )
    )
    return LoadAuthorizeResponse(asn=asn, mac2=auth.mac2.hex().upper(), dt=auth.dt.hex())


@router.post(
    "/load/confirm",
    openapi_extra=scoped("cards.load"),
    response_model=LoadConfirmResponse,
    summary="Load (圈存), step 2: check the TAC and book the load once",
    description="Repeats the authorised values with the card's TAC from CREDIT FOR LOAD. Books "
    "debit `cash:<station>` (for a sub card whose reserve covers the amount, `reserve:<ASN>`), "
    "credit `card:<ASN>` in the same transaction; the same confirmation again is answered with "
    "the booking (`booked_now: false`). Scope `cards.load`.",
    responses=_responses(
        {
            403: _TERMINAL,
            409: "E_NOT_AUTHORIZED: no authorisation with these values",
            422: "E_BAD_TAC; E_FORMAT; E_VALIDATION",
        }
    ),
)
def load_confirm(
    key: Caller, asn: Asn, body: LoadConfirmRequest, request: Request
) -> LoadConfirmResponse:
    ops, context = operations(request)
    term = acting_terminal(key, body.term, context)
    booked, now = decide(
        lambda: ops.confirm_load(
            bytes.fromhex(asn),
            new_balance=body.new_balance,
            online_ctc=body.online_ctc,
            amount=body.amount,
            term=term,
            dt=bytes.fromhex(body.dt),
            tac=bytes.fromhex(body.tac),
            now=context.now(),
        )
    )
    return LoadConfirmResponse(
        asn=asn,
        online_ctc=booked.online_ctc,
        amount=booked.amount,
        new_balance=booked.new_balance,
        transaction_id=booked.transaction_id,
        booked_now=now,
    )


@router.post(
    "/unlock/authorize",
    openapi_extra=scoped("cards.unlock"),
    response_model=UnlockAuthorizeResponse,
    summary="Online unlock (联机解扣), step 1: check MAC1, answer MAC2 for the escape bill",
    description="MAC1 of INITIALIZE FOR ONLINE UNLOCK first, then the blacklist, then the grey "
    "record (ASN, offline CTC − 1) with its uploaded escape bill: not unlocked yet, the card's "
    "balance the one the bill locked, and the station rule (the locking station at once, others "
    "48 h after the bill or once it is settled). Scope `cards.unlock`.",
    responses=_responses(
        {
            403: f"E_CARD_BLOCKED: the card is blacklisted; {_TERMINAL}",
            409: "E_NO_ESCAPE_BILL; E_ALREADY_UNLOCKED; E_BILL_MISMATCH; E_TOO_EARLY (figure "
            "`allowed_from`)",
            422: "E_BAD_MAC1; E_FORMAT; E_VALIDATION",
        }
    ),
)
def unlock_authorize(
    key: Caller, asn: Asn, body: UnlockAuthorizeRequest, request: Request
) -> UnlockAuthorizeResponse:
    ops, context = operations(request)
    term = acting_terminal(key, body.term, context)
    auth = decide(
        lambda: ops.authorize_unlock(
            bytes.fromhex(asn),
            rand=bytes.fromhex(body.rand),
            online_ctc=body.online_ctc,
            balance=body.balance,
            offline_ctc=body.offline_ctc,
            term=term,
            mac1=bytes.fromhex(body.mac1),
            now=context.now(),
            ak=key.ak,
        )
    )
    return UnlockAuthorizeResponse(
        asn=asn,
        lock_ctc=auth.lock_ctc,
        amount=auth.amount,
        dt=auth.dt.hex(),
        mac2=auth.mac2.hex().upper(),
    )


@router.post(
    "/unlock/confirm",
    openapi_extra=scoped("cards.unlock"),
    response_model=UnlockConfirmResponse,
    summary="Online unlock (联机解扣), step 2: check MAC3, mark the grey record unlocked",
    description="The money moved when the escape bill was uploaded; the confirmation links the "
    "unlock to that transaction. The same confirmation again is answered with it "
    "(`confirmed_now: false`). Scope `cards.unlock`.",
    responses=_responses(
        {
            403: _TERMINAL,
            409: "E_NOT_AUTHORIZED: no authorisation with these values",
            422: "E_BAD_MAC3; E_FORMAT; E_VALIDATION",
        }
    ),
)
def unlock_confirm(
    key: Caller, asn: Asn, body: UnlockConfirmRequest, request: Request
) -> UnlockConfirmResponse:
    ops, context = operations(request)
    term = acting_terminal(key, body.term, context)
    unlock, now = decide(
        lambda: ops.confirm_unlock(
            bytes.fromhex(asn),
            rand=bytes.fromhex(body.rand),
            online_ctc=body.online_ctc,
            balance_after=body.balance_after,
            amount=body.amount,
            term=term,
            dt=bytes.fromhex(body.dt),
            mac3=bytes.fromhex(body.mac3),
            now=context.now(),
        )
    )
    return UnlockConfirmResponse(
        asn=asn,
        lock_ctc=unlock.lock_ctc,
        amount=unlock.amount,
        balance_after=unlock.balance_after,
        transaction_id=unlock.transaction_id,
        confirmed_now=now,
    )


_MAC_ERRORS = _responses({422: "E_FORMAT; E_VALIDATION"})


def _mac(asn: str, request: Request, call: Callable[[OnlineOps, bytes], bytes]) -> MacResponse:
    ops, _ = operations(request)
    mac = decide(lambda: call(ops, bytes.fromhex(asn)))
    return MacResponse(asn=asn, mac=mac.hex().upper())


@router.post(
    "/store-flag/mac",
    openapi_extra=scoped("cards.maintain"),
    response_model=MacResponse,
    summary="MAC for UPDATE BINARY of the store flag (EF15 byte 29)",
    description="Only the store flag is signed: `command` must write 00 or 01 at EF15 byte 29 "
    "(else 422 E_FORMAT). Scope `cards.maintain`.",
    responses=_MAC_ERRORS,
)
def store_flag_mac(
    key: Caller, asn: Asn, body: StoreFlagMacRequest, request: Request
) -> MacResponse:
    command, challenge = bytes.fromhex(body.command), bytes.fromhex(body.challenge)
    return _mac(
        asn, request, lambda o, a: o.store_flag_mac(a, command=command, challenge=challenge)
    )


@router.post(
    "/block/mac",
    openapi_extra=scoped("cards.maintain"),
    response_model=MacResponse,
    summary="MAC for APPLICATION BLOCK (temporary, or permanent)",
    description="Scope `cards.maintain`.",
    responses=_MAC_ERRORS,
)
def block_mac(key: Caller, asn: Asn, body: BlockMacRequest, request: Request) -> MacResponse:
    challenge = bytes.fromhex(body.challenge)
    return _mac(
        asn, request, lambda o, a: o.block_mac(a, challenge=challenge, permanent=body.permanent)
    )


@router.post(
    "/unblock/mac",
    openapi_extra=scoped("cards.maintain"),
    response_model=MacResponse,
    summary="MAC for APPLICATION UNBLOCK",
    description="The MAC is diversified by the ASN, so another card refuses it. "
    "Scope `cards.maintain`.",
    responses=_MAC_ERRORS,
)
def unblock_mac(key: Caller, asn: Asn, body: UnblockMacRequest, request: Request) -> MacResponse:
    challenge = bytes.fromhex(body.challenge)
    return _mac(asn, request, lambda o, a: o.unblock_mac(a, challenge=challenge))


@router.post(
    "/pin/reload-mac",
    openapi_extra=scoped("cards.maintain"),
    response_model=MacResponse,
    summary="MAC for RELOAD PIN",
    description="`pin_block` is the new PIN, compressed BCD (else 422 E_FORMAT). "
    "Scope `cards.maintain`.",
    responses=_MAC_ERRORS,
)
def pin_reload_mac(
    key: Caller, asn: Asn, body: PinReloadMacRequest, request: Request
) -> MacResponse:
    pin_block = bytes.fromhex(body.pin_block)
    return _mac(asn, request, lambda o, a: o.reload_pin_mac(a, pin_block=pin_block))
