"""SIGKILL the host in the middle of a batch upload: after a restart every acknowledged bill is
there exactly once, and re-sending everything books the rest once and the acknowledged ones
never again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from host_sim.billgen import FUELLING, BillFactory, asn_for, term_for
from hsm_mock.hsm import MockHsm
from terminal_sim.host_client import HostClient, HostError

from .test_durability import free_port

STATION_AK, STATION_SK = "st-kill", "station-secret-kill-0123456789ab"
TERM = term_for(7, 1)
BATCH, BATCHES = 100, 12

SERVER = textwrap.dedent(
    """
    import sys
    from hsm_mock.hsm import MockHsm
    from host_sim.access import add_access_key, add_terminal
    from host_sim.db import Database
    from host_sim.server import serve

    path, port, ak, sk, terminal, first = sys.argv[1:]
    if first == "1":
        db = Database(path)
        add_access_key(db, ak, sk, "station", ["bills.write"], "ST-KILL")
        add_terminal(db, terminal, "ST-KILL")
        db.close()
    serve("127.0.0.1", int(port), path, MockHsm(), log_level="warning")
    """
)


def start(path: Path, port: int, first: bool) -> subprocess.Popen[bytes]:
    args = [str(path), str(port), STATION_AK, STATION_SK, TERM.hex(), "1" if first else "0"]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, *args],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the host did not start"
        time.sleep(0.05)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)  # no shutdown, no checkpoint
        process.wait(10)


def rows(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT term, psam_ttc FROM bills ORDER BY id").fetchall()
    finally:
        conn.close()


def test_killed_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    factory = BillFactory(MockHsm())
    when = datetime(2026, 11, 22, 6, 0)
    bills = [
        factory.paid(
            bill_type=FUELLING,
            term=TERM,
            psam_ttc=i + 1,
            asn=asn_for(i % 50),
            ctc=2 * (i // 50) + 2,
            amount=500 + i,
            volume=100 + i,
            when=when + timedelta(seconds=i),
            bill_ttc=i + 1,
        )
        for i in range(BATCH * BATCHES)
    ]
    batches = [bills[i : i + BATCH] for i in range(0, len(bills), BATCH)]
    path, port = tmp_path / "host.sqlite", free_port()
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[int] = []  # indexes of the batches the host answered
    in_flight = threading.Event()
    failed: list[HostError] = []

    def uploader() -> None:
        with HostClient(base, STATION_AK, STATION_SK, timeout=10) as client:
            for number, batch in enumerate(batches):
                if number == 3:
                    in_flight.set()  # the fourth batch is on its way: kill the host now
                try:
                    results = client.upload_bills(batch, terminal_id=TERM.hex())
                except HostError as error:
                    failed.append(error)
                    return
                assert {r.status for r in results} == {"accepted"}
                acknowledged.append(number)

    process = start(path, port, first=True)
    try:
        thread = threading.Thread(target=uploader)
        thread.start()
        assert in_flight.wait(30)
        time.sleep(0.005)
        kill(process)
        thread.join(30)
    finally:
        kill(process)
    assert failed, "the host answered every batch: it was not killed mid-upload"
    assert 3 <= len(acknowledged) < BATCHES
    stored = rows(path)
    assert len(stored) == len(set(stored)), "a bill stored twice"
    for number in acknowledged:  # every acknowledged bill is there, once
        for bill in batches[number]:
            assert stored.count((TERM.hex().upper(), bill.psam_ttc)) == 1
    # Restarted on the same file and port, the terminal sends everything it was not answered
    # for, and, to be sure, the acknowledged batches again: those are duplicates.
    process = start(path, port, first=False)
    try:
        with HostClient(base, STATION_AK, STATION_SK, timeout=10) as client:
            results = client.upload_bills(bills, terminal_id=TERM.hex())
    finally:
        kill(process)
    done = {
        index for number in acknowledged for index in range(number * BATCH, (number + 1) * BATCH)
    }
    for index, result in enumerate(results):
        expected = {"duplicate"} if index in done else {"accepted", "duplicate"}
        assert result.status in expected, (index, result)
    stored = rows(path)
    assert len(stored) == len(bills) == len(set(stored))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COALESCE(SUM(amount), 0) FROM postings").fetchone() == (0,)
        booked = conn.execute("SELECT COUNT(*) FROM ledger_transactions").fetchone()[0]
    finally:
        conn.close()
    assert booked == len(bills)  # one sale each, none twice
