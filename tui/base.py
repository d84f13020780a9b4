"""What every screen shares: its session, service calls in thread workers, error modals."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual import work
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.errors import ErrorModal
from tui.messages import ServiceEvent
from tui.session import Session

if TYPE_CHECKING:
    from tui.app import FuelsimApp

T = TypeVar("T")


class ServiceScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "release_focus", "Keys to screen", show=False, id="screen.release")
    ]

    def action_release_focus(self) -> None:
        """Leave an input: the keys go to the screen's bindings again."""
        self.set_focus(None)

    @property
    def fuelsim(self) -> FuelsimApp:
        from tui.app import FuelsimApp

        assert isinstance(self.app, FuelsimApp)
        return self.app

    @property
    def session(self) -> Session:
        return self.fuelsim.session

    @work(thread=True, exclusive=True, exit_on_error=False, group="service")
    def call(self, action: Callable[[], Any], done: Callable[[Any], None] | None = None) -> None:
        """Run one service call off the UI thread (serialised with every other), then `done`."""
        with self.fuelsim.service_lock:
            self.session.follow_clock()
            result = action()
        if done is not None:
            self.app.call_from_thread(done, result)
        self.app.call_from_thread(self.refresh_view)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.push_screen(ErrorModal(event.worker.error))
            self.refresh_view()

    def on_service_event(self, message: ServiceEvent) -> None:
        """Screens that show live events override this."""

    def refresh_view(self) -> None:
        """Redraw from the service's state (after a call, or when the screen is shown)."""

    def on_screen_resume(self) -> None:
        self.refresh_view()
