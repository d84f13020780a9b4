"""`fuelsim host serve --db postgresql://…` as a real process: it migrates the empty database,
answers a signed bill upload, and what it acknowledged is in PostgreSQL after it is killed."""

import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg

from host_sim.access import DEFAULT_SCOPES, add_access_key
from host_sim.db import Database
from terminal_sim.host_client import HostClient
from tests.host_sim.conftest import TERMINAL, TERMINAL_AK, TERMINAL_SK, Flows

from .cluster import free_port

FUELSIM = os.path.join(os.path.dirname(sys.executable), "fuelsim")


def wait_healthy(process: subprocess.Popen[bytes], base: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = httpx.get(f"{base}/health", timeout=1)
            if answer.status_code == 200:
                health: dict[str, object] = answer.json()
                return health
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else b""
            raise AssertionError(f"the host exited: {output.decode(errors='replace')}")
        assert time.monotonic() < deadline, "the host did not start"
        time.sleep(0.1)


def test_serve_on_postgresql_books_a_signed_upload(pg_url: str, flows: Flows) -> None:
    port = free_port()
    process = subprocess.Popen(
        [FUELSIM, "host", "serve", "--port", str(port), "--db", pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = wait_healthy(process, f"http://127.0.0.1:{port}")
        db = Database(pg_url)  # the server created the schema; the key goes in beside it
        assert health["schema_version"] == db.version
        add_access_key(
            db, TERMINAL_AK, TERMINAL_SK, "terminal", DEFAULT_SCOPES["terminal"], TERMINAL
        )
        db.close()
        with HostClient(f"http://127.0.0.1:{port}", TERMINAL_AK, TERMINAL_SK) as client:
            results = client.upload_bills([*flows.fuellings, flows.escape])
            again = client.upload_bills(flows.fuellings[:1])
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no shutdown: only what was committed stays
        output = process.communicate(timeout=10)[0].decode(errors="replace")
    assert [r.status for r in results] == ["accepted"] * 4
    assert [r.status for r in again] == ["duplicate"]
    assert f"database {pg_url}" in output
    with psycopg.connect(pg_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM bills ORDER BY id")]
        assert ids == [r.bill_id for r in results]
        assert conn.execute("SELECT COUNT(*), SUM(amount) FROM postings").fetchone() == (8, 0)
        assert conn.execute("SELECT COUNT(*) FROM exceptions").fetchone() == (0,)
