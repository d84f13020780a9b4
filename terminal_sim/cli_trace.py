"""`fuelsim trace …`: record, show, convert, export and replay APDU traces (docs/traces.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import click

from cardcore import layout
from cardcore.errors import FuelsimError
from cardcore.ports import Reader
from terminal_sim.cli_support import friendly_errors, settings
from terminal_sim.demo import run_demo
from terminal_sim.reader_url import open_reader
from terminal_sim.traces import (
    Trace,
    describe_entry,
    load,
    redact,
    replay,
    save,
    to_scriptor,
    trace_kind,
)

_SEED_SUFFIX = re.compile(r"\?seed=(\d+)$")  # NAME=URL?seed=N sets one reader's seed


def _check_suffix(path: Path, param: str) -> None:
    try:
        trace_kind(path)
    except FuelsimError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_OUT = click.Path(dir_okay=False, path_type=Path)


@click.group()
def trace() -> None:
    """APDU traces: record, show, convert, export for scriptor, and replay against readers.

    Files ending in .trace are the fuelsim-trace/1 text format; .jsonl files are JSON lines.
    """


@trace.command("record")
@click.argument("out", type=_OUT)
@click.option("--seed", default=1, show_default=True, help="Card RNG seed; the PSAM gets seed+1.")
@click.option("--at", "at_", help="Date and time of the fuelling, ISO format (default: now).")
@click.option("--profile", default="normal", show_default=True, help="Card profile to fuel with.")
@click.option("--redact", "redacted", is_flag=True, help="Mask PINs, MACs and TACs.")
@click.option("--no-timing", is_flag=True, help="Leave out timing and the recording time.")
@click.option("--note", help="A free-form note kept in the trace's metadata.")
@friendly_errors
def trace_record(
    out: Path,
    seed: int,
    at_: str | None,
    profile: str,
    redacted: bool,
    no_timing: bool,
    note: str | None,
) -> None:
    """Record the demo grey-lock fuelling (card and PSAM, as `fuelsim demo`) into OUT."""
    _check_suffix(out, "OUT")
    try:
        when = datetime.fromisoformat(at_) if at_ else datetime.now().replace(microsecond=0)
    except ValueError:
        raise click.BadParameter(
            f"{at_!r} is not an ISO date and time", param_hint="--at"
        ) from None
    run = run_demo(when=when, seed=seed, card_profile=profile)
    meta = {} if no_timing else {"recorded": datetime.now(UTC).isoformat(timespec="seconds")}
    meta |= {
        "source": "fuelsim trace record (the demo grey-lock fuelling)",
        "at": when.isoformat(),
        "seed": str(seed),
        "card": profile,
        "psam": "psam-dispenser",
        "atr.card": layout.ATR_USER_CARD.hex().upper(),
        "atr.psam": layout.ATR_PSAM.hex().upper(),
        "replay": f"--reader card=inproc:{profile} --reader psam=inproc:psam-dispenser "
        f"--seed {seed}",
    }
    if note:
        meta["note"] = " ".join(note.split())
    recorded = Trace.from_exchanges(run.exchanges, meta)
    save(redact(recorded) if redacted else recorded, out, timing=not no_timing)
    click.echo(
        f"recorded {len(recorded.entries)} exchanges ({', '.join(recorded.readers)}) to {out}"
    )


@trace.command("show")
@click.argument("file", type=_FILE)
@friendly_errors
def trace_show(file: Path) -> None:
    """Decode a trace: metadata, then every exchange with its fields."""
    recorded = load(file)
    for key, value in recorded.meta.items():
        click.echo(f"{key}: {value}")
    if recorded.meta:
        click.echo("")
    for number, entry in enumerate(recorded.entries, 1):
        for line in describe_entry(number, entry):
            click.echo(line)
    total = sum(entry.elapsed for entry in recorded.entries) * 1000
    readers = ", ".join(recorded.readers) or "no reader"
    click.echo("")
    click.echo(f"{len(recorded.entries)} exchanges with {readers}, {total:.3f} ms")
    masked = recorded.masked_steps()
    if masked:
        click.echo(f"{len(masked)} commands have masked bytes (redacted): steps {masked}")


@trace.command("convert")
@click.argument("source", metavar="IN", type=_FILE)
@click.argument("target", metavar="OUT", type=_OUT)
@click.option("--redact", "redacted", is_flag=True, help="Mask PINs, MACs and TACs.")
@click.option("--no-timing", is_flag=True, help="Leave out the timing of each exchange.")
@friendly_errors
def trace_convert(source: Path, target: Path, redacted: bool, no_timing: bool) -> None:
    """Rewrite a trace IN as OUT (.trace text or .jsonl JSON lines), redacted if asked."""
    _check_suffix(target, "OUT")
    recorded = load(source)
    save(redact(recorded) if redacted else recorded, target, timing=not no_timing)
    click.echo(f"{len(recorded.entries)} exchanges written to {target}")


@trace.command("scriptor")
@click.argument("file", type=_FILE)
@click.option("--reader", help="Whose commands to export (default: card, or the only reader).")
@click.option("-o", "--output", type=_OUT, help="Write the script here instead of stdout.")
@click.option("--no-reset", is_flag=True, help="Do not start the script with `reset`.")
@friendly_errors
def trace_scriptor(file: Path, reader: str | None, output: Path | None, no_reset: bool) -> None:
    """Export one reader's commands as a pcsc-tools `scriptor` script."""
    recorded = load(file)
    if reader is None:
        readers = recorded.readers
        reader = "card" if "card" in readers or len(readers) != 1 else readers[0]
    script = to_scriptor(recorded, reader, reset=not no_reset)
    if output is None:
        click.echo(script, nl=False)
    else:
        output.write_text(script, encoding="utf-8")
        click.echo(f"scriptor script for {reader!r} written to {output}", err=True)


