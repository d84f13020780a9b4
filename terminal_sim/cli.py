"""The `fuelsim` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import click

from card_profiles.emulator import make_applet
from card_profiles.image import load_image, shipped_profiles
from card_profiles.inspect import describe
from card_profiles.nvm import FileBackend, MemoryBackend, NvmBackend
from cardcore.bcd import card_number_to_asn
from cardcore.clockrng import SeededRng
from cardcore.records import PublicAppData
from hsm_mock.hsm import MockHsm, key_report
from terminal_sim.bench import run_bench
from terminal_sim.cli_host import openapi, promotions, read_knobs, read_rules
from terminal_sim.cli_reports import clear_command, reconcile_command, report_command
from terminal_sim.cli_run import run
from terminal_sim.cli_support import Settings, friendly_errors, settings
from terminal_sim.cli_trace import trace
from terminal_sim.demo import print_demo, run_demo
from terminal_sim.host_client import HostClient
from terminal_sim.issuing import IssuedCard, issue_profile
from terminal_sim.reader_url import MEMORY_SUFFIX
from terminal_sim.readers import Exchange, InProcReader, TracingReader
from terminal_sim.serve import Server, parse_specs
from terminal_sim.trace_format import bill_rows, describe_exchange
from terminal_sim.vpcd import VPCD_BASE_PORT


def data_dir() -> Path:
    """$FUELSIM_DATA_DIR, else $XDG_DATA_HOME/fuelsim, else ~/.local/share/fuelsim."""
    explicit = os.environ.get("FUELSIM_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fuelsim"


def print_sections(sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
    for title, rows in sections:
        click.echo(title)
        for label, value in rows:
            click.echo(f"  {label:<18} {value}")
        click.echo("")


@click.group()
@click.version_option(package_name="fuelsim")
@click.option(
    "--key-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FUELSIM_KEY_MAP",
    help="Lab key map (fuelsim.keymap/1): the key sets it lists join DEV in the HSM.",
)
@click.pass_context
def main(ctx: click.Context, key_map: Path | None) -> None:
    """fuelsim: emulated fuel cards, PSAMs, terminals and host for fuel retail."""
    ctx.obj = Settings(key_map)


@main.command()
@click.option("--seed", default=1, show_default=True, help="Seed of the card and PSAM RNGs.")
@click.option("--at", "at_", help="Date and time of the fuelling, ISO format (default: now).")
@click.option("--profile", default="normal", show_default=True, help="Card profile to fuel with.")
@friendly_errors
def demo(seed: int, at_: str | None, profile: str) -> None:
    """A complete grey-lock fuelling between an emulated card and PSAM, traced."""
    try:
        when = datetime.fromisoformat(at_) if at_ else datetime.now()
    except ValueError:
        raise click.BadParameter(
            f"{at_!r} is not an ISO date and time", param_hint="--at"
        ) from None
    print_demo(run_demo(when=when, seed=seed, card_profile=profile), click.echo)


@main.group()
def card() -> None:
    """Emulated user cards and PSAMs: profiles, memory files, APDUs."""


@card.command("list")
@friendly_errors
def card_list() -> None:
    """The shipped card profiles."""
    for name in shipped_profiles():
        image = load_image(name)
        click.echo(f"{name:<16} {image.kind:<10} {image.description}")


def open_target(target: str) -> tuple[NvmBackend, IssuedCard | None]:
    """A memory file (…nvm.json) is used in place; a profile is issued into memory."""
    if target.endswith(MEMORY_SUFFIX):
        return FileBackend(Path(target)), None
    issued = issue_profile(target, settings().hsm())
    return MemoryBackend(issued.cells), issued


@card.command("show")
@click.argument("target")
@friendly_errors
def card_show(target: str) -> None:
    """Decode a card: TARGET is a profile name, an image file, or a memory file (*.nvm.json)."""
    backend, issued = open_target(target)
    cells, _ = backend.load()
    print_sections(describe(cells))
    if issued is not None and issued.escape_bill is not None:
        print_sections([("escape bill", bill_rows(issued.escape_bill))])


@card.command("new")
@click.argument("profile")
@click.option("--out", type=click.Path(path_type=Path), help="Memory file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing memory file.")
@click.option("--host", "host_url", help="Also register the card with this host (URL).")
@click.option("--ak", help="Access key for --host (scope cards.issue).")
@click.option("--sk", help="Secret key for --host.")
@click.option("--holder", help="Cardholder name in the host's registry (default: PROFILE).")
@click.option(
    "--kind",
    type=click.Choice(["single", "master", "sub"]),
    default="single",
    show_default=True,
    help="Registry kind; a sub card needs --master.",
)
@click.option("--master", help="The master card's ASN (20 digits) of a sub card.")
@friendly_errors
def card_new(
    profile: str,
    out: Path | None,
    force: bool,
    host_url: str | None,
    ak: str | None,
    sk: str | None,
    holder: str | None,
    kind: str,
    master: str | None,
) -> None:
    """Issue PROFILE into a persistent memory file that `card apdu` and `card show` can use.

    With --host the card is also registered with the host under its ASN (POST /v1/cards)."""
    issued = issue_profile(profile, settings().hsm())
    path = out or data_dir() / "cards" / f"{issued.image.name}{MEMORY_SUFFIX}"
    if not path.name.endswith(MEMORY_SUFFIX):
        raise click.BadParameter(
            f"a memory file name ends with {MEMORY_SUFFIX}", param_hint="--out"
        )
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (use --force to overwrite)")
    if host_url is not None:  # registered first: a refusal leaves no memory file behind
        if not ak or not sk or "ef15" not in issued.cells:
            raise click.UsageError("--host needs --ak and --sk, and a fuel card profile")
        asn = PublicAppData.from_bytes(issued.cells["ef15"]).asn
        with HostClient(host_url, ak, sk) as client:
            registered = client.issue_card(
                issued.image.name, holder or issued.image.name, kind=kind, master=master, asn=asn
            )
        click.echo(f"registered {registered['asn']} ({registered['kind']}) with {host_url}")
    if path.exists():
        path.unlink()
        path.with_name(path.name + ".journal").unlink(missing_ok=True)
    FileBackend(path, issued.cells)
    click.echo(str(path))


@card.command("apdu")
@click.argument("target")
@click.argument("apdus", nargs=-1, required=True)
@click.option("--seed", default=1, show_default=True, help="Seed of the card's RNG.")
@friendly_errors
def card_apdu(target: str, apdus: tuple[str, ...], seed: int) -> None:
    """Send hex APDUs to TARGET (a profile, or a memory file whose state they change)."""
    commands = []
    for text in apdus:
        try:
            commands.append(bytes.fromhex(text))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not hex", param_hint="APDUS") from None
    backend, _ = open_target(target)
    exchanges: list[Exchange] = []
    reader = TracingReader(
        InProcReader(make_applet(backend, SeededRng(seed)), "card"), [exchanges.append]
    )
    reader.connect()
    for command in commands:
        reader.transmit(command)
    for number, exchange in enumerate(exchanges, 1):
        for line in describe_exchange(number, exchange):
            click.echo(line)


@card.command("serve")
@click.argument("specs", nargs=-1, required=True)
@click.option("--seed", default=1, show_default=True, help="RNG seed of the first card (+1 each).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where vpcd listens.")
@click.option("--base-port", default=VPCD_BASE_PORT, show_default=True, help="vpcd port of slot 0.")
@click.option("--fresh", is_flag=True, help="Issue the cards again, dropping their saved state.")
@friendly_errors
def card_serve(specs: tuple[str, ...], seed: int, host: str, base_port: int, fresh: bool) -> None:
    """Serve cards into pcscd through vsmartcard-vpcd: SPEC is PROFILE or PROFILE@SLOT.

    PROFILE may also be `phone` or `phone-NAME`: the NFC (HCE) card of a simulated phone. Each
    card keeps its state in a memory file (see `fuelsim card new`). Lines on standard input
    control the slots: remove N, insert N, reset N, tear N, arm N PIN (a phone, for one tap),
    status, quit. Ctrl-C or SIGTERM stops cleanly.
    """
    server = Server(
        parse_specs(list(specs)),
        data_dir=data_dir(),
        hsm=settings().hsm(),
        seed=seed,
        host=host,
        base_port=base_port,
        fresh=fresh,
        say=click.echo,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def read_commands() -> None:
        for line in sys.stdin:
            if not server.command(line):
                stop.set()
                return

    server.start()
    threading.Thread(target=read_commands, name="serve-commands", daemon=True).start()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    click.echo("stopped: every card removed")


@main.group()
def hsm() -> None:
    """The mock HSM."""


@hsm.command("keys")
@click.option("--key-set", default="DEV", show_default=True, help="Key set to list.")
@click.option(
    "--key-set-file",
    "files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Load a key-set file (fuelsim.keyset/1) first; may be repeated.",
)
@friendly_errors
def hsm_keys(key_set: str, files: tuple[Path, ...]) -> None:
    """Master key labels and check values (keys never leave the HSM)."""
    device = MockHsm.with_key_set_files(files) if files else settings().hsm()
    click.echo(f"key set {key_set}")
    for label, kcv in key_report(device, key_set):
        click.echo(f"  {label:<6} KCV {kcv}")


@hsm.command("which")
@click.argument("asn")
@click.option("--issuer", help="Issuer id (16 hex digits), for maps that use it.")
@friendly_errors
def hsm_which(asn: str, issuer: str | None) -> None:
    """The key set the key map gives a card: ASN is 20 hex digits (or a 19-digit card number)."""
    try:
        raw = card_number_to_asn(asn) if len(asn) == 19 else bytes.fromhex(asn)
        issuer_id = bytes.fromhex(issuer) if issuer else None
    except ValueError:
        raise click.BadParameter("ASN and issuer are hex (or a 19-digit card number)") from None
    click.echo(settings().key_map_or_dev().key_set_for(asn=raw, issuer=issuer_id))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--seconds", default=2.0, show_default=True, help="Time per measurement.")
@click.option(
    "--no-vpcd", is_flag=True, help="Skip the virtual PC/SC reader figures (they need pcscd)."
)
@click.option("--no-host", is_flag=True, help="Skip the host figures (ingest, reconcile_1m_s).")
@friendly_errors
def bench(as_json: bool, seconds: float, no_vpcd: bool, no_host: bool) -> None:
    """Measure throughput of the emulated card, PSAM and flows on this machine.

    The vpcd_* figures go through pyscard, pcscd and vsmartcard-vpcd (pcscd is started when it
    is not running and this user may start it).
    """
    figures = run_bench(
        seconds,
        progress=lambda step: click.echo(f"measuring {step}…", err=True),
        vpcd=not no_vpcd,
        host=not no_host,
    )
    if as_json:
        click.echo(json.dumps(figures))
        return
    width = max(map(len, figures))
    for key, value in figures.items():
        click.echo(f"{key:<{width}}  {value:>12,}")


main.add_command(trace)
main.add_command(run)


@main.group()
def host() -> None:
    """The central host: signed HTTP API, ledger, blacklist, bill upload."""


@host.command("serve")
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--db",
    help="SQLite file (default: <data>/host.sqlite), or a postgresql://user:pass@host/dbname URL.",
)
@click.option(
    "--dev-key", is_flag=True, help="Create (once) and print a terminal AK/SK for dev use."
)
@click.option(
    "--promotions",
    "promotions_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Load these promotion rules (fuelsim.promotions/1) before serving.",
)
@click.option(
    "--test-knobs",
    "knobs_file",
    is_flag=False,
    flag_value="",
    default=None,
    help="Turn test knobs on (PUT /v1/test/knobs), starting with FILE's (fuelsim.knobs/1). "
    "A restart knob exits with status 75.",
)
@friendly_errors
def host_serve(
    bind: str,
    port: int,
    db: str | None,
    dev_key: bool,
    promotions_file: Path | None,
    knobs_file: str | None,
) -> None:
    """Serve the host API (OpenAPI at /openapi.json) until Ctrl-C."""
    from host_sim.knobs import Knobs
    from host_sim.pg import is_url
    from host_sim.server import serve

    location = db or str(data_dir() / "host.sqlite")
    if not is_url(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    rules = read_rules(promotions_file) if promotions_file else []
    knobs = (
        None if knobs_file is None else Knobs(read_knobs(Path(knobs_file)) if knobs_file else [])
    )
    status = serve(
        bind,
        port,
        location,
        settings().hsm(),
        dev_key=dev_key,
        out=click.echo,
        promotions=rules,
        test_knobs=knobs,
    )
    if status:
        sys.exit(status)


host.add_command(promotions)
host.add_command(openapi)
host.add_command(reconcile_command)
host.add_command(clear_command)
host.add_command(report_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
