"""Shared fixtures for the mock-HSM tests: the known-answer vectors and a DEV HSM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hsm_mock import MockHsm

KAT_PATH = Path(__file__).parents[1] / "data" / "fuelcard-kat.json"


@pytest.fixture(scope="session")
def kat() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(KAT_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def hsm() -> MockHsm:
    return MockHsm()


@pytest.fixture(scope="session")
def asn8(kat: dict[str, Any]) -> bytes:
    return bytes.fromhex(kat["card"]["asn8"])


@pytest.fixture(scope="session")
def issuer8(kat: dict[str, Any]) -> bytes:
    return bytes.fromhex(kat["card"]["issuer_id"])


@pytest.fixture(scope="session")
def term(kat: dict[str, Any]) -> bytes:
    return bytes.fromhex(kat["terminal_id"])
