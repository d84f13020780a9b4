"""Cards: every card with its slot, insert / remove / reset, the card file and lock-record
viewer, and the real PC/SC readers, listed live."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from terminal_sim.service import PcscReaders, pcsc_readers
from tui.base import ServiceScreen
from tui.format import yuan

READER_POLL_S = 2.0


class CardsScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "next_terminal", "Terminal", id="cards.terminal"),
        Binding("i", "insert", "Insert", id="cards.insert"),
        Binding("r", "remove", "Remove", id="cards.remove"),
        Binding("x", "reset", "Reset", id="cards.reset"),
        Binding("a", "add_card", "Add card", id="cards.add"),
        Binding("g", "refresh_readers", "Readers", id="cards.readers"),
    ]

    def __init__(self) -> None:
        super().__init__(id="cards")
        self.terminal_index = 0
        self.readers = PcscReaders((), "not listed yet")

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="cards-body"):
            with Vertical(id="cards-left"):
                yield DataTable(id="cards-table", cursor_type="row")
                yield Static("", id="cards-terminal")
                with Horizontal(classes="counter-inputs"):
                    yield Label("add card (name=URL):")
                    yield Input("", id="card-url", placeholder="kate=inproc:normal")
                yield Static("", id="readers")
            with VerticalScroll(id="card-files"):
                yield Static("", id="card-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Cards"
        table = self.query_one(DataTable)
        table.add_columns("card", "ASN", "balance", "lock", "store", "slot")
        self.refresh_view()
        if self.fuelsim.poll_readers:
            self.action_refresh_readers()
            self.set_interval(READER_POLL_S, self.action_refresh_readers)

    @property
    def terminals(self) -> list[str]:
        return list(self.session.forecourt.terminals())

    @property
    def terminal(self) -> str:
        return self.terminals[self.terminal_index % len(self.terminals)]

    @property
    def card(self) -> str:
        table = self.query_one(DataTable)
        cards = self.session.forecourt.cards()
        return cards[min(table.cursor_row, len(cards) - 1)]

    def refresh_view(self) -> None:
        forecourt = self.session.forecourt
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for card in forecourt.cards():
            if forecourt.is_emulated(card):
                s = forecourt.card_status(card)
                table.add_row(
                    card,
                    s.asn.hex().upper(),
                    yuan(s.balance),
                    s.lock.name.lower(),
                    "on" if s.store_enabled else "off",
                    s.slot or "-",
                    key=card,
                )
            else:
                slot = forecourt.world.slot_of(card)
                table.add_row(card, "(reader)", "-", "-", "-", slot.name if slot else "-", key=card)
        table.move_cursor(row=min(row, table.row_count - 1))
        self.query_one("#cards-terminal", Static).update(f"insert into: {self.terminal}")
        self.show_card()
        self.show_readers()

    def show_card(self) -> None:
        forecourt = self.session.forecourt
        card = self.card
        if not forecourt.is_emulated(card):
            self.query_one("#card-detail", Static).update(f"{card}: a card in a real reader")
            return
        lines: list[str] = []
        for title, rows in forecourt.card_sections(card):
            lines.append(f"[b]{title}[/b]")
            lines += [f"  {label:<18} {value}" for label, value in rows]
        self.query_one("#card-detail", Static).update("\n".join(lines))

    def show_readers(self) -> None:
        readers = self.readers
        if readers.error:
            text = f"PC/SC readers: none ({readers.error})"
        elif not readers.names:
            text = "PC/SC readers: none connected"
        else:
            text = "PC/SC readers:\n" + "\n".join(
                f"  pcsc:#{n} {name}" for n, name in enumerate(readers.names)
            )
        self.query_one("#readers", Static).update(text)

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.show_card()

    def action_next_terminal(self) -> None:
        self.terminal_index += 1
        self.refresh_view()

    def select_card(self, card: str) -> None:
        self.query_one(DataTable).move_cursor(row=self.session.forecourt.cards().index(card))
        self.show_card()

    def action_insert(self) -> None:
        card, at = self.card, self.terminal
        self.call(lambda: self.session.forecourt.insert(card, at))

    def action_remove(self) -> None:
        card = self.card
        self.call(lambda: self.session.forecourt.remove(card))

    def action_reset(self) -> None:
        card = self.card
        self.call(
            lambda: self.session.forecourt.reset(card),
            lambda atr: self.notify(f"{card} reset, ATR {atr.hex().upper()}"),
        )

    def action_add_card(self) -> None:
        name, sep, url = self.query_one("#card-url", Input).value.strip().partition("=")
        if not sep or not name or not url:
            raise_modal = ValueError("write the card as NAME=URL, e.g. kate=inproc:normal")
            self.fuelsim.show_error(raise_modal)
            return
        self.call(lambda: self.session.forecourt.add_card(name, url))

    def action_refresh_readers(self) -> None:
        self.run_worker(
            self.list_readers, thread=True, exclusive=True, group="readers", exit_on_error=False
        )

    def list_readers(self) -> None:
        readers = pcsc_readers()
        self.app.call_from_thread(self.readers_listed, readers)

    def readers_listed(self, readers: PcscReaders) -> None:
        self.readers = readers
        self.show_readers()
