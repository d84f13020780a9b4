"""A station: its dispensers and store POS, a durable bill outbox, blacklist sync and shifts.

Every bill a dispenser publishes (a BILL event) and every store sale (a RECEIPT event, or found
in the store POS's journal by `collect()`) goes first into the station's **outbox**, one SQLite
file in WAL mode with synchronous=FULL (the journal's style). `upload()` sends the pending bills
and sales to the host in batches; a bill leaves the pending state only when the host has answered
for it (`accepted` or `duplicate` → sent, `rejected` → rejected with the host's reason). A host
that cannot be reached leaves everything pending and moves the retry time back (exponential
backoff). The host identifies a bill by (term, PSAM TTC, bill type), so sending a bill again
after a crash or a lost answer is answered `duplicate` and never booked twice.

`sync_blacklist()` applies the host's versioned blacklist changes since the version it last
applied (kept in the same file, with the list), and `blacklisted(asn)` is what the station's
dispensers check at card insertion.

Shifts (班结): `open_shift(staff)` and `close_shift()`; the report is computed from the bills
and store receipts recorded in the outbox during the shift. Store sales arrive as the stores'
RECEIPT events (`record_receipt()` books one by hand). The stores check the station's synced
blacklist, as the dispensers do.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cardcore.errors import FuelsimError
from cardcore.ports import Clock
from cardcore.records import Bill, StoreSale
from host_sim.bills import MAX_BATCH
from terminal_sim.dispenser import Dispenser, StationBills
from terminal_sim.events import BILL, MESSAGE, RECEIPT, UPLOAD, Event, EventBus
from terminal_sim.fuelling import BillType
from terminal_sim.host_client import BillResult, HostClient, HostError
from terminal_sim.store_pos import Item, Receipt, StorePos

SCHEMA = """
CREATE TABLE IF NOT EXISTS shift (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    bill_type INTEGER NOT NULL,
    bill_ttc INTEGER NOT NULL,
    source TEXT NOT NULL,
    raw BLOB NOT NULL,
    shift INTEGER REFERENCES shift(id),
    recorded_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    host_status TEXT,
    host_bill_id INTEGER,
    reason TEXT,
    message TEXT,
    last_error TEXT,
    UNIQUE (terminal, psam_ttc, bill_type)
);
CREATE TABLE IF NOT EXISTS receipt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    term TEXT NOT NULL,
    psam_ttc INTEGER NOT NULL,
    number INTEGER NOT NULL,
    asn TEXT NOT NULL,
    amount INTEGER NOT NULL,
    product INTEGER NOT NULL,
    dt BLOB NOT NULL,
    shift INTEGER REFERENCES shift(id),
    UNIQUE (term, psam_ttc)
);
CREATE TABLE IF NOT EXISTS blacklist (asn TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

STORE_SALE_TYPE = 0x05  # outbox rows of store sales: the card's transaction type, ED purchase
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 600


class StationError(FuelsimError):
    title = "station"


@dataclass(frozen=True)
class UploadReport:
    """What one `upload()` did: counts of this call, what is still pending, and the failure."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    pending: int = 0
    error: str | None = None
    failures: int = 0  # consecutive failed attempts (the backoff counter)
    retry_at: datetime | None = None
    skipped: bool = False  # called before retry_at without force: nothing was sent

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


@dataclass(frozen=True)
class BlacklistSync:
    version: int
    added: int = 0
    removed: int = 0
    error: str | None = None


@dataclass(frozen=True)
class OutboxState:
    pending: int
    sent: int
    rejected: int


@dataclass(frozen=True)
class PaymentTotal:
    count: int = 0
    amount: int = 0  # fen


@dataclass(frozen=True)
class ProductTotal:
    product: int  # grade code, or the store product code
    volume: int  # 0.01 L (0 for store sales)
    amount: int  # fen
    count: int


@dataclass(frozen=True)
class EscapeLine:
    """An escape bill of the shift: fuel delivered, the card still grey (pending re-debit)."""

    terminal: str
    asn: bytes
    lock_ctc: int
    grade: int
    volume: int
    amount: int
    settled: bool  # a re-debit of the same grey record is in the outbox


@dataclass(frozen=True)
class ShiftReport:
    shift: int
    station: str
    station_id: str
    staff: str
    opened_at: str
    closed_at: str
    fuelling: PaymentTotal  # card fuelling bills (type 00)
    redebit: PaymentTotal  # card re-debit bills (type 02)
    store: PaymentTotal  # store card purchases (receipts)
    escapes: list[EscapeLine]  # escape bills (type 01), listed apart: not paid yet
    products: list[ProductTotal]  # paid sales by grade, store sales under the store code
    bills: int  # bills recorded during the shift, escape bills included
    receipts: int
    shift_pending: int  # bills of this shift not yet accepted by the host
    outbox: OutboxState  # the whole outbox, other shifts included

    @property
    def total(self) -> int:
        """Money taken from cards during the shift (escape bills are not taken yet)."""
        return self.fuelling.amount + self.redebit.amount + self.store.amount

    @property
    def escape_pending(self) -> int:
        return sum(e.amount for e in self.escapes if not e.settled)


@dataclass
class _Shift:
    id: int
    staff: str
    opened_at: str


@dataclass
class _Counts:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rows: list[int] = field(default_factory=list)


def _terminal(term: bytes) -> str:
    return term.hex().upper()


class Station:
    def __init__(
        self,
        name: str,
        station_id: str,
        dispensers: Sequence[Dispenser],
        store_pos_list: Sequence[StorePos],
        host: HostClient | None,
        bus: EventBus,
        clock: Clock,
        outbox_path: Path | str,
        *,
        batch_size: int = MAX_BATCH,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1..{MAX_BATCH}")
        self.name = name
        self.station_id = station_id
        self.dispensers = list(dispensers)
        self.store_pos_list = list(store_pos_list)
        self.host = host
        self.bus = bus
        self.clock = clock
        self.batch_size = batch_size
        self.path = str(outbox_path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._blacklist = {row[0] for row in self._db.execute("SELECT asn FROM blacklist")}
        self.unrecorded: list[tuple[str, Bill]] = []  # bills the outbox could not take (yet)
        # One escape-bill book for the station, so any pump re-debits any pump's escape bill.
        self.escape_bills = StationBills()
        for dispenser in self.dispensers:
            self.escape_bills.escape.update(dispenser.station.escape)
            dispenser.station = self.escape_bills
            dispenser.blacklisted = self.blacklisted
        for pos in self.store_pos_list:
            pos.blacklisted = self.blacklisted
        self._names = {d.name for d in self.dispensers}
        self._stores = {pos.name for pos in self.store_pos_list}
        buses = (
            {id(bus): bus}
            | {id(d.bus): d.bus for d in self.dispensers}
            | {id(p.bus): p.bus for p in self.store_pos_list}
        )
        self._unsubscribe = [b.subscribe(self._on_event) for b in buses.values()]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # The outbox -----------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        """A BILL of one of the station's dispensers: into the outbox. Never raises (the bus
        drops a subscriber that raises); a bill that cannot be stored is kept in memory and
        stored again by the next `collect()` or `upload()`."""
        if event.kind == RECEIPT and event.terminal in self._stores:
            try:
                self.record_receipt(event.data["receipt"])  # idempotent: booked once
            except Exception as exc:
                self.bus.publish(Event(MESSAGE, self.name, {"text": f"receipt not booked: {exc}"}))
            return
        if event.kind != BILL or event.terminal not in self._names:
            return
        bill = event.data["bill"]
        try:
            self.record_bill(bill, event.terminal)
        except Exception as exc:
            self.unrecorded.append((event.terminal, bill))
            self.bus.publish(
                Event(MESSAGE, self.name, {"text": f"outbox write failed, kept in memory: {exc}"})
            )

    def record_bill(self, bill: Bill, source: str) -> bool:
        """Store one bill durably (pending); False when the outbox already holds it."""
        shift = self.current_shift()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO outbox (terminal, psam_ttc, bill_type, bill_ttc, source,"
                " raw, shift, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _terminal(bill.term),
                    bill.psam_ttc,
                    bill.tx_type,
                    bill.bill_ttc,
                    source,
                    bill.to_bytes(),
                    None if shift is None else shift.id,
                    self.clock.now().isoformat(),
                ),
            )
            return cursor.rowcount == 1

    def collect(self) -> int:
        """Store the bills the outbox missed: those kept in memory after a failed write, and
        any in a dispenser's `bills` (the outbox ignores those it holds). Returns how many."""
        added = 0
        while self.unrecorded:
            source, bill = self.unrecorded[0]
            added += self.record_bill(bill, source)
            self.unrecorded.pop(0)
        for dispenser in self.dispensers:
            for bill in dispenser.bills:
                added += self.record_bill(bill, dispenser.name)
        for pos in self.store_pos_list:  # sales whose RECEIPT event the station missed
            for raw in pos.journaled_sales():
                added += self.record_sale(pos.name, StoreSale.from_bytes(raw))
        return added

    def outbox_state(self) -> OutboxState:
        with self._lock:
            rows = dict(self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
        return OutboxState(rows.get("pending", 0), rows.get("sent", 0), rows.get("rejected", 0))

    def pending_bills(self) -> list[Bill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT raw FROM outbox WHERE status = 'pending' AND bill_type <> ? ORDER BY id",
                (STORE_SALE_TYPE,),
            ).fetchall()
        return [Bill.from_bytes(raw) for (raw,) in rows]

    def rejected_bills(self) -> list[tuple[Bill, str, str]]:
        """(bill, reason, message) of the bills the host refused."""
        with self._lock:
            rows = self._db.execute(
                "SELECT raw, reason, message FROM outbox WHERE status = 'rejected'"
                " AND bill_type <> ? ORDER BY id",
                (STORE_SALE_TYPE,),
            ).fetchall()
        return [(Bill.from_bytes(raw), str(r), str(m)) for raw, r, m in rows]

    # Upload ---------------------------------------------------------------------------------
    def failures(self) -> int:
        return int(self._meta("upload_failures") or 0)

    def retry_at(self) -> datetime | None:
        stamp = self._meta("upload_retry_at")
        return None if stamp is None else datetime.fromisoformat(stamp)

    def upload(self, *, force: bool = False) -> UploadReport:
        """Send the pending bills, batch by batch and terminal by terminal.

        Before `retry_at` (after a failure) nothing is sent unless `force`. A failed call leaves
        its batch and the rest pending, counts the failure and sets the next retry time.
        """
        self.collect()
        retry_at = self.retry_at()
        if not force and retry_at is not None and self.clock.now() < retry_at:
            return self._report(_Counts(), None, skipped=True)
        if self.host is None:
            return self._failed(_Counts(), "no host configured")
        counts = _Counts()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, terminal, bill_type = ?, raw FROM outbox WHERE status = 'pending'"
                " ORDER BY id",
                (STORE_SALE_TYPE,),
            ).fetchall()
        by_terminal: dict[tuple[str, bool], list[tuple[int, bytes]]] = {}
        for row_id, terminal, is_sale, raw in rows:
            by_terminal.setdefault((terminal, bool(is_sale)), []).append((row_id, raw))
        for (terminal, is_sale), items in by_terminal.items():
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                ids = [row_id for row_id, _ in batch]
                raws = [raw for _, raw in batch]
                try:
                    if is_sale:
                        sales = [StoreSale.from_bytes(raw) for raw in raws]
                        results = self.host.upload_store_sales(sales, terminal_id=terminal)
                    else:
                        bills = [Bill.from_bytes(raw) for raw in raws]
                        results = self.host.upload_bills(bills, terminal_id=terminal)
                except HostError as exc:
                    self._attempted(ids, str(exc))
                    return self._failed(counts, str(exc))
                if len(results) != len(batch):
                    message = f"host answered {len(results)} results for {len(batch)} bills"
                    self._attempted(ids, message)
                    return self._failed(counts, message)
                self._mark(ids, results, counts)
        with self._write() as conn:
            self._set_meta(conn, "upload_failures", "0")
            conn.execute("DELETE FROM meta WHERE key = 'upload_retry_at'")
        return self._report(counts, None)

    def _attempted(self, ids: list[int], error: str) -> None:
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [(error, row_id) for row_id in ids],
            )

    def _mark(self, ids: list[int], results: list[BillResult], counts: _Counts) -> None:
        with self._write() as conn:
            for row_id, result in zip(ids, sorted(results, key=lambda r: r.index), strict=True):
                if result.status in ("accepted", "duplicate"):
                    status = "sent"
                    if result.status == "accepted":
                        counts.accepted += 1
                    else:
                        counts.duplicates += 1
                else:
                    status = "rejected"
                    counts.rejected += 1
                conn.execute(
                    "UPDATE outbox SET status = ?, attempts = attempts + 1, host_status = ?,"
                    " host_bill_id = ?, reason = ?, message = ?, last_error = NULL WHERE id = ?",
                    (
                        status,
                        result.status,
                        result.bill_id,
                        result.reason,
                        result.message,
                        row_id,
                    ),
                )

    def _failed(self, counts: _Counts, error: str) -> UploadReport:
        failures = self.failures() + 1
        delay = min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S)
        retry_at = self.clock.now() + timedelta(seconds=delay)
        with self._write() as conn:
            self._set_meta(conn, "upload_failures", str(failures))
            self._set_meta(conn, "upload_retry_at", retry_at.isoformat())
        return self._report(counts, error)

    def _report(self, counts: _Counts, error: str | None, *, skipped: bool = False) -> UploadReport:
        report = UploadReport(
            accepted=counts.accepted,
            duplicates=counts.duplicates,
            rejected=counts.rejected,
            pending=self.outbox_state().pending,
            error=error,
            failures=self.failures(),
            retry_at=self.retry_at(),
            skipped=skipped,
        )
        if not skipped:
            self.bus.publish(
                Event(
                    UPLOAD,
                    self.name,
                    {
                        "accepted": report.accepted,
                        "duplicates": report.duplicates,
                        "rejected": report.rejected,
                        "pending": report.pending,
                        "error": report.error,
                    },
                )
            )
        return report

    # Blacklist ------------------------------------------------------------------------------
    @property
    def blacklist_version(self) -> int:
        return int(self._meta("blacklist_version") or 0)

    def blacklisted(self, asn: bytes) -> bool:
        """Whether the card is on the blacklist as last synced (what dispensers check)."""
        return asn.hex() in self._blacklist

    def sync_blacklist(self) -> BlacklistSync:
        """Fetch and apply the changes since the stored version, page by page; each page and
        its version are stored together. A host ahead-check failure (E_VERSION_AHEAD: the host
        database was replaced) restarts from version 0 with an empty list."""
        if self.host is None:
            return BlacklistSync(self.blacklist_version, error="no host configured")
        added = removed = 0
        while True:
            since = self.blacklist_version
            try:
                delta = self.host.blacklist(since=since)
            except HostError as exc:
                if exc.code == "E_VERSION_AHEAD" and since > 0:
                    with self._write() as conn:
                        conn.execute("DELETE FROM blacklist")
                        self._set_meta(conn, "blacklist_version", "0")
                    self._blacklist.clear()
                    continue
                return BlacklistSync(since, added, removed, str(exc))
            listed = set(self._blacklist)
            with self._write() as conn:
                for change in delta.changes:
                    if change.action == "add":
                        conn.execute("INSERT OR IGNORE INTO blacklist VALUES (?)", (change.asn,))
                        listed.add(change.asn)
                        added += 1
                    else:
                        conn.execute("DELETE FROM blacklist WHERE asn = ?", (change.asn,))
                        listed.discard(change.asn)
                        removed += 1
                self._set_meta(conn, "blacklist_version", str(delta.next_since))
            self._blacklist = listed
            if not delta.more:
                return BlacklistSync(delta.next_since, added, removed)

    # Store sales ----------------------------------------------------------------------------
    def record_receipt(self, receipt: Receipt) -> bool:
        """Book a store sale into the current shift; False when it is already booked."""
        return self.record_sale(receipt.store, receipt.sale())

    def record_sale(self, store: str, sale: StoreSale) -> bool:
        """The sale into the current shift and, for the host, into the outbox (one commit)."""
        shift = None if (current := self.current_shift()) is None else current.id
        term = _terminal(sale.term)
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO receipt (store, term, psam_ttc, number, asn, amount,"
                " product, dt, shift) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    store,
                    term,
                    sale.psam_ttc,
                    sale.number,
                    sale.asn.hex(),
                    sale.amount,
                    sale.product,
                    sale.dt,
                    shift,
                ),
            )
            conn.execute(
                "INSERT OR IGNORE INTO outbox (terminal, psam_ttc, bill_type, bill_ttc, source,"
                " raw, shift, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    term,
                    sale.psam_ttc,
                    STORE_SALE_TYPE,
                    sale.number,
                    store,
                    sale.to_bytes(),
                    shift,
                    self.clock.now().isoformat(),
                ),
            )
            return cursor.rowcount == 1

    def store_pay(
        self, pos: StorePos, pin: str, amount: int, items: Sequence[Item] = ()
    ) -> Receipt:
        """`pos.pay`; the receipt reaches the shift through the store's RECEIPT event."""
        return pos.pay(pin, amount, items)

    # Shifts (班结) --------------------------------------------------------------------------
    def current_shift(self) -> _Shift | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, staff, opened_at FROM shift WHERE closed_at IS NULL"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _Shift(int(row[0]), str(row[1]), str(row[2]))

    def open_shift(self, staff: str) -> int:
        if not staff:
            raise ValueError("a shift needs the staff who opens it")
        current = self.current_shift()
        if current is not None:
            raise StationError(f"shift {current.id} of {current.staff} is still open")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO shift (staff, opened_at) VALUES (?, ?)",
                (staff, self.clock.now().isoformat()),
            )
            return int(cursor.lastrowid or 0)

    def close_shift(self) -> ShiftReport:
        shift = self.current_shift()
        if shift is None:
            raise StationError("no shift is open")
        closed_at = self.clock.now().isoformat()
        with self._write() as conn:
            conn.execute("UPDATE shift SET closed_at = ? WHERE id = ?", (closed_at, shift.id))
        return self.shift_report(shift.id)

    def shift_report(self, shift_id: int) -> ShiftReport:
        with self._lock:
            head = self._db.execute(
                "SELECT staff, opened_at, closed_at FROM shift WHERE id = ?", (shift_id,)
            ).fetchone()
            if head is None:
                raise StationError(f"no shift {shift_id}")
            bill_rows = self._db.execute(
                "SELECT terminal, raw, status, bill_type FROM outbox WHERE shift = ? ORDER BY id",
                (shift_id,),
            ).fetchall()
            receipt_rows = self._db.execute(
                "SELECT amount, product FROM receipt WHERE shift = ? ORDER BY id", (shift_id,)
            ).fetchall()
            redebits = {
                (b.asn, b.ctc - 1)
                for b in (
                    Bill.from_bytes(raw)
                    for (raw,) in self._db.execute(
                        "SELECT raw FROM outbox WHERE bill_type = ?", (BillType.REDEBIT,)
                    )
                )
            }
        totals = {BillType.FUELLING: [0, 0], BillType.REDEBIT: [0, 0]}
        products: dict[int, list[int]] = {}
        escapes: list[EscapeLine] = []
        pending = 0
        for terminal, raw, status, record in bill_rows:
            pending += status == "pending"
            if record == STORE_SALE_TYPE:  # the receipt rows below count the store sales
                continue
            bill = Bill.from_bytes(raw)
            if bill.tx_type == BillType.ESCAPE:
                escapes.append(
                    EscapeLine(
                        terminal,
                        bill.asn,
                        bill.ctc,
                        bill.grade,
                        bill.volume,
                        bill.amount,
                        (bill.asn, bill.ctc) in redebits,
                    )
                )
                continue
            total = totals.setdefault(bill.tx_type, [0, 0])
            total[0] += 1
            total[1] += bill.amount
            line = products.setdefault(bill.grade, [0, 0, 0])
            line[0] += bill.volume
            line[1] += bill.amount
            line[2] += 1
        for amount, product in receipt_rows:
            line = products.setdefault(int(product), [0, 0, 0])
            line[1] += int(amount)
            line[2] += 1
        return ShiftReport(
            shift=shift_id,
            station=self.name,
            station_id=self.station_id,
            staff=str(head[0]),
            opened_at=str(head[1]),
            closed_at=str(head[2] or ""),
            fuelling=PaymentTotal(*totals[BillType.FUELLING]),
            redebit=PaymentTotal(*totals[BillType.REDEBIT]),
            store=PaymentTotal(len(receipt_rows), sum(int(a) for a, _ in receipt_rows)),
            escapes=escapes,
            products=[ProductTotal(code, *line) for code, line in sorted(products.items())],
            bills=sum(record != STORE_SALE_TYPE for _, _, _, record in bill_rows),
            receipts=len(receipt_rows),
            shift_pending=pending,
            outbox=self.outbox_state(),
        )
