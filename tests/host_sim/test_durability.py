"""Acknowledged bills survive a killed server; concurrent uploads book each bill once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx

from terminal_sim.host_client import BillResult, HostClient

from .conftest import TERMINAL, TERMINAL_AK, TERMINAL_SK, Flows, Host

SERVER = textwrap.dedent(
    """
    import sys
    from hsm_mock.hsm import MockHsm
    from host_sim.access import DEFAULT_SCOPES, add_access_key
    from host_sim.db import Database
    from host_sim.server import serve

    path, port, ak, sk, terminal = sys.argv[1:]
    add_access_key(Database(path), ak, sk, "terminal", DEFAULT_SCOPES["terminal"], terminal)
    serve("127.0.0.1", int(port), path, MockHsm(), log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_acknowledged_bills_survive_a_killed_server(tmp_path: Path, flows: Flows) -> None:
    path, port = tmp_path / "host.sqlite", free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), str(port), TERMINAL_AK, TERMINAL_SK, TERMINAL],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the host did not start"
            time.sleep(0.05)
        with HostClient(base, TERMINAL_AK, TERMINAL_SK) as client:
            results = client.upload_bills([*flows.fuellings, flows.escape])
        os.kill(process.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only what was committed
        process.wait(10)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    assert [r.status for r in results] == ["accepted"] * 4
    conn = sqlite3.connect(path)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM bills ORDER BY id")]
        assert ids == [r.bill_id for r in results]
        assert conn.execute("SELECT COUNT(*), SUM(amount) FROM postings").fetchone() == (8, 0)
    finally:
        conn.close()


def test_concurrent_uploads_of_the_same_bills_book_each_once(host: Host, flows: Flows) -> None:
    bills = [*flows.fuellings, flows.escape, flows.redebit]
    answers: list[list[BillResult]] = []
    start = threading.Barrier(4)

    def upload() -> None:
        with host.client() as client:
            start.wait()
            answers.append(client.upload_bills(bills))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 4
    for index in range(len(bills)):
        statuses = sorted(answer[index].status for answer in answers)
        assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"]
        assert len({answer[index].bill_id for answer in answers}) == 1
    assert host.scalar("SELECT COUNT(*) FROM bills") == 5
    assert host.scalar("SELECT COUNT(*) FROM ledger_transactions") == 4  # escape+re-debit once
    assert host.scalar("SELECT SUM(amount) FROM postings") == 0
