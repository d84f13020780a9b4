"""The host's SQLite store: WAL, foreign keys, a busy timeout, and numbered migrations.

`Database` is opened once per process and hands out a fresh connection per unit of work
(`connect`), so uvicorn's threadpool never shares a connection between threads. Writes go
through `transaction`, which takes the write lock up front (`BEGIN IMMEDIATE`) and commits
before returning: what a caller has been told is stored is on disk (`synchronous=FULL`).

`":memory:"` gives a temporary database file (WAL needs a file, and every connection must see
the same data); it is deleted by `close`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cardcore.errors import FuelsimError
from host_sim.schema import MIGRATIONS

MEMORY = ":memory:"


class DatabaseError(FuelsimError):
    title = "host database error"


def utc_text(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z`, microseconds only when present: how the host stores time."""
    moment = moment.astimezone(UTC)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def split_statements(script: str) -> list[str]:
    """The statements of a migration (triggers with their inner `;` stay whole)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise DatabaseError(f"migration ends inside a statement: {buffer.strip()[:60]!r}")
    return statements


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error (including a failing COMMIT)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations not yet applied, all in one transaction; returns the version."""
    with transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0])
        if current > len(migrations):
            raise DatabaseError(
                f"database schema version {current} is newer than this host's ({len(migrations)})"
            )
        now = utc_text(datetime.now(UTC))
        for number in range(current + 1, len(migrations) + 1):
            for statement in split_statements(migrations[number - 1]):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, now))
        return len(migrations)


class Database:
    """An SQLite file with the host schema; `connect()` per request or unit of work."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        migrations: Sequence[str] = MIGRATIONS,
        synchronous: str = "FULL",
        busy_timeout_s: float = 10.0,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise DatabaseError(f"unknown synchronous mode {synchronous!r}")
        self._tempdir: str | None = None
        if str(path) == MEMORY:
            self._tempdir = tempfile.mkdtemp(prefix="fuelsim-host-")
            path = Path(self._tempdir) / "host.sqlite"
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
            self.version = migrate(conn, migrations)

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}, version={self.version})"

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A new connection (autocommit; use `transaction` to write), closed on exit."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one committed transaction."""
        with self.connect() as conn, transaction(conn):
            yield conn

    def close(self) -> None:
        """Remove the temporary file of a `":memory:"` database (a file database stays)."""
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
