"""Schema migration: store POS sales (see host_sim.schema and host_sim.store_sales)."""

MIGRATION = """
CREATE TABLE store_sales (
    id INTEGER PRIMARY KEY,
    term TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    raw BLOB NOT NULL CHECK (length(raw) = 45),
    asn TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    balance_after INTEGER NOT NULL,
    sale_dt TEXT NOT NULL,
    product INTEGER NOT NULL,
    receipt_no INTEGER NOT NULL,
    txn_id INTEGER NOT NULL REFERENCES ledger_transactions (id),
    station_id TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    ak TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (term, psam_ttc)
);
CREATE INDEX store_sales_station ON store_sales (station_id, sale_dt);
ALTER TABLE exceptions ADD COLUMN record TEXT NOT NULL DEFAULT 'bill'
    CHECK (record IN ('bill', 'store_sale'));
"""
