"""docs/api-reference.md is exactly what `fuelsim host openapi --markdown` writes today."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from host_sim.api_reference import markdown, reference_document
from hsm_mock.hsm import MockHsm
from terminal_sim.cli import main

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "api-reference.md"


def test_the_committed_reference_matches_the_openapi_document() -> None:
    generated = markdown(reference_document(MockHsm()))
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/api-reference.md is stale: run `fuelsim host openapi --markdown > "
        "docs/api-reference.md`"
    )


def test_the_command_prints_the_reference_and_the_document() -> None:
    runner = CliRunner()
    as_markdown = runner.invoke(main, ["host", "openapi", "--markdown"])
    assert as_markdown.exit_code == 0, as_markdown.output
    assert as_markdown.output == markdown(reference_document(MockHsm()))
    assert "### `POST /v1/promotions/quote`" in as_markdown.output
    as_json = runner.invoke(main, ["host", "openapi"])
    assert as_json.exit_code == 0 and '"openapi": "3.1.0"' in as_json.output
