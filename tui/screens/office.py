"""Issuing office: load, store flag, loss report, unblock, PIN reload and online unlock."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, RichLog, Static

from terminal_sim.service import DEFAULT_PIN
from tui.format import parse_yuan
from tui.screens.counter import CounterScreen


class OfficeScreen(CounterScreen):
    terminal_kind = "office"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "next_card", "Card", id="office.card"),
        Binding("p", "present", "Present card", id="office.present"),
        Binding("l", "load", "Load", id="office.load"),
        Binding("s", "store_flag(True)", "Store on", id="office.store-on"),
        Binding("S", "store_flag(False)", "Store off", id="office.store-off"),
        Binding("x", "report_loss", "Loss report", id="office.loss"),
        Binding("b", "unblock", "Unblock", id="office.unblock"),
        Binding("k", "reload_pin", "PIN reload", id="office.reload-pin"),
        Binding("o", "online_unlock", "Online unlock", id="office.unlock"),
    ]

    def __init__(self) -> None:
        super().__init__("office")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(classes="counter"):
            yield Static("", classes="counter-card")
            with Horizontal(classes="counter-inputs"):
                yield Label("amount (yuan):")
                yield Input("100.00", id="office-amount", classes="short")
                yield Label("PIN:")
                yield Input(DEFAULT_PIN, id="office-pin", password=True, classes="short")
                yield Label("new PIN:")
                yield Input(DEFAULT_PIN, id="office-new-pin", password=True, classes="short")
            yield Static("", classes="counter-display")
            yield RichLog(id="office-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Issuing office"
        self.refresh_view()

    def done(self, what: str) -> Any:
        return lambda result: self.log_line(f"{what}: {brief(result)}")

    def action_present(self) -> None:
        self.present()

    def action_load(self) -> None:
        card, at = self.card, self.terminal
        amount, pin = parse_yuan(self.value("office-amount")), self.value("office-pin")
        self.call(
            lambda: self.session.forecourt.load(at, amount, card=card, pin=pin), self.done("load")
        )

    def action_store_flag(self, on: bool) -> None:
        card, at = self.card, self.terminal
        self.call(
            lambda: self.session.forecourt.set_store_flag(at, on, card=card),
            self.done("store flag"),
        )

    def action_report_loss(self) -> None:
        card, at = self.card, self.terminal
        self.call(lambda: self.session.report_loss(at, card), self.done("loss report"))

    def action_unblock(self) -> None:
        card, at = self.card, self.terminal
        self.call(lambda: self.session.unblock(at, card), self.done("unblock"))

    def action_reload_pin(self) -> None:
        card, at, pin = self.card, self.terminal, self.value("office-new-pin")
        self.call(
            lambda: self.session.forecourt.reload_pin(at, pin, card=card), self.done("PIN reload")
        )

    def action_online_unlock(self) -> None:
        card, at, pin = self.card, self.terminal, self.value("office-pin")
        self.call(
            lambda: self.session.forecourt.online_unlock(at, card=card, pin=pin),
            self.done("online unlock"),
        )


def brief(result: object) -> str:
    """A result's fields, bytes in hex: `amount=10000, tac=145A264A`."""
    if not is_dataclass(result):
        return str(result)
    parts = []
    for item in fields(result):
        value = getattr(result, item.name)
        parts.append(f"{item.name}={value.hex().upper() if isinstance(value, bytes) else value}")
    return ", ".join(parts)