def reader_plan(specs: tuple[str, ...], seed: int) -> list[tuple[str, str, int]]:
    """(name, url, seed) of each `NAME=URL[?seed=N]`; seeds count up from `seed` in order."""
    plan, seen = [], set()
    for position, spec in enumerate(specs):
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise click.BadParameter(
                f"{spec!r}: expected NAME=URL, e.g. card=inproc:normal or card=pcsc:#0",
                param_hint="--reader",
            )
        if name in seen:
            raise click.BadParameter(f"reader {name!r} given twice", param_hint="--reader")
        seen.add(name)
        own = _SEED_SUFFIX.search(url)
        reader_seed = int(own[1]) if own else seed + position
        plan.append((name, url[: own.start()] if own else url, reader_seed))
    return plan


def _default_seed(recorded: Trace) -> int:
    try:
        return int(recorded.meta.get("seed", "1"))
    except ValueError:
        return 1


@trace.command("replay")
@click.argument("file", type=_FILE)
@click.option(
    "--reader",
    "specs",
    multiple=True,
    required=True,
    metavar="NAME=URL",
    help="Send the trace's NAME commands to URL: inproc:PROFILE (a fresh emulated card), "
    "inproc:FILE.nvm.json, pcsc:READER or pcsc:#N. Repeat for each reader; add ?seed=N to set "
    "one reader's seed.",
)
@click.option(
    "--seed",
    type=int,
    help="Seed of the first inproc reader given, +1 for each next one "
    "(default: the trace's seed metadata, else 1).",
)
@click.option("--strict", is_flag=True, help="Treat patterns in the recording as mismatches.")
@click.option("--keep-going", is_flag=True, help="Do not stop at the first mismatch.")
@click.option(
    "--partial",
    is_flag=True,
    help="Replay a redacted trace up to each reader's first masked command.",
)
@friendly_errors
def trace_replay(
    file: Path,
    specs: tuple[str, ...],
    seed: int | None,
    strict: bool,
    keep_going: bool,
    partial: bool,
) -> None:
    """Resend a recorded session and check every answer; exit 1 with a diff if one differs."""
    recorded = load(file)
    plan = reader_plan(specs, _default_seed(recorded) if seed is None else seed)
    unknown = [name for name, _, _ in plan if name not in recorded.readers]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} not in the trace (its readers: {', '.join(recorded.readers)})",
            param_hint="--reader",
        )
    hsm = settings().hsm()
    readers: dict[str, Reader] = {}
    try:
        for name, url, reader_seed in plan:
            readers[name] = open_reader(url, hsm, seed=reader_seed, name=name)
        result = replay(
            recorded, readers, patterns=not strict, keep_going=keep_going, partial=partial
        )
    finally:
        for reader in readers.values():
            reader.disconnect()
    report = result.format_diff()
    if report:
        click.echo(report)
        click.echo("")
    if not result.ok:
        click.echo(f"FAIL: {result.summary()}")
        click.get_current_context().exit(1)
    click.echo(f"PASS: {result.summary()}")
