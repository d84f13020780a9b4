"""Forecourt: the pumps with nozzles, preset, delivery progress, card slot and display."""

from __future__ import annotations

import threading
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, ProgressBar, Static

from terminal_sim.dispenser import Preset
from terminal_sim.events import BILL, MESSAGE, TICK
from terminal_sim.service import DEFAULT_PIN, DispenserView
from tui.base import ServiceScreen
from tui.format import litres, parse_yuan, yuan
from tui.messages import ServiceEvent


class PumpPanel(Vertical):
    """One dispenser: what its display, nozzles and card slot show."""

    def __init__(self, pump: str) -> None:
        super().__init__(id=f"pump-{pump}", classes="pump")
        self.pump = pump

    def compose(self) -> ComposeResult:
        yield Label(self.pump, classes="pump-title")
        yield Static("", classes="pump-nozzles")
        yield Static("", classes="pump-slot")
        yield ProgressBar(total=100, show_eta=False, classes="pump-progress")
        yield Static("", classes="pump-delivery")
        yield Static("", classes="pump-display")
        yield Static("", classes="pump-discount")
        yield Static("", classes="pump-bill")

    def show(self, view: DispenserView, nozzle: int, display: str, bill: str) -> None:
        title = self.query_one(".pump-title", Label)
        title.update(f"{view.name}  [{view.state}]")
        nozzles = "  ".join(
            f"{'▶' if n.number == nozzle else ' '}{n.number} {n.grade} {yuan(n.price)}/L"
            for n in view.nozzles
        )
        self.query_one(".pump-nozzles", Static).update(f"nozzles: {nozzles}")
        slot = view.card or "empty"
        if view.card and view.state != "idle":
            slot += f"  balance {yuan(view.balance)}"
        self.query_one(".pump-slot", Static).update(f"card slot: {slot}")
        bar = self.query_one(ProgressBar)
        fuelling = view.fuelling
        if fuelling is None:
            bar.update(total=100, progress=0)
            delivery = "nozzle hung up"
        else:
            bar.update(total=max(fuelling.limit_volume, 1), progress=fuelling.volume)
            lost = "  card pulled" if fuelling.card_lost else ""
            delivery = (
                f"nozzle {fuelling.nozzle} {fuelling.grade}: {litres(fuelling.volume)}"
                f"  {yuan(fuelling.amount)}  (preset stops at {litres(fuelling.limit_volume)})"
                f"{lost}"
            )
        self.query_one(".pump-delivery", Static).update(delivery)
        self.query_one(".pump-display", Static).update(f"display: {display or '-'}")
        self.query_one(".pump-bill", Static).update(f"last bill: {bill or '-'}")

    def show_discount(self, text: str) -> None:
        self.query_one(".pump-discount", Static).update(text)


class ForecourtScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left_square_bracket", "pump(-1)", "Prev pump", id="forecourt.prev-pump"),
        Binding("right_square_bracket", "pump(1)", "Next pump", id="forecourt.next-pump"),
        Binding("c", "next_card", "Card", id="forecourt.card"),
        Binding("n", "next_nozzle", "Nozzle", id="forecourt.nozzle"),
        Binding("i", "insert", "Insert", id="forecourt.insert"),
        Binding("l", "lift", "Lift", id="forecourt.lift"),
        Binding("t", "tick", "Tick", id="forecourt.tick"),
        Binding("h", "hang_up", "Hang up", id="forecourt.hang-up"),
        Binding("r", "pull", "Pull card", id="forecourt.pull"),
        Binding("u", "upload", "Upload", id="forecourt.upload"),
    ]

    def __init__(self) -> None:
        super().__init__(id="forecourt")
        self.pump_index = 0
        self.card_index = 0
        self.nozzle: dict[str, int] = {}
        self.delivering: dict[str, threading.Event] = {}

    @property
    def pumps(self) -> list[str]:
        return [n for n, kind in self.session.forecourt.terminals().items() if kind == "dispenser"]

    @property
    def pump(self) -> str:
        return self.pumps[self.pump_index]

    @property
    def card(self) -> str:
        cards = self.session.forecourt.cards()
        return cards[self.card_index % len(cards)]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="forecourt-controls"):
            yield Static("", id="forecourt-selection")
            yield Label("preset (yuan, or litres with L):")
            yield Input("50.00", id="preset", classes="short")
            yield Label("PIN:")
            yield Input(DEFAULT_PIN, id="pump-pin", password=True, classes="short")
        with Horizontal(id="pumps"):
            for pump in self.pumps:
                yield PumpPanel(pump)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Forecourt"
        self.refresh_view()

    def refresh_view(self) -> None:
        forecourt = self.session.forecourt
        for pump in self.pumps:
            panel = self.query_one(f"#pump-{pump}", PumpPanel)
            panel.set_class(pump == self.pump, "selected")
            panel.show(
                forecourt.dispenser_view(pump),
                self.nozzle.get(pump, 1),
                self.session.display(pump),
                self.bill_text(pump),
            )
        self.query_one("#forecourt-selection", Static).update(f"pump {self.pump}  card {self.card}")

    def bill_text(self, pump: str) -> str:
        bill = self.session.bills.get(pump)
        if bill is None:
            return ""
        kind = {0: "fuelling", 1: "escape", 2: "re-debit"}.get(bill.tx_type, f"{bill.tx_type:02X}")
        return f"{kind} {yuan(bill.amount)}, balance after {yuan(bill.balance_after)}"

    def on_service_event(self, message: ServiceEvent) -> None:
        event = message.event
        if event.terminal not in self.pumps:
            return
        if event.kind in (TICK, MESSAGE, BILL):
            discount = event.data.get("discount")
            if discount:
                panel = self.query_one(f"#pump-{event.terminal}", PumpPanel)
                panel.show_discount(f"discount: {yuan(int(discount))}")
            self.refresh_view()

    # Actions ---------------------------------------------------------------------------------
    def action_pump(self, step: int) -> None:
        self.pump_index = (self.pump_index + step) % len(self.pumps)
        self.refresh_view()

    def action_next_card(self) -> None:
        self.card_index = (self.card_index + 1) % len(self.session.forecourt.cards())
        self.refresh_view()

    def action_next_nozzle(self) -> None:
        numbers = [n.number for n in self.session.forecourt.dispenser_view(self.pump).nozzles]
        current = self.nozzle.get(self.pump, numbers[0])
        self.nozzle[self.pump] = numbers[(numbers.index(current) + 1) % len(numbers)]
        self.refresh_view()

    def select_card(self, card: str) -> None:
        self.card_index = self.session.forecourt.cards().index(card)
        self.refresh_view()

    def action_insert(self) -> None:
        pump, card, pin = self.pump, self.card, self.query_one("#pump-pin", Input).value
        self.call(lambda: self.session.forecourt.insert(card, pump, pin))

    def preset(self) -> Preset:
        text = self.query_one("#preset", Input).value.strip()
        nozzle = self.nozzle.get(self.pump, 1)
        if text.upper().endswith("L"):
            return Preset(nozzle, volume=parse_yuan(text[:-1]))
        return Preset(nozzle, amount=parse_yuan(text))

    def action_lift(self) -> None:
        pump, preset = self.pump, self.preset()
        self.call(lambda: self.session.forecourt.lift(pump, preset), lambda _: self.deliver(pump))

    def deliver(self, pump: str) -> None:
        delay = self.session.config.tick_delay
        if delay > 0:
            stop = threading.Event()
            self.delivering[pump] = stop
            self.run_delivery(pump, delay, stop)

    def run_delivery(self, pump: str, delay: float, stop: threading.Event) -> None:
        self.run_worker(
            lambda: self.delivery(pump, delay, stop),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group=f"delivery-{pump}",
        )

    def delivery(self, pump: str, delay: float, stop: threading.Event) -> None:
        """Tick until the preset stops the flow or the nozzle is hung up."""
        forecourt = self.session.forecourt
        while not stop.wait(delay):
            with self.fuelsim.service_lock:
                view = forecourt.dispenser_view(pump)
                if view.fuelling is None or view.fuelling.volume >= view.fuelling.limit_volume:
                    return
                forecourt.tick(pump)

    def action_tick(self) -> None:
        pump = self.pump
        self.call(lambda: self.session.forecourt.tick(pump))

    def action_hang_up(self) -> None:
        pump = self.pump
        stop = self.delivering.pop(pump, None)
        if stop is not None:
            stop.set()

        def hang_up() -> None:
            self.session.forecourt.hang_up(pump)
            self.session.upload()

        self.call(hang_up)

    def action_pull(self) -> None:
        pump = self.pump
        card = self.session.forecourt.dispenser_view(pump).card
        if card is None:
            self.notify(f"{pump} holds no card", severity="warning")
            return
        self.call(lambda: self.session.forecourt.remove(card))

    def action_upload(self) -> None:
        self.call(self.session.upload, lambda report: self.notify(upload_text(report)))


def upload_text(report: object) -> str:
    accepted = getattr(report, "accepted", 0)
    rejected = getattr(report, "rejected", 0)
    error = getattr(report, "error", None)
    return f"upload: {accepted} accepted, {rejected} rejected" + (f"; {error}" if error else "")
