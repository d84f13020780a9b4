"""The `fuelsim` command: terminal_sim's command group plus `fuelsim tui`.

terminal_sim may not import the TUI (it is the ring above), so the console script points here;
every other command is terminal_sim's, unchanged. Textual is imported only when `tui` runs.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import click

from terminal_sim.cli import data_dir, main
from terminal_sim.cli_support import friendly_errors

__all__ = ["main"]


def parse_readers(specs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    readers = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise click.BadParameter(f"{spec!r}: expected NAME=URL", param_hint="--reader")
        readers.append((name, url))
    return tuple(readers)


@main.command("tui")
@click.option(
    "--data-dir",
    "data_dir_",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the station's outbox and the embedded host's database live "
    "(default: $FUELSIM_DATA_DIR or ~/.local/share/fuelsim).",
)
@click.option(
    "--reader",
    "readers",
    multiple=True,
    metavar="NAME=URL",
    help="An extra card: NAME=inproc:PROFILE (emulated) or NAME=pcsc:READER / pcsc:#N "
    "(the card in a real PC/SC reader). Repeatable.",
)
@click.option(
    "--transport",
    type=click.Choice(["inproc", "vpcd"]),
    default="inproc",
    show_default=True,
    help="How terminals reach the cards: in process, or through the virtual PC/SC reader.",
)
@click.option("--host-url", help="A remote host (default: the embedded host).")
@click.option("--ak", envvar="FUELSIM_AK", help="Access key for --host-url.")
@click.option("--sk", envvar="FUELSIM_SK", help="Secret key for --host-url.")
@click.option("--at", "at_", help="Start the forecourt clock here (ISO); default: now, live.")
@click.option("--seed", default=1, show_default=True, help="Seed of the card and PSAM RNGs.")
@click.option(
    "--scenarios",
    "scenario_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("scenarios"),
    show_default=True,
    help="Folder of scenario files for the Scenarios screen.",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the forecourt once, save it as SVG here, and exit.",
)
@friendly_errors
def tui(
    data_dir_: Path | None,
    readers: tuple[str, ...],
    transport: str,
    host_url: str | None,
    ak: str | None,
    sk: str | None,
    at_: str | None,
    seed: int,
    scenario_dir: Path,
    screenshot: Path | None,
) -> None:
    """The interactive station: forecourt, store, office, cards, APDU log, host, scenarios and
    the driver's phone."""
    from tui.app import make_app  # loads textual
    from tui.session import SessionConfig

    try:
        start = datetime.fromisoformat(at_) if at_ else None
    except ValueError:
        raise click.BadParameter(
            f"{at_!r} is not an ISO date and time", param_hint="--at"
        ) from None
    if host_url and not (ak and sk):
        raise click.BadParameter("a remote host needs --ak and --sk", param_hint="--host-url")
    config = SessionConfig(
        data_dir_ or data_dir(),
        start=start,
        seed=seed,
        transport=transport,
        host_url=host_url,
        ak=ak,
        sk=sk,
        readers=parse_readers(readers),
        scenario_dir=scenario_dir,
    )
    app = make_app(config)
    if screenshot is not None:
        asyncio.run(save_screenshot(app, screenshot))
        click.echo(f"forecourt drawn to {screenshot}")
        return
    app.run()


async def save_screenshot(app: object, path: Path, size: tuple[int, int] = (120, 40)) -> None:
    from textual.app import App

    assert isinstance(app, App)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(app.export_screenshot(), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
