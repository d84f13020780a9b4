"""The restart knob on the real `fuelsim host serve` process: it exits 75, a supervisor starts it
again on the same file, and the terminal's retry is stored once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from host_sim.access import DEFAULT_SCOPES, add_access_key
from host_sim.db import Database
from host_sim.knobs import RESTART_EXIT_STATUS
from terminal_sim.host_client import HostClient, HostUnavailable

from .conftest import TERMINAL, TERMINAL_AK, TERMINAL_SK, Flows

FUELSIM = Path(sys.executable).with_name("fuelsim")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(db: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    command = [str(FUELSIM), "host", "serve", "--port", str(port), "--db", str(db), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"host exited: {process.stdout.read() if process.stdout else ''!r}"
            )
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the host did not start")


def test_a_restart_knob_exits_75_and_the_retry_lands_once(tmp_path: Path, flows: Flows) -> None:
    db = tmp_path / "host.sqlite"
    add_access_key(
        Database(db), TERMINAL_AK, TERMINAL_SK, "terminal", DEFAULT_SCOPES["terminal"], TERMINAL
    )
    knobs = tmp_path / "knobs.yaml"
    knobs.write_text(
        "format: fuelsim.knobs/1\nknobs:\n  - {id: reboot, path: /v1/bills, action: restart}\n"
    )
    port = free_port()
    host = start(db, port, "--test-knobs", str(knobs))
    try:
        with HostClient(f"http://127.0.0.1:{port}", TERMINAL_AK, TERMINAL_SK) as client:
            try:
                client.upload_bills(flows.fuellings[:1])
            except HostUnavailable:
                pass
            else:
                raise AssertionError("the restart knob answered")
        assert host.wait(timeout=30) == RESTART_EXIT_STATUS
    finally:
        if host.poll() is None:
            host.kill()
    again = start(db, port)  # the supervisor's restart: same file, no knobs
    try:
        with HostClient(f"http://127.0.0.1:{port}", TERMINAL_AK, TERMINAL_SK) as client:
            (result,) = client.upload_bills(flows.fuellings[:1])
        assert result.status == "accepted"  # the dropped call had stored nothing
    finally:
        again.terminate()
        again.wait(timeout=30)
