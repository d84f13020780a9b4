"""POST /v1/bills: batch upload of dispenser bills (idempotent, durable before the answer)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request

from host_sim.access import AccessKey, normalise_terminal, station_of
from host_sim.bills import MAX_BATCH, upload_bills
from host_sim.deps import AUTH_ERRORS, Caller, HostContext, SignedRoute, host, scoped
from host_sim.errors import ApiError, bad_request
from host_sim.models import BillBatch, BillBatchResult, BillResult, ErrorBody

router = APIRouter(prefix="/v1", tags=["bills"], route_class=SignedRoute)

_BILL_HEX = re.compile(r"[0-9A-Fa-f]*")


def _bill_bytes(index: int, text: str) -> bytes:
    field = f"bills[{index}]"
    if not _BILL_HEX.fullmatch(text):
        raise bad_request(field, "is not hex")
    if len(text) != 256:
        raise bad_request(field, f"must be 256 hex digits (128 bytes), got {len(text)}")
    return bytes.fromhex(text)


def uploader_terminal(key: AccessKey, terminal_id: str, context: HostContext) -> str:
    """The uploading terminal: the key's own, or one registered to the key's station."""
    try:
        terminal = normalise_terminal(terminal_id)
    except ValueError:
        raise bad_request("terminal_id", "must be 12 hex digits") from None
    with context.db.connect() as conn:
        station, registered = station_of(conn, terminal)
    allowed = (key.kind == "terminal" and key.owner == terminal) or (
        key.kind == "station" and registered and station == key.owner
    )
    if not allowed:
        raise ApiError(
            "E_TERMINAL_MISMATCH",
            403,
            f"access key {key.ak!r} ({key.kind} {key.owner}) may not upload for terminal "
            f"{terminal}",
            terminal_id=terminal,
            key_owner=key.owner,
        )
    return terminal


@router.post(
    "/bills",
    openapi_extra=scoped("bills.write"),
    response_model=BillBatchResult,
    summary="Upload dispenser bills",
    description=(
        f"Up to {MAX_BATCH} bills. Each is checked (XOR byte, TMAC, card TAC, PSAM TAC where "
        "the bill carries its inputs) and stored in its own transaction with its ledger "
        "postings, or sent to the exceptions table. Idempotent by (term, PSAM TTC, bill "
        "type): a bill already stored is answered `duplicate` with its id. Everything is "
        "committed before the answer. Scope `bills.write`."
    ),
    responses={
        **AUTH_ERRORS,
        403: {"model": ErrorBody, "description": "E_SCOPE, E_TERMINAL_MISMATCH"},
    },
)
def upload(
    key: Caller,
    batch: BillBatch,
    request: Request,
) -> BillBatchResult:
    context = host(request)
    terminal = uploader_terminal(key, batch.terminal_id, context)
    if len(batch.bills) > MAX_BATCH:
        raise bad_request("bills", f"at most {MAX_BATCH} bills per batch, got {len(batch.bills)}")
    raws = [_bill_bytes(i, text) for i, text in enumerate(batch.bills)]
    outcomes = upload_bills(
        context.db,
        context.hsm,
        raws,
        uploader=terminal,
        ak=key.ak,
        now=context.now(),
        key_set=context.key_set,
    )
    results = [
        BillResult(
            index=o.index,
            status=o.status,
            bill_id=o.bill_id,
            reason=o.reason,
            message=o.message,
            booked=o.booked,
            transaction_id=o.transaction_id,
            exception_id=o.exception_id,
        )
        for o in outcomes
    ]
    return BillBatchResult(
        terminal_id=terminal,
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )
