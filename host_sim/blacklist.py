"""The blacklist with a global version: every add or remove is one numbered change.

A terminal keeps the version it last applied and asks for the changes since; applying them in
order gives the host's list. Reporting a card already listed (or unblocking one not listed)
changes nothing and bumps no version.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from host_sim.db import returned_id, transaction, utc_text


@dataclass(frozen=True)
class Change:
    version: int
    asn: str
    action: str  # add | remove
    reason: str
    changed_at: str


@dataclass(frozen=True)
class Update:
    asn: str
    blacklisted: bool
    changed: bool
    version: int  # the current version after the call


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM blacklist_changes").fetchone()
    return int(row[0])


def changes_since(conn: sqlite3.Connection, since: int, limit: int) -> list[Change]:
    rows = conn.execute(
        "SELECT version, asn, action, reason, changed_at FROM blacklist_changes"
        " WHERE version > ? ORDER BY version LIMIT ?",
        (since, limit),
    ).fetchall()
    return [Change(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def is_listed(conn: sqlite3.Connection, asn: str) -> bool:
    return conn.execute("SELECT 1 FROM blacklist WHERE asn = ?", (asn,)).fetchone() is not None


def _change(
    conn: sqlite3.Connection, asn: str, add: bool, reason: str, ak: str, now: datetime
) -> Update:
    with transaction(conn):
        if is_listed(conn, asn) == add:
            return Update(asn, add, False, current_version(conn))
        stamp = utc_text(now)
        cursor = conn.execute(
            "INSERT INTO blacklist_changes (asn, action, reason, changed_at, ak)"
            " VALUES (?, ?, ?, ?, ?) RETURNING version",
            (asn, "add" if add else "remove", reason, stamp, ak),
        )
        version = returned_id(cursor)
        if add:
            conn.execute(
                "INSERT INTO blacklist (asn, version, reason, since) VALUES (?, ?, ?, ?)",
                (asn, version, reason, stamp),
            )
        else:
            conn.execute("DELETE FROM blacklist WHERE asn = ?", (asn,))
        return Update(asn, add, True, version)


def report_loss(conn: sqlite3.Connection, asn: str, reason: str, ak: str, now: datetime) -> Update:
    return _change(conn, asn, True, reason, ak, now)


def unblock(conn: sqlite3.Connection, asn: str, reason: str, ak: str, now: datetime) -> Update:
    return _change(conn, asn, False, reason, ak, now)
