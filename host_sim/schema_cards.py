"""Schema migration: the card registry and master→sub fund allocations (see host_sim.cards)."""

MIGRATION = """
CREATE TABLE cards (
    asn TEXT PRIMARY KEY CHECK (length(asn) = 20),
    kind TEXT NOT NULL CHECK (kind IN ('single', 'master', 'sub')),
    master_asn TEXT REFERENCES cards (asn),
    holder TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    issued_at TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    CHECK ((kind = 'sub') = (master_asn IS NOT NULL))
);
CREATE INDEX cards_master ON cards (master_asn);
CREATE TABLE card_allocations (
    request_id TEXT PRIMARY KEY,
    master_asn TEXT NOT NULL REFERENCES cards (asn),
    sub_asn TEXT NOT NULL REFERENCES cards (asn),
    amount INTEGER NOT NULL CHECK (amount > 0),
    txn_id INTEGER NOT NULL REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    allocated_at TEXT NOT NULL
);
CREATE INDEX card_allocations_sub ON card_allocations (sub_asn);
"""

# The same migration for PostgreSQL (see host_sim.schema).
MIGRATION_PG = """
CREATE TABLE cards (
    asn TEXT PRIMARY KEY CHECK (length(asn) = 20),
    kind TEXT NOT NULL CHECK (kind IN ('single', 'master', 'sub')),
    master_asn TEXT REFERENCES cards (asn),
    holder TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    issued_at TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    CHECK ((kind = 'sub') = (master_asn IS NOT NULL))
);
CREATE INDEX cards_master ON cards (master_asn);
CREATE TABLE card_allocations (
    request_id TEXT PRIMARY KEY,
    master_asn TEXT NOT NULL REFERENCES cards (asn),
    sub_asn TEXT NOT NULL REFERENCES cards (asn),
    amount BIGINT NOT NULL CHECK (amount > 0),
    txn_id BIGINT NOT NULL REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    allocated_at TEXT NOT NULL
);
CREATE INDEX card_allocations_sub ON card_allocations (sub_asn);
"""
