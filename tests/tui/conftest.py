"""The TUI built by its factory with a fixed clock, seed and APDU timer, on a temporary data
directory, the embedded host on 127.0.0.1 and a fixed scenario folder. The host draws virtual
card aliases at random; here they come from a seeded generator, so the phone's card, codes and
QR are the same at every run."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from host_sim import fleet
from tui.app import FuelsimApp, make_app
from tui.session import SessionConfig

START = datetime(2026, 11, 22, 10, 0, 0)
SCENARIOS = Path(__file__).parent / "data"


def config(data_dir: Path) -> SessionConfig:
    return SessionConfig(
        data_dir,
        start=START,
        seed=1,
        timer=lambda: 0.0,
        tick_delay=0,  # no automatic delivery: a test ticks the pump with `t`
        scenario_dir=SCENARIOS,
    )


class SeededAliases:
    """`secrets` for host_sim.fleet: card aliases from a seed, key secrets still random."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self.token_hex = secrets.token_hex

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FuelsimApp]:
    monkeypatch.setattr(fleet, "secrets", SeededAliases(1))
    built = make_app(config(tmp_path), poll_readers=False)
    yield built
    built.session.close()  # when the app never ran, this closes what the factory opened


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio
