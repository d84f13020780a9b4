"""A generated business day with planted discrepancies, and the truth of what was planted.

`generate_day(bills=…, stations=…, seed=…, plant=…)` is deterministic for a seed. It makes a
day of card sales across the stations' pumps (fuellings, plus escape bills each settled by a
re-debit at another pump of the station), the station side (bill lists and daily report
figures, store plan figures) and the host side (what the host holds), equal at first. Then it
plants `plant` discrepancies of each kind on distinct bills and stations and lists them in
`truth`:

* missing_upload: the host lacks a bill the station lists;
* duplicate: the host holds a second copy of a card transaction (same ASN and CTC) under a
  later PSAM TTC of the same pump, which the station does not list;
* amount_mismatch: the station's record of a bill says another amount than the TAC-verified
  bill the host holds (the report figures follow the station's record, as a real report would);
* bad_tac: the host holds the bill as refused for its TAC (`verified=False`, `E_BILL_TAC`);
* surplus / shortfall: a station's report or store figure is off by some fen, one check each.

Host-side verification is carried as data here: at this scale a bill's TAC status is what the
host's check put in `bills` or `exceptions`. tests/host_sim/test_reconcile_host.py runs the real
path (real bills, forged TACs caught by the HSM over HTTP, the host database read back).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import date

from host_sim.reconcile import (
    CHECKS,
    ESCAPE,
    FUELLING,
    REDEBIT,
    BillLine,
    DayRecords,
    HostDay,
    Identity,
    StationDay,
    station_day,
)

PUMPS = 8
CARDS_PER_STATION = 400
GRADES = (0x0092, 0x0095, 0x0098, 0x0010)
ESCAPE_EVERY = 97  # about one sale in a hundred is an escape bill, settled by a re-debit
BILL_KINDS = ("missing_upload", "duplicate", "amount_mismatch", "bad_tac")
TOTAL_KINDS = ("surplus", "shortfall")
DAY = date(2026, 11, 22)


@dataclass(frozen=True)
class Truth:
    planted: list[Identity]

    def counts(self) -> dict[str, int]:
        return dict(Counter(p[0] for p in self.planted))

    def identities(self) -> set[Identity]:
        return set(self.planted)


@dataclass(frozen=True)
class GeneratedDay:
    records: DayRecords
    truth: Truth


def _term(station: int, pump: int) -> str:
    return f"4401{station:05d}{pump:03d}"


def _station_id(station: int) -> str:
    return f"ST-{station:04d}"


def _sales(rng: random.Random, bills: int, stations: int) -> list[list[BillLine]]:
    """Each station's bills in order; each pump's PSAM TTC and each card's CTC only grow."""
    per_station: list[list[BillLine]] = [[] for _ in range(stations)]
    ttc = [[0] * PUMPS for _ in range(stations)]
    ctc: dict[str, int] = {}
    rand = rng.random  # int(rand() * n): a tenth of randrange's cost, uniform enough here
    terms = [[_term(s, pump) for pump in range(PUMPS)] for s in range(stations)]
    names = [_station_id(s) for s in range(stations)]
    cards = [[f"0100011{s:05d}{c:08d}" for c in range(CARDS_PER_STATION)] for s in range(stations)]
    made = 0
    while made < bills:
        s = made % stations
        pump = int(rand() * PUMPS)
        asn = cards[s][int(rand() * CARDS_PER_STATION)]
        lock = ctc.get(asn, 0) + 1
        amount = 500 + int(rand() * 60_000)
        grade = GRADES[int(rand() * len(GRADES))]
        volume = amount * 100 // 750
        source = 0 if rand() < 0.9 else 1
        ttc[s][pump] += 1
        term = terms[s][pump]
        station = names[s]
        lines = per_station[s]
        if made % ESCAPE_EVERY == ESCAPE_EVERY - 1 and made + 1 < bills:
            # Card pulled: an escape bill at the lock CTC, then a re-debit (CTC + 1) at the
            # next pump of the station.
            lines.append(
                BillLine(station, term, ttc[s][pump], ESCAPE, asn, lock, amount, grade, volume)
            )
            other = (pump + 1) % PUMPS
            ttc[s][other] += 1
            lines.append(
                BillLine(
                    station,
                    terms[s][other],
                    ttc[s][other],
                    REDEBIT,
                    asn,
                    lock + 1,
                    amount,
                    grade,
                    volume,
                    source,
                )
            )
            made += 2
        else:
            lines.append(
                BillLine(
                    station,
                    term,
                    ttc[s][pump],
                    FUELLING,
                    asn,
                    lock + 1,
                    amount,
                    grade,
                    volume,
                    source,
                )
            )
            made += 1
        ctc[asn] = lock + 1
    return per_station


def generate_day(
    *, bills: int, stations: int, seed: int, plant: int = 10, day: date = DAY
) -> GeneratedDay:
    """A day of `bills` bills across `stations` stations with `plant` of each discrepancy."""
    if bills < 1 or stations < 1 or plant < 0:
        raise ValueError("bills and stations must be at least 1, plant at least 0")
    if 2 * plant > stations * len(CHECKS) or len(BILL_KINDS) * plant > bills // 2:
        raise ValueError(f"too few bills or stations to plant {plant} of each kind apart")
    rng = random.Random(seed)
    per_station = _sales(rng, bills, stations)
    host_lines: list[list[BillLine]] = [list(lines) for lines in per_station]
    station_lines: list[list[BillLine]] = [list(lines) for lines in per_station]
    planted: list[Identity] = []

    # Distinct bills for the bill-level kinds: (station index, position).
    starts = [0]
    for lines in per_station:
        starts.append(starts[-1] + len(lines))
    picks = [
        (s, n - starts[s])
        for n in rng.sample(range(starts[-1]), plant * len(BILL_KINDS))
        for s in [bisect_right(starts, n) - 1]
    ]
    removed: set[tuple[int, int]] = set()
    extra: list[BillLine] = []
    next_ttc: dict[str, int] = {}
    for n, (s, i) in enumerate(picks):
        kind = BILL_KINDS[n % len(BILL_KINDS)]
        line = per_station[s][i]
        if kind == "missing_upload":
            removed.add((s, i))
        elif kind == "duplicate":
            top = next_ttc.get(line.term) or max(
                b.psam_ttc for b in per_station[s] if b.term == line.term
            )
            next_ttc[line.term] = top + 1
            line = line._replace(psam_ttc=top + 1)
            extra.append(line)
        elif kind == "amount_mismatch":
            delta = rng.choice((-1, 1)) * (1 + rng.randrange(min(500, line.amount - 1)))
            station_lines[s][i] = line._replace(amount=line.amount + delta)
        else:
            host_lines[s][i] = line._replace(verified=False, reason="E_BILL_TAC")
        planted.append((kind, line.station, line.term, line.psam_ttc, line.bill_type, ""))

    # Store plan figures, agreeing at first.
    store = [rng.randrange(50_000, 5_000_000) for _ in range(stations)]
    report = [0] * stations
    pos, system, report_store, centre = list(store), list(store), list(store), list(store)
    totals_planted: dict[tuple[int, str], str] = {}
    pairs = [(s, c) for s in range(stations) for c in CHECKS]
    for n, (s, check) in enumerate(rng.sample(pairs, 2 * plant) if plant else []):
        kind = TOTAL_KINDS[n % 2]
        delta = (1 + rng.randrange(10_000)) * (1 if kind == "surplus" else -1)
        totals_planted[(s, check)] = kind
        if check == "store_pos":
            pos[s] += delta
        elif check == "store_report":
            report_store[s] += delta
        elif check == "store_centre":
            centre[s] += delta
        else:
            report[s] = delta  # added to the report's card amount below
        planted.append((kind, _station_id(s), "", 0, -1, check))

    station_days: list[StationDay] = []
    for s in range(stations):
        base = station_day(_station_id(s), station_lines[s], pos_receipts_total=pos[s])
        station_days.append(
            StationDay(
                base.station,
                base.bills,
                report_amount=base.report_amount + report[s],
                pos_receipts_total=pos[s],
                store_system_total=system[s],
                report_store_amount=report_store[s],
            )
        )
    host_bills = [
        line
        for s, lines in enumerate(host_lines)
        for i, line in enumerate(lines)
        if (s, i) not in removed
    ]
    host_bills.extend(extra)
    host = HostDay(host_bills, {_station_id(s): centre[s] for s in range(stations)})
    return GeneratedDay(DayRecords(day, station_days, host), Truth(planted))
