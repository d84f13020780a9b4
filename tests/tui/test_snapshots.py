"""Every screen drawn at 120×40 and 80×24 with a fixed clock, seed and timer (SVG snapshots
under __snapshots__; `pytest --snapshot-update` rewrites them after a deliberate change)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tui.app import FuelsimApp

SIZES = [(120, 40), (80, 24)]


async def keys(pilot: Pilot[None], *pressed: str) -> None:
    for key in pressed:
        await pilot.press(key)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def steps(*pressed: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await keys(pilot, *pressed)

    return run_before


SCREENS = {
    "forecourt": steps("i", "l", "t", "t", "t"),  # alice at pump1, 1.50 L delivered
    "store": steps("f2", "c", "y"),  # bob (store flag on) pays 12.50
    "office": steps("f3", "l"),  # alice loads 100.00
    "cards": steps("i", "f4"),
    "apdu": steps("i", "f5"),
    "host": steps("i", "l", "t", "h", "f6", "r"),  # the day reconciled after one sale
    "scenarios": steps("f7", "s", "enter"),  # straight through
    "phone": steps("f8", "a"),  # armed: the clock stands still, so the code and countdown do too
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare: Any, app: FuelsimApp, screen: str, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=SCREENS[screen])
