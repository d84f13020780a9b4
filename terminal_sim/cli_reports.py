"""`fuelsim host reconcile | clear | report`: reconciliation, clearing and reports on the host."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import click

from host_sim import clearing, reports
from host_sim.daygen import generate_day
from host_sim.db import Database
from host_sim.reconcile import Reconciliation, reconcile
from host_sim.reconcile_db import host_records, load_station_file, save_run
from terminal_sim.cli_support import DatabaseLocation, friendly_errors

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=DatabaseLocation(),
    help="The host's SQLite file, or a postgresql:// URL.",
)


def _day(text: str | None, name: str = "--day") -> date:
    if text is None:
        raise click.UsageError(f"{name} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date YYYY-MM-DD", param_hint=name) from None


def _moment(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _progress(step: str) -> None:
    click.echo(f"… {step}", err=True)


def findings_report(result: Reconciliation) -> reports.Report:
    columns = [
        "kind",
        "station",
        "term",
        "psam_ttc",
        "bill_type",
        "station_amount",
        "host_amount",
        "check",
        "handling",
        "action",
        "detail",
    ]
    rows: list[list[str | int]] = [
        [
            f.kind,
            f.station,
            f.term,
            f.psam_ttc,
            f.bill_type,
            "" if f.station_amount is None else f.station_amount,
            "" if f.host_amount is None else f.host_amount,
            f.check,
            f.handling,
            f.action,
            f.detail,
        ]
        for f in result.findings
    ]
    return reports.Report(f"reconciliation {result.day.isoformat()}", columns, rows)


def write_report(report: reports.Report, out: Path | None) -> None:
    """CSV to stdout, or to `out` as CSV or XLSX by its suffix."""
    if out is None:
        click.echo(reports.to_csv(report), nl=False)
        return
    suffix = out.suffix.lower()
    if suffix == ".xlsx":
        out.write_bytes(reports.to_xlsx(report))
    elif suffix == ".csv":
        out.write_text(reports.to_csv(report), encoding="utf-8")
    else:
        raise click.BadParameter("the output file must end in .csv or .xlsx", param_hint="--out")
    click.echo(f"wrote {len(report.rows)} rows to {out}", err=True)


def _summary(result: Reconciliation, seconds: float) -> None:
    bills = sum(t.station_bills for t in result.totals)
    click.echo(
        f"reconciled {result.day.isoformat()}: {len(result.totals)} stations, {bills:,} station"
        f" bills, {sum(t.host_bills for t in result.totals):,} host bills in {seconds:.2f} s"
    )
    counts = result.counts()
    for kind in sorted(counts):
        click.echo(f"  {kind:<16} {counts[kind]:>6}")
    click.echo(f"  auto-handled {len(result.auto())}, for a person {len(result.manual())}")


@click.command("reconcile")
@click.option("--day", help="Business day, YYYY-MM-DD (default with --generate: 2026-11-22).")
@DB_OPTION
@click.option(
    "--station-file",
    "station_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A station day file (fuelsim.station-day/1); repeat per station.",
)
@click.option(
    "--generate", type=click.IntRange(min=1), help="Reconcile a generated day of N bills."
)
@click.option("--stations", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True)
@click.option("--plant", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Write the truth.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Findings .csv/.xlsx")
@click.option("--no-save", is_flag=True, help="Do not store the run in the host database.")
@friendly_errors
def reconcile_command(
    day: str | None,
    db_path: str | None,
    station_files: tuple[Path, ...],
    generate: int | None,
    stations: int,
    seed: int,
    plant: int,
    truth: Path | None,
    out: Path | None,
    no_save: bool,
) -> None:
    """Reconcile a day: the host database against station day files, or a generated day
    (with planted discrepancies) against its truth. Exit status 1 when a generated day's
    findings differ from what was planted."""
    if generate is not None:
        if db_path or station_files:
            raise click.UsageError("--generate works alone, without --db or --station-file")
        _progress(f"generating {generate:,} bills across {stations} stations")
        made = generate_day(
            bills=generate,
            stations=stations,
            seed=seed,
            plant=plant,
            **({"day": _day(day)} if day else {}),
        )
        began = time.perf_counter()
        result = reconcile(made.records, _progress)
        _summary(result, time.perf_counter() - began)
        if truth:
            truth.write_text(json.dumps(made.truth.planted, indent=1) + "\n", encoding="utf-8")
        if out:
            write_report(findings_report(result), out)
        missed = made.truth.identities() - result.identities()
        false = result.identities() - made.truth.identities()
        click.echo(f"planted {len(made.truth.planted)}: missed {len(missed)}, false {len(false)}")
        if missed or false:
            raise click.ClickException("the findings differ from the planted truth")
        return
    if db_path is None or not station_files:
        raise click.UsageError("give --db and one or more --station-file, or --generate N")
    when = _day(day)
    station_days = [load_station_file(path, when) for path in station_files]
    db = Database(db_path)
    try:
        _progress("reading the host's bills")
        records = host_records(db, when, station_days)
        began = time.perf_counter()
        result = reconcile(records, _progress)
        _summary(result, time.perf_counter() - began)
        if not no_save:
            run = save_run(db, result, f"cli:{len(station_files)} station files", datetime.now(UTC))
            click.echo(f"stored as run {run} (GET /v1/reconciliation/{when.isoformat()})")
    finally:
        db.close()
    if out:
        write_report(findings_report(result), out)


@click.command("clear")
@click.option("--day", help="Business day to clear, YYYY-MM-DD.")
@DB_OPTION
@click.option("--fee", "fees", multiple=True, help="Fee rule TYPE=BP or MERCHANT:TYPE=BP.")
@click.option("--merchant", "merchants", multiple=True, help="STATION=MERCHANT.")
@click.option("--lag", default=1, show_default=True, type=click.IntRange(min=0), help="T+n.")
@click.option("--settle", is_flag=True, help="Settle the day (it must be cleared and due).")
@click.option("--force", is_flag=True, help="Settle before the settlement date.")
@click.option("--at", "at_", help="The time of clearing or settling, ISO 8601 (default: now).")
@friendly_errors
def clear_command(
    day: str | None,
    db_path: str | None,
    fees: tuple[str, ...],
    merchants: tuple[str, ...],
    lag: int,
    settle: bool,
    force: bool,
    at_: str | None,
) -> None:
    """Clear a business day per station and payment type (fees, T+1), or settle it."""
    if db_path is None:
        raise click.UsageError("--db is required")
    when = _day(day)
    now = _moment(at_)
    rules = [clearing.parse_fee(text) for text in fees]
    pairs = []
    for text in merchants:
        station, sep, merchant = text.partition("=")
        if not sep or not station or not merchant:
            raise click.BadParameter(f"{text!r} is not STATION=MERCHANT", param_hint="--merchant")
        pairs.append((station, merchant))
    db = Database(db_path)
    try:
        for merchant, kind, bp in rules:
            clearing.set_fee(db, kind, bp, merchant)
        for station, merchant in pairs:
            clearing.set_merchant(db, station, merchant)
        if settle:
            done = clearing.settle_day(db, when, now, force=force)
            click.echo(
                f"settled {done.day}: {len(done.transactions)} ledger transactions, net"
                f" {done.paid} fen, {done.escape_bills_settled} escape bills settled"
            )
            return
        cleared = clearing.clear_day(db, when, now, lag_days=lag)
        click.echo(reports.to_csv(reports.clearing_report(cleared)), nl=False)
        click.echo(
            f"cleared {cleared.day}: gross {cleared.gross}, fee {cleared.fee}, net {cleared.net}"
            f" fen; settles {cleared.settle_date}",
            err=True,
        )
    finally:
        db.close()


@click.command("report")
@DB_OPTION
@click.option("--from", "from_", help="First day, YYYY-MM-DD.")
@click.option("--to", help="Last day (default: --from).")
@click.option("--by", default="station", show_default=True, help="day,station,product,payment_type")
@click.option("--station", help="Only this station.")
@click.option("--clearing", "clearing_day", is_flag=True, help="The clearing lines of --from.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="A .csv or .xlsx file."
)
@friendly_errors
def report_command(
    db_path: str | None,
    from_: str | None,
    to: str | None,
    by: str,
    station: str | None,
    clearing_day: bool,
    out: Path | None,
) -> None:
    """Sales by day, station, product and payment type (or a clearing day) as CSV or XLSX."""
    if db_path is None:
        raise click.UsageError("--db is required")
    start = _day(from_, "--from")
    end = _day(to, "--to") if to else start
    db = Database(db_path)
    try:
        with db.connect() as conn:
            if clearing_day:
                found = clearing.cleared_day(conn, start)
                if found is None:
                    raise click.ClickException(f"day {start.isoformat()} is not cleared")
                report = reports.clearing_report(found)
            else:
                report = reports.sales_report(
                    conn, reports.parse_dimensions(by), start, end, station=station
                )
    finally:
        db.close()
    write_report(report, out)
