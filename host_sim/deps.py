"""What routes share: the host context (database, HSM, clock) and the per-route scope check."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from cardcore.ports import Hsm
from host_sim.access import SCOPES, AccessKey
from host_sim.db import Database
from host_sim.errors import ApiError
from host_sim.models import ErrorBody
from host_sim.signing import SCHEME, as_utc, enforce_rate_limit, require_scope


@dataclass(frozen=True)
class HostContext:
    db: Database
    hsm: Hsm
    clock: Callable[[], datetime]
    key_set: str = "DEV"
    rate_limit_per_minute: int | None = 600
    max_body_bytes: int = 1 << 20

    def now(self) -> datetime:
        return as_utc(self.clock())


def host(request: Request) -> HostContext:
    return cast(HostContext, request.app.state.host)


# Shown in the OpenAPI document; the check itself is done by the signature middleware.
signature_header = APIKeyHeader(
    name="Authorization",
    scheme_name="FuelHmacSha256",
    description=(
        f"`{SCHEME} Credential=<AK>,SignedHeaders=host;x-fuel-content-sha256;x-fuel-date;"
        "x-fuel-nonce,Signature=<hex>` plus the headers X-Fuel-Date, X-Fuel-Nonce and "
        "X-Fuel-Content-SHA256 (see docs/host-api.md)."
    ),
    auto_error=False,
)


SCOPE_EXTENSION = "x-fuel-scope"


def scoped(scope: str) -> dict[str, Any]:
    """`openapi_extra` of a route: the scope a caller needs (shown in the OpenAPI document)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return {SCOPE_EXTENSION: scope}


def caller_key(request: Request) -> AccessKey:
    key = request.scope.get("state", {}).get("access_key")
    if not isinstance(key, AccessKey):  # cannot happen behind SignatureMiddleware
        raise ApiError("E_AUTH_MALFORMED", 401, "request is not signed")
    return key


def admit(request: Request, scope: str) -> None:
    """Steps 7 and 8 of the server order: the key holds the scope, and is within its rate."""
    key = caller_key(request)
    require_scope(key, scope)
    context = host(request)
    with context.db.connect() as conn:
        enforce_rate_limit(conn, key, context.now(), context.rate_limit_per_minute)


class SignedRoute(APIRoute):
    """A route for signed callers: scope and rate limit are checked before FastAPI reads the
    body, so a caller without the scope learns nothing from validation errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope = (self.openapi_extra or {}).get(SCOPE_EXTENSION)
        if not isinstance(scope, str):
            raise TypeError(f"route {self.path} names no scope: openapi_extra=scoped(...)")

        async def admitted(request: Request) -> Response:
            await run_in_threadpool(admit, request, scope)
            return await handler(request)

        return admitted


def caller(request: Request, _: str | None = Security(signature_header)) -> AccessKey:
    """The signed caller's key (the `Security` marks the route as signed in OpenAPI)."""
    return caller_key(request)


Caller = Annotated[AccessKey, Depends(caller)]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("E_BAD_REQUEST: a field is not in shape (the message names it)"),
    401: _error(
        "E_AUTH_MALFORMED, E_AK_UNKNOWN, E_AK_DISABLED, E_TIMESTAMP_SKEW, E_BODY_HASH, "
        "E_SIGNATURE, E_NONCE_REUSED"
    ),
    403: _error("E_SCOPE: the key lacks this route's scope"),
    413: _error("E_BODY_TOO_LARGE"),
    422: _error("E_VALIDATION: the JSON does not match the schema"),
    429: _error("E_RATE_LIMITED (Retry-After header)"),
}
