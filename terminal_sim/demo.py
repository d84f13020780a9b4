"""`fuelsim demo`: one complete grey-lock fuelling between an emulated card and PSAM, traced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from card_profiles.emulator import in_memory
from cardcore.clockrng import SeededRng
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.fuelling import FuellingResult, Sale, fuel, read_psam
from terminal_sim.issuing import issue_profile
from terminal_sim.readers import Exchange, InProcReader, TracingReader
from terminal_sim.trace_format import bill_rows, describe_exchange, yuan

DEMO_SALE = Sale(nozzle=1, grade=0x0092, price=750, volume=2000)  # 20.00 L of 92# at 7.50
FUELLING_TIME = timedelta(seconds=90)


@dataclass(frozen=True)
class DemoRun:
    result: FuellingResult
    exchanges: list[Exchange]


def run_demo(
    *, when: datetime, seed: int = 1, card_profile: str = "normal", sale: Sale = DEMO_SALE
) -> DemoRun:
    hsm = MockHsm()
    exchanges: list[Exchange] = []
    card_applet = in_memory(issue_profile(card_profile, hsm).cells, SeededRng(seed))
    psam_applet = in_memory(issue_profile("psam-dispenser", hsm).cells, SeededRng(seed + 1))
    card = TracingReader(InProcReader(card_applet, "card"), [exchanges.append])
    psam = TracingReader(InProcReader(psam_applet, "psam"), [exchanges.append])
    card.connect()
    psam.connect()
    psam_channel = Channel(psam)
    psam_data = read_psam(psam_channel)
    result = fuel(
        Channel(card),
        psam_channel,
        psam_data,
        pin="999999",
        sale=sale,
        clock_now=when,
        unlock_at=when + FUELLING_TIME,
    )
    return DemoRun(result, exchanges)


def print_demo(run: DemoRun, out: Callable[[str], None] = print) -> None:
    out("Grey-lock fuelling: card 'normal' at dispenser 'psam-dispenser'")
    out("")
    for number, exchange in enumerate(run.exchanges, 1):
        for line in describe_exchange(number, exchange):
            out(line)
    total = sum(e.seconds for e in run.exchanges) * 1000
    out("")
    out(f"{len(run.exchanges)} APDUs, {total:.3f} ms in the card and PSAM")
    result = run.result
    out(f"balance {yuan(result.balance_before)} → {yuan(result.balance_after)}")
    out("")
    out("Bill")
    for label, value in bill_rows(result.bill):
        out(f"  {label:<14} {value}")
