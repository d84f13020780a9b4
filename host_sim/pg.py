"""PostgreSQL under the host's SQLite-shaped call sites (psycopg 3).

The host's modules talk to `sqlite3.Connection`: `conn.execute(sql, params)` with `?`
placeholders, rows read by index and by column name, `conn.in_transaction`, `BEGIN IMMEDIATE`
to take the write lock, and `sqlite3.IntegrityError` when a constraint refuses a write.
`PgConnection` offers exactly that surface over a psycopg connection, so one SQL text serves
both databases; statements that SQLite and PostgreSQL spell differently are written in the
portable form at the call site instead of being rewritten here.

What the adapter does, and nothing more:
- `?` placeholders outside quotes become `%s`, and every literal `%` becomes `%%` (only
  when parameters are passed: psycopg then reads `%` everywhere, even inside quotes).
  Parameters are bound on the client (`ClientCursor`), so an untyped `?` gets the type of
  the literal it becomes, as in SQLite.
- `BEGIN IMMEDIATE` becomes `BEGIN` plus `pg_advisory_xact_lock(WRITE_LOCK)`: every writer
  takes the same lock until COMMIT or ROLLBACK, which is the one-writer-at-a-time order that
  SQLite gives and that the host's read-then-write checks rely on. Readers (autocommit
  statements) never wait for it.
- Rows are `Row`: a tuple that also answers `row["column"]` and `keys()`, like sqlite3.Row.
- `numeric` results (what `SUM` of a `BIGINT` gives) come back as `int` when whole.
- psycopg's integrity errors are raised as `sqlite3.IntegrityError`, other database errors
  as `sqlite3.DatabaseError`, with PostgreSQL's message; the original is the `__cause__`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

WRITE_LOCK = 0x66756573  # "fues": the advisory lock key every host writer takes
URL_PREFIXES = ("postgresql://", "postgres://")

# A quoted string or identifier (kept as is), or one character that needs translating.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[?%]")


def is_url(location: object) -> bool:
    """True for a PostgreSQL connection URL (anything else is an SQLite path)."""
    return isinstance(location, str) and location.startswith(URL_PREFIXES)


def redacted(url: str) -> str:
    """The URL with its password replaced by `***` (for logs and banners)."""
    return re.sub(r"^(\w+://[^:/@]*):[^@]*@", r"\1:***@", url)


def to_pyformat(sql: str) -> str:
    """`?` → `%s` and `%` → `%%` outside quoted strings and identifiers."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")  # psycopg reads `%` inside quotes too

    return _TOKEN.sub(swap, sql)


class Row(tuple[Any, ...]):
    """A result row addressable by position and by column name (sqlite3.Row's behaviour)."""

    _index: Mapping[str, int]

    def __new__(cls, values: Sequence[Any], index: Mapping[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return super().__getitem__(self._index[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [column.name for column in cursor.description or ()]
    index = {name: number for number, name in enumerate(names)}
    return lambda values: Row(values, index)


class _WholeNumeric(Loader):
    """`numeric` as int when it has no fraction (SUM over BIGINT), else as Decimal."""

    def load(self, data: Any) -> int | Decimal:
        text = bytes(data).decode("ascii")
        return int(text) if text.lstrip("-").isdigit() else Decimal(text)


class PgCursor:
    """The result of one `execute`: fetchone/fetchall/iteration/rowcount/description."""

    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection in autocommit mode, spoken to like the host's sqlite3 connections."""

    def __init__(self, url: str, *, lock_timeout_s: float, synchronous_commit: bool = True) -> None:
        try:
            self._conn: psycopg.Connection[Row] = psycopg.connect(
                url,
                autocommit=True,
                row_factory=_row_factory,
                cursor_factory=psycopg.ClientCursor,
            )
        except psycopg.Error as error:
            raise sqlite3.OperationalError(f"cannot connect to PostgreSQL: {error}") from error
        self._conn.adapters.register_loader("numeric", _WholeNumeric)
        # The SQLite busy timeout's counterpart: a writer waits this long for the lock.
        self.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        # SQLite's synchronous=OFF: COMMIT returns before the WAL reaches the disk.
        self.execute(f"SET synchronous_commit = {'on' if synchronous_commit else 'off'}")

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        if sql.strip().upper() == "BEGIN IMMEDIATE":
            self._run("BEGIN", None)
            try:
                return self._run("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            except BaseException:
                self._run("ROLLBACK", None)  # as on SQLite: no lock, no open transaction
                raise
        if params is None:
            return self._run(sql, None)
        return self._run(to_pyformat(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        cursor = self._conn.cursor()
        with _sqlite_errors():
            cursor.executemany(to_pyformat(sql), rows)
        return PgCursor(cursor)

    def _run(self, sql: str, params: Sequence[Any] | None) -> PgCursor:
        cursor = self._conn.cursor()
        with _sqlite_errors():
            cursor.execute(sql, params)
        return PgCursor(cursor)

    def close(self) -> None:
        self._conn.close()


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    """Re-raise psycopg errors as the sqlite3 classes the host's call sites catch."""
    try:
        yield
    except psycopg.IntegrityError as error:
        raise sqlite3.IntegrityError(_message(error)) from error
    except psycopg.Error as error:
        raise sqlite3.DatabaseError(_message(error)) from error


def _message(error: psycopg.Error) -> str:
    primary = error.diag.message_primary
    return primary if primary else str(error).strip()
