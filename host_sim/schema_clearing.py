"""Schema migration: Clearing, settlement and reconciliation (see host_sim.schema).

A business day is the date of a bill's own dt (the station's wall time). Each booked bill is
cleared once (`clearing_bills`); a day's lines are per (station, payment type) with the fee in
basis points that applied, and the T+n settlement date. Reconciliation runs keep their findings
so that the people who work the manual ones can read them later.
"""

MIGRATION = """
CREATE INDEX bills_dt ON bills (bill_dt);
CREATE TABLE merchants (
    station_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL
);
CREATE TABLE fee_rules (
    merchant_id TEXT NOT NULL,
    payment_type TEXT NOT NULL,
    basis_points INTEGER NOT NULL CHECK (basis_points BETWEEN 0 AND 10000),
    PRIMARY KEY (merchant_id, payment_type)
);
CREATE TABLE clearing_days (
    day TEXT PRIMARY KEY,
    cleared_at TEXT NOT NULL,
    settle_date TEXT NOT NULL,
    settled_at TEXT
);
CREATE TABLE clearing_lines (
    day TEXT NOT NULL REFERENCES clearing_days (day),
    station_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    payment_type TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    gross INTEGER NOT NULL,
    basis_points INTEGER NOT NULL,
    fee INTEGER NOT NULL,
    net INTEGER NOT NULL CHECK (net = gross - fee),
    settle_date TEXT NOT NULL,
    txn_id INTEGER REFERENCES ledger_transactions (id),
    PRIMARY KEY (day, station_id, payment_type)
);
CREATE TABLE clearing_bills (
    bill_id INTEGER PRIMARY KEY REFERENCES bills (id),
    day TEXT NOT NULL REFERENCES clearing_days (day)
);
CREATE INDEX clearing_bills_day ON clearing_bills (day);
CREATE TABLE recon_runs (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    ran_at TEXT NOT NULL,
    stations INTEGER NOT NULL,
    station_bills INTEGER NOT NULL,
    host_bills INTEGER NOT NULL
);
CREATE INDEX recon_runs_day ON recon_runs (day, id);
CREATE TABLE recon_findings (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES recon_runs (id),
    kind TEXT NOT NULL,
    station_id TEXT NOT NULL,
    term TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    bill_type INTEGER NOT NULL,
    station_amount INTEGER,
    host_amount INTEGER,
    check_name TEXT NOT NULL,
    detail TEXT NOT NULL,
    handling TEXT NOT NULL CHECK (handling IN ('auto', 'manual')),
    action TEXT NOT NULL
);
CREATE INDEX recon_findings_run ON recon_findings (run_id, station_id);
"""
