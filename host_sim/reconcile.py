"""Daily reconciliation: what the stations say they sold against what the host booked.

Inputs are one business day of records (`DayRecords`): per station, its bill list (the outbox)
and its daily report figures (the sum of its shift reports, 班结), with the store figures of the
store plan; and, on the host side, every bill the host holds for the day, refused ones included
(`verified=False`: the `exceptions` table), plus the centre's store sales total per station.

Bills are joined by the host's own key (term, PSAM TTC, bill type) with one dict; the card
transaction identity (ASN, CTC) finds duplicates (a card spends each CTC once, so two host bills
with the same ASN and CTC are one sale booked twice). Totals are then compared per station:

* fuel report: the daily report's card amount against the station's own bill list;
* the store plan's three-way check: POS receipts total = store system card total = the daily
  report's store amount, and the centre's store total = the store system total;
* card side against host side: TAC-proven distinct card transactions against what the host
  holds (the difference is exactly the duplicates, shown in the totals).

Bill-level differences are classified one by one; a totals difference is `surplus` (the figure
under check is above its reference) or `shortfall` (below). Missing uploads (re-request the bill
from the station) and duplicates (drop the later copy) are handled automatically; everything
else is listed for a person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, NamedTuple

FUELLING, ESCAPE, REDEBIT = 0x00, 0x01, 0x02
PAID_TYPES = frozenset({FUELLING, REDEBIT})  # money taken at the pump (an escape is not yet)
TAC_REASONS = frozenset({"E_BILL_TMAC", "E_BILL_TAC", "E_BILL_PSAM_TAC"})

Kind = Literal[
    "missing_upload",
    "duplicate",
    "amount_mismatch",
    "bad_tac",
    "rejected",
    "not_at_station",
    "surplus",
    "shortfall",
]
KINDS: tuple[Kind, ...] = (
    "missing_upload",
    "duplicate",
    "amount_mismatch",
    "bad_tac",
    "rejected",
    "not_at_station",
    "surplus",
    "shortfall",
)
AUTO_ACTIONS: dict[str, str] = {"missing_upload": "rerequest", "duplicate": "drop_duplicate"}
CHECKS = ("fuel_report", "store_pos", "store_report", "store_centre")

Key = tuple[str, int, int]
Identity = tuple[str, str, str, int, int, str]  # kind, station, term, PSAM TTC, type, check


class BillLine(NamedTuple):
    """One bill as one side records it (a tuple: a day can hold millions)."""

    station: str
    term: str  # 12 hex digits, upper case
    psam_ttc: int
    bill_type: int
    asn: str  # 20 digits
    ctc: int
    amount: int  # fen
    grade: int = 0
    volume: int = 0  # 0.01 L
    debit_source: int = 0
    verified: bool = True  # host side: passed the TMAC/TAC checks (False: in `exceptions`)
    reason: str = ""  # host side: the exceptions reason when not verified
    ref: int = 0  # host side: bill or exception id

    @property
    def key(self) -> Key:
        return (self.term, self.psam_ttc, self.bill_type)


@dataclass(frozen=True)
class StationDay:
    """A station's own records of the day."""

    station: str
    bills: list[BillLine]
    report_amount: int  # daily report: card fuel sales (fuelling + re-debit)
    pos_receipts_total: int = 0  # the store POS receipts
    store_system_total: int = 0  # the store system's card total
    report_store_amount: int = 0  # daily report: store amount


@dataclass(frozen=True)
class HostDay:
    bills: list[BillLine]
    store_totals: dict[str, int] = field(default_factory=dict)  # centre's store sales


@dataclass(frozen=True)
class DayRecords:
    day: date
    stations: list[StationDay]
    host: HostDay


@dataclass(frozen=True)
class Finding:
    kind: Kind
    station: str
    term: str = ""
    psam_ttc: int = 0
    bill_type: int = -1
    station_amount: int | None = None
    host_amount: int | None = None
    check: str = ""  # totals findings: which comparison
    detail: str = ""

    @property
    def identity(self) -> Identity:
        return (self.kind, self.station, self.term, self.psam_ttc, self.bill_type, self.check)

    @property
    def handling(self) -> Literal["auto", "manual"]:
        return "auto" if self.kind in AUTO_ACTIONS else "manual"

    @property
    def action(self) -> str:
        return AUTO_ACTIONS.get(self.kind, "review")


@dataclass
class StationTotals:
    station: str
    station_bills: int = 0
    host_bills: int = 0
    report_amount: int = 0  # the daily report's card fuel amount
    station_amount: int = 0  # the station's bill list, paid types
    host_amount: int = 0  # verified host bills, paid types (duplicates included)
    card_amount: int = 0  # distinct TAC-proven card transactions, paid types
    duplicate_amount: int = 0
    pos_receipts_total: int = 0
    store_system_total: int = 0
    report_store_amount: int = 0
    centre_store_total: int = 0


@dataclass(frozen=True)
class Reconciliation:
    day: date
    findings: list[Finding]
    totals: list[StationTotals]

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.findings))

    def identities(self) -> set[Identity]:
        return {f.identity for f in self.findings}

    def auto(self) -> list[Finding]:
        return [f for f in self.findings if f.handling == "auto"]

    def manual(self) -> list[Finding]:
        return [f for f in self.findings if f.handling == "manual"]


def _bill_finding(kind: Kind, line: BillLine, station: int | None, host: int | None) -> Finding:
    return Finding(
        kind,
        line.station,
        line.term,
        line.psam_ttc,
        line.bill_type,
        station,
        host,
        detail=line.reason,
    )


def _totals_finding(station: str, check: str, figure: int, reference: int) -> Finding | None:
    if figure == reference:
        return None
    return Finding(
        "surplus" if figure > reference else "shortfall",
        station,
        station_amount=figure,
        host_amount=reference,
        check=check,
        detail=f"{check}: {figure} against {reference} fen ({figure - reference:+d})",
    )


def reconcile(day: DayRecords, progress: Callable[[str], None] = lambda _: None) -> Reconciliation:
    """Compare the two sides of one day; every difference becomes exactly one finding."""
    findings: list[Finding] = []
    add = findings.append
    totals = {s.station: StationTotals(s.station) for s in day.stations}

    # Keys are nested (term → PSAM TTC and type packed in one int) rather than tuples: a
    # million tuples would each be tracked by the cyclic garbage collector, which then walks
    # them over and over; strings and ints are not tracked.
    progress("indexing host bills")
    host: dict[str, dict[int, BillLine]] = {}
    second: list[BillLine] = []  # a key held twice (a stored bill and a refused one)
    for line in day.host.bills:
        at = host.get(line.term)
        if at is None:
            at = host[line.term] = {}
        key = line.psam_ttc << 8 | line.bill_type
        held = at.get(key)
        if held is None:
            at[key] = line
        elif line.verified and not held.verified:
            at[key] = line
            second.append(held)
        else:
            second.append(line)

    progress("matching station bills")
    matched: list[BillLine] = []
    empty: dict[int, BillLine] = {}
    for station_day in day.stations:
        t = totals[station_day.station]
        t.station_bills = len(station_day.bills)
        station_paid = 0
        for s in station_day.bills:
            if s.bill_type in PAID_TYPES:
                station_paid += s.amount
            h = host.get(s.term, empty).pop(s.psam_ttc << 8 | s.bill_type, None)
            if h is None:
                add(_bill_finding("missing_upload", s, s.amount, None))
            elif not h.verified:
                kind: Kind = "bad_tac" if h.reason in TAC_REASONS else "rejected"
                add(_bill_finding(kind, h, s.amount, h.amount))
            else:
                matched.append(h)
                if h.amount != s.amount:
                    add(_bill_finding("amount_mismatch", h, s.amount, h.amount))
        t.station_amount = station_paid
        t.report_amount = station_day.report_amount

    progress("checking card transactions")
    unmatched = [line for at in host.values() for line in at.values()] + second
    seen: dict[str, set[int]] = {}  # ASN → the CTCs held
    for group in (matched, unmatched):  # station-listed bills are the originals
        for h in group:
            if not h.verified:
                continue
            t = totals.get(h.station) or totals.setdefault(h.station, StationTotals(h.station))
            t.host_bills += 1
            spent = seen.get(h.asn)
            if spent is None:
                spent = seen[h.asn] = set()
            paid = h.bill_type in PAID_TYPES
            if paid:
                t.host_amount += h.amount
            if h.ctc in spent:
                add(_bill_finding("duplicate", h, None, h.amount))
                if paid:
                    t.duplicate_amount += h.amount
                continue
            spent.add(h.ctc)
            if paid:
                t.card_amount += h.amount
            if group is unmatched:
                add(_bill_finding("not_at_station", h, None, h.amount))
    for h in unmatched:
        if not h.verified:
            kind = "bad_tac" if h.reason in TAC_REASONS else "rejected"
            add(_bill_finding(kind, h, None, h.amount))

    progress("checking totals")
    for station_day in day.stations:
        t = totals[station_day.station]
        t.pos_receipts_total = station_day.pos_receipts_total
        t.store_system_total = station_day.store_system_total
        t.report_store_amount = station_day.report_store_amount
        t.centre_store_total = day.host.store_totals.get(station_day.station, 0)
        checks = (
            ("fuel_report", t.report_amount, t.station_amount),
            ("store_pos", t.pos_receipts_total, t.store_system_total),
            ("store_report", t.report_store_amount, t.store_system_total),
            ("store_centre", t.centre_store_total, t.store_system_total),
        )
        for check, figure, reference in checks:
            found = _totals_finding(station_day.station, check, figure, reference)
            if found is not None:
                add(found)
    return Reconciliation(day.day, findings, sorted(totals.values(), key=lambda t: t.station))


def station_day(
    station: str,
    bills: Iterable[BillLine],
    *,
    pos_receipts_total: int = 0,
    store_system_total: int | None = None,
    report_store_amount: int | None = None,
) -> StationDay:
    """A station's day whose report figures agree with its own bills and receipts."""
    lines = list(bills)
    return StationDay(
        station,
        lines,
        report_amount=sum(b.amount for b in lines if b.bill_type in PAID_TYPES),
        pos_receipts_total=pos_receipts_total,
        store_system_total=(
            pos_receipts_total if store_system_total is None else store_system_total
        ),
        report_store_amount=(
            pos_receipts_total if report_store_amount is None else report_store_amount
        ),
    )
