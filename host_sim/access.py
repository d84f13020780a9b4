"""Access keys (AK/SK) with kinds and scopes, the terminal→station map, nonces and rate windows.

Secrets are stored as given, in clear: this is a simulator. A real host keeps each SK wrapped
under an HSM key (or stores only what it needs to verify, e.g. a key derived per AK) and
unwraps it for one verification at a time.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cardcore.errors import FuelsimError
from host_sim.db import Database, transaction, utc_text

KINDS = ("terminal", "station", "app", "partner")

SCOPES = {
    "bills.write": "upload dispenser bills (POST /v1/bills)",
    "blacklist.read": "download blacklist changes (GET /v1/blacklist)",
    "cards.loss": "report a card lost: blacklist it (POST /v1/cards/{asn}/loss)",
    "cards.unblock": "take a card off the blacklist (POST /v1/cards/{asn}/unblock)",
    "accounts.read": "read a card's account (GET /v1/cards/{asn}/account, GET /v1/cards/{asn})",
    "cards.issue": "issue a card into the registry: single, master or sub (POST /v1/cards)",
    "cards.allocate": "fund a sub card's reserve from its master (POST /v1/cards/{asn}/allocate)",
    "cards.load": "load a card online: MAC2, then book it (POST /v1/cards/{asn}/load/…)",
    "cards.unlock": "unlock a grey card online (POST /v1/cards/{asn}/unlock/…)",
    "cards.maintain": "MACs for store flag, block, unblock, PIN reload (POST /v1/cards/{asn}/…)",
    "promotions.manage": "list, create, replace and delete promotion rules (/v1/promotions/rules)",
    "promotions.quote": "ask for a sale's discount at authorisation (POST /v1/promotions/quote)",
    "coupons.redeem": "redeem a coupon for a card (POST /v1/promotions/coupons/{code}/redeem)",
    "payments.refund": "refund a wallet payment (POST /v1/payments/{transaction_id}/refunds)",
    "test.knobs": "set the test knobs of a host started with them (PUT /v1/test/knobs)",
    "fleet.admin": "fleet admin: issue, bind, block virtual cards, set limits, top up (/v1/fleet)",
    "fleet.driver": "fleet driver: own virtual cards and their keys (/v1/vfc/cards)",
    "vfc.pay": "take virtual fleet card payments at a pump (POST /v1/vfc/authorize …)",
    "reports.read": "sales reports, clearing days, reconciliation runs (GET /v1/reports/…)",
}

DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "terminal": ("bills.write", "blacklist.read", "promotions.quote", "vfc.pay"),
    "station": ("bills.write", "blacklist.read", "promotions.quote", "vfc.pay"),
    "app": ("cards.loss", "accounts.read"),
    "partner": ("accounts.read",),
}

# What an issuing office's terminal key needs: the online operations and the loss desk.
OFFICE_SCOPES: tuple[str, ...] = (
    "cards.load",
    "cards.unlock",
    "cards.maintain",
    "cards.loss",
    "cards.unblock",
    "blacklist.read",
)

# What an issuing office adds: cards into the registry, a master's funds to its sub cards.
ISSUING_SCOPES: tuple[str, ...] = ("cards.issue", "cards.allocate", "accounts.read")

AK_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
TERMINAL_PATTERN = re.compile(r"[0-9A-Fa-f]{12}")
RATE_WINDOW_S = 60


class AccessKeyError(FuelsimError, ValueError):
    title = "bad access key"


@dataclass(frozen=True)
class AccessKey:
    ak: str
    sk: str
    kind: str
    scopes: frozenset[str]
    owner: str
    enabled: bool = True
    rate_per_minute: int | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"AccessKey({self.ak!r}, kind={self.kind!r}, owner={self.owner!r})"


def normalise_terminal(terminal_id: str) -> str:
    """A terminal id is 12 hex digits (6 bytes, PSAM EF16); the host keeps them upper-case."""
    if not TERMINAL_PATTERN.fullmatch(terminal_id):
        raise AccessKeyError(f"terminal id must be 12 hex digits, got {terminal_id!r}")
    return terminal_id.upper()


def add_access_key(
    db: Database,
    ak: str,
    sk: str,
    kind: str,
    scopes: Iterable[str],
    owner: str,
    *,
    enabled: bool = True,
    rate_per_minute: int | None = None,
) -> AccessKey:
    """Admin bootstrap: store an access key. A terminal key's owner is its terminal id."""
    if not AK_PATTERN.fullmatch(ak):
        raise AccessKeyError("AK must be 1–128 characters of A–Z a–z 0–9 . _ -")
    if len(sk) < 16:
        raise AccessKeyError("SK must be at least 16 characters")
    if kind not in KINDS:
        raise AccessKeyError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    granted = frozenset(scopes)
    unknown = sorted(granted - SCOPES.keys())
    if unknown:
        raise AccessKeyError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
    if kind == "terminal":
        owner = normalise_terminal(owner)
    if not owner:
        raise AccessKeyError("owner must not be empty")
    if rate_per_minute is not None and rate_per_minute < 1:
        raise AccessKeyError("rate_per_minute must be at least 1 (None: the host default)")
    key = AccessKey(ak, sk, kind, granted, owner, enabled, rate_per_minute)
    with db.write() as conn:
        conn.execute(
            "INSERT INTO access_keys (ak, sk, kind, scopes, owner, enabled, rate_per_minute,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ak,
                sk,
                kind,
                " ".join(sorted(granted)),
                owner,
                int(enabled),
                rate_per_minute,
                utc_text(datetime.now(UTC)),
            ),
        )
    return key


def grant_scopes(db: Database, ak: str, scopes: Iterable[str]) -> frozenset[str]:
    """Add scopes to an existing key (those it has stay); returns all it now holds."""
    wanted = frozenset(scopes)
    unknown = sorted(wanted - SCOPES.keys())
    if unknown:
        raise AccessKeyError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
    with db.write() as conn:
        row = conn.execute("SELECT scopes FROM access_keys WHERE ak = ?", (ak,)).fetchone()
        if row is None:
            raise AccessKeyError(f"no access key {ak!r}")
        granted = frozenset(str(row[0]).split()) | wanted
        conn.execute(
            "UPDATE access_keys SET scopes = ? WHERE ak = ?", (" ".join(sorted(granted)), ak)
        )
    return granted


def set_access_key_enabled(db: Database, ak: str, enabled: bool) -> None:
    with db.write() as conn:
        cursor = conn.execute("UPDATE access_keys SET enabled = ? WHERE ak = ?", (int(enabled), ak))
        if cursor.rowcount != 1:
            raise AccessKeyError(f"no access key {ak!r}")


def add_terminal(db: Database, terminal_id: str, station_id: str) -> None:
    """Register a terminal with its station (a terminal not registered is its own station)."""
    if not station_id:
        raise AccessKeyError("station id must not be empty")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO terminals (terminal_id, station_id) VALUES (?, ?)"
            " ON CONFLICT (terminal_id) DO UPDATE SET station_id = excluded.station_id",
            (normalise_terminal(terminal_id), station_id),
        )


def load_access_key(conn: sqlite3.Connection, ak: str) -> AccessKey | None:
    row = conn.execute(
        "SELECT ak, sk, kind, scopes, owner, enabled, rate_per_minute FROM access_keys"
        " WHERE ak = ?",
        (ak,),
    ).fetchone()
    if row is None:
        return None
    return AccessKey(
        row["ak"],
        row["sk"],
        row["kind"],
        frozenset(row["scopes"].split()),
        row["owner"],
        bool(row["enabled"]),
        row["rate_per_minute"],
    )


def station_of(conn: sqlite3.Connection, terminal_id: str) -> tuple[str, bool]:
    """(station id, registered) of a terminal; an unregistered terminal is its own station."""
    row = conn.execute(
        "SELECT station_id FROM terminals WHERE terminal_id = ?", (terminal_id,)
    ).fetchone()
    return (terminal_id, False) if row is None else (str(row[0]), True)


def record_nonce(conn: sqlite3.Connection, ak: str, nonce: str, now: float, ttl: float) -> bool:
    """Store (AK, nonce) until now + ttl; False when it is already stored (a replay).

    Expired nonces are purged first, in the same transaction, so the table stays small.
    """
    with transaction(conn):
        conn.execute("DELETE FROM nonces WHERE expires_at <= ?", (now,))
        cursor = conn.execute(
            "INSERT INTO nonces (ak, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (ak, nonce, now + ttl),
        )
        return cursor.rowcount == 1


def count_request(conn: sqlite3.Connection, ak: str, now: float) -> tuple[int, int]:
    """Count one request in the AK's fixed one-minute window: (count so far, seconds left)."""
    start = int(now // RATE_WINDOW_S) * RATE_WINDOW_S
    with transaction(conn):
        conn.execute("DELETE FROM rate_windows WHERE ak = ? AND window_start < ?", (ak, start))
        row = conn.execute(
            "INSERT INTO rate_windows (ak, window_start, count) VALUES (?, ?, 1)"
            " ON CONFLICT (ak, window_start) DO UPDATE SET count = rate_windows.count + 1"
            " RETURNING count",
            (ak, start),
        ).fetchall()[0]  # fetch all: a RETURNING statement must finish before COMMIT
    return int(row[0]), max(1, math.ceil(start + RATE_WINDOW_S - now))
