"""AK/SK request signing (spec virtual-cards-and-api §5): the client side and the server checks.

String to sign (each `\\n` a single line feed)::

    METHOD \\n path \\n canonical query \\n
    host:<v>\\n x-fuel-content-sha256:<v>\\n x-fuel-date:<v>\\n x-fuel-nonce:<v>\\n
    \\n
    host;x-fuel-content-sha256;x-fuel-date;x-fuel-nonce \\n
    <hex SHA-256 of the body>

signature = hex HMAC-SHA256(SK, string to sign). The canonical query is the query's pairs,
percent-decoded, each key and value percent-encoded again (everything but `A–Z a–z 0–9 - _ . ~`),
sorted, joined with `&`. The path is the request path as sent (still percent-encoded).

The server checks, in this order, each with its own code: well-formed (`E_AUTH_MALFORMED`) →
AK known (`E_AK_UNKNOWN`) and enabled (`E_AK_DISABLED`) → |now − date| ≤ 300 s
(`E_TIMESTAMP_SKEW`) → body hash (`E_BODY_HASH`) → signature, compared in constant time
(`E_SIGNATURE`) → only then (AK, nonce) is recorded for 600 s (`E_NONCE_REUSED`). Scope
(`E_SCOPE`) and rate limit (`E_RATE_LIMITED`) follow, per route.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from host_sim.access import AccessKey, count_request, load_access_key, record_nonce
from host_sim.errors import ApiError

SCHEME = "FUEL-HMAC-SHA256"
DATE_HEADER = "X-Fuel-Date"
NONCE_HEADER = "X-Fuel-Nonce"
CONTENT_HEADER = "X-Fuel-Content-SHA256"
SERVER_TIME_HEADER = "X-Fuel-Server-Time"
SIGNED_HEADERS = ("host", "x-fuel-content-sha256", "x-fuel-date", "x-fuel-nonce")
MAX_SKEW_S = 300
NONCE_TTL_S = 2 * MAX_SKEW_S

QueryLike = str | Mapping[str, object] | Sequence[tuple[str, object]] | None

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")
_HEADER_NAME = re.compile(r"[a-z0-9-]+")
_AUTH_FIELDS = ("Credential", "SignedHeaders", "Signature")
_REQUIRED_HEADERS = {
    "authorization": "Authorization",
    "host": "Host",
    "x-fuel-content-sha256": CONTENT_HEADER,
    "x-fuel-date": DATE_HEADER,
    "x-fuel-nonce": NONCE_HEADER,
}


# Shared by client and server -------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """`X-Fuel-Date` / `X-Fuel-Server-Time`: ISO 8601 UTC, whole seconds, `Z`."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Strict ISO 8601 UTC (`Z` or `+00:00`, optional fraction); ValueError otherwise."""
    if not _DATE.fullmatch(text):
        raise ValueError(f"{text!r} is not ISO 8601 UTC like 2026-11-22T10:00:00Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def content_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: QueryLike) -> str:
    """Sorted, percent-encoded `key=value` pairs joined with `&` ('' for no query)."""
    if query is None:
        pairs: list[tuple[str, str]] = []
    elif isinstance(query, str):
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    else:
        items = query.items() if isinstance(query, Mapping) else query
        pairs = [(str(k), _query_value(v)) for k, v in items]
    encoded = sorted((_encode(k), _encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def string_to_sign(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body_sha256: str,
) -> str:
    """The exact text the HMAC covers; `headers` keyed by lower-case name, `query` canonical."""
    block = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    return "\n".join(
        [method.upper(), path, query, block, ";".join(signed_headers), body_sha256.lower()]
    )


def hmac_hex(sk: str, text: str) -> str:
    return hmac.new(sk.encode(), text.encode(), hashlib.sha256).hexdigest()


# Client ---------------------------------------------------------------------------------------


def sign_request(
    method: str,
    url_path: str,
    query: QueryLike,
    body: bytes,
    ak: str,
    sk: str,
    now: datetime,
    nonce: str | None = None,
    *,
    host: str,
) -> dict[str, str]:
    """The headers that sign one request (send them all, `Host` included, unchanged).

    `url_path` is the path as it goes on the wire (percent-encoded), `host` the Host header
    (`name` or `name:port`), `query` the query the URL carries, `body` the exact bytes sent.
    `nonce` defaults to 128 fresh random bits.
    """
    nonce = secrets.token_hex(16) if nonce is None else nonce
    digest = content_sha256(body)
    headers = {
        "host": host,
        "x-fuel-content-sha256": digest,
        "x-fuel-date": format_time(now),
        "x-fuel-nonce": nonce,
    }
    text = string_to_sign(method, url_path, canonical_query(query), headers, SIGNED_HEADERS, digest)
    return {
        "Host": host,
        DATE_HEADER: headers["x-fuel-date"],
        NONCE_HEADER: nonce,
        CONTENT_HEADER: digest,
        "Authorization": (
            f"{SCHEME} Credential={ak},SignedHeaders={';'.join(SIGNED_HEADERS)},"
            f"Signature={hmac_hex(sk, text)}"
        ),
    }


# Server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingRequest:
    """What the server signs over: `headers` keyed by lower-case name, `query` raw."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Credentials:
    ak: str
    signed_headers: tuple[str, ...]
    signature: str
    date: datetime
    nonce: str
    body_sha256: str


def _malformed(message: str) -> ApiError:
    return ApiError(
        "E_AUTH_MALFORMED",
        401,
        message,
        headers={"WWW-Authenticate": SCHEME},
        expected=(
            f"Authorization: {SCHEME} Credential=<AK>,SignedHeaders="
            f"{';'.join(SIGNED_HEADERS)},Signature=<hex>; headers {DATE_HEADER}, "
            f"{NONCE_HEADER}, {CONTENT_HEADER}"
        ),
    )


def _unauthorised(code: str, message: str, **figures: object) -> ApiError:
    return ApiError(code, 401, message, headers={"WWW-Authenticate": SCHEME}, **figures)


def parse_authorization(value: str) -> tuple[str, tuple[str, ...], str]:
    """(AK, signed headers, signature) of an Authorization header, or E_AUTH_MALFORMED."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        raise _malformed(f"Authorization scheme must be {SCHEME}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if not eq or name not in _AUTH_FIELDS or name in fields or not field_value:
            raise _malformed(f"Authorization field {part.strip()!r} is not one of {_AUTH_FIELDS}")
        fields[name] = field_value
    missing = [name for name in _AUTH_FIELDS if name not in fields]
    if missing:
        raise _malformed(f"Authorization lacks {', '.join(missing)}")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if any(not _HEADER_NAME.fullmatch(h) for h in signed) or list(signed) != sorted(set(signed)):
        raise _malformed("SignedHeaders must be lower-case names, sorted, each once")
    absent = [h for h in SIGNED_HEADERS if h not in signed]
    if absent:
        raise _malformed(f"SignedHeaders must include {', '.join(absent)}")
    if not _HEX64.fullmatch(fields["Signature"]):
        raise _malformed("Signature must be 64 hex digits (HMAC-SHA256)")
    return fields["Credential"], signed, fields["Signature"].lower()


def well_formed(request: IncomingRequest) -> Credentials:
    """Step 1: every header present and in shape, else E_AUTH_MALFORMED naming it."""
    headers = request.headers
    for name, shown in _REQUIRED_HEADERS.items():
        if not headers.get(name, "").strip():
            raise _malformed(f"missing header {shown}")
    ak, signed, signature = parse_authorization(headers["authorization"])
    for name in signed:
        if name not in headers:
            raise _malformed(f"signed header {name} is not in the request")
    try:
        date = parse_time(headers["x-fuel-date"].strip())
    except ValueError as exc:
        raise _malformed(f"{DATE_HEADER}: {exc}") from None
    nonce = headers["x-fuel-nonce"].strip()
    if not _HEX32.fullmatch(nonce):
        raise _malformed(f"{NONCE_HEADER} must be 32 hex digits (128 bits)")
    digest = headers["x-fuel-content-sha256"].strip()
    if not _HEX64.fullmatch(digest):
        raise _malformed(f"{CONTENT_HEADER} must be 64 hex digits")
    return Credentials(ak, signed, signature, date, nonce.lower(), digest.lower())


def authenticate(conn: sqlite3.Connection, request: IncomingRequest, now: datetime) -> AccessKey:
    """Steps 1–6 of the server order; returns the caller's key once its nonce is recorded."""
    creds = well_formed(request)
    key = load_access_key(conn, creds.ak)
    if key is None:
        raise _unauthorised("E_AK_UNKNOWN", f"unknown access key {creds.ak!r}", ak=creds.ak)
    if not key.enabled:
        raise _unauthorised("E_AK_DISABLED", f"access key {creds.ak!r} is disabled", ak=creds.ak)
    now = as_utc(now)
    skew = (creds.date - now).total_seconds()
    if abs(skew) > MAX_SKEW_S:
        ahead = "ahead of" if skew > 0 else "behind"
        raise _unauthorised(
            "E_TIMESTAMP_SKEW",
            f"{DATE_HEADER} is {abs(skew):.0f} s {ahead} the server clock (max {MAX_SKEW_S} s)",
            server_time=format_time(now),
            request_time=format_time(creds.date),
            skew_s=round(skew, 3),
            max_skew_s=MAX_SKEW_S,
        )
    actual = content_sha256(request.body)
    if not hmac.compare_digest(actual, creds.body_sha256):
        raise _unauthorised(
            "E_BODY_HASH",
            f"{CONTENT_HEADER} does not match the SHA-256 of the body",
            body_sha256=actual,
            body_bytes=len(request.body),
        )
    text = string_to_sign(
        request.method,
        request.path,
        canonical_query(request.query),
        request.headers,
        creds.signed_headers,
        actual,
    )
    if not hmac.compare_digest(hmac_hex(key.sk, text), creds.signature):
        raise _unauthorised(
            "E_SIGNATURE",
            "signature does not match (check the SK and the string to sign)",
            string_to_sign=text,
        )
    if not record_nonce(conn, key.ak, creds.nonce, now.timestamp(), NONCE_TTL_S):
        raise _unauthorised(
            "E_NONCE_REUSED",
            f"nonce {creds.nonce} was already used with this key in the last {NONCE_TTL_S} s",
            nonce=creds.nonce,
        )
    return key


def require_scope(key: AccessKey, scope: str) -> None:
    """Step 7: the key must grant the route's scope."""
    if scope not in key.scopes:
        raise ApiError(
            "E_SCOPE",
            403,
            f"access key {key.ak!r} lacks scope {scope!r}",
            required=scope,
            granted=sorted(key.scopes),
        )


def enforce_rate_limit(
    conn: sqlite3.Connection, key: AccessKey, now: datetime, default_per_minute: int | None
) -> None:
    """Step 8: at most N requests per AK per fixed one-minute window (None: no limit)."""
    limit = key.rate_per_minute if key.rate_per_minute is not None else default_per_minute
    if limit is None:
        return
    count, retry_after = count_request(conn, key.ak, as_utc(now).timestamp())
    if count > limit:
        raise ApiError(
            "E_RATE_LIMITED",
            429,
            f"more than {limit} requests per minute for access key {key.ak!r}",
            headers={"Retry-After": str(retry_after)},
            limit=limit,
            window_s=60,
            retry_after_s=retry_after,
        )
