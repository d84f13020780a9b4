"""The host schema as numbered migrations: append a new string, never edit an applied one.

Times are ISO 8601 UTC text (`…Z`); nonce expiry is epoch seconds so it can be compared
directly. Money is integer fen. The ledger enforces double entry in the database itself: a
transaction row can only be inserted once its postings (inserted first, the foreign key is
deferred to COMMIT) number at least two and sum to zero; postings and transactions are
append-only.

`MIGRATIONS_PG` is the same schema for PostgreSQL, migration for migration (number n is the
same change in both lists): `BIGINT` for integers, identity columns for SQLite's rowid keys,
`BYTEA` for blobs, `DOUBLE PRECISION` for reals, and plpgsql trigger functions raising SQLSTATE
23000 (an integrity error, as SQLite's `RAISE(ABORT)` is) for the ledger's rules.
"""

from __future__ import annotations

from host_sim import (
    schema_cards,
    schema_clearing,
    schema_fleet,
    schema_online,
    schema_promotions,
    schema_store,
)

_ACCESS = """
CREATE TABLE access_keys (
    ak TEXT PRIMARY KEY,
    sk TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('terminal', 'station', 'app', 'partner')),
    scopes TEXT NOT NULL,
    owner TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    rate_per_minute INTEGER CHECK (rate_per_minute IS NULL OR rate_per_minute >= 0),
    created_at TEXT NOT NULL
);
CREATE TABLE terminals (
    terminal_id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL
);
CREATE TABLE nonces (
    ak TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (ak, nonce)
) WITHOUT ROWID;
CREATE INDEX nonces_expiry ON nonces (expires_at);
CREATE TABLE rate_windows (
    ak TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (ak, window_start)
) WITHOUT ROWID;
"""

_LEDGER = """
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    normal_side TEXT NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    created_at TEXT NOT NULL
);
CREATE TABLE ledger_transactions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL,
    posted_at TEXT NOT NULL
);
CREATE TABLE postings (
    id INTEGER PRIMARY KEY,
    txn_id INTEGER NOT NULL
        REFERENCES ledger_transactions (id) DEFERRABLE INITIALLY DEFERRED,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount INTEGER NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_txn ON postings (txn_id);
CREATE INDEX postings_account ON postings (account_id, txn_id);
CREATE TRIGGER postings_into_closed_transaction BEFORE INSERT ON postings
WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.txn_id)
BEGIN
    SELECT RAISE(ABORT, 'ledger: the transaction is already closed');
END;
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN
    SELECT RAISE(ABORT, 'ledger: postings are append-only');
END;
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN
    SELECT RAISE(ABORT, 'ledger: postings are append-only');
END;
CREATE TRIGGER ledger_transactions_balanced BEFORE INSERT ON ledger_transactions
WHEN (SELECT COUNT(*) FROM postings WHERE txn_id = NEW.id) < 2
    OR (SELECT SUM(amount) FROM postings WHERE txn_id = NEW.id) <> 0
BEGIN
    SELECT RAISE(ABORT, 'ledger: a transaction needs two or more postings summing to zero');
END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN
    SELECT RAISE(ABORT, 'ledger: transactions are append-only');
END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN
    SELECT RAISE(ABORT, 'ledger: transactions are append-only');
END;
"""

_BILLS = """
CREATE TABLE bills (
    id INTEGER PRIMARY KEY,
    term TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    bill_type INTEGER NOT NULL,
    raw BLOB NOT NULL CHECK (length(raw) = 128),
    asn TEXT NOT NULL,
    ctc INTEGER NOT NULL,
    lock_ctc INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    bill_dt TEXT NOT NULL,
    bill_ttc INTEGER NOT NULL,
    psam_tac_verified INTEGER NOT NULL CHECK (psam_tac_verified IN (0, 1)),
    txn_id INTEGER REFERENCES ledger_transactions (id),
    uploaded_by TEXT NOT NULL,
    station_id TEXT NOT NULL,
    ak TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (term, psam_ttc, bill_type)
);
CREATE INDEX bills_card ON bills (asn, lock_ctc);
CREATE TABLE grey_records (
    asn TEXT NOT NULL,
    lock_ctc INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'settled')),
    psam_tac BLOB NOT NULL,
    psam_tac_verified INTEGER NOT NULL CHECK (psam_tac_verified IN (0, 1)),
    txn_id INTEGER REFERENCES ledger_transactions (id),
    escape_bill_id INTEGER REFERENCES bills (id),
    settle_bill_id INTEGER REFERENCES bills (id),
    PRIMARY KEY (asn, lock_ctc)
);
CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY,
    raw_sha256 TEXT NOT NULL UNIQUE,
    raw BLOB NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    asn TEXT NOT NULL,
    term TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    bill_type INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL,
    ak TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    seen INTEGER NOT NULL DEFAULT 1
);
"""

_BLACKLIST = """
CREATE TABLE blacklist_changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    asn TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('add', 'remove')),
    reason TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    ak TEXT NOT NULL
);
CREATE TABLE blacklist (
    asn TEXT PRIMARY KEY,
    version INTEGER NOT NULL REFERENCES blacklist_changes (version),
    reason TEXT NOT NULL,
    since TEXT NOT NULL
);
"""

