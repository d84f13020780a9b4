"""The host's store on PostgreSQL: migrations in step with SQLite's, the writer lock that
stands in for BEGIN IMMEDIATE, errors as the sqlite3 classes, types, and the small stores
(blacklist versions, nonces, rate windows) that rely on them."""

import sqlite3
from datetime import UTC, datetime

import psycopg
import pytest

from host_sim import blacklist
from host_sim.access import count_request, record_nonce
from host_sim.db import Database, DatabaseError, has_table, is_postgres, transaction
from host_sim.schema import MIGRATIONS, MIGRATIONS_PG

from .cluster import Cluster

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def test_migrations_are_numbered_like_sqlites_and_applied_once(pg_url: str) -> None:
    assert len(MIGRATIONS_PG) == len(MIGRATIONS)
    first = Database(pg_url)
    assert first.version == len(MIGRATIONS_PG)
    again = Database(pg_url)  # re-opening applies nothing twice
    with again.connect() as conn:
        assert is_postgres(conn)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS_PG) + 1))
    extended = Database(pg_url, migrations=[*MIGRATIONS_PG, "CREATE TABLE later (x BIGINT);"])
    assert extended.version == len(MIGRATIONS_PG) + 1
    with pytest.raises(DatabaseError, match="newer than this host"):
        Database(pg_url)
    for db in (first, again, extended):
        db.close()


def test_a_failing_migration_leaves_nothing_behind(pg_url: str) -> None:
    with pytest.raises(sqlite3.DatabaseError, match="syntax error"):
        Database(pg_url, migrations=[*MIGRATIONS_PG, "CREATE TABLE a (x BIGINT);\nNOT SQL;"])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('access_keys'), to_regclass('a')").fetchone() == (
            None,
            None,
        )


def test_same_tables_as_sqlite(pg_url: str) -> None:
    lite = Database(":memory:")
    with lite.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite.close()
    db = Database(pg_url)
    with db.connect() as conn:
        assert [n for n in names if not n.startswith("sqlite_") and not has_table(conn, n)] == []
        assert not has_table(conn, "no_such_table")
    db.close()


def test_connection_settings(pg_url: str) -> None:
    durable, fast = Database(pg_url, busy_timeout_s=2.5), Database(pg_url, synchronous="OFF")
    with durable.connect() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "2500ms"
    with fast.connect() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    durable.close()
    fast.close()


def test_a_second_writer_waits_for_the_first(pg_url: str) -> None:
    """BEGIN IMMEDIATE takes one advisory lock: a second writer cannot start while the first
    is open (here it gives up after its lock timeout), and goes through once it commits."""
    db = Database(pg_url, busy_timeout_s=0.2)
    with db.connect() as first, db.connect() as second:
        first.execute("BEGIN IMMEDIATE")
        first.execute("INSERT INTO terminals VALUES ('T1', 'S1')")
        with pytest.raises(sqlite3.DatabaseError, match="lock timeout"), transaction(second):
            pass
        assert not second.in_transaction
        assert second.execute("SELECT COUNT(*) FROM terminals").fetchone()[0] == 0  # reader
        first.execute("COMMIT")
        with transaction(second):
            second.execute("INSERT INTO terminals VALUES ('T2', 'S1')")
        assert second.execute("SELECT COUNT(*) FROM terminals").fetchone()[0] == 2
    db.close()


def test_constraint_errors_are_integrity_errors_and_roll_back(pg_url: str) -> None:
    db = Database(pg_url)
    with db.connect() as conn:
        with pytest.raises(sqlite3.IntegrityError, match="duplicate key"), transaction(conn):
            conn.execute("INSERT INTO terminals VALUES ('T1', 'S1')")
            conn.execute("INSERT INTO terminals VALUES ('T1', 'S2')")
        assert not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM terminals").fetchone()[0] == 0
    with db.write() as conn:  # the pooled connection is usable again
        conn.execute("INSERT INTO terminals VALUES ('T1', 'S1')")
    db.close()


def test_types_round_trip_like_sqlite(pg_url: str) -> None:
    db = Database(pg_url)
    with db.write() as conn:
        conn.execute("INSERT INTO nonces VALUES ('ak', 'n', ?)", (1.5,))
        conn.execute(
            "INSERT INTO grey_records (asn, lock_ctc, amount, status, psam_tac,"
            " psam_tac_verified) VALUES ('A', 1, 300, 'open', ?, 1)",
            (b"\x00\xff\x10\x20",),
        )
    with db.connect() as conn:
        row = conn.execute("SELECT psam_tac, amount, lock_ctc FROM grey_records").fetchone()
        assert (bytes(row["psam_tac"]), row["amount"]) == (b"\x00\xff\x10\x20", 300)
        total = conn.execute("SELECT SUM(amount), SUM(amount) * 1.5 FROM grey_records").fetchone()
        assert type(total[0]) is int and total[0] == 300  # SUM(BIGINT) is numeric in PostgreSQL
        assert float(total[1]) == 450.0
        assert conn.execute("SELECT expires_at FROM nonces").fetchone()[0] == 1.5
        assert conn.execute("SELECT 'a%b' || ?", ("c",)).fetchone()[0] == "a%bc"
    db.close()


def test_blacklist_versions_count_every_change(pg_url: str) -> None:
    db = Database(pg_url)
    with db.connect() as conn:
        assert blacklist.current_version(conn) == 0
        lost = blacklist.report_loss(conn, "A1", "lost", "ops", NOW)
        again = blacklist.report_loss(conn, "A1", "lost", "ops", NOW)
        other = blacklist.report_loss(conn, "B2", "stolen", "ops", NOW)
        back = blacklist.unblock(conn, "A1", "found", "ops", NOW)
        assert [(u.changed, u.version) for u in (lost, again, other, back)] == [
            (True, 1),
            (False, 1),
            (True, 2),
            (True, 3),
        ]
        changes = blacklist.changes_since(conn, 1, 10)
        assert [(c.version, c.asn, c.action) for c in changes] == [
            (2, "B2", "add"),
            (3, "A1", "remove"),
        ]
        assert not blacklist.is_listed(conn, "A1") and blacklist.is_listed(conn, "B2")
    db.close()


def test_nonces_and_rate_windows(pg_url: str) -> None:
    db = Database(pg_url)
    with db.connect() as conn:
        assert record_nonce(conn, "ak", "n1", 1000.0, 300.0)
        assert not record_nonce(conn, "ak", "n1", 1001.0, 300.0)  # a replay
        assert record_nonce(conn, "ak", "n1", 1400.0, 300.0)  # expired and purged meanwhile
        assert [count_request(conn, "ak", 1200.0 + i)[0] for i in range(3)] == [1, 2, 3]
        assert count_request(conn, "ak", 1260.0)[0] == 1  # the next minute's window
    db.close()


def test_an_unreachable_server_is_a_clear_error(pg_cluster: Cluster) -> None:
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        Database(pg_cluster.url("no_such_database"))
