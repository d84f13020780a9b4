"""`fuelsim bench`: throughput of the emulated card and PSAM, in process, with no disk.

fuellings_per_s: full grey-lock fuellings (insertion reads, PIN, lock, unlock, bill TMAC).
purchases_per_s: ED purchases with the PSAM (card selected and PIN verified once per card).
apdus_per_s: the APDUs exchanged inside the fuelling runs, per second.
fuelling_crypto_floor_ratio: a fuelling's time over the time of exactly the cardcore.crypto
calls it made, recorded during one fuelling and replayed alone in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from card_profiles.emulator import in_memory
from card_profiles.nvm import Cells
from cardcore import commands as cmd
from cardcore import crypto
from cardcore.clockrng import SeededRng
from cardcore.ports import Reader
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.fuelling import PsamData, Sale, fuel, read_card, read_psam
from terminal_sim.issuing import issue_profile
from terminal_sim.purchase import purchase
from terminal_sim.readers import InProcReader, TracingReader

WHEN = datetime(2026, 11, 22, 10, 0, 0)
SALE = Sale(nozzle=1, grade=0x0092, price=750, volume=100)
CARD_REFRESH = 10_000  # fresh card memory before the counters run out (2 CTCs per fuelling)
CRYPTO_FUNCTIONS = (
    "des_encrypt",
    "tdes_encrypt",
    "mac_session",
    "mac_retail",
    "diversify",
    "purchase_key",
    "tac_key",
    "fold_key",
    "kcv",
    "session_key_load",
    "session_key_online_unlock",
    "session_key_purchase",
    "session_key_grey_lock",
)


@dataclass(frozen=True)
class Station:
    """A dispenser's card slot and PSAM (read once, as at start-up)."""

    card_reader: Reader
    card: Channel
    psam: Channel
    psam_data: PsamData

    def fuelling(self) -> None:
        self.card_reader.connect()  # the card is inserted
        fuel(
            self.card,
            self.psam,
            self.psam_data,
            pin="999999",
            sale=SALE,
            clock_now=WHEN,
            unlock_at=WHEN + timedelta(seconds=30),
        )


@dataclass(frozen=True)
class Rig:
    card_cells: Cells
    psam_cells: Cells

    def station(self, tracer: list[Any] | None = None) -> Station:
        card: Reader = InProcReader(in_memory(dict(self.card_cells), SeededRng(1)), "card")
        psam: Reader = InProcReader(in_memory(dict(self.psam_cells), SeededRng(2)), "psam")
        if tracer is not None:
            card = TracingReader(card, [tracer.append])
            psam = TracingReader(psam, [tracer.append])
        psam.connect()
        psam_channel = Channel(psam)
        return Station(card, Channel(card), psam_channel, read_psam(psam_channel))


def make_rig() -> Rig:
    hsm = MockHsm()
    card = issue_profile("normal", hsm).cells
    # A purse that lasts the whole run: the benchmark refreshes the card only for its counters.
    card = {**card, "et.balance": (4_000_000_000).to_bytes(4, "big")}
    return Rig(card, issue_profile("psam-dispenser", hsm).cells)


