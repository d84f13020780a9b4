"""Test knobs: negative host behaviour chosen per scenario, without code.

A knob matches requests (method, path glob, terminal, card, amount, AK) and does one thing:

* `decline` — answer `status` with the error envelope and `code` (the request never reaches
  the routes, so nothing is stored);
* `delay` — wait `ms`, then serve the request normally;
* `hang` — wait `ms` (longer than the client's timeout), then close the connection unanswered;
* `drop` — close the connection at once, unanswered;
* `restart` — drop, then stop the server: `fuelsim host serve` exits with status 75
  (EX_TEMPFAIL) so its supervisor starts it again on the same database.

`times` limits how often a knob fires (null: every time). Knobs come from a file at start
(`fuelsim host serve --test-knobs FILE`, format `fuelsim.knobs/1`) and from the signed
`PUT /v1/test/knobs` (scope `test.knobs`), which exists only on a server started with knobs.
The knob middleware wraps the whole application, outside the signature check, and never
touches `/v1/test/knobs` itself, so a drop-everything knob can still be lifted.

Dropping needs the server's transport: the middleware finds it on uvicorn's `send` (its
request cycle); under another server a drop becomes a 500 answer.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardcore.errors import FuelsimError
from host_sim.deps import AUTH_ERRORS, Caller, SignedRoute, scoped
from host_sim.signing import SERVER_TIME_HEADER, format_time

FORMAT = "fuelsim.knobs/1"
KNOBS_PATH = "/v1/test/knobs"
RESTART_EXIT_STATUS = 75  # EX_TEMPFAIL: try again (the supervisor restarts the host)
ACTIONS = ("decline", "delay", "hang", "drop", "restart")
_MAX_INSPECTED_BODY = 1 << 20
_ASN = re.compile(r"(?<![0-9])[0-9]{20}(?![0-9])")
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")

Action = Literal["decline", "delay", "hang", "drop", "restart"]


class KnobError(FuelsimError, ValueError):
    title = "bad test knob"


class KnobIn(BaseModel):
    """One knob: what it matches (every field optional) and what it does."""

    id: str = Field("", max_length=64, description="A name for the knob (shown when it fires).")
    method: str | None = Field(None, max_length=10, examples=["POST"])
    path: str = Field("*", max_length=200, description="Glob on the path, e.g. /v1/cards/*/loss.")
    terminal: str | None = Field(None, max_length=12, description="Body `terminal_id`.")
    card: str | None = Field(None, max_length=20, description="ASN in the path or body `asn`.")
    amount: int | None = Field(None, description="Body `amount`, fen.")
    ak: str | None = Field(None, max_length=128, description="The signing access key.")
    action: Action
    status: int = Field(402, ge=400, le=599, description="decline: the HTTP status.")
    code: str = Field("E_DECLINED_BY_KNOB", pattern=r"^E_[A-Z0-9_]{1,60}$")
    message: str = Field("declined by a test knob", max_length=200)
    ms: int = Field(0, ge=0, le=600_000, description="delay / hang: milliseconds.")
    times: int | None = Field(None, ge=1, description="Fire at most this often (null: always).")


class KnobSet(BaseModel):
    knobs: list[KnobIn] = Field(max_length=100)


@dataclass(frozen=True)
class Seen:
    """What a knob can match a request on."""

    method: str
    path: str
    terminal: str | None
    cards: frozenset[str]
    amount: int | None
    ak: str | None


def _matches(knob: KnobIn, seen: Seen) -> bool:
    return (
        (knob.method is None or knob.method.upper() == seen.method)
        and fnmatch.fnmatchcase(seen.path, knob.path)
        and (knob.terminal is None or knob.terminal.upper() == (seen.terminal or "").upper())
        and (knob.card is None or knob.card in seen.cards)
        and (knob.amount is None or knob.amount == seen.amount)
        and (knob.ak is None or knob.ak == seen.ak)
    )


class Knobs:
    """The knobs in force (thread-safe: the admin route and the middleware share them)."""

    def __init__(self, knobs: list[KnobIn] | None = None) -> None:
        self._lock = threading.Lock()
        self._knobs: list[KnobIn] = list(knobs or [])
        self.fired: list[str] = []  # ids of the knobs that fired, in order

    def set(self, knobs: list[KnobIn]) -> None:
        with self._lock:
            self._knobs = list(knobs)

    def current(self) -> list[KnobIn]:
        with self._lock:
            return list(self._knobs)

    def take(self, seen: Seen) -> KnobIn | None:
        """The first knob matching the request, using up one of its `times`."""
        with self._lock:
            for index, knob in enumerate(self._knobs):
                if not _matches(knob, seen):
                    continue
                if knob.times is not None:
                    left = knob.times - 1
                    if left:
                        self._knobs[index] = knob.model_copy(update={"times": left})
                    else:
                        del self._knobs[index]
                self.fired.append(knob.id or knob.action)
                return knob
        return None


def knobs_from_document(document: Any) -> list[KnobIn]:
    """The knobs of a `fuelsim.knobs/1` document (`{format, knobs: [...]}`) or a bare list."""
    if isinstance(document, Mapping):
        if document.get("format") != FORMAT:
            raise KnobError(f"format: {FORMAT} expected")
        document = document.get("knobs")
    if not isinstance(document, list):
        raise KnobError("knobs: a list of knobs expected")
    try:
        return KnobSet(knobs=document).knobs
    except ValueError as exc:
        raise KnobError(f"knobs: {exc}") from None


class KnobMiddleware:
    """Pure ASGI, outermost: applies the first matching knob to each HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        knobs: Knobs,
        *,
        clock: Callable[[], datetime],
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.knobs = knobs
        self.clock = clock
        self.on_restart = on_restart

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == KNOBS_PATH:
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        knob = self.knobs.take(_seen(scope, body))
        receive = _replay(body, more, receive)
        if knob is None:
            await self.app(scope, receive, send)
        elif knob.action == "delay":
            await asyncio.sleep(knob.ms / 1000)
            await self.app(scope, receive, send)
        elif knob.action == "decline":
            await self._decline(knob, send)
        else:
            if knob.action == "hang":
                await asyncio.sleep(knob.ms / 1000)
            await _drop(send)
            if knob.action == "restart":
                self.on_restart()

    async def _decline(self, knob: KnobIn, send: Send) -> None:
        figures = {"knob": knob.id} if knob.id else {}
        payload = {"error": {"code": knob.code, "message": knob.message, **figures}}
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": knob.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (SERVER_TIME_HEADER.lower().encode(), format_time(self.clock()).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The body, up to the inspection limit; `more` when some of it is still unread."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > _MAX_INSPECTED_BODY:
            return b"".join(chunks), more


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _seen(scope: Scope, body: bytes) -> Seen:
    fields: dict[str, Any] = {}
    if len(body) <= _MAX_INSPECTED_BODY:
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            fields = parsed
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    credential = _CREDENTIAL.search(headers.get("authorization", ""))
    cards = set(_ASN.findall(scope["path"]))
    if isinstance(fields.get("asn"), str):
        cards.add(fields["asn"])
    amount = fields.get("amount")
    terminal = fields.get("terminal_id")
    return Seen(
        method=scope["method"],
        path=scope["path"],
        terminal=terminal if isinstance(terminal, str) else None,
        cards=frozenset(cards),
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        ak=credential.group(1) if credential else None,
    )


