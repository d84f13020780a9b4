"""Schemathesis over the host's OpenAPI document, against the real server and SQLite file.

Unsigned: every signed operation answers 401 with an `E_…` code, whatever is generated.
Signed: each generated request is signed with a key holding every scope, so the cases reach
the handlers; no answer may be a 5xx, and every answer must match the documented status codes,
content type and schema. Bounded by `MAX_EXAMPLES` per operation so CI stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from host_sim.access import SCOPES, add_access_key
from host_sim.api_reference import reference_document
from host_sim.app import OPEN_ROUTES, create_app
from host_sim.server import BackgroundServer
from host_sim.signing import sign_request
from hsm_mock.hsm import MockHsm

MAX_EXAMPLES = 10
FUZZ_AK, FUZZ_SK = "fuzz-1", "fuzzing-secret-0123456789abcdefgh"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: a CI failure reproduces locally
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _config() -> SchemathesisConfig:
    """Generated cases only (the coverage phase's exhaustive edge cases take minutes here)."""
    config = SchemathesisConfig()
    config.projects.default.phases.update(phases=["fuzzing"])
    config.projects.default.generation.update(max_examples=MAX_EXAMPLES)
    return config


schema = schemathesis.openapi.from_dict(reference_document(MockHsm()), config=_config())


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "host.sqlite"
    app = create_app(path, MockHsm(), rate_limit_per_minute=None, synchronous="OFF")
    add_access_key(app.state.host.db, FUZZ_AK, FUZZ_SK, "app", SCOPES, "fuzz")
    with BackgroundServer(app) as server:
        yield server.base_url


def _request(case: Any, base_url: str, *, signed: bool) -> tuple[httpx.Response, dict[str, Any]]:
    kwargs = case.as_transport_kwargs(base_url)
    headers = {k: str(v) for k, v in kwargs.get("headers", {}).items()}
    body = b""
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    with httpx.Client(timeout=10) as client:
        request = client.build_request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            content=body,
            headers=headers,
        )
        if signed:
            wire_path = request.url.raw_path.partition(b"?")[0].decode("ascii")
            request.headers.update(
                sign_request(
                    request.method,
                    wire_path,
                    request.url.query.decode("ascii"),
                    body,
                    FUZZ_AK,
                    FUZZ_SK,
                    datetime.now(UTC),
                    host=request.headers["host"],
                )
            )
        return client.send(request), kwargs


@schema.parametrize()
@FUZZ_SETTINGS
def test_unsigned_calls_are_refused_with_a_code(case: Any, base_url: str) -> None:
    response, _ = _request(case, base_url, signed=False)
    if (case.method.upper(), case.path) in OPEN_ROUTES:
        assert response.status_code == 200
        return
    assert response.status_code == 401, (case.method, case.path, response.text)
    assert response.json()["error"]["code"].startswith("E_")


@schema.parametrize()
@FUZZ_SETTINGS
def test_signed_calls_never_fail_the_server_or_the_schema(case: Any, base_url: str) -> None:
    response, kwargs = _request(case, base_url, signed=True)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
