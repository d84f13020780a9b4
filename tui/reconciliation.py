"""The day's reconciliation of the TUI's station against the embedded host's books.

The station hands over its business day as a station day file would (`terminal_sim.station_day`:
the outbox's bills of the day and the closed shifts' report figures); the host side is read from
the host's SQLite file; `host_sim.reconcile` compares them and the run is stored at the host, as
`fuelsim host reconcile` stores it. The findings export as CSV with the columns of that command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from host_sim import reports
from host_sim.db import Database
from host_sim.reconcile import Finding, Reconciliation, reconcile
from host_sim.reconcile_db import host_records, save_run, station_day_from_json
from host_sim.signing import as_utc
from terminal_sim.cli_reports import findings_report
from terminal_sim.station import Station
from terminal_sim.station_day import export_station_day

SOURCE = "fuelsim tui"


@dataclass(frozen=True)
class DayReconciliation:
    result: Reconciliation
    run_id: int  # the run as stored at the host (GET /v1/reconciliation/{day})

    @property
    def day(self) -> date:
        return self.result.day

    @property
    def findings(self) -> list[Finding]:
        return self.result.findings

    def summary(self) -> str:
        totals = self.result.totals
        station_bills = sum(t.station_bills for t in totals)
        host_bills = sum(t.host_bills for t in totals)
        found = len(self.findings)
        auto, manual = len(self.result.auto()), len(self.result.manual())
        return (
            f"reconciled {self.day.isoformat()} (run {self.run_id}): {station_bills} station"
            f" bills, {host_bills} host bills; {found} finding{'' if found == 1 else 's'}"
            f" ({auto} handled automatically, {manual} for a person)"
        )

    def export_csv(self, folder: Path) -> Path:
        """The findings as CSV, `reconciliation-<day>.csv` in `folder`."""
        path = folder / f"reconciliation-{self.day.isoformat()}.csv"
        path.write_text(reports.to_csv(findings_report(self.result)), encoding="utf-8")
        return path


def reconcile_day(station: Station, db: Database, now: datetime) -> DayReconciliation:
    """Reconcile `station`'s business day of `now` against the host database `db`."""
    day = now.date()
    station_side = station_day_from_json(export_station_day(station, day), day)
    result = reconcile(host_records(db, day, [station_side]))
    return DayReconciliation(result, save_run(db, result, SOURCE, as_utc(now)))
