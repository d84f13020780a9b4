"""Host: bills, exceptions, blacklist and the day's reconciliation of the host the station uploads
to. Reconciling closes the shift (班结), compares the station's day with the host's books and
lists every finding; the findings export as CSV."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Static

from host_sim.reconcile import Finding
from tui.base import ServiceScreen
from tui.format import yuan
from tui.host_view import HostView, read_host
from tui.reconciliation import DayReconciliation
from tui.screens.forecourt import upload_text

BILL_TYPES = {0: "fuelling", 1: "escape", 2: "re-debit"}


class HostScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "reload", "Reload", id="host.reload"),
        Binding("u", "upload", "Upload bills", id="host.upload"),
        Binding("b", "sync", "Sync blacklist", id="host.sync"),
        Binding("r", "reconcile", "Close shift & reconcile", id="host.reconcile"),
        Binding("e", "export", "Export CSV", id="host.export"),
    ]

    def __init__(self) -> None:
        super().__init__(id="host")
        self.reconciliation: DayReconciliation | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="host-summary")
            yield Label("Bills", classes="section")
            yield DataTable(id="host-bills", cursor_type="row")
            yield Label("Exceptions", classes="section")
            yield DataTable(id="host-exceptions", cursor_type="row")
            yield Label("Blacklist", classes="section")
            yield DataTable(id="host-blacklist", cursor_type="row")
            yield Label("Reconciliation", classes="section")
            yield Static("", id="host-reconciliation")
            yield DataTable(id="host-findings", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Host"
        self.query_one("#host-bills", DataTable).add_columns(
            "id", "terminal", "PSAM TTC", "type", "ASN", "amount", "balance after", "booked"
        )
        self.query_one("#host-exceptions", DataTable).add_columns(
            "id", "terminal", "PSAM TTC", "reason", "message", "seen"
        )
        self.query_one("#host-blacklist", DataTable).add_columns("ASN", "version", "reason")
        self.query_one("#host-findings", DataTable).add_columns(
            "class",
            "station",
            "terminal",
            "PSAM TTC",
            "bill",
            "station amount",
            "host amount",
            "check",
            "handling",
        )
        self.show_reconciliation()

    def refresh_view(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        session = self.session
        self.run_worker(
            lambda: self.app.call_from_thread(self.show, read_host(session.host_db, session.host)),
            thread=True,
            exclusive=True,
            group="host-read",
            exit_on_error=False,
        )

    def show(self, view: HostView) -> None:
        state = self.session.station.outbox_state()
        summary = (
            f"{self.session.host_label}; station outbox: {state.pending} pending, "
            f"{state.sent} sent, {state.rejected} rejected"
        )
        if view.note:
            summary += f"\n{view.note}"
        self.query_one("#host-summary", Static).update(summary)
        for table_id, rows in (
            ("#host-bills", view.bills),
            ("#host-exceptions", view.exceptions),
            ("#host-blacklist", view.blacklist),
        ):
            table = self.query_one(table_id, DataTable)
            table.clear()
            for row in rows:
                table.add_row(*row)

    def show_reconciliation(self) -> None:
        recon = self.reconciliation
        if recon is None:
            text = (
                "not run yet: r closes the shift and reconciles today's business day"
                if self.session.host_db is not None
                else "reconciliation reads the host's database: embedded host only"
            )
        else:
            text = recon.summary()
        self.query_one("#host-reconciliation", Static).update(text)
        table = self.query_one("#host-findings", DataTable)
        table.clear()
        for finding in [] if recon is None else recon.findings:
            table.add_row(*finding_row(finding))

    def action_reconcile(self) -> None:
        self.call(self.session.reconcile, self.reconciled)

    def reconciled(self, recon: DayReconciliation) -> None:
        self.reconciliation = recon
        self.show_reconciliation()

    def action_export(self) -> None:
        recon = self.reconciliation
        if recon is None:
            self.notify("reconcile first (r), then export", severity="warning")
            return
        folder = self.session.config.data_dir
        self.call(lambda: recon.export_csv(folder), lambda path: self.notify(f"wrote {path}"))

    def action_upload(self) -> None:
        self.call(self.session.upload, lambda report: self.notify(upload_text(report)))

    def action_sync(self) -> None:
        self.call(
            self.session.sync_blacklist,
            lambda sync: self.notify(f"blacklist version {sync.version}"),
        )


def finding_row(finding: Finding) -> tuple[str, ...]:
    """A finding as the table shows it: bill findings name their bill, totals their check."""
    bill = finding.bill_type >= 0
    return (
        finding.kind,
        finding.station,
        finding.term or "-",
        str(finding.psam_ttc) if bill else "-",
        BILL_TYPES.get(finding.bill_type, f"{finding.bill_type:02X}") if bill else "-",
        "-" if finding.station_amount is None else yuan(finding.station_amount),
        "-" if finding.host_amount is None else yuan(finding.host_amount),
        finding.check or "-",
        f"{finding.handling}: {finding.action}",
    )
