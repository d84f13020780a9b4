"""`fuelsim host promotions …` and `fuelsim host openapi`, and the file readers that
`fuelsim host serve --promotions/--test-knobs` share with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from cardcore.errors import FuelsimError
from host_sim.knobs import KnobIn, knobs_from_document
from host_sim.promotions import Rule, rules_from_document
from terminal_sim.cli_support import DatabaseLocation, friendly_errors, settings


class FileError(FuelsimError):
    title = "bad file"


def read_document(path: Path) -> Any:
    """A YAML (or JSON, which is YAML) file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FileError(f"{path}: {exc}") from None


def read_rules(path: Path) -> list[Rule]:
    try:
        return rules_from_document(read_document(path))
    except ValueError as exc:
        raise FileError(f"{path}: {exc}") from None


def read_knobs(path: Path) -> list[KnobIn]:
    try:
        return knobs_from_document(read_document(path))
    except ValueError as exc:
        raise FileError(f"{path}: {exc}") from None


@click.group("promotions")
def promotions() -> None:
    """Promotion rules (营销) in the host database."""


@promotions.command("load")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--db",
    type=DatabaseLocation(exists=False),
    required=True,
    help="The host's SQLite file, or a postgresql:// URL.",
)
@friendly_errors
def promotions_load(file: Path, db: str) -> None:
    """Create or replace the rules of FILE (format fuelsim.promotions/1), all or none."""
    from host_sim.db import Database
    from host_sim.promotion_store import load_rules

    rules = read_rules(file)
    database = Database(db)
    count = load_rules(database, rules, ak="cli", now=datetime.now(UTC))
    click.echo(f"{count} promotion rule(s) loaded into {database.path}")


@promotions.command("list")
@click.option(
    "--db",
    type=DatabaseLocation(exists=False),
    required=True,
    help="The host's SQLite file, or a postgresql:// URL.",
)
@friendly_errors
def promotions_list(db: str) -> None:
    """The rules in the host database, as a fuelsim.promotions/1 document."""
    from host_sim.db import Database
    from host_sim.promotion_store import list_rules

    with Database(db).connect() as conn:
        rules = [r.to_dict() for r in list_rules(conn)]
    click.echo(yaml.safe_dump({"format": "fuelsim.promotions/1", "rules": rules}, sort_keys=False))


@click.command("openapi")
@click.option("--markdown", is_flag=True, help="The Markdown reference (docs/api-reference.md).")
@friendly_errors
def openapi(markdown: bool) -> None:
    """Print the host's OpenAPI document (JSON), or the API reference in Markdown."""
    from host_sim.api_reference import markdown as to_markdown
    from host_sim.api_reference import reference_document

    document = reference_document(settings().hsm())
    if markdown:
        click.echo(to_markdown(document), nl=False)
    else:
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
