"""Tear tests: a tally of the power-loss cases run, printed in the terminal summary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

TEAR_CASES = pytest.StashKey[dict[str, int]]()


@pytest.fixture(scope="session")
def tear_tally(request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    """Test name → number of tear cases it ran; the summary prints the total."""
    tally: dict[str, int] = {}
    request.config.stash[TEAR_CASES] = tally
    yield tally
    print(f"\n{sum(tally.values())} tear cases run in {len(tally)} tear tests")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(TEAR_CASES, None)
    if tally:
        terminalreporter.write_line(
            f"tear cases run: {sum(tally.values())} (in {len(tally)} tear tests)"
        )
