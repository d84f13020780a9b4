"""The virtual-reader figures of `fuelsim bench` are measured through the real stack."""

from __future__ import annotations

from terminal_sim.bench import make_rig
from terminal_sim.bench_vpcd import bench_vpcd
from terminal_sim.pcsc_reader import PcscContext


def test_bench_vpcd_reports_round_trips_and_fuellings(pcscd: PcscContext) -> None:
    figures = bench_vpcd(make_rig(), seconds=0.2)
    assert set(figures) == {
        "vpcd_apdu_rtt_ms_median",
        "vpcd_apdu_rtt_ms_p99",
        "vpcd_fuellings_per_s",
        "vpcd_fuelling_ms",
    }
    assert 0 < figures["vpcd_apdu_rtt_ms_median"] <= figures["vpcd_apdu_rtt_ms_p99"]
    assert figures["vpcd_fuellings_per_s"] > 0
    assert abs(figures["vpcd_fuellings_per_s"] * figures["vpcd_fuelling_ms"] - 1000) < 1
