"""Store POS: a card at the counter pays for store goods (ED purchase with the store PSAM)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, RichLog, Static

from terminal_sim.service import DEFAULT_PIN
from terminal_sim.store_pos import Receipt
from tui.format import parse_yuan
from tui.screens.counter import CounterScreen


class StoreScreen(CounterScreen):
    terminal_kind = "pos"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "next_card", "Card", id="store.card"),
        Binding("p", "present", "Present card", id="store.present"),
        Binding("y", "pay", "Pay", id="store.pay"),
        Binding("r", "remove", "Remove card", id="store.remove"),
    ]

    def __init__(self) -> None:
        super().__init__("store")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(classes="counter"):
            yield Static("", classes="counter-card")
            with Horizontal(classes="counter-inputs"):
                yield Label("amount (yuan):")
                yield Input("12.50", id="store-amount", classes="short")
                yield Label("PIN:")
                yield Input(DEFAULT_PIN, id="store-pin", password=True, classes="short")
            yield Static("", classes="counter-display")
            yield Static("no receipt yet", id="receipt")
            yield RichLog(id="store-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Store POS"
        self.refresh_view()

    def action_present(self) -> None:
        self.present()

    def action_pay(self) -> None:
        card, at = self.card, self.terminal
        amount, pin = parse_yuan(self.value("store-amount")), self.value("store-pin")
        self.call(lambda: self.session.forecourt.pay(at, amount, card=card, pin=pin), self.paid)

    def paid(self, receipt: Receipt) -> None:
        self.query_one("#receipt", Static).update(receipt.text())

    def action_remove(self) -> None:
        card = self.card
        self.call(lambda: self.session.forecourt.remove(card))
