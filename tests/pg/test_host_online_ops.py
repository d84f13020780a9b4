"""tests/host_sim/test_online_ops.py run again on PostgreSQL: loads authorised, confirmed by
another `OnlineOps` (a restarted host) and booked once; online unlocks; refusals that change
nothing. Its `host` reads the database through the host's own PostgreSQL adapter."""

from collections.abc import Iterator
from typing import Any

import pytest

from host_sim.db import Database
from hsm_mock.hsm import MockHsm
from tests.host_sim import test_online_ops
from tests.host_sim.test_online_ops import *  # noqa: F403


class PgOpsHost(test_online_ops.Host):
    """`path` holds the database URL: `Database(path)` opens it like a file path."""

    def rows(self, query: str, *args: Any) -> list[Any]:
        db = Database(str(self.path))
        try:
            with db.connect() as conn:
                return list(conn.execute(query, args).fetchall())
        finally:
            db.close()


@pytest.fixture
def host(pg_url: str, hsm: MockHsm) -> Iterator[test_online_ops.Host]:
    yield PgOpsHost(pg_url, hsm)  # type: ignore[arg-type]
