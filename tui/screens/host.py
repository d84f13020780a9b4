"""Host: bills, exceptions, blacklist and reconciliation of the host the station uploads to."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Static

from tui.base import ServiceScreen
from tui.host_view import HostView, read_host
from tui.screens.forecourt import upload_text


class HostScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "reload", "Reload", id="host.reload"),
        Binding("u", "upload", "Upload bills", id="host.upload"),
        Binding("b", "sync", "Sync blacklist", id="host.sync"),
    ]

    def __init__(self) -> None:
        super().__init__(id="host")

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
        self.query_one("#host-reconciliation", Static).update("\n".join(view.reconciliation))

    def action_upload(self) -> None:
        self.call(self.session.upload, lambda report: self.notify(upload_text(report)))

    def action_sync(self) -> None:
        self.call(
            self.session.sync_blacklist,
            lambda sync: self.notify(f"blacklist version {sync.version}"),
        )
