"""Phone: the driver's virtual fleet card. Arm it with the PIN; the QR code (half blocks, both
colours explicit so it scans on any theme), the numeric code and a countdown follow the phone's
trusted time; at zero the code is gone ("expired — refresh"). The phone's clock can be set off,
made to drift or synced with the host. A pump takes the card by an NFC tap or by the code."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import ClassVar, TypeVar

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, Vertical
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, ProgressBar, Static

from terminal_sim import qr
from terminal_sim.phone import TICK_S, Face
from tui.base import ServiceScreen
from tui.format import parse_yuan, yuan
from tui.phone_desk import PHONE_PIN, PhoneDesk, PhoneView, PumpAnswer, clock_text

OFFSET_STEP_S = 60  # one key press sets the phone's wall clock a minute off
NARROW = 110  # below this width the code goes under the details
DARK, LIGHT = Color.from_ansi(16), Color.from_ansi(231)  # fixed entries: themes leave them alone
T = TypeVar("T")
NO_PHONE = "the phone needs the embedded host's fleet: start fuelsim tui without --host-url"


@cache
def _cell_style(top: bool, bottom: bool) -> Style:
    return Style(color=DARK if top else LIGHT, bgcolor=DARK if bottom else LIGHT)


@cache
def qr_cells(text: str) -> Text:
    """The QR code of `text`, two modules per cell, in rich text with both colours set."""
    out = Text(no_wrap=True, end="")
    rows = qr.half_block_cells(qr.matrix(text))
    for number, row in enumerate(rows):
        for top, bottom in row:
            out.append(qr.UPPER_HALF, _cell_style(top, bottom))
        if number < len(rows) - 1:
            out.append("\n")
    return out


class PhoneScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "arm", "Arm", id="phone.arm"),
        Binding("left_square_bracket", "pump(-1)", "Prev pump", id="phone.prev-pump"),
        Binding("right_square_bracket", "pump(1)", "Next pump", id="phone.next-pump"),
        Binding("n", "tap", "Tap to pump", id="phone.tap"),
        Binding("q", "pay('qr')", "Pay by QR", id="phone.pay-qr"),
        Binding("m", "pay('numeric')", "Pay by code", id="phone.pay-numeric"),
        Binding("h", "settle", "Hang up", id="phone.settle"),
        Binding("s", "sync", "Sync clock", id="phone.sync"),
        Binding("plus,equals_sign", f"offset({OFFSET_STEP_S})", "Clock +1 min", id="phone.ahead"),
        Binding("minus", f"offset(-{OFFSET_STEP_S})", "Clock −1 min", id="phone.behind"),
        Binding("d", "drift", "Drift", id="phone.drift"),
    ]

    def __init__(self) -> None:
        super().__init__(id="phone")
        self.pump_index = 0
        self.shown_qr: str | None = None
        self.countdown: Timer | None = None

    @property
    def pump(self) -> str:
        pumps = list(self.session.phone.pumps) if self.session.phone else ["-"]
        return pumps[self.pump_index % len(pumps)]

    def compose(self) -> ComposeResult:
        yield Header()
        with Container(id="phone-body"):
            with Vertical(id="phone-info"):
                yield Static("", id="phone-card")
                yield Static("", id="phone-face")
                yield Static("", id="phone-numeric")
                yield ProgressBar(total=60, show_eta=False, id="phone-countdown")
                yield Static("", id="phone-clock")
                yield Static("", id="phone-warning")
                with Horizontal(classes="counter-inputs"):
                    yield Label("PIN:")
                    yield Input(PHONE_PIN, id="phone-pin", password=True, classes="short")
                    yield Label("amount:")
                    yield Input("200.00", id="phone-amount", classes="short")
                with Horizontal(classes="counter-inputs"):
                    yield Label("delivered:")
                    yield Input("150.00", id="phone-delivered", classes="short")
                    yield Label("drift (ppm):")
                    yield Input("0", id="phone-drift", classes="short")
                yield Static("", id="phone-pump")
                yield Static("no payment yet", id="phone-payment")
                yield Static("", id="phone-account")
            yield Static("", id="phone-qr")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Phone"
        self.countdown = self.set_interval(TICK_S, self.tick)
        self.refresh_view()

    def on_resize(self, event: Resize) -> None:
        self.query_one("#phone-body").set_class(event.size.width < NARROW, "narrow")

    # Drawing -------------------------------------------------------------------------------------
    def refresh_view(self) -> None:
        desk = self.session.phone
        if desk is None:
            self.query_one("#phone-face", Static).update(NO_PHONE)
            return
        pump = desk.pump(self.pump)
        term = getattr(pump.host, "terminal_id", "")
        self.query_one("#phone-pump", Static).update(
            f"at pump: {self.pump} (pump {pump.pump}, terminal {term})"
        )
        account = desk.account
        self.query_one("#phone-account", Static).update(
            f"fleet account: balance {yuan(account.balance)}, held {yuan(account.held)}"
        )
        view = desk.peek()  # the UI thread never waits for a call in progress
        if view is not None:
            self.show(view)

    def tick(self) -> None:
        """The countdown: redrawn from the phone's trusted time every TICK_S seconds."""
        desk = self.session.phone
        if desk is None or self not in self.app.screen_stack:  # another mode is shown
            return
        lock: threading.RLock = self.fuelsim.service_lock
        if self.session.config.live_clock and lock.acquire(blocking=False):
            try:
                self.session.follow_clock()  # a live forecourt: time moves with the wall clock
            finally:
                lock.release()
        view = desk.peek()
        if view is not None:
            self.show(view)

    def show(self, view: PhoneView) -> None:
        card = view.card
        self.query_one("#phone-card", Static).update(
            "no card on this phone"
            if card is None
            else f"card {card.card_id}  {card.card_number}  expires {card.expiry}\n"
            f"keys: {view.uses_left} uses left"
        )
        face = self.query_one("#phone-face", Static)
        face.update(view.face.value)
        face.set_class(view.face is Face.EXPIRED, "expired")
        armed = view.numeric is not None
        self.query_one("#phone-numeric", Static).update(
            f"numeric code: {view.numeric}" if armed else "numeric code: -"
        )
        remaining = max(0.0, view.remaining_s)
        self.query_one(ProgressBar).update(total=view.ttl, progress=remaining if armed else 0)
        synced = (
            f"synced {view.sync_age_s:.0f} s ago" if view.sync_age_s is not None else "not synced"
        )
        self.query_one("#phone-clock", Static).update(
            f"{remaining:.1f} s left\n"
            f"phone clock {clock_text(view.wall)}  trusted {clock_text(view.trusted)}\n"
            f"wall − trusted {view.skew_s:+.1f} s  ·  drift {view.drift_ppm:g} ppm  ·  {synced}"
        )
        self.query_one("#phone-warning", Static).update(view.clock_warning or "")
        self.draw_code(view)

    def draw_code(self, view: PhoneView) -> None:
        if view.qr_text == self.shown_qr and view.qr_text is not None:
            return
        self.shown_qr = view.qr_text
        box = self.query_one("#phone-qr", Static)
        if view.qr_text is not None:
            box.update(qr_cells(view.qr_text))
        elif view.face is Face.EXPIRED:
            box.update(f"{view.face.value}\n\npress a to arm the card again")
        else:
            box.update(f"{view.face.value}\n\npress a to arm the card with the PIN")
        box.set_class(view.qr_text is not None, "code")

    # Actions: inputs are read here, checked in the worker (a bad one becomes the error modal) --
    def value(self, input_id: str) -> str:
        return self.query_one(f"#{input_id}", Input).value.strip()

    def on_desk(
        self, work: Callable[[PhoneDesk], T], done: Callable[[T], None] | None = None
    ) -> None:
        session = self.session

        def run() -> T:
            if session.phone is None:
                raise ValueError(NO_PHONE)
            return work(session.phone)

        self.call(run, done)

    def action_arm(self) -> None:
        pin = self.value("phone-pin")
        self.on_desk(lambda desk: desk.arm(pin))

    def action_pump(self, step: int) -> None:
        if self.session.phone is not None:
            self.pump_index = (self.pump_index + step) % len(self.session.phone.pumps)
            self.refresh_view()

    def action_tap(self) -> None:
        pump, amount = self.pump, self.value("phone-amount")
        self.on_desk(lambda desk: desk.tap(pump, parse_yuan(amount)), self.paid)

    def action_pay(self, method: str) -> None:
        pump, amount = self.pump, self.value("phone-amount")
        self.on_desk(lambda desk: desk.pay_code(pump, parse_yuan(amount), method), self.paid)

    def action_settle(self) -> None:
        delivered = self.value("phone-delivered")
        self.on_desk(lambda desk: desk.settle(parse_yuan(delivered, zero=True)), self.paid)

    def paid(self, answer: PumpAnswer) -> None:
        self.query_one("#phone-payment", Static).update(payment_text(answer))

    def action_sync(self) -> None:
        self.on_desk(
            lambda desk: desk.sync(),
            lambda sample: self.notify(f"synced with the host (round trip {sample.delay_s:.3f} s)"),
        )

    def action_offset(self, seconds: int) -> None:
        self.on_desk(lambda desk: desk.shift_wall(seconds))

    def action_drift(self) -> None:
        text = self.value("phone-drift")
        self.on_desk(lambda desk: desk.set_drift(parse_ppm(text)))


def parse_ppm(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a drift in ppm like 500 or -20") from None


def payment_text(answer: PumpAnswer) -> str:
    """`pump1 (nfc): held 200.00, hold 3` or `pump1 (qr): completed 150.00, released 50.00`."""
    text = f"{answer.pump} ({answer.method}): {answer.status}"
    if answer.status == "held":
        text += f" {yuan(answer.held_amount)}, hold {answer.hold_id}: lift the nozzle"
    else:
        text += f" {yuan(answer.amount)} of {yuan(answer.held_amount)}"
        if answer.released_amount:
            text += f", released {yuan(answer.released_amount)}"
    if answer.warnings:
        text += f"  (warnings: {', '.join(answer.warnings)})"
    return text
