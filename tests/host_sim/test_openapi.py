"""The open routes (OpenAPI document, health) and the signature wall around everything else."""

from __future__ import annotations

import httpx

from host_sim.access import SCOPES
from host_sim.app import OPEN_ROUTES

from .conftest import Host


def test_openapi_is_served_without_a_signature(host: Host) -> None:
    response = httpx.get(f"{host.base_url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["X-Fuel-Server-Time"] == "2026-11-22T02:00:00Z"
    document = response.json()
    assert set(document["paths"]) >= {
        "/v1/bills",
        "/v1/blacklist",
        "/v1/cards/{asn}/loss",
        "/v1/cards/{asn}/unblock",
        "/v1/cards/{asn}/account",
        "/health",
    }
    assert "FuelHmacSha256" in document["components"]["securitySchemes"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            signed = path != "/health"
            assert ("security" in operation) == signed, path
            if signed:
                assert {"401", "403", "429"} <= set(operation["responses"]), path
                assert operation["x-fuel-scope"] in SCOPES, path
    upload = document["paths"]["/v1/bills"]["post"]
    assert upload["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "BillBatchResult"
    )


def test_health_is_open(host: Host) -> None:
    response = httpx.get(f"{host.base_url}/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "server_time": "2026-11-22T02:00:00Z",
        "schema_version": host.db.version,
    }


def test_every_other_route_rejects_unsigned_calls(host: Host) -> None:
    """Every operation of the OpenAPI document (the app's own route list) but the open ones."""
    checked = []
    for path, operations in host.app.openapi()["paths"].items():
        for method in operations:
            if (method.upper(), path) in OPEN_ROUTES:
                continue
            url = host.base_url + path.replace("{asn}", "01000114400000000001")
            response = httpx.request(method.upper(), url, json={"x": 1})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "E_AUTH_MALFORMED"
            assert "X-Fuel-Server-Time" in response.headers
            checked.append((method, path))
    operations = sum(len(ops) for ops in host.app.openapi()["paths"].values())
    assert len(checked) == operations - 1 > 30  # all but /health (the document omits itself)
    assert host.scalar("SELECT COUNT(*) FROM nonces") == 0


def test_unknown_paths_and_methods_are_not_revealed_to_unsigned_callers(host: Host) -> None:
    for method, path in [("GET", "/v2/nothing"), ("DELETE", "/v1/bills"), ("GET", "/docs")]:
        response = httpx.request(method, f"{host.base_url}{path}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "E_AUTH_MALFORMED"


def test_signed_call_to_an_unknown_path_is_404_in_the_envelope(host: Host) -> None:
    response = host.call("GET", "/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E_NOT_FOUND"
    assert "X-Fuel-Server-Time" in response.headers


def test_oversized_body_is_413(host: Host) -> None:
    response = httpx.post(f"{host.base_url}/v1/bills", content=b"x" * ((1 << 20) + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "E_BODY_TOO_LARGE"
