"""The host's store: an SQLite file (the default) or a PostgreSQL database given by URL.

`Database` is opened once per process and hands out a connection per unit of work
(`connect`), so uvicorn's threadpool never shares a connection between threads. Writes go
through `transaction`, which takes the write lock up front (`BEGIN IMMEDIATE`) and commits
before returning: what a caller has been told is stored is on disk.

SQLite: WAL, `synchronous=FULL`, foreign keys on, a busy timeout. `":memory:"` gives a
temporary database file (WAL needs a file, and every connection must see the same data); it is
deleted by `close`.

PostgreSQL (`postgresql://user:pass@host/dbname`): the connections are `host_sim.pg`
adapters that keep the sqlite3 call shape, kept in a small pool; `BEGIN IMMEDIATE` takes one
advisory lock, so writers are serialised exactly as on SQLite. Migrations are the parallel
PostgreSQL list (`host_sim.schema.MIGRATIONS_PG`), numbered the same.
"""

from __future__ import annotations

import os
import queue
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from cardcore.errors import FuelsimError
from host_sim import pg
from host_sim.schema import MIGRATIONS, MIGRATIONS_PG

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


def returned_id(cursor: sqlite3.Cursor) -> int:
    """The value of an `INSERT … RETURNING id` (every row fetched, so the statement is done)."""
    rows = cursor.fetchall()
    if len(rows) != 1:
        raise DatabaseError(f"INSERT … RETURNING gave {len(rows)} rows, not 1")
    return int(rows[0][0])


def is_postgres(conn: sqlite3.Connection) -> bool:
    """True when `conn` is a PostgreSQL connection (a `host_sim.pg` adapter)."""
    return isinstance(conn, pg.PgConnection)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    if is_postgres(conn):
        sql = "SELECT 1 WHERE to_regclass(?) IS NOT NULL"
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


def column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    """The columns of `table` (a name from the host's own schema, never user input)."""
    cursor = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    return [column[0] for column in cursor.description]


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] | None = None) -> int:
    """Apply the migrations not yet applied, all in one transaction; returns the version.

    The default list is the one for the connection's database. On PostgreSQL a migration runs
    as one script (its functions hold `;` inside `$$` bodies); on SQLite statement by
    statement."""
    if migrations is None:
        migrations = MIGRATIONS_PG if is_postgres(conn) else MIGRATIONS
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
            if is_postgres(conn):
                conn.execute(migrations[number - 1])
            else:
                for statement in split_statements(migrations[number - 1]):
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, now))
        return len(migrations)


class Database:
    """The host schema in an SQLite file or a PostgreSQL database; `connect()` per unit of work
    (connections are pooled; `close()` closes them).

    `location` is a file path, `":memory:"`, or a `postgresql://` URL. `migrations` defaults to
    the list for that database."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        migrations: Sequence[str] | None = None,
        synchronous: str = "FULL",
        busy_timeout_s: float = 10.0,
        pool_size: int = 8,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise DatabaseError(f"unknown synchronous mode {synchronous!r}")
        self._tempdir: str | None = None
        self.url: str | None = None
        self._pool: queue.LifoQueue[pg.PgConnection] = queue.LifoQueue(maxsize=pool_size)
        # Pooled SQLite connections also keep the file open between requests: closing the
        # last connection would checkpoint the WAL every time (milliseconds per request).
        self._sqlite_pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue(pool_size)
        if pg.is_url(location):
            self.url = str(location)
            self.path = Path()  # no file: `location` names the database for messages
        else:
            if str(location) == MEMORY:
                self._tempdir = tempfile.mkdtemp(prefix="fuelsim-host-")
                location = Path(self._tempdir) / "host.sqlite"
            self.path = Path(location)
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        if migrations is None:
            migrations = MIGRATIONS if self.url is None else MIGRATIONS_PG
        with self.connect() as conn:
            if self.url is None:
                conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
            self.version = migrate(conn, migrations)

    @property
    def location(self) -> str:
        """Where the data is: the SQLite file, or the PostgreSQL URL without its password."""
        if self.url is None:
            return str(self.path)
        return pg.redacted(self.url)

    def __repr__(self) -> str:
        return f"Database({self.location!r}, version={self.version})"

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection (autocommit; use `transaction` to write), closed or pooled on exit."""
        if self.url is not None:
            with self._pg_connection() as conn:
                yield conn
            return
        try:
            conn = self._sqlite_pool.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,  # pooled: one thread at a time, never two
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.close()  # left mid-transaction: never hand it to the next caller
            else:
                try:
                    self._sqlite_pool.put_nowait(conn)
                except queue.Full:
                    conn.close()

    @contextmanager
    def _pg_connection(self) -> Iterator[sqlite3.Connection]:
        assert self.url is not None
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            try:
                conn = pg.PgConnection(
                    self.url,
                    lock_timeout_s=self.busy_timeout_s,
                    synchronous_commit=self.synchronous != "OFF",
                )
            except sqlite3.OperationalError as error:
                raise DatabaseError(f"{self.location}: {error}") from error
        try:
            # The adapter has the sqlite3 surface the call sites use (see host_sim.pg).
            yield cast(sqlite3.Connection, conn)
        finally:
            self._release(conn)

    def _release(self, conn: pg.PgConnection) -> None:
        if conn.in_transaction or conn.closed:
            conn.close()  # left mid-transaction or broken: never hand it to the next caller
            return
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one committed transaction."""
        with self.connect() as conn, transaction(conn):
            yield conn

    def close(self) -> None:
        """Close the pooled connections; remove the temporary file of `":memory:"`."""
        for pool in (self._pool, self._sqlite_pool):
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
