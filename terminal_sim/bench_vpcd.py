"""The virtual-reader part of `fuelsim bench`: APDU round trips and full fuellings through
pyscard → pcscd → vsmartcard-vpcd → the emulated card and PSAM (served from this process)."""

from __future__ import annotations

import statistics
import time

from card_profiles.emulator import in_memory
from cardcore import commands as cmd
from cardcore import layout
from cardcore.clockrng import SeededRng
from terminal_sim.bench import SALE, WHEN, Rig
from terminal_sim.channel import Channel
from terminal_sim.fuelling import fuel, read_psam
from terminal_sim.pcsc_reader import PcscContext, PcscReader
from terminal_sim.pcscd import VPCD_READERS, ensure_pcscd, stop_pcscd
from terminal_sim.vpcd import VirtualSlot


def bench_vpcd(rig: Rig, seconds: float) -> dict[str, float]:
    started = ensure_pcscd()
    context = PcscContext()
    slots = [
        VirtualSlot(in_memory(dict(rig.card_cells), SeededRng(1)), 0),
        VirtualSlot(in_memory(dict(rig.psam_cells), SeededRng(2)), 1),
    ]
    try:
        for number, slot in enumerate(slots):
            slot.insert()
            context.wait_for(VPCD_READERS[number], True, timeout=10)
        card_reader, psam_reader = (PcscReader(name, context) for name in VPCD_READERS)
        card_reader.connect()
        psam_reader.connect()
        card, psam = Channel(card_reader), Channel(psam_reader)
        card.send(cmd.select(layout.ET_AID))
        balance = bytes(cmd.get_balance())
        for _ in range(200):  # warm-up
            card_reader.transmit(balance)
        rtts: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            card_reader.transmit(balance)
            rtts.append(time.perf_counter() - start)
        rtts.sort()
        psam_data = read_psam(psam)
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline or count == 0:
            card_reader.connect()  # the card is inserted for each fuelling
            fuel(card, psam, psam_data, pin="999999", sale=SALE, clock_now=WHEN, unlock_at=WHEN)
            count += 1
        elapsed = time.perf_counter() - start
        card_reader.disconnect()
        psam_reader.disconnect()
    finally:
        for number, slot in enumerate(slots):
            slot.remove()
            context.wait_for(VPCD_READERS[number], False, timeout=10)  # leave the slots empty
        context.close()
        stop_pcscd(started)
    return {
        "vpcd_apdu_rtt_ms_median": round(statistics.median(rtts) * 1000, 4),
        "vpcd_apdu_rtt_ms_p99": round(rtts[int(len(rtts) * 0.99)] * 1000, 4),
        "vpcd_fuellings_per_s": round(count / elapsed, 1),
        "vpcd_fuelling_ms": round(elapsed / count * 1000, 3),
    }
