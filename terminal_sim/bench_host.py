"""The host part of `fuelsim bench`: bill ingest over HTTP, and reconciling a large day.

host_ingest_bills_per_s: valid bills (card TAC and PSAM TMAC made with DEV keys by
host_sim.billgen) posted in batches of 100 by a station key to a real uvicorn server over a
real SQLite file (WAL, synchronous=FULL); every bill is checked by the HSM and booked.
reconcile_1m_s: one generated day of 1,000,000 bills across 50 stations, with planted
discrepancies, reconciled in memory (generation is not timed).
"""

from __future__ import annotations

import gc
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cardcore.records import Bill
from host_sim.access import add_access_key, add_terminal
from host_sim.app import create_app
from host_sim.billgen import FUELLING, BillFactory, asn_for, term_for
from host_sim.daygen import generate_day
from host_sim.reconcile import reconcile
from host_sim.server import BackgroundServer
from hsm_mock.hsm import MockHsm
from terminal_sim.host_client import HostClient

BATCH = 100
UPLOADERS = 2  # concurrent uploads: one's CPU work overlaps the other's fsync
PUMPS = 8
CARDS = 500
INGEST_RATE_GUESS = 8_000  # bills made up front per second of measurement
STATION_AK, STATION_SK = "bench-station", "bench-station-secret-0123456789"


def _bills(factory: BillFactory, count: int, start: datetime) -> list[list[Bill]]:
    """`count` valid fuelling bills, grouped by pump (each pump's PSAM TTC runs from 1)."""
    by_pump: list[list[Bill]] = [[] for _ in range(PUMPS)]
    for i in range(count):
        pump, card = i % PUMPS, i % CARDS
        by_pump[pump].append(
            factory.paid(
                bill_type=FUELLING,
                term=term_for(1, pump + 1),
                psam_ttc=len(by_pump[pump]) + 1,
                asn=asn_for(card),
                ctc=2 * (i // CARDS) + 2,
                amount=500 + i % 9_500,
                volume=100 + i % 5_000,
                when=start + timedelta(seconds=i),
                bill_ttc=i + 1,
            )
        )
    return by_pump


def _uploader(base_url: str, pumps: list[list[Bill]], deadline: float) -> tuple[int, int]:
    """Upload the pumps' bills in batches, round robin, until the deadline: (accepted, sent)."""
    accepted = sent = round_no = 0
    with HostClient(
        base_url,
        STATION_AK,
        STATION_SK,
        lambda: datetime.now(UTC),
    ) as client:
        while round_no == 0 or time.perf_counter() < deadline:  # one batch at least
            bills = pumps[round_no % len(pumps)]
            offset = (round_no // len(pumps)) * BATCH
            batch = bills[offset : offset + BATCH]
            if not batch:
                break  # ran out of prepared bills: the figure stands on what was sent
            results = client.upload_bills(batch, terminal_id=batch[0].term.hex())
            accepted += sum(r.status == "accepted" for r in results)
            sent += len(batch)
            round_no += 1
    return accepted, sent


def bench_host_ingest(seconds: float) -> float:
    """Bills accepted per second, uploaded in batches of 100 by two uploaders (as two pump
    controllers of a station would) to a real server and SQLite file."""
    hsm = MockHsm()
    factory = BillFactory(hsm)
    start = datetime(2026, 11, 22, 6, 0)
    by_pump = _bills(factory, max(2_000, int(seconds * INGEST_RATE_GUESS)), start)
    with tempfile.TemporaryDirectory(prefix="fuelsim-bench-host-") as folder:
        app = create_app(Path(folder) / "host.sqlite", hsm, rate_limit_per_minute=None)
        db = app.state.host.db
        add_access_key(db, STATION_AK, STATION_SK, "station", ["bills.write"], "ST-BENCH")
        for pump in range(PUMPS):
            add_terminal(db, term_for(1, pump + 1).hex(), "ST-BENCH")
        try:
            server = BackgroundServer(app)
            with server, ThreadPoolExecutor(UPLOADERS) as pool:
                began = time.perf_counter()
                deadline = began + seconds
                shares = [by_pump[k::UPLOADERS] for k in range(UPLOADERS)]
                counts = list(
                    pool.map(lambda pumps: _uploader(server.base_url, pumps, deadline), shares)
                )
                elapsed = time.perf_counter() - began
        finally:
            db.close()
    accepted, sent = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if accepted != sent:
        raise RuntimeError(f"ingest benchmark: only {accepted} of {sent} bills accepted")
    return accepted / elapsed


def bench_reconcile(bills: int) -> float:
    """Seconds to reconcile one generated day of `bills` bills across 50 stations."""
    day = generate_day(bills=bills, stations=50, seed=1, plant=10)
    # The day is loaded before the clock starts: settle the collector's debt from building it,
    # and keep its objects out of later collections, as in a process that loaded it long ago.
    gc.collect()
    gc.freeze()
    try:
        began = time.perf_counter()
        result = reconcile(day.records)
        elapsed = time.perf_counter() - began
    finally:
        gc.unfreeze()
    if result.counts() != day.truth.counts():
        raise RuntimeError("reconcile benchmark: findings differ from the planted truth")
    return elapsed


def bench_host(seconds: float) -> dict[str, float]:
    return {
        "host_ingest_bills_per_s": round(bench_host_ingest(seconds), 1),
        "reconcile_1m_s": round(bench_reconcile(1_000_000), 3),
    }
