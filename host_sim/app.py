"""The host's HTTP API: `create_app(db_path, hsm, clock=…)` builds the FastAPI application.

`GET /health` and `GET /openapi.json` are open. Every other request must be signed (AK/SK,
`host_sim.signing`): `SignatureMiddleware` reads the body, runs the server checks up to the nonce
and hands the caller's key to the routes. Their route class (`deps.SignedRoute`) checks the
route's scope and the key's rate limit before the body is parsed. Every response, refusals
included, carries `X-Fuel-Server-Time`.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardcore.clockrng import ClockLike, now_function
from cardcore.ports import Hsm
from host_sim import (
    routes_bills,
    routes_card_registry,
    routes_cards,
    routes_fleet,
    routes_online,
    routes_promotions,
    routes_reports,
    routes_store,
)
from host_sim.access import AccessKey
from host_sim.db import Database
from host_sim.deps import HostContext, host
from host_sim.errors import ApiError
from host_sim.models import Health
from host_sim.signing import (
    SERVER_TIME_HEADER,
    IncomingRequest,
    authenticate,
    format_time,
)

OPEN_ROUTES = frozenset({("GET", "/health"), ("GET", "/openapi.json")})

DESCRIPTION = """\
The fuelsim central host. Every call except `GET /health` and `GET /openapi.json` is signed with
an access key (AK) and its secret (SK): headers `X-Fuel-Date` (ISO 8601 UTC), `X-Fuel-Nonce`
(128-bit hex), `X-Fuel-Content-SHA256` (hex SHA-256 of the body) and
`Authorization: FUEL-HMAC-SHA256 Credential=<AK>,SignedHeaders=host;x-fuel-content-sha256;\
x-fuel-date;x-fuel-nonce,Signature=<hex HMAC-SHA256(SK, string to sign)>`.
Refusals are `{"error": {"code": "E_…", "message": "…", …figures}}`; every response carries
`X-Fuel-Server-Time`. See docs/host-api.md.
"""


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class SignatureMiddleware:
    """Pure ASGI: stamps the server time on every response and verifies signed requests."""

    def __init__(self, app: ASGIApp, context: HostContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._stamped(send)
        if (scope["method"], scope["path"]) in OPEN_ROUTES:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away
            request = self._incoming(scope, body)
            key: AccessKey = await run_in_threadpool(self._authenticate, request)
        except ApiError as error:
            await error_response(error)(scope, receive, send)
            return
        scope["state"] = {**scope.get("state", {}), "access_key": key}
        await self.app(scope, self._replay(body, receive), send)

    def _authenticate(self, request: IncomingRequest) -> AccessKey:
        with self.context.db.connect() as conn:
            return authenticate(conn, request, self.context.now())

    def _stamped(self, send: Send) -> Send:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if SERVER_TIME_HEADER not in headers:
                    headers.append(SERVER_TIME_HEADER, format_time(self.context.now()))
            await send(message)

        return stamped

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size, limit = 0, self.context.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError("E_BODY_TOO_LARGE", 413, f"body over {limit} bytes", max_bytes=limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _incoming(scope: Scope, body: bytes) -> IncomingRequest:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        raw_path = scope.get("raw_path") or scope["path"].encode()
        return IncomingRequest(
            method=scope["method"],
            path=raw_path.decode("latin-1").partition("?")[0],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _install_error_handlers(app: FastAPI, context: HostContext) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
        where = ", ".join(".".join(str(p) for p in d.get("loc", ())) for d in details)
        return error_response(
            ApiError(
                "E_VALIDATION", 422, f"request does not match the schema: {where}", details=details
            )
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "E_NOT_FOUND", 405: "E_METHOD_NOT_ALLOWED"}.get(
            exc.status_code, f"E_HTTP_{exc.status_code}"
        )
        return error_response(
            ApiError(code, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Outside the middleware stack (Starlette's ServerErrorMiddleware): stamp it here.
        error = ApiError(
            "E_INTERNAL",
            500,
            "internal error; nothing of this request is acknowledged",
            headers={SERVER_TIME_HEADER: format_time(context.now())},
        )
        return error_response(error)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


def create_app(
    db_path: str | os.PathLike[str] | Database,
    hsm: Hsm,
    clock: ClockLike | None = None,
    *,
    key_set: str = "DEV",
    rate_limit_per_minute: int | None = 600,
    max_body_bytes: int = 1 << 20,
    synchronous: str = "FULL",
) -> FastAPI:
    """The host application over the SQLite file `db_path` (":memory:" = a temporary file).

    `hsm` answers the TMAC/TAC checks, `clock` (a cardcore Clock or a callable returning a
    datetime; naive means UTC) gives the server time, `rate_limit_per_minute` is the default
    per access key (None: no limit).
    """
    db = db_path if isinstance(db_path, Database) else Database(db_path, synchronous=synchronous)
    context = HostContext(
        db=db,
        hsm=hsm,
        clock=now_function(clock),
        key_set=key_set,
        rate_limit_per_minute=rate_limit_per_minute,
        max_body_bytes=max_body_bytes,
    )
    app = FastAPI(
        title="fuelsim host",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.host = context
    app.add_middleware(SignatureMiddleware, context=context)
    _install_error_handlers(app, context)
    app.include_router(routes_bills.router)
    app.include_router(routes_cards.router)
    app.include_router(routes_card_registry.router)
    app.include_router(routes_online.router)
    app.include_router(routes_store.router)
    app.include_router(routes_promotions.router)
    app.include_router(routes_fleet.router)
    app.include_router(routes_reports.router)

    @app.get("/health", response_model=Health, tags=["meta"], summary="Liveness (open)")
    def health(request: Request) -> Health:
        ctx = host(request)
        return Health(
            status="ok", server_time=format_time(ctx.now()), schema_version=ctx.db.version
        )

    return app
