"""The terminal tear sweep's tally of cases, printed in the terminal summary."""

from __future__ import annotations

import pytest

SWEEP_CASES = pytest.StashKey[dict[str, int]]()


@pytest.fixture(scope="session")
def sweep_tally(request: pytest.FixtureRequest) -> dict[str, int]:
    """Flow → number of cases the sweeps ran for it."""
    return request.config.stash.setdefault(SWEEP_CASES, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(SWEEP_CASES, None)
    if tally:
        parts = ", ".join(f"{flow} {n}" for flow, n in tally.items())
        terminalreporter.write_line(
            f"terminal tear sweep: {sum(tally.values())} cases run ({parts})"
        )
