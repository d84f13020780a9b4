"""`fuelsim run`: run scenario files or folders, with a progress bar, a summary and reports."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from terminal_sim.cli_support import friendly_errors
from terminal_sim.host_link import HOSTS
from terminal_sim.scenario_world import TRANSPORTS
from terminal_sim.scenarios import ScenarioResult, discover, load_scenario, run_scenario


def junit(results: list[ScenarioResult]) -> bytes:
    suite = ElementTree.Element(
        "testsuite",
        name="fuelsim scenarios",
        tests=str(len(results)),
        failures=str(sum(not r.passed for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"scenarios.{result.transport}"
            + ("" if result.host == "inproc" else f".{result.host}"),
            name=result.scenario.name,
            file=str(result.scenario.path),
            time=f"{result.seconds:.3f}",
        )
        if not result.passed:
            ElementTree.SubElement(case, "failure", message=result.failure).text = "\n".join(
                f"{s.number} {s.action}: {'ok' if s.ok else 'FAILED'} — {s.detail}"
                for s in result.steps
            )
    report: bytes = ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True)
    return report


def as_json(results: list[ScenarioResult]) -> str:
    return json.dumps(
        [
            {
                "scenario": r.scenario.name,
                "file": str(r.scenario.path),
                "transport": r.transport,
                "host": r.host,
                "passed": r.passed,
                "seconds": round(r.seconds, 4),
                "failure": r.failure or None,
                "steps": [
                    {
                        "number": s.number,
                        "action": s.action,
                        "ok": s.ok,
                        "detail": s.detail,
                        "seconds": round(s.seconds, 5),
                    }
                    for s in r.steps
                ],
            }
            for r in results
        ],
        indent=1,
    )


@click.command("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS),
    multiple=True,
    help="inproc (default) and/or vpcd (the user card through pcscd and vsmartcard-vpcd).",
)
@click.option(
    "--host",
    "hosts",
    type=click.Choice(HOSTS),
    multiple=True,
    help="inproc (default: host_sim's code in this process) and/or http (the real host over "
    "HTTP on 127.0.0.1, with its SQLite file).",
)
@click.option("--junit", "junit_file", type=click.Path(path_type=Path), help="JUnit XML report.")
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="JSON report.")
@friendly_errors
def run(
    paths: tuple[Path, ...],
    transport: tuple[str, ...],
    hosts: tuple[str, ...],
    junit_file: Path | None,
    json_file: Path | None,
) -> None:
    """Run scenarios (files or folders of *.yaml); exit 1 when any fails."""
    scenarios = [load_scenario(path) for path in discover(list(paths))]
    transports = transport or ("inproc",)
    runs = [(kind, host) for kind in transports for host in hosts or ("inproc",)]
    pcscd = None
    if "vpcd" in transports:
        from terminal_sim.pcscd import ensure_pcscd

        pcscd = ensure_pcscd()
    results: list[ScenarioResult] = []
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("scenarios", total=len(scenarios) * len(runs))
            for kind, host in runs:
                for scenario in scenarios:
                    progress.update(task, description=f"{kind}/{host}: {scenario.name}")
                    results.append(run_scenario(scenario, kind, host))
                    progress.advance(task)
    finally:
        if pcscd is not None:
            from terminal_sim.pcscd import stop_pcscd

            stop_pcscd(pcscd)
    table = Table(title="fuelsim scenarios")
    for column in ("scenario", "transport", "host", "result", "steps", "seconds", "failure"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.scenario.name,
            r.transport,
            r.host,
            "[green]pass" if r.passed else "[red]FAIL",
            str(len(r.steps)),
            f"{r.seconds:.3f}",
            r.failure,
        )
    Console().print(table)
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if junit_file:
        junit_file.write_bytes(junit(results))
    if json_file:
        json_file.write_text(as_json(results))
    if failed:
        raise SystemExit(1)
