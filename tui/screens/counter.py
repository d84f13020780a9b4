"""What the store POS and the issuing office share: a card at the counter and a result log."""

from __future__ import annotations

from textual.widgets import Input, RichLog, Static

from terminal_sim.events import MESSAGE
from tui.base import ServiceScreen
from tui.format import yuan
from tui.messages import ServiceEvent


class CounterScreen(ServiceScreen):
    terminal_kind = ""

    def __init__(self, screen_id: str) -> None:
        super().__init__(id=screen_id)
        self.card_index = 0

    @property
    def terminal(self) -> str:
        kinds = self.session.forecourt.terminals()
        return next(name for name, kind in kinds.items() if kind == self.terminal_kind)

    @property
    def card(self) -> str:
        cards = self.session.forecourt.cards()
        return cards[self.card_index % len(cards)]

    def action_next_card(self) -> None:
        self.card_index = (self.card_index + 1) % len(self.session.forecourt.cards())
        self.refresh_view()

    def select_card(self, card: str) -> None:
        self.card_index = self.session.forecourt.cards().index(card)
        self.refresh_view()

    def value(self, input_id: str) -> str:
        return self.query_one(f"#{input_id}", Input).value.strip()

    def log_line(self, text: str) -> None:
        self.query_one(RichLog).write(text)

    def refresh_view(self) -> None:
        forecourt = self.session.forecourt
        card = self.card
        if forecourt.is_emulated(card):
            status = forecourt.card_status(card)
            text = (
                f"card {card}  balance {yuan(status.balance)}  lock {status.lock.name.lower()}"
                f"  store purchases {'on' if status.store_enabled else 'off'}"
                f"  in {status.slot or 'no slot'}"
            )
        else:
            text = f"card {card}  (in a real reader)"
        self.query_one(".counter-card", Static).update(text)
        display = self.session.display(self.terminal) or "-"
        self.query_one(".counter-display", Static).update(f"{self.terminal} display: {display}")

    def on_service_event(self, message: ServiceEvent) -> None:
        event = message.event
        if event.terminal == self.terminal and event.kind == MESSAGE:
            self.log_line(f"{event.terminal}: {event.data['text']}")
            self.refresh_view()

    def present(self) -> None:
        card, at = self.card, self.terminal
        self.call(lambda: self.session.forecourt.present(card, at))