async def _drop(send: Send) -> None:
    """Close the connection without an answer (uvicorn's request cycle holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise RuntimeError("test knob: cannot drop the connection under this server")
    transport.abort()


# The admin route ---------------------------------------------------------------------------
router = APIRouter(prefix="/v1/test", tags=["test"], route_class=SignedRoute)


def _knobs(request: Request) -> Knobs:
    knobs = request.app.state.knobs
    assert isinstance(knobs, Knobs)
    return knobs


class KnobState(BaseModel):
    knobs: list[KnobIn]
    fired: list[str] = Field(description="Ids (or actions) of the knobs fired so far.")


@router.get(
    "/knobs",
    openapi_extra=scoped("test.knobs"),
    response_model=KnobState,
    summary="The test knobs in force (servers started with --test-knobs only)",
    responses=AUTH_ERRORS,
)
def get_knobs(key: Caller, request: Request) -> KnobState:
    knobs = _knobs(request)
    return KnobState(knobs=knobs.current(), fired=list(knobs.fired))


@router.put(
    "/knobs",
    openapi_extra=scoped("test.knobs"),
    response_model=KnobState,
    summary="Replace the test knobs (servers started with --test-knobs only)",
    description="An empty list lifts every knob. Scope `test.knobs`.",
    responses=AUTH_ERRORS,
)
def put_knobs(key: Caller, request: Request, body: KnobSet) -> KnobState:
    knobs = _knobs(request)
    knobs.set(body.knobs)
    return KnobState(knobs=knobs.current(), fired=list(knobs.fired))


def enable(
    app: FastAPI, knobs: Knobs, *, on_restart: Callable[[], None] = lambda: None
) -> KnobMiddleware:
    """Add the knobs route to the host app and wrap it in the knob middleware; serve the
    returned application."""
    app.state.knobs = knobs
    app.include_router(router)
    app.openapi_schema = None  # the document is built again with the new route
    return KnobMiddleware(app, knobs, clock=app.state.host.now, on_restart=on_restart)