def timed(run: Callable[[int], None], seconds: float) -> tuple[int, float]:
    """Call run(i) for about `seconds`; returns (count, elapsed)."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        run(count)
        count += 1
        if count % 64 == 0 and time.perf_counter() >= deadline:
            return count, time.perf_counter() - start


def bench_fuellings(rig: Rig, seconds: float) -> tuple[float, float]:
    """Fuellings per second and seconds per fuelling."""
    station = rig.station()

    def run(i: int) -> None:
        nonlocal station
        if i and i % CARD_REFRESH == 0:
            station = rig.station()
        station.fuelling()

    count, elapsed = timed(run, seconds)
    return count / elapsed, elapsed / count


def bench_purchases(rig: Rig, seconds: float) -> float:
    def prepare() -> tuple[Channel, Channel, Any, bytes]:
        station = rig.station()
        station.card_reader.connect()
        data = read_card(station.card)
        station.card.send(cmd.verify("999999"))
        return station.card, station.psam, data.public, station.psam_data.term

    state = prepare()

    def run(i: int) -> None:
        nonlocal state
        if i and i % CARD_REFRESH == 0:
            state = prepare()
        purchase(state[0], state[1], state[2], state[3], 1, WHEN)

    count, elapsed = timed(run, seconds)
    return count / elapsed


@contextmanager
def recording_crypto(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> Iterator[None]:
    """Record the top-level cardcore.crypto calls made inside the block."""
    originals = {name: getattr(crypto, name) for name in CRYPTO_FUNCTIONS}
    depth = 0

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def recorder(*args: Any) -> Any:
            nonlocal depth
            if depth == 0:
                calls.append((function, args))
            depth += 1
            try:
                return function(*args)
            finally:
                depth -= 1

        return recorder

    for name, function in originals.items():
        setattr(crypto, name, wrap(function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(crypto, name, function)


def bench_crypto_floor(rig: Rig, seconds: float) -> tuple[float, int]:
    """Seconds per fuelling's worth of crypto calls done alone, and how many calls that is."""
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    station = rig.station()
    station.fuelling()  # warm the caches as the fuelling loop has them
    known = crypto.cached_keys()
    with recording_crypto(calls):
        station.fuelling()
    # Keys new to this fuelling (session keys) get a fresh key schedule in every real fuelling;
    # drop their cached ciphers before each replay so the floor pays for them too.
    fresh = crypto.cached_keys() - known
    count, elapsed, deadline = 0, 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        crypto.forget_keys(fresh)
        start = time.perf_counter()
        for function, args in calls:
            function(*args)
        elapsed += time.perf_counter() - start
        count += 1
    return elapsed / count, len(calls)


def apdus_per_fuelling(rig: Rig) -> int:
    exchanges: list[Any] = []
    station = rig.station(exchanges)
    exchanges.clear()
    station.fuelling()
    return len(exchanges)


def run_bench(
    seconds: float = 2.0,
    progress: Callable[[str], None] = lambda _: None,
    vpcd: bool = True,
    host: bool = True,
) -> dict[str, float]:
    rig = make_rig()
    rig.station().fuelling()  # warm-up
    progress("fuellings")
    fuellings_per_s, per_fuelling = bench_fuellings(rig, seconds)
    progress("purchases")
    purchases_per_s = bench_purchases(rig, seconds)
    progress("crypto floor")
    floor, crypto_calls = bench_crypto_floor(rig, seconds)
    apdus = apdus_per_fuelling(rig)
    figures = {
        "apdus_per_s": round(fuellings_per_s * apdus, 1),
        "purchases_per_s": round(purchases_per_s, 1),
        "fuellings_per_s": round(fuellings_per_s, 1),
        "fuelling_crypto_floor_ratio": round(per_fuelling / floor, 3),
        "fuelling_us": round(per_fuelling * 1e6, 1),
        "fuelling_crypto_floor_us": round(floor * 1e6, 1),
        "apdus_per_fuelling": apdus,
        "crypto_calls_per_fuelling": crypto_calls,
    }
    from terminal_sim.bench_terminal import bench_terminals  # loads the terminal stack

    progress("terminals and scenarios")
    figures.update(bench_terminals(rig, seconds))
    if vpcd:
        from terminal_sim.bench_vpcd import bench_vpcd  # loads pyscard only when asked

        progress("virtual PC/SC reader")
        figures.update(bench_vpcd(rig, seconds))
    if host:
        from terminal_sim.bench_host import bench_host  # a real server and SQLite file

        progress("host ingest and reconciliation")
        figures.update(bench_host(seconds))
        from terminal_sim.bench_vfc import bench_token_validations

        progress("virtual card token validations")
        figures["token_validations_per_s"] = round(bench_token_validations(seconds), 1)
    return figures