_ACCESS_PG = """
CREATE TABLE access_keys (
    ak TEXT PRIMARY KEY,
    sk TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('terminal', 'station', 'app', 'partner')),
    scopes TEXT NOT NULL,
    owner TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    rate_per_minute BIGINT CHECK (rate_per_minute IS NULL OR rate_per_minute >= 0),
    created_at TEXT NOT NULL
);
CREATE TABLE terminals (
    terminal_id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL
);
CREATE TABLE nonces (
    ak TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (ak, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);
CREATE TABLE rate_windows (
    ak TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (ak, window_start)
);
"""

# One function refuses for every ledger trigger; the message is the trigger's argument.
_LEDGER_PG = """
CREATE TABLE accounts (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    normal_side TEXT NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    created_at TEXT NOT NULL
);
CREATE TABLE ledger_transactions (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL,
    posted_at TEXT NOT NULL
);
CREATE TABLE postings (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    txn_id BIGINT NOT NULL
        REFERENCES ledger_transactions (id) DEFERRABLE INITIALLY DEFERRED,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_txn ON postings (txn_id);
CREATE INDEX postings_account ON postings (account_id, txn_id);
CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation', MESSAGE = TG_ARGV[0];
END
$$;
CREATE FUNCTION ledger_posting_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.txn_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'ledger: the transaction is already closed';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COUNT(*) FROM postings WHERE txn_id = NEW.id) < 2
        OR (SELECT SUM(amount) FROM postings WHERE txn_id = NEW.id) <> 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'ledger: a transaction needs two or more postings summing to zero';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER postings_into_closed_transaction BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_posting_open();
CREATE TRIGGER postings_no_update BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse('ledger: postings are append-only');
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse('ledger: postings are append-only');
CREATE TRIGGER ledger_transactions_balanced BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse('ledger: transactions are append-only');
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse('ledger: transactions are append-only');
"""

_BILLS_PG = """
CREATE TABLE bills (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    term TEXT NOT NULL,
    psam_ttc BIGINT NOT NULL,
    bill_type BIGINT NOT NULL,
    raw BYTEA NOT NULL CHECK (length(raw) = 128),
    asn TEXT NOT NULL,
    ctc BIGINT NOT NULL,
    lock_ctc BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    bill_dt TEXT NOT NULL,
    bill_ttc BIGINT NOT NULL,
    psam_tac_verified BIGINT NOT NULL CHECK (psam_tac_verified IN (0, 1)),
    txn_id BIGINT REFERENCES ledger_transactions (id),
    uploaded_by TEXT NOT NULL,
    station_id TEXT NOT NULL,
    ak TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (term, psam_ttc, bill_type)
);
CREATE INDEX bills_card ON bills (asn, lock_ctc);
CREATE TABLE grey_records (
    asn TEXT NOT NULL,
    lock_ctc BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'settled')),
    psam_tac BYTEA NOT NULL,
    psam_tac_verified BIGINT NOT NULL CHECK (psam_tac_verified IN (0, 1)),
    txn_id BIGINT REFERENCES ledger_transactions (id),
    escape_bill_id BIGINT REFERENCES bills (id),
    settle_bill_id BIGINT REFERENCES bills (id),
    PRIMARY KEY (asn, lock_ctc)
);
CREATE TABLE exceptions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    raw_sha256 TEXT NOT NULL UNIQUE,
    raw BYTEA NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    asn TEXT NOT NULL,
    term TEXT NOT NULL,
    psam_ttc BIGINT NOT NULL,
    bill_type BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    ak TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    seen BIGINT NOT NULL DEFAULT 1
);
"""

_BLACKLIST_PG = """
CREATE TABLE blacklist_changes (
    version BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    asn TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('add', 'remove')),
    reason TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    ak TEXT NOT NULL
);
CREATE TABLE blacklist (
    asn TEXT PRIMARY KEY,
    version BIGINT NOT NULL REFERENCES blacklist_changes (version),
    reason TEXT NOT NULL,
    since TEXT NOT NULL
);
"""

MIGRATIONS: list[str] = [
    _ACCESS,
    _LEDGER,
    _BILLS,
    _BLACKLIST,
    schema_online.MIGRATION,
    schema_clearing.MIGRATION,
    schema_promotions.MIGRATION,
    schema_fleet.MIGRATION,
    schema_store.MIGRATION,
    schema_cards.MIGRATION,
]
"""Migration n is MIGRATIONS[n - 1]; `schema_version` records the ones applied."""

MIGRATIONS_PG: list[str] = [
    _ACCESS_PG,
    _LEDGER_PG,
    _BILLS_PG,
    _BLACKLIST_PG,
    schema_online.MIGRATION_PG,
    schema_clearing.MIGRATION_PG,
    schema_promotions.MIGRATION_PG,
    schema_fleet.MIGRATION_PG,
    schema_store.MIGRATION_PG,
    schema_cards.MIGRATION_PG,
]
"""The same migrations for PostgreSQL (host_sim.pg), in the same order."""
