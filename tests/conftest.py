"""Shared fixtures: the mock HSM, issued profiles, and emulators built from them in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.clockrng import SeededRng
from cardcore.ports import Rng
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard, issue_profile

VECTORS = Path(__file__).parent / "data" / "fuelcard-kat.json"


@pytest.fixture(scope="session")
def kat() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


@pytest.fixture(scope="session")
def hsm() -> MockHsm:
    return MockHsm()


_ISSUED: dict[str, IssuedCard] = {}


@pytest.fixture(scope="session")
def issued(hsm: MockHsm) -> Callable[[str], IssuedCard]:
    """Issue a shipped profile once per test session (the cells are copied on use)."""

    def get(name: str) -> IssuedCard:
        if name not in _ISSUED:
            _ISSUED[name] = issue_profile(name, hsm)
        return _ISSUED[name]

    return get


@pytest.fixture
def make_card(issued: Callable[[str], IssuedCard]) -> Callable[..., FuelCard]:
    def make(name: str = "normal", rng: Rng | None = None) -> FuelCard:
        applet = in_memory(dict(issued(name).cells), rng or SeededRng(1))
        assert isinstance(applet, FuelCard)
        applet.power_on()
        return applet

    return make


@pytest.fixture
def make_psam(issued: Callable[[str], IssuedCard]) -> Callable[..., Psam]:
    def make(name: str = "psam-dispenser", rng: Rng | None = None) -> Psam:
        applet = in_memory(dict(issued(name).cells), rng or SeededRng(2))
        assert isinstance(applet, Psam)
        applet.power_on()
        return applet

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/pcsc/ use the real PC/SC stack (the plugin counts them)."""
    for item in items:
        if "tests/pcsc/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.pcsc)
