"""Scenarios: pick a scenario file, run it, and watch it step by step (or straight through)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from terminal_sim.events import MESSAGE, Event
from terminal_sim.scenarios import discover
from terminal_sim.service import scenario_steps
from tui.base import ServiceScreen
from tui.messages import ScenarioEvent, ScenarioStep


class ScenariosScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "run", "Run", id="scenarios.run"),
        Binding("s", "toggle_stepping", "Step mode", id="scenarios.step-mode"),
        Binding("space", "next_step", "Next step", id="scenarios.next"),
    ]

    def __init__(self) -> None:
        super().__init__(id="scenarios")
        self.files: list[Path] = []
        self.stepping = True
        self.go_on = threading.Event()
        self.running: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield DataTable(id="scenario-files", cursor_type="row")
            with Vertical(id="scenario-run"):
                yield Static("", id="scenario-status")
                yield DataTable(id="scenario-steps", cursor_type="row")
                yield RichLog(id="scenario-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Scenarios"
        files = self.query_one("#scenario-files", DataTable)
        files.add_column("scenario")
        folder = self.session.config.scenario_dir
        self.files = discover([folder]) if folder.is_dir() else []
        for path in self.files:
            files.add_row(path.stem)
        self.query_one("#scenario-steps", DataTable).add_columns("#", "action", "ok", "detail")
        self.show_status()

    def show_status(self, text: str = "") -> None:
        mode = "step by step (space: next step)" if self.stepping else "straight through"
        self.query_one("#scenario-status", Static).update(text or f"mode: {mode}")

    def action_toggle_stepping(self) -> None:
        self.stepping = not self.stepping
        self.go_on.set()
        self.show_status()

    def action_next_step(self) -> None:
        self.go_on.set()

    def select(self, name: str) -> None:
        table = self.query_one("#scenario-files", DataTable)
        table.move_cursor(row=[p.stem for p in self.files].index(name))

    def action_run(self) -> None:
        if not self.files:
            self.notify(f"no scenarios in {self.session.config.scenario_dir}", severity="warning")
            return
        path = self.files[self.query_one("#scenario-files", DataTable).cursor_row]
        self.running = path
        self.query_one("#scenario-steps", DataTable).clear()
        self.query_one(RichLog).clear()
        self.show_status(f"running {path.stem}")
        self.go_on.clear()
        self.run_worker(
            lambda: self.play(path),
            thread=True,
            exclusive=True,
            group="scenario",
            exit_on_error=False,
        )

    def play(self, path: Path) -> None:
        """Each step waits for `space` in step mode; events and results become messages."""
        timer = self.session.config.timer

        def forward(event: Event) -> None:
            self.post_message(ScenarioEvent(event))

        for result in scenario_steps(path, on_event=forward, timer=timer or time.perf_counter):
            self.post_message(ScenarioStep(result))
            if self.stepping:
                self.go_on.wait()
                self.go_on.clear()

    def on_scenario_event(self, message: ScenarioEvent) -> None:
        event = message.event
        if event.kind == MESSAGE:
            self.query_one(RichLog).write(f"{event.terminal}: {event.data['text']}")

    def on_scenario_step(self, message: ScenarioStep) -> None:
        result = message.result
        self.query_one("#scenario-steps", DataTable).add_row(
            str(result.number), result.action, "✓" if result.ok else "✗", result.detail
        )
        name = self.running.stem if self.running else ""
        self.show_status(f"{name}: step {result.number} {'passed' if result.ok else 'FAILED'}")
