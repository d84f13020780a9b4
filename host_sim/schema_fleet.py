"""Schema migration: Fleet accounts and virtual cards (see host_sim.schema).

- `fleet_companies`, `fleet_users` (role admin/driver, one `app` access key each);
- `vfc_cards` (alias, card number, expiry, kv, bound driver with a binding generation, status,
  the ATC high-water mark and the last clock offset seen from an unsynchronised phone),
  `vfc_limits`;
- `vfc_luks`: limited-use keys handed out (budget, TTL, revocation); the key bytes are not
  stored, the HSM derives them again;
- `vfc_uses`: one row per presented code that passed the cryptogram and time checks. The
  primary key (card, binding, ATC) and the unique cryptogram make replay impossible, and the row
  is inserted in the same transaction as the authorisation. A re-bound card's new phone starts
  its ATC at 1 again: the old binding's keys are revoked, so its codes never get this far;
- `vfc_failures`: cryptogram failures per card (throttling);
- `vfc_payments`: one row per VFC payment, the table clearing/reconciliation reads;
- `fleet_topups`: top-ups of a company account by bank card.
"""

MIGRATION = """
CREATE TABLE fleet_companies (
    company_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE fleet_users (
    user_id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'driver')),
    name TEXT NOT NULL,
    ak TEXT NOT NULL UNIQUE REFERENCES access_keys (ak),
    created_at TEXT NOT NULL
);
CREATE TABLE vfc_cards (
    card_id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    alias TEXT NOT NULL UNIQUE CHECK (length(alias) = 8),
    card_number TEXT NOT NULL UNIQUE CHECK (length(card_number) = 16),
    expiry TEXT NOT NULL,
    kv INTEGER NOT NULL,
    driver_id TEXT REFERENCES fleet_users (user_id),
    binding INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    block_reason TEXT NOT NULL DEFAULT '',
    atc_high INTEGER NOT NULL DEFAULT -1,
    last_offset_s INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX vfc_cards_company ON vfc_cards (company_id);
CREATE INDEX vfc_cards_driver ON vfc_cards (driver_id);
CREATE TABLE vfc_limits (
    card_id TEXT PRIMARY KEY REFERENCES vfc_cards (card_id),
    per_day_amount INTEGER CHECK (per_day_amount IS NULL OR per_day_amount >= 0),
    per_day_count INTEGER CHECK (per_day_count IS NULL OR per_day_count >= 0),
    per_fill_amount INTEGER CHECK (per_fill_amount IS NULL OR per_fill_amount >= 0),
    products TEXT,
    stations TEXT
);
CREATE TABLE vfc_luks (
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    luk_index INTEGER NOT NULL CHECK (luk_index BETWEEN 0 AND 65535),
    kv INTEGER NOT NULL,
    driver_id TEXT NOT NULL,
    binding INTEGER NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    budget INTEGER NOT NULL CHECK (budget > 0),
    used INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    PRIMARY KEY (card_id, luk_index)
) WITHOUT ROWID;
CREATE TABLE vfc_uses (
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    binding INTEGER NOT NULL,
    atc INTEGER NOT NULL,
    cryptogram TEXT NOT NULL UNIQUE,
    luk_index INTEGER NOT NULL,
    terminal_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    used_at TEXT NOT NULL,
    PRIMARY KEY (card_id, binding, atc)
) WITHOUT ROWID;
CREATE TABLE vfc_failures (
    id INTEGER PRIMARY KEY,
    card_id TEXT NOT NULL,
    code TEXT NOT NULL,
    at_epoch REAL NOT NULL
);
CREATE INDEX vfc_failures_card ON vfc_failures (card_id, at_epoch);
CREATE TABLE vfc_payments (
    payment_id INTEGER PRIMARY KEY,
    model TEXT NOT NULL CHECK (model IN ('prepaid', 'flash')),
    status TEXT NOT NULL CHECK (status IN ('held', 'completed', 'released', 'captured')),
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    company_id TEXT NOT NULL,
    station_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    pump INTEGER NOT NULL,
    product TEXT NOT NULL,
    held_amount INTEGER NOT NULL DEFAULT 0 CHECK (held_amount >= 0),
    amount INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),
    sale_id TEXT,
    atc INTEGER NOT NULL,
    luk_index INTEGER NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('qr', 'nfc', 'numeric')),
    hold_txn_id INTEGER REFERENCES ledger_transactions (id),
    settle_txn_id INTEGER REFERENCES ledger_transactions (id),
    created_at TEXT NOT NULL,
    closed_at TEXT,
    day TEXT NOT NULL
);
CREATE UNIQUE INDEX vfc_payments_sale ON vfc_payments (station_id, terminal_id, sale_id)
    WHERE sale_id IS NOT NULL;
CREATE INDEX vfc_payments_card_day ON vfc_payments (card_id, day);
CREATE INDEX vfc_payments_card_time ON vfc_payments (card_id, created_at);
CREATE INDEX vfc_payments_station ON vfc_payments (station_id, closed_at);
CREATE TABLE fleet_topups (
    topup_id INTEGER PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    card_last4 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('approved', 'declined')),
    decline_code TEXT NOT NULL DEFAULT '',
    acquirer_ref TEXT NOT NULL,
    txn_id INTEGER REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

# The same migration for PostgreSQL (see host_sim.schema).
MIGRATION_PG = """
CREATE TABLE fleet_companies (
    company_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE fleet_users (
    user_id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'driver')),
    name TEXT NOT NULL,
    ak TEXT NOT NULL UNIQUE REFERENCES access_keys (ak),
    created_at TEXT NOT NULL
);
CREATE TABLE vfc_cards (
    card_id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    alias TEXT NOT NULL UNIQUE CHECK (length(alias) = 8),
    card_number TEXT NOT NULL UNIQUE CHECK (length(card_number) = 16),
    expiry TEXT NOT NULL,
    kv BIGINT NOT NULL,
    driver_id TEXT REFERENCES fleet_users (user_id),
    binding BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    block_reason TEXT NOT NULL DEFAULT '',
    atc_high BIGINT NOT NULL DEFAULT -1,
    last_offset_s BIGINT,
    created_at TEXT NOT NULL
);
CREATE INDEX vfc_cards_company ON vfc_cards (company_id);
CREATE INDEX vfc_cards_driver ON vfc_cards (driver_id);
CREATE TABLE vfc_limits (
    card_id TEXT PRIMARY KEY REFERENCES vfc_cards (card_id),
    per_day_amount BIGINT CHECK (per_day_amount IS NULL OR per_day_amount >= 0),
    per_day_count BIGINT CHECK (per_day_count IS NULL OR per_day_count >= 0),
    per_fill_amount BIGINT CHECK (per_fill_amount IS NULL OR per_fill_amount >= 0),
    products TEXT,
    stations TEXT
);
CREATE TABLE vfc_luks (
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    luk_index BIGINT NOT NULL CHECK (luk_index BETWEEN 0 AND 65535),
    kv BIGINT NOT NULL,
    driver_id TEXT NOT NULL,
    binding BIGINT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    budget BIGINT NOT NULL CHECK (budget > 0),
    used BIGINT NOT NULL DEFAULT 0,
    revoked BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    PRIMARY KEY (card_id, luk_index)
);
CREATE TABLE vfc_uses (
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    binding BIGINT NOT NULL,
    atc BIGINT NOT NULL,
    cryptogram TEXT NOT NULL UNIQUE,
    luk_index BIGINT NOT NULL,
    terminal_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    used_at TEXT NOT NULL,
    PRIMARY KEY (card_id, binding, atc)
);
CREATE TABLE vfc_failures (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    card_id TEXT NOT NULL,
    code TEXT NOT NULL,
    at_epoch DOUBLE PRECISION NOT NULL
);
CREATE INDEX vfc_failures_card ON vfc_failures (card_id, at_epoch);
CREATE TABLE vfc_payments (
    payment_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    model TEXT NOT NULL CHECK (model IN ('prepaid', 'flash')),
    status TEXT NOT NULL CHECK (status IN ('held', 'completed', 'released', 'captured')),
    card_id TEXT NOT NULL REFERENCES vfc_cards (card_id),
    company_id TEXT NOT NULL,
    station_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    pump BIGINT NOT NULL,
    product TEXT NOT NULL,
    held_amount BIGINT NOT NULL DEFAULT 0 CHECK (held_amount >= 0),
    amount BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    sale_id TEXT,
    atc BIGINT NOT NULL,
    luk_index BIGINT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('qr', 'nfc', 'numeric')),
    hold_txn_id BIGINT REFERENCES ledger_transactions (id),
    settle_txn_id BIGINT REFERENCES ledger_transactions (id),
    created_at TEXT NOT NULL,
    closed_at TEXT,
    day TEXT NOT NULL
);
CREATE UNIQUE INDEX vfc_payments_sale ON vfc_payments (station_id, terminal_id, sale_id)
    WHERE sale_id IS NOT NULL;
CREATE INDEX vfc_payments_card_day ON vfc_payments (card_id, day);
CREATE INDEX vfc_payments_card_time ON vfc_payments (card_id, created_at);
CREATE INDEX vfc_payments_station ON vfc_payments (station_id, closed_at);
CREATE TABLE fleet_topups (
    topup_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES fleet_companies (company_id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    card_last4 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('approved', 'declined')),
    decline_code TEXT NOT NULL DEFAULT '',
    acquirer_ref TEXT NOT NULL,
    txn_id BIGINT REFERENCES ledger_transactions (id),
    ak TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""
