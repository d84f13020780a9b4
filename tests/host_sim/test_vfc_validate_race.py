"""Two pumps (or eight) racing one code over HTTP against the real uvicorn server and SQLite
file: exactly one approval, every other answer E_REPLAYED, and one hold in the ledger."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from host_sim import ledger
from terminal_sim.host_client import HostError

from .conftest import Host
from .fleet_helpers import COMPANY, issue_and_provision, setup_fleet, terminal, top_up

RACERS = 8


def race(host: Host, method: str, data: str) -> list[Any]:
    barrier = threading.Barrier(RACERS)
    results: list[Any] = [None] * RACERS
    clients = [terminal(host, second=bool(i % 2)) for i in range(RACERS)]

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = clients[i].vfc_authorize(
                method, data, pump=1 + i % 2, product="92", amount=20_000
            )
        except HostError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return results


@pytest.mark.parametrize("method", ["qr", "numeric"])
def test_same_code_at_once_exactly_one_wins(host: Host, method: str) -> None:
    setup_fleet(host)
    top_up(host, 1_000_000)
    phone = issue_and_provision(host)
    now = host.clock.now()
    data = phone.qr(now) if method == "qr" else phone.numeric(now)
    results = race(host, method, data)
    approved = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, HostError)]
    assert len(approved) == 1, results
    assert {(r.code, r.status) for r in refused} == {("E_REPLAYED", 409)}
    assert len(refused) == RACERS - 1
    assert host.scalar("SELECT COUNT(*) FROM vfc_payments") == 1
    assert host.scalar("SELECT COUNT(*) FROM vfc_uses") == 1
    assert host.scalar("SELECT used FROM vfc_luks WHERE luk_index = 0") == 1
    with host.db.connect() as conn:
        assert ledger.balance(conn, f"fleet:{COMPANY}:hold") == 20_000
