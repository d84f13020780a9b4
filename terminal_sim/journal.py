"""The terminal's crash-safe journal: every step of a transaction is durable before the next.

One SQLite file in WAL mode with synchronous=FULL. A transaction is a row; each step appends a
row holding the data the step produced (hex for bytes). On restart, `unfinished()` lists the
transactions whose last step is not `done`, with everything recovery needs to finish or undo
them against the card, the PSAM and the host.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS txn (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    terminal TEXT NOT NULL,
    started TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS step (
    txn INTEGER NOT NULL REFERENCES txn(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (txn, seq)
);
"""


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        return {key: _decode(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class JournalEntry:
    txn: int
    kind: str
    terminal: str
    steps: list[tuple[str, dict[str, Any]]]

    @property
    def last(self) -> str:
        return self.steps[-1][0] if self.steps else ""

    def data(self, step: str) -> dict[str, Any] | None:
        for name, data in self.steps:
            if name == step:
                return data
        return None


class Journal:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def begin(self, kind: str, terminal: str, started: str, **data: Any) -> int:
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO txn (kind, terminal, started) VALUES (?, ?, ?)",
                (kind, terminal, started),
            )
            txn = int(cursor.lastrowid or 0)
            self._db.execute(
                "INSERT INTO step VALUES (?, 0, 'begin', ?)", (txn, json.dumps(_encode(data)))
            )
        return txn

    def step(self, txn: int, name: str, **data: Any) -> None:
        with self._lock, self._db:
            (seq,) = self._db.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM step WHERE txn = ?", (txn,)
            ).fetchone()
            self._db.execute(
                "INSERT INTO step VALUES (?, ?, ?, ?)", (txn, seq, name, json.dumps(_encode(data)))
            )
            if name == "done":
                self._db.execute("UPDATE txn SET finished = 1 WHERE id = ?", (txn,))

    def entry(self, txn: int) -> JournalEntry:
        with self._lock:
            kind, terminal = self._db.execute(
                "SELECT kind, terminal FROM txn WHERE id = ?", (txn,)
            ).fetchone()
            rows = self._db.execute(
                "SELECT name, data FROM step WHERE txn = ? ORDER BY seq", (txn,)
            ).fetchall()
        return JournalEntry(txn, kind, terminal, [(n, _decode(json.loads(d))) for n, d in rows])

    def unfinished(self, terminal: str | None = None) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM txn WHERE finished = 0 AND (? IS NULL OR terminal = ?) ORDER BY id",
                (terminal, terminal),
            ).fetchall()
        return [self.entry(txn) for (txn,) in rows]

    def finished(self, terminal: str | None = None) -> list[JournalEntry]:
        """The closed transactions, oldest first (a station collects what they produced)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM txn WHERE finished = 1 AND (? IS NULL OR terminal = ?) ORDER BY id",
                (terminal, terminal),
            ).fetchall()
        return [self.entry(txn) for (txn,) in rows]
