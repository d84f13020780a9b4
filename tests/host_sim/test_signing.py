"""AK/SK signing over real HTTP: each server check with its precise code and status, in the
spec's order, and the nonce cache in the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from host_sim.access import DEFAULT_SCOPES, add_access_key, set_access_key_enabled
from host_sim.signing import (
    SIGNED_HEADERS,
    canonical_query,
    content_sha256,
    hmac_hex,
    sign_request,
    string_to_sign,
)

from .conftest import OPS_AK, OPS_SK, TERMINAL, TERMINAL_AK, Host

NONCE = "0123456789abcdef0123456789abcdef"


def error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def test_worked_example_of_the_docs() -> None:
    """The example in docs/host-api.md, byte for byte (checked independently with openssl)."""
    body = b'{"reason":"stolen"}'
    digest = "b867d3bb25dd1a9c108adc6a7a90422f5a654e8ce273c5f85fc0a15457166654"
    headers = sign_request(
        "POST",
        "/v1/cards/01000114400000000001/loss",
        None,
        body,
        "app-demo",
        "demo-secret-key-0123456789",
        datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC),
        "00112233445566778899aabbccddeeff",
        host="host.example:8080",
    )
    text = string_to_sign(
        "POST",
        "/v1/cards/01000114400000000001/loss",
        "",
        {
            "host": "host.example:8080",
            "x-fuel-content-sha256": digest,
            "x-fuel-date": "2026-11-22T02:00:00Z",
            "x-fuel-nonce": "00112233445566778899aabbccddeeff",
        },
        SIGNED_HEADERS,
        digest,
    )
    assert text == (
        "POST\n/v1/cards/01000114400000000001/loss\n\n"
        "host:host.example:8080\n"
        f"x-fuel-content-sha256:{digest}\n"
        "x-fuel-date:2026-11-22T02:00:00Z\n"
        "x-fuel-nonce:00112233445566778899aabbccddeeff\n"
        "\n"
        "host;x-fuel-content-sha256;x-fuel-date;x-fuel-nonce\n"
        f"{digest}"
    )
    signature = "fc0d86a365c7612084c198f27245e560046c010e1f7c38a9bfb0f339474870ba"
    assert hmac_hex("demo-secret-key-0123456789", text) == signature
    assert headers == {
        "Host": "host.example:8080",
        "X-Fuel-Date": "2026-11-22T02:00:00Z",
        "X-Fuel-Nonce": "00112233445566778899aabbccddeeff",
        "X-Fuel-Content-SHA256": digest,
        "Authorization": "FUEL-HMAC-SHA256 Credential=app-demo,"
        "SignedHeaders=host;x-fuel-content-sha256;x-fuel-date;x-fuel-nonce,"
        f"Signature={signature}",
    }


def test_worked_query_example_of_the_docs() -> None:
    headers = sign_request(
        "GET",
        "/v1/blacklist",
        "since=12&limit=100",
        b"",
        "term-demo",
        "demo-secret-key-0123456789",
        datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC),
        "ffeeddccbbaa99887766554433221100",
        host="host.example:8080",
    )
    assert headers["X-Fuel-Content-SHA256"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert headers["Authorization"].endswith(
        ",Signature=97b3b2c539e8167247f556ef4b101a519528c09e9a7a982888473d4a2ce6dc2d"
    )


def test_canonical_query_sorts_and_percent_encodes() -> None:
    assert canonical_query("since=3&limit=10") == "limit=10&since=3"
    assert canonical_query({"b": "x y", "a": "é/~"}) == "a=%C3%A9%2F~&b=x%20y"
    assert canonical_query("b=x+y&a=%C3%A9%2f~") == "a=%C3%A9%2F~&b=x%20y"
    assert canonical_query(None) == canonical_query("") == ""


def test_valid_request_is_answered_with_the_server_time(host: Host) -> None:
    response = host.call("GET", "/v1/blacklist", query="since=0")
    assert response.status_code == 200, response.text
    assert response.headers["X-Fuel-Server-Time"] == "2026-11-22T02:00:00Z"
    assert response.json()["version"] == 0


def test_query_is_signed_in_canonical_form(host: Host) -> None:
    response = host.call(
        "GET", "/v1/blacklist", query="since=0&limit=5", sign_query={"limit": 5, "since": 0}
    )
    assert response.status_code == 200, response.text
    tampered = host.call("GET", "/v1/blacklist", query="since=1", sign_query="since=0")
    assert tampered.status_code == 401
    assert error(tampered)["code"] == "E_SIGNATURE"


def test_wrong_secret_is_a_signature_error(host: Host) -> None:
    response = host.call("GET", "/v1/blacklist", sk="not-the-secret-0123456789")
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "E_SIGNATURE"
    assert str(body["string_to_sign"]).startswith("GET\n/v1/blacklist\n\nhost:")
    assert response.headers["WWW-Authenticate"] == "FUEL-HMAC-SHA256"


def test_host_header_is_signed(host: Host) -> None:
    response = host.call("GET", "/v1/blacklist", override={"Host": "elsewhere.example"})
    assert response.status_code == 401
    assert error(response)["code"] == "E_SIGNATURE"


def test_tampered_body_fails_the_body_hash(host: Host) -> None:
    signed = json.dumps({"reason": "lost"}).encode()
    sent = json.dumps({"reason": "lost!"}).encode()
    response = host.call(
        "POST",
        "/v1/cards/01000114400000000001/loss",
        body=sent,
        sign_body=signed,
        ak=OPS_AK,
        sk=OPS_SK,
    )
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "E_BODY_HASH"
    assert body["body_sha256"] == content_sha256(sent)


def test_tampered_body_with_its_hash_fails_the_signature(host: Host) -> None:
    signed = json.dumps({"reason": "lost"}).encode()
    sent = json.dumps({"reason": "lost!"}).encode()
    response = host.call(
        "POST",
        "/v1/cards/01000114400000000001/loss",
        body=sent,
        sign_body=signed,
        ak=OPS_AK,
        sk=OPS_SK,
        override={"X-Fuel-Content-SHA256": content_sha256(sent)},
    )
    assert response.status_code == 401
    assert error(response)["code"] == "E_SIGNATURE"
    assert host.scalar("SELECT COUNT(*) FROM blacklist") == 0


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86_400])
def test_stale_and_future_timestamps(host: Host, offset: int) -> None:
    response = host.call("GET", "/v1/blacklist", now=host.clock.now() + timedelta(seconds=offset))
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "E_TIMESTAMP_SKEW"
    assert body["server_time"] == "2026-11-22T02:00:00Z"
    assert body["skew_s"] == offset
    assert body["max_skew_s"] == 300
    assert ("ahead of" if offset > 0 else "behind") in str(body["message"])


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamps_at_the_edge_of_the_window_pass(host: Host, offset: int) -> None:
    response = host.call("GET", "/v1/blacklist", now=host.clock.now() + timedelta(seconds=offset))
    assert response.status_code == 200, response.text


def test_reused_nonce_is_refused_and_kept_in_the_database(host: Host) -> None:
    assert host.call("GET", "/v1/blacklist", nonce=NONCE).status_code == 200
    again = host.call("GET", "/v1/blacklist", nonce=NONCE)
    assert again.status_code == 401
    assert error(again)["code"] == "E_NONCE_REUSED"
    rows = host.sql("SELECT ak, nonce, expires_at FROM nonces")
    assert [(r["ak"], r["nonce"]) for r in rows] == [(TERMINAL_AK, NONCE)]
    assert rows[0]["expires_at"] == host.clock.now().timestamp() + 600
    # Upper-case hex is the same nonce.
    assert error(host.call("GET", "/v1/blacklist", nonce=NONCE.upper()))["code"] == (
        "E_NONCE_REUSED"
    )
    # Still refused just before twice the window; usable again after it (with a fresh date).
    host.clock.advance(599)
    assert error(host.call("GET", "/v1/blacklist", nonce=NONCE))["code"] == "E_NONCE_REUSED"
    host.clock.advance(1)
    assert host.call("GET", "/v1/blacklist", nonce=NONCE).status_code == 200


def test_nonce_is_recorded_only_after_a_valid_signature(host: Host) -> None:
    bad = host.call("GET", "/v1/blacklist", nonce=NONCE, sk="wrong-secret-0123456789")
    assert error(bad)["code"] == "E_SIGNATURE"
    assert host.scalar("SELECT COUNT(*) FROM nonces") == 0
    assert host.call("GET", "/v1/blacklist", nonce=NONCE).status_code == 200


def test_nonces_are_per_access_key(host: Host) -> None:
    assert host.call("GET", "/v1/blacklist", nonce=NONCE).status_code == 200
    other = host.call("GET", "/v1/blacklist", nonce=NONCE, ak=OPS_AK, sk=OPS_SK)
    assert other.status_code == 200, other.text


def test_unknown_access_key(host: Host) -> None:
    response = host.call("GET", "/v1/blacklist", ak="nobody")
    assert response.status_code == 401
    assert error(response)["code"] == "E_AK_UNKNOWN"


def test_disabled_access_key(host: Host) -> None:
    set_access_key_enabled(host.db, TERMINAL_AK, False)
    response = host.call("GET", "/v1/blacklist")
    assert response.status_code == 401
    assert error(response)["code"] == "E_AK_DISABLED"
    set_access_key_enabled(host.db, TERMINAL_AK, True)
    assert host.call("GET", "/v1/blacklist").status_code == 200


@pytest.mark.parametrize(
    "header", ["Authorization", "X-Fuel-Date", "X-Fuel-Nonce", "X-Fuel-Content-SHA256"]
)
def test_missing_header(host: Host, header: str) -> None:
    response = host.call("GET", "/v1/blacklist", drop=[header])
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "E_AUTH_MALFORMED"
    assert body["message"] == f"missing header {header}"
    assert "X-Fuel-Server-Time" in response.headers


@pytest.mark.parametrize(
    ("header", "value", "says"),
    [
        ("X-Fuel-Nonce", "not-hex", "32 hex digits"),
        ("X-Fuel-Nonce", "0123", "32 hex digits"),
        ("X-Fuel-Date", "2026-11-22 02:00:00", "ISO 8601 UTC"),
        ("X-Fuel-Date", "2026-11-22T10:00:00+08:00", "ISO 8601 UTC"),
        ("X-Fuel-Content-SHA256", "abc", "64 hex digits"),
        ("Authorization", "Basic dXNlcjpwYXNz", "scheme"),
        ("Authorization", "FUEL-HMAC-SHA256 Credential=term-1", "lacks SignedHeaders"),
        (
            "Authorization",
            "FUEL-HMAC-SHA256 Credential=term-1,SignedHeaders=host;x-fuel-date,"
            "Signature=" + "0" * 64,
            "must include x-fuel-content-sha256, x-fuel-nonce",
        ),
        (
            "Authorization",
            "FUEL-HMAC-SHA256 Credential=term-1,SignedHeaders=host;x-fuel-content-sha256;"
            "x-fuel-date;x-fuel-nonce,Signature=xyz",
            "64 hex digits",
        ),
    ],
)
def test_malformed_headers(host: Host, header: str, value: str, says: str) -> None:
    response = host.call("GET", "/v1/blacklist", override={header: value})
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "E_AUTH_MALFORMED"
    assert says in str(body["message"])


def test_wrong_scope(host: Host) -> None:
    response = host.call("POST", "/v1/cards/01000114400000000001/loss")
    assert response.status_code == 403
    body = error(response)
    assert body["code"] == "E_SCOPE"
    assert body["required"] == "cards.loss"
    assert body["granted"] == sorted(DEFAULT_SCOPES["terminal"])
    # The nonce was spent: the signature was valid (scope comes after the nonce).
    assert host.scalar("SELECT COUNT(*) FROM nonces") == 1


def test_scope_is_checked_before_the_body_is_read(host: Host) -> None:
    for body in (b"not json", b'{"terminal_id": 1}'):
        response = host.call("POST", "/v1/bills", body=body, ak=OPS_AK, sk=OPS_SK)
        assert response.status_code == 403
        assert error(response)["code"] == "E_SCOPE"


def test_rate_limit_per_access_key(host: Host) -> None:
    slow = {"ak": "slow-1", "sk": "slow-secret-0123456789"}
    add_access_key(
        host.db,
        slow["ak"],
        slow["sk"],
        "terminal",
        ["blacklist.read"],
        "440101000009",
        rate_per_minute=2,
    )
    host.clock.set(host.clock.now().replace(second=10))
    for _ in range(2):
        assert host.call("GET", "/v1/blacklist", **slow).is_success
    limited = host.call("GET", "/v1/blacklist", **slow)
    assert limited.status_code == 429
    body = error(limited)
    assert body["code"] == "E_RATE_LIMITED"
    assert (body["limit"], body["window_s"], body["retry_after_s"]) == (2, 60, 50)
    assert limited.headers["Retry-After"] == "50"
    host.clock.advance(50)  # the next minute's window
    assert host.call("GET", "/v1/blacklist", **slow).is_success


@pytest.mark.parametrize(
    ("knobs", "code"),
    [
        # unknown AK beats a stale date and a bad signature
        ({"ak": "nobody", "offset": 999, "sk": "x" * 20}, "E_AK_UNKNOWN"),
        # a stale date beats a bad body hash and a bad signature
        ({"offset": 999, "sign_body": b"{}", "sk": "x" * 20}, "E_TIMESTAMP_SKEW"),
        # a bad body hash beats a bad signature
        ({"sign_body": b"{}", "sk": "x" * 20}, "E_BODY_HASH"),
    ],
)
def test_checks_run_in_the_spec_order(host: Host, knobs: dict[str, Any], code: str) -> None:
    knobs = dict(knobs)
    offset = int(knobs.pop("offset", 0))
    response = host.call(
        "POST",
        "/v1/cards/01000114400000000001/loss",
        body=b'{"reason": "x"}',
        now=host.clock.now() + timedelta(seconds=offset),
        **knobs,
    )
    assert error(response)["code"] == code


def test_disabled_key_is_reported_before_the_clock(host: Host) -> None:
    set_access_key_enabled(host.db, TERMINAL_AK, False)
    response = host.call("GET", "/v1/blacklist", now=host.clock.now() - timedelta(hours=1))
    assert error(response)["code"] == "E_AK_DISABLED"


def test_terminal_owner_must_be_a_terminal_id(host: Host) -> None:
    with pytest.raises(ValueError, match="12 hex digits"):
        add_access_key(host.db, "t-bad", "x" * 20, "terminal", ["bills.write"], "pump-1")
    with pytest.raises(ValueError, match="unknown scopes"):
        add_access_key(host.db, "t-bad", "x" * 20, "terminal", ["bills.delete"], TERMINAL)
