"""Promotion rules and granted quotes in the host database.

A rule is stored as its API form (JSON) next to the columns a listing needs. A quote that grants
a discount is a row of `promotion_quotes`, and that row *is* the use a rule's limits count:
the pump's authorisation is where the discount is promised. Granting runs under `BEGIN
IMMEDIATE`, so two pumps racing for the last use of a coupon cannot both get it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from host_sim.db import Database, transaction, utc_text
from host_sim.promotions import (
    Offer,
    QuoteRequest,
    Rule,
    UsageLookup,
    UseCounts,
    best_offer,
    rule_from_dict,
    utc_day,
)


@dataclass(frozen=True)
class GrantedQuote:
    quote_id: str | None  # None: no discount, nothing recorded
    offer: Offer | None


def put_rule(conn: sqlite3.Connection, rule: Rule, *, ak: str, now: datetime) -> bool:
    """Create or replace a rule (inside the caller's transaction); True when it was new."""
    existed = get_rule(conn, rule.rule_id) is not None
    conn.execute(
        "INSERT INTO promotion_rules (rule_id, level, region, body, updated_at, ak)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id) DO UPDATE SET level = excluded.level,"
        " region = excluded.region, body = excluded.body, updated_at = excluded.updated_at,"
        " ak = excluded.ak",
        (rule.rule_id, rule.level, rule.region, json.dumps(rule.to_dict()), utc_text(now), ak),
    )
    return not existed


def load_rules(db: Database, rules: Iterable[Rule], *, ak: str, now: datetime) -> int:
    """Store several rules in one transaction (a YAML file); returns how many."""
    stored = list(rules)
    with db.write() as conn:
        for rule in stored:
            put_rule(conn, rule, ak=ak, now=now)
    return len(stored)


def delete_rule(conn: sqlite3.Connection, rule_id: str) -> bool:
    return conn.execute("DELETE FROM promotion_rules WHERE rule_id = ?", (rule_id,)).rowcount == 1


def get_rule(conn: sqlite3.Connection, rule_id: str) -> Rule | None:
    row = conn.execute("SELECT body FROM promotion_rules WHERE rule_id = ?", (rule_id,)).fetchone()
    return None if row is None else rule_from_dict(json.loads(row[0]))


def list_rules(conn: sqlite3.Connection) -> list[Rule]:
    rows = conn.execute("SELECT body FROM promotion_rules ORDER BY rule_id").fetchall()
    return [rule_from_dict(json.loads(row[0])) for row in rows]


def usage(conn: sqlite3.Connection) -> UsageLookup:
    def counts(rule_id: str, asn: str, day: date) -> UseCounts:
        row = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN asn = ? THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN day = ? THEN 1 ELSE 0 END), 0)"
            " FROM promotion_quotes WHERE rule_id = ?",
            (asn, day.isoformat(), rule_id),
        ).fetchone()
        return UseCounts(per_card=int(row[1]), per_day=int(row[2]), total=int(row[0]))

    return counts


def grant(
    db: Database,
    request: QuoteRequest,
    *,
    terminal_id: str,
    ak: str,
    now: datetime,
    coupon_only: bool = False,
) -> GrantedQuote:
    """Choose the best offer and, when there is one, record it as a use, in one transaction.

    `coupon_only` restricts the choice to the rules of `request.coupon` (a coupon redemption).
    """
    with db.connect() as conn, transaction(conn):
        rules = list_rules(conn)
        if coupon_only:
            rules = [r for r in rules if r.coupon is not None and r.coupon == request.coupon]
        offer = best_offer(rules, request, usage(conn))
        if offer is None:
            return GrantedQuote(None, None)
        quote_id = "Q" + secrets.token_hex(8).upper()
        conn.execute(
            "INSERT INTO promotion_quotes (quote_id, rule_id, level, asn, terminal_id,"
            " station_id, grade, amount, volume, discount, coupon, day, created_at, ak)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                quote_id,
                offer.rule_id,
                offer.level,
                request.asn,
                terminal_id,
                request.station,
                request.grade,
                request.amount,
                request.volume,
                offer.quoted_discount,
                offer.rule.coupon,
                utc_day(request.at).isoformat(),
                utc_text(now),
                ak,
            ),
        )
        return GrantedQuote(quote_id, offer)
