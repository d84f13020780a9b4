"""POST /v1/store-sales: batch upload of store POS sales (idempotent, durable before the answer)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request

from cardcore.records import STORE_SALE
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, host, scoped
from host_sim.errors import bad_request
from host_sim.models import ErrorBody, StoreSaleBatch, StoreSaleBatchResult, StoreSaleResult
from host_sim.routes_bills import uploader_terminal
from host_sim.store_sales import MAX_BATCH, upload_sales

router = APIRouter(prefix="/v1", tags=["store"], route_class=SignedRoute)

_HEX = re.compile(r"[0-9A-Fa-f]*")


def _sale_bytes(index: int, text: str) -> bytes:
    field, digits = f"sales[{index}]", STORE_SALE.size * 2
    if not _HEX.fullmatch(text):
        raise bad_request(field, "is not hex")
    if len(text) != digits:
        raise bad_request(field, f"must be {digits} hex digits, got {len(text)}")
    return bytes.fromhex(text)


@router.post(
    "/store-sales",
    openapi_extra=scoped("bills.write"),
    response_model=StoreSaleBatchResult,
    summary="Upload store POS sales",
    description=(
        f"Up to {MAX_BATCH} sales. Each card purchase TAC is verified through the HSM; a sale is "
        "booked (card debited, station credited) in its own transaction or sent to the "
        "exceptions table. Idempotent by (term, PSAM TTC). Scope `bills.write`."
    ),
    responses={
        **AUTH_ERRORS,
        403: {"model": ErrorBody, "description": "E_SCOPE, E_TERMINAL_MISMATCH"},
    },
)
def upload(key: Caller, batch: StoreSaleBatch, request: Request) -> StoreSaleBatchResult:
    context = host(request)
    terminal = uploader_terminal(key, batch.terminal_id, context)
    if len(batch.sales) > MAX_BATCH:
        raise bad_request("sales", f"at most {MAX_BATCH} sales per batch, got {len(batch.sales)}")
    raws = [_sale_bytes(i, text) for i, text in enumerate(batch.sales)]
    outcomes = upload_sales(
        context.db,
        context.hsm,
        raws,
        uploader=terminal,
        ak=key.ak,
        now=context.now(),
        key_set=context.key_set,
    )
    results = [
        StoreSaleResult(
            index=o.index,
            status=o.status,
            sale_id=o.sale_id,
            reason=o.reason,
            message=o.message,
            transaction_id=o.transaction_id,
            exception_id=o.exception_id,
        )
        for o in outcomes
    ]
    return StoreSaleBatchResult(
        terminal_id=terminal,
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )
