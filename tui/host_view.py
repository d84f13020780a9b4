"""What the Host screen reads: the embedded host's bills and exceptions straight from its
database and the blacklist through the host API. Read-only (the day's reconciliation is
`tui.reconciliation`)."""

from __future__ import annotations

from dataclasses import dataclass

from host_sim.db import Database
from terminal_sim.host_client import HostClient

BILL_TYPES = {0: "fuelling", 1: "escape", 2: "re-debit"}


@dataclass(frozen=True)
class HostView:
    bills: list[tuple[str, ...]]
    exceptions: list[tuple[str, ...]]
    blacklist: list[tuple[str, ...]]
    note: str = ""


def read_host(db: Database | None, client: HostClient) -> HostView:
    bills: list[tuple[str, ...]] = []
    exceptions: list[tuple[str, ...]] = []
    note = ""
    if db is None:
        note = "bills and exceptions are listed for the embedded host only"
    else:
        with db.connect() as conn:
            for row in conn.execute(
                "SELECT id, term, psam_ttc, bill_type, asn, amount, balance_after,"
                " txn_id IS NOT NULL FROM bills ORDER BY id"
            ):
                bills.append(
                    (
                        str(row[0]),
                        row[1],
                        str(row[2]),
                        BILL_TYPES.get(row[3], str(row[3])),
                        row[4],
                        _yuan(row[5]),
                        _yuan(row[6]),
                        "yes" if row[7] else "no",
                    )
                )
            for row in conn.execute(
                "SELECT id, term, psam_ttc, reason, message, seen FROM exceptions ORDER BY id"
            ):
                exceptions.append(tuple(str(value) for value in row))
    listed: dict[str, tuple[str, ...]] = {}
    since, more = 0, True
    while more:
        delta = client.blacklist(since)
        for change in delta.changes:
            if change.action == "add":
                listed[change.asn] = (change.asn, str(change.version), change.reason)
            else:
                listed.pop(change.asn, None)
        since, more = delta.next_since, delta.more
    return HostView(bills, exceptions, list(listed.values()), note)


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"
