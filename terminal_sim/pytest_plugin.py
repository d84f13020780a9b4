"""pytest plugin: scenario files under a `scenarios` folder are collected as tests, once per
transport (`--scenario-transport inproc|vpcd|both`, default both) and once more against the real
HTTP host (`--scenario-host inproc|http|both`, default both): items `[inproc]`, `[vpcd]` and
`[http]` (in process, with `HttpOnlineHost` and a uvicorn server over an SQLite file). A scenario
that uses no card reader (virtual cards paid by QR or numeric code) has no `[vpcd]` item. The
session summary says how many tests went through the real PC/SC stack."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal_sim.scenarios import ScenarioResult, load_scenario, reads_cards, run_scenario

_PCSC_OUTCOMES: dict[str, int] = {}
_PCSCD: dict[str, subprocess.Popen[bytes] | None] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--scenario-transport",
        choices=("inproc", "vpcd", "both"),
        default="both",
        help="run scenario files in process, through pcscd+vpcd, or both (default)",
    )
    parser.addoption(
        "--scenario-host",
        choices=("inproc", "http", "both"),
        default="both",
        help="the host of in-process scenario runs: in process, the real HTTP host, or both "
        "(default; the http items run in process only)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pcsc: goes through the real PC/SC stack (pyscard, pcscd, vsmartcard-vpcd)"
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and "scenarios" in file_path.parts:
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        scenario = load_scenario(self.path)
        chosen = self.config.getoption("--scenario-transport")
        hosts = self.config.getoption("--scenario-host")
        transports = ("inproc", "vpcd") if chosen == "both" else (chosen,)
        for transport in transports:
            if transport == "inproc" and hosts == "http":
                continue
            if transport == "vpcd" and not reads_cards(scenario):
                continue  # QR and numeric codes only: no reader to put behind vpcd
            item = ScenarioItem.from_parent(self, name=transport, scenario=scenario)
            if transport == "vpcd":
                item.add_marker(pytest.mark.pcsc)
            yield item
        if "inproc" in transports and hosts in ("http", "both"):
            yield ScenarioItem.from_parent(
                self, name="http", scenario=scenario, transport="inproc", host="http"
            )


class ScenarioFailed(Exception):
    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.failure)
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(
        self, *, scenario: Any, transport: str | None = None, host: str = "inproc", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.transport = transport or self.name
        self.host = host

    def runtest(self) -> None:
        if self.name == "vpcd" and "pcscd" not in _PCSCD:
            from terminal_sim.pcscd import ensure_pcscd

            _PCSCD["pcscd"] = ensure_pcscd()
        result = run_scenario(self.scenario, self.transport, self.host)
        if not result.passed:
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            result = excinfo.value.result
            lines = [
                f"scenario {result.scenario.name!r} ({result.transport}, {result.host} host) failed"
            ]
            if result.error:
                lines.append(result.error)
            lines += [
                f"  {s.number:>2} {s.action:<14} {'ok ' if s.ok else 'FAIL'} {s.detail}"
                for s in result.steps
            ]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name} [{self.name}]"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "pcsc" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _PCSC_OUTCOMES[report.outcome] = _PCSC_OUTCOMES.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _PCSC_OUTCOMES:
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_PCSC_OUTCOMES.items()))
        terminalreporter.write_line(
            f"real PC/SC stack (pyscard → pcscd → vpcd → emulated card): {summary}"
        )


def pytest_sessionfinish() -> None:
    started = _PCSCD.pop("pcscd", None)
    if started is not None:
        from terminal_sim.pcscd import stop_pcscd

        stop_pcscd(started)
