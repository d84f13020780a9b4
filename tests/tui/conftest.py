"""The TUI built by its factory with a fixed clock, seed and APDU timer, on a temporary data
directory, the embedded host on 127.0.0.1 and a fixed scenario folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

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


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FuelsimApp]:
    built = make_app(config(tmp_path), poll_readers=False)
    yield built
    if built.session.server is not None and built.session.server._thread.is_alive():
        built.session.close()  # the app never ran: close what the factory opened


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio
