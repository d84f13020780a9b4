"""The error modal: what went wrong, in the project's words, and what to do about it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from cardcore.errors import FuelsimError

ADVICE = {
    "refused at the pump": "Follow the pump's message (F1), or fix the card in the office (F3).",
    "refused at the store": "Enable the store flag or unlock the card in the office (F3).",
    "card lost": "Insert the card again (Cards, F4) and retry.",
    "host refused": "See the host's code; the Host screen (F6) lists bills and the blacklist.",
    "host unavailable": "Check --host-url, or start without it to use the embedded host.",
    "bad reader": "Readers are inproc:PROFILE, pcsc:READER NAME or pcsc:#N.",
    "phone": "Arm the card with the PIN (a) on the Phone screen (F8), then pay.",
    "virtual card at the pump": "Arm the phone (a), then tap or scan before the countdown ends.",
}


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """Title, message and advice for an error a service call raised."""
    if isinstance(error, FuelsimError):
        title = str(error.title)
        return title, str(error), ADVICE.get(title, "Check the inputs and try again.")
    if isinstance(error, ValueError):
        return "invalid input", str(error), "Correct the value and try again."
    return type(error).__name__, str(error), "This is unexpected: the APDU log (F5) may show why."


class ErrorModal(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss", "Close", id="error.close")
    ]

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.title_text, self.message, self.advice = describe_error(error)

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(self.title_text, id="error-title")
            yield Static(self.message, id="error-message")
            yield Static(f"What to do: {self.advice}", id="error-advice")
            yield Button("Close", id="error-close", variant="error")

    def on_button_pressed(self, _: Button.Pressed) -> None:
        self.dismiss()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
