"""tests/host_sim/test_ledger_db.py's ledger tests on PostgreSQL: double entry enforced in
Python and by the database's own triggers (an unbalanced transaction, postings without a
transaction row, and any change to a posted transaction are refused by PostgreSQL).

Left out here: the SQLite-file tests (migrations on a path, PRAGMAs, `:memory:`), whose
PostgreSQL counterparts are in test_pg_database.py."""

from collections.abc import Iterator

import pytest

from host_sim.db import Database
from tests.host_sim.test_ledger_db import *  # noqa: F403

del test_migrations_are_numbered_and_applied_once  # noqa: F821
del test_a_failing_migration_leaves_nothing_behind  # noqa: F821
del test_connection_settings  # noqa: F821
del test_memory_database_is_a_temporary_file  # noqa: F821


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.close()
