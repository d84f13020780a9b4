"""Schema migration: promotions (rules, granted quotes that count as uses) and refunds of
wallet payments (see host_sim.schema, host_sim.promotion_store and host_sim.refunds)."""

MIGRATION = """
CREATE TABLE promotion_rules (
    rule_id TEXT PRIMARY KEY,
    level TEXT NOT NULL CHECK (level IN ('national', 'province', 'station')),
    region TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ak TEXT NOT NULL
);
CREATE TABLE promotion_quotes (
    quote_id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    level TEXT NOT NULL,
    asn TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    station_id TEXT NOT NULL,
    grade INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    volume INTEGER NOT NULL CHECK (volume >= 0),
    discount INTEGER NOT NULL CHECK (discount > 0 AND discount <= amount),
    coupon TEXT,
    day TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ak TEXT NOT NULL
);
CREATE INDEX promotion_quotes_card ON promotion_quotes (rule_id, asn);
CREATE INDEX promotion_quotes_day ON promotion_quotes (rule_id, day);
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY,
    payment_txn_id INTEGER NOT NULL REFERENCES ledger_transactions (id),
    refund_txn_id INTEGER NOT NULL UNIQUE REFERENCES ledger_transactions (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    reason TEXT NOT NULL,
    ak TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_txn_id);
"""
