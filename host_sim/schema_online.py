"""Schema migration: online loads (圈存) and online unlocks (联机解扣), see host_sim.online_ops.

A load authorisation is keyed by (ASN, online CTC): the card moves its online CTC on with every
load, so one key is one load. An unlock is keyed by its grey record (ASN, lock CTC), which makes
"never unlock the same grey record twice" a primary key. Both rows are written in the same
transaction as the decision they record, so a restarted host still knows every MAC2 it gave.
`dt` is the BCD date-time sent with MAC2 (14 digits); MACs and randoms are upper-case hex.
"""

MIGRATION = """
CREATE TABLE load_authorizations (
    asn TEXT NOT NULL,
    online_ctc INTEGER NOT NULL,
    old_balance INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    term TEXT NOT NULL,
    station_id TEXT NOT NULL,
    dt TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('authorized', 'booked')),
    tac TEXT,
    txn_id INTEGER REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    authorized_at TEXT NOT NULL,
    booked_at TEXT,
    PRIMARY KEY (asn, online_ctc),
    CHECK ((status = 'booked') = (txn_id IS NOT NULL AND tac IS NOT NULL))
);
CREATE TABLE online_unlocks (
    asn TEXT NOT NULL,
    lock_ctc INTEGER NOT NULL,
    escape_bill_id INTEGER NOT NULL REFERENCES bills (id),
    rand TEXT NOT NULL,
    online_ctc INTEGER NOT NULL,
    balance INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    term TEXT NOT NULL,
    dt TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('authorized', 'confirmed')),
    balance_after INTEGER,
    mac3 TEXT,
    txn_id INTEGER REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    authorized_at TEXT NOT NULL,
    confirmed_at TEXT,
    PRIMARY KEY (asn, lock_ctc),
    FOREIGN KEY (asn, lock_ctc) REFERENCES grey_records (asn, lock_ctc),
    CHECK ((status = 'confirmed') = (mac3 IS NOT NULL))
);
CREATE INDEX online_unlocks_pending ON online_unlocks (asn, online_ctc, status);
ALTER TABLE grey_records ADD COLUMN unlocked_at TEXT;
"""

# The same migration for PostgreSQL (see host_sim.schema).
MIGRATION_PG = """
CREATE TABLE load_authorizations (
    asn TEXT NOT NULL,
    online_ctc BIGINT NOT NULL,
    old_balance BIGINT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    term TEXT NOT NULL,
    station_id TEXT NOT NULL,
    dt TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('authorized', 'booked')),
    tac TEXT,
    txn_id BIGINT REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    authorized_at TEXT NOT NULL,
    booked_at TEXT,
    PRIMARY KEY (asn, online_ctc),
    CHECK ((status = 'booked') = (txn_id IS NOT NULL AND tac IS NOT NULL))
);
CREATE TABLE online_unlocks (
    asn TEXT NOT NULL,
    lock_ctc BIGINT NOT NULL,
    escape_bill_id BIGINT NOT NULL REFERENCES bills (id),
    rand TEXT NOT NULL,
    online_ctc BIGINT NOT NULL,
    balance BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    term TEXT NOT NULL,
    dt TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('authorized', 'confirmed')),
    balance_after BIGINT,
    mac3 TEXT,
    txn_id BIGINT REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    authorized_at TEXT NOT NULL,
    confirmed_at TEXT,
    PRIMARY KEY (asn, lock_ctc),
    FOREIGN KEY (asn, lock_ctc) REFERENCES grey_records (asn, lock_ctc),
    CHECK ((status = 'confirmed') = (mac3 IS NOT NULL))
);
CREATE INDEX online_unlocks_pending ON online_unlocks (asn, online_ctc, status);
ALTER TABLE grey_records ADD COLUMN unlocked_at TEXT;
"""
