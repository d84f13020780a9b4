"""The store: migrations, SQLite settings, and double entry enforced in Python and in SQLite."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from host_sim import ledger
from host_sim.db import Database, DatabaseError, transaction
from host_sim.ledger import LedgerError, Leg
from host_sim.schema import MIGRATIONS

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "host.sqlite")


def test_migrations_are_numbered_and_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite"
    first = Database(path)
    assert first.version == len(MIGRATIONS)
    again = Database(path)  # re-opening applies nothing twice
    with again.connect() as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    extended = Database(path, migrations=[*MIGRATIONS, "CREATE TABLE later (x INTEGER);"])
    assert extended.version == len(MIGRATIONS) + 1
    with pytest.raises(DatabaseError, match="newer than this host"):
        Database(path)


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        Database(path, migrations=[*MIGRATIONS, "CREATE TABLE a (x);\nNOT SQL;"])
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "access_keys" not in tables and "a" not in tables


def test_connection_settings(db: Database) -> None:
    with db.connect() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_memory_database_is_a_temporary_file(tmp_path: Path) -> None:
    db = Database(":memory:")
    assert db.path.exists()
    with db.write() as conn:
        conn.execute("INSERT INTO terminals VALUES ('440101000001', 'S')")
    with db.connect() as conn:  # another connection sees it: one shared file
        assert conn.execute("SELECT COUNT(*) FROM terminals").fetchone()[0] == 1
    db.close()
    assert not db.path.exists()


def test_balanced_transaction_is_posted(db: Database) -> None:
    with db.write() as conn:
        txn = ledger.post(
            conn,
            kind="sale.fuelling",
            memo="test",
            legs=[Leg("card:01", 500), Leg("station:S", -500)],
            now=NOW,
        )
    with db.connect() as conn:
        assert ledger.balance(conn, "card:01") == -500  # credit-normal: the card owes
        assert ledger.balance(conn, "station:S") == 500
        assert [e.amount for e in ledger.entries(conn, "card:01")] == [500]
        assert ledger.entries(conn, "card:01")[0].transaction_id == txn
        assert ledger.unbalanced_transactions(conn) == []


@pytest.mark.parametrize(
    ("legs", "says"),
    [
        ([Leg("card:01", 500), Leg("station:S", -499)], "sum to 1"),
        ([Leg("card:01", 500)], "at least two"),
        ([Leg("card:01", 0), Leg("station:S", 0)], "non-zero"),
        ([Leg("nowhere", 5), Leg("station:S", -5)], "kind:id"),
    ],
)
def test_post_refuses_bad_legs(db: Database, legs: list[Leg], says: str) -> None:
    with db.write() as conn, pytest.raises(LedgerError, match=says):
        ledger.post(conn, kind="x", memo="x", legs=legs, now=NOW)


def test_post_needs_an_open_transaction(db: Database) -> None:
    with db.connect() as conn, pytest.raises(LedgerError, match="inside a database transaction"):
        ledger.post(conn, kind="x", memo="x", legs=[Leg("card:1", 1), Leg("card:2", -1)], now=NOW)


def _accounts(conn: sqlite3.Connection) -> tuple[int, int]:
    return ledger.account_id(conn, "card:01", NOW), ledger.account_id(conn, "station:S", NOW)


def test_sqlite_refuses_an_unbalanced_transaction(db: Database) -> None:
    with db.connect() as conn:
        with transaction(conn):
            card, station = _accounts(conn)
        with pytest.raises(sqlite3.IntegrityError, match="summing to zero"), transaction(conn):
            conn.execute(
                "INSERT INTO postings (txn_id, account_id, amount) VALUES (1, ?, 5)", (card,)
            )
            conn.execute(
                "INSERT INTO postings (txn_id, account_id, amount) VALUES (1, ?, -4)", (station,)
            )
            conn.execute("INSERT INTO ledger_transactions VALUES (1, 'x', 'x', 'now')")
        assert conn.execute("SELECT COUNT(*) FROM postings").fetchone()[0] == 0


def test_sqlite_refuses_postings_without_a_transaction_row(db: Database) -> None:
    with db.connect() as conn:
        with transaction(conn):
            card, _ = _accounts(conn)
        with pytest.raises(sqlite3.IntegrityError), transaction(conn):
            conn.execute(
                "INSERT INTO postings (txn_id, account_id, amount) VALUES (7, ?, 5)", (card,)
            )
        assert not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM postings").fetchone()[0] == 0


def test_sqlite_keeps_the_ledger_append_only(db: Database) -> None:
    with db.write() as conn:
        ledger.post(conn, kind="x", memo="x", legs=[Leg("card:1", 9), Leg("card:2", -9)], now=NOW)
    with db.connect() as conn:
        card, _ = _accounts(conn)
        for statement in (
            "UPDATE postings SET amount = 10",
            "DELETE FROM postings",
            "UPDATE ledger_transactions SET memo = 'y'",
            "DELETE FROM ledger_transactions",
            f"INSERT INTO postings (txn_id, account_id, amount) VALUES (1, {card}, 1)",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="ledger:"):
                conn.execute(statement)
        assert ledger.unbalanced_transactions(conn) == []
