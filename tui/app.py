"""The Textual app: composes the screens, routes domain events to them, and nothing more.

`make_app(config)` is the factory: it opens the session (with the clock, seed and timer the
config injects) and builds the app around it, so tests and snapshots get a reproducible app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import partial
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from terminal_sim.events import Event
from tui.base import ServiceScreen
from tui.commands import palette_commands
from tui.errors import ErrorModal
from tui.messages import ServiceEvent
from tui.modes import MODES
from tui.screens.apdu_log import ApduLogScreen
from tui.screens.cards import CardsScreen
from tui.screens.scenarios import ScenariosScreen
from tui.session import Session, SessionConfig


class FuelsimApp(App[None]):
    CSS_PATH = "fuelsim.tcss"
    TITLE = "fuelsim"
    AUTO_FOCUS = None  # keys reach the screen bindings until an input is clicked
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(m.key, f"switch_mode('{m.name}')", m.title, id=f"mode.{m.name}") for m in MODES),
        Binding("ctrl+q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, session: Session, *, poll_readers: bool = True) -> None:
        super().__init__()
        self.session = session
        self.poll_readers = poll_readers
        self.service_lock = threading.RLock()  # one service call at a time, from any worker
        self.mode_screens: dict[str, ServiceScreen] = {}
        for mode in MODES:
            self.add_mode(mode.name, partial(self._screen, mode.name, mode.screen))
        self._unsubscribe = session.forecourt.subscribe(self._publish)

    def _screen(self, name: str, kind: type[ServiceScreen]) -> ServiceScreen:
        screen = kind()
        self.mode_screens[name] = screen
        return screen

    def _publish(self, event: Event) -> None:
        self.post_message(ServiceEvent(event))  # thread-safe: workers publish from their thread

    def on_mount(self) -> None:
        self.sub_title = self.session.host_label
        self.switch_mode(MODES[0].name)

    def on_unmount(self) -> None:
        self._unsubscribe()
        self.session.close()

    def on_service_event(self, message: ServiceEvent) -> None:
        for screen in self.mode_screens.values():
            if screen.is_mounted:
                screen.post_message(ServiceEvent(message.event))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette_commands(self)

    def show_error(self, error: BaseException) -> None:
        self.push_screen(ErrorModal(error))

    # Palette commands: each one switches to the screen that does the work ---------------------
    def _mode_screen(self, name: str) -> ServiceScreen:
        self.switch_mode(name)
        return self.mode_screens[name]

    def insert_card(self, card: str, terminal: str) -> None:
        screen = self._mode_screen("cards")
        screen.call(lambda: self.session.forecourt.insert(card, terminal))

    def remove_card(self, card: str) -> None:
        screen = self._mode_screen("cards")
        screen.call(lambda: self.session.forecourt.remove(card))

    def show_card(self, card: str) -> None:
        def select() -> None:
            screen = self._mode_screen("cards")
            assert isinstance(screen, CardsScreen)
            screen.select_card(card)

        self.call_later(select)

    def run_scenario(self, name: str) -> None:
        def start() -> None:
            screen = self._mode_screen("scenarios")
            assert isinstance(screen, ScenariosScreen)
            screen.select(name)
            screen.action_run()

        self.call_later(start)

    def export_trace(self) -> None:
        def export() -> None:
            screen = self._mode_screen("apdu")
            assert isinstance(screen, ApduLogScreen)
            screen.action_export()

        self.call_later(export)

    def upload(self) -> None:
        self._mode_screen("host").call(self.session.upload)


def make_app(config: SessionConfig, *, poll_readers: bool = True) -> FuelsimApp:
    return FuelsimApp(Session.open(config), poll_readers=poll_readers)
