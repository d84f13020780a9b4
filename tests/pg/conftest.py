"""PostgreSQL fixtures: one throwaway cluster per test session (see cluster.py), a fresh
database per test, and the host of tests/host_sim served over that database.

The cluster fixture fails the session when PostgreSQL cannot be started: these tests are
never skipped for want of a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cardcore.clockrng import ManualClock
from host_sim.access import DEFAULT_SCOPES, add_access_key
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.server import BackgroundServer
from hsm_mock.hsm import MockHsm
from tests.host_sim.conftest import (
    OPS_AK,
    OPS_SCOPES,
    OPS_SK,
    START,
    TERMINAL,
    TERMINAL_AK,
    TERMINAL_SK,
    Host,
    Switch,
    flows,
    served,
)

from .cluster import Cluster, start_cluster

__all__ = ["flows", "served"]  # fixtures shared with tests/host_sim


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()  # raises (the session fails) when PostgreSQL cannot start
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"host_{uuid.uuid4().hex[:12]}"
    yield pg_cluster.create_database(name)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class PgHost(Host):
    """tests/host_sim's Host over PostgreSQL: `sql` reads through the host's own adapter."""

    def sql(self, query: str, *args: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(query, args).fetchall())


@pytest.fixture
def host(hsm: MockHsm, pg_url: str, served: tuple[BackgroundServer, Switch]) -> Iterator[Host]:
    server, switch = served
    clock = ManualClock(START)
    app = create_app(pg_url, hsm, clock)
    db: Database = app.state.host.db
    add_access_key(db, TERMINAL_AK, TERMINAL_SK, "terminal", DEFAULT_SCOPES["terminal"], TERMINAL)
    add_access_key(db, OPS_AK, OPS_SK, "app", OPS_SCOPES, "operations")
    switch.target = app
    try:
        yield PgHost(app, db, Path(pg_url), clock, server)
    finally:
        switch.target = None
        db.close()
