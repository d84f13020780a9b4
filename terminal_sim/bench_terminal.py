"""The terminal part of `fuelsim bench`: whole dispenser fuellings (insert, preset, ticks,
hang up, bill) with the crash-safe journal on disk and in memory, and the scenario suite."""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

from card_profiles.emulator import in_memory
from cardcore.clockrng import ManualClock, SeededRng
from terminal_sim.bench import Rig
from terminal_sim.dispenser import Dispenser, Grade, Preset
from terminal_sim.events import EventBus
from terminal_sim.journal import Journal
from terminal_sim.readers import InProcReader
from terminal_sim.scenarios import discover, load_scenario, run_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
NOZZLES = {1: Grade(0x0092, "92#", 750)}


def terminal_fuellings_per_s(rig: Rig, seconds: float, journal_path: str) -> float:
    journal = Journal(journal_path)
    try:

        def fresh() -> Dispenser:
            card = InProcReader(in_memory(dict(rig.card_cells), SeededRng(1)), "card")
            psam = InProcReader(in_memory(dict(rig.psam_cells), SeededRng(2)), "psam")
            pump = Dispenser(
                "bench",
                card,
                psam,
                NOZZLES,
                bus=EventBus(),
                clock=ManualClock(datetime(2026, 11, 22, 10, 0)),
                journal=journal,
            )
            pump.start()
            return pump

        pump, count = fresh(), 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or count == 0:
            if count and count % 10_000 == 0:
                pump = fresh()  # a fresh card before its counters run out
            pump.insert_card("999999")
            pump.lift_nozzle(Preset(1, amount=750))
            pump.tick(2)
            pump.hang_up()
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        journal.close()


def bench_terminals(rig: Rig, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fuelsim-bench-") as folder:
        durable = terminal_fuellings_per_s(rig, seconds, str(Path(folder) / "journal.sqlite"))
    figures = {
        "terminal_fuellings_per_s_durable": round(durable, 1),
        "terminal_fuellings_per_s_memory": round(
            terminal_fuellings_per_s(rig, seconds, ":memory:"), 1
        ),
    }
    if SCENARIOS.is_dir():  # a source checkout: time the shipped scenario suite in process
        scenarios = [load_scenario(path) for path in discover([SCENARIOS])]
        start = time.perf_counter()
        results = [run_scenario(scenario, "inproc") for scenario in scenarios]
        figures["scenario_suite_s"] = round(time.perf_counter() - start, 3)
        figures["scenario_suite_count"] = len(results)
        figures["scenario_suite_failed"] = sum(not r.passed for r in results)
    return figures
