"""APDU log: every exchange of every terminal, decoded, with its status word and timing."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from cardcore.apdu import CommandApdu, ResponseApdu
from cardcore.commands import decode_exchange
from cardcore.errors import DecodeError
from cardcore.sw import SW
from terminal_sim.events import APDU, Event
from tui.base import ServiceScreen
from tui.messages import ServiceEvent


def summary(event: Event) -> tuple[str, str, str, str, str, str]:
    """Terminal, reader, command name, status word, its meaning and milliseconds."""
    data = event.data
    response: bytes | None = data["response"]
    try:
        name = decode_exchange(CommandApdu.from_bytes(data["command"]), b"")[0]
    except DecodeError:
        name = "(malformed)"
    if response is None or len(response) < 2:
        sw, meaning = "----", "no answer: the card was lost"
    else:
        word = int.from_bytes(response[-2:], "big")
        sw, meaning = f"{word:04X}", SW.describe(word)
    millis = f"{float(data['seconds']) * 1000:.3f}"
    return event.terminal, str(data["reader"]), name, sw, meaning, millis


def detail(number: int, event: Event) -> list[str]:
    data = event.data
    command: bytes = data["command"]
    response: bytes | None = data["response"]
    lines = [f"#{number} " + "  ".join(summary(event)[:3])]
    lines.append(f"→ {command.hex(' ').upper()}")
    try:
        apdu = CommandApdu.from_bytes(command)
        answer = ResponseApdu.from_bytes(response) if response else None
        _, fields, answer_fields = decode_exchange(apdu, answer.data if answer else b"")
    except DecodeError as exc:
        return [*lines, f"  (does not decode: {exc})"]
    lines += [f"    {name}: {value.hex().upper()}" for name, value in fields]
    if answer is None:
        return [*lines, "← (no answer: the card was lost)"]
    lines.append(f"← {response.hex(' ').upper() if response else ''}")
    lines += [f"    {name}: {value.hex().upper()}" for name, value in answer_fields if value]
    lines.append(f"    SW {answer.sw:04X} {SW.describe(answer.sw)}")
    return lines


class ApduLogScreen(ServiceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "focus_filter", "Filter", id="apdu.filter"),
        Binding("e", "export", "Export", id="apdu.export"),
        Binding("delete", "clear", "Clear", id="apdu.clear"),
    ]

    def __init__(self) -> None:
        super().__init__(id="apdu-log")
        self.shown: list[tuple[int, Event]] = []
        self.cleared = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Input(placeholder="filter: terminal, command or SW", id="apdu-filter")
            yield DataTable(id="apdu-table", cursor_type="row")
            yield Static("", id="apdu-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "APDU log"
        table = self.query_one(DataTable)
        table.add_columns("#", "terminal", "reader", "command", "SW", "meaning", "ms")
        self.refresh_view()

    def matches(self, event: Event) -> bool:
        needle = self.query_one("#apdu-filter", Input).value.strip().lower()
        return not needle or needle in " ".join(summary(event)).lower()

    def refresh_view(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.shown = []
        events = self.session.apdu_events()
        for number, event in enumerate(events[self.cleared :], self.cleared + 1):
            self.add(number, event)
        self.show_detail()

    def add(self, number: int, event: Event) -> None:
        if self.matches(event):
            self.shown.append((number, event))
            self.query_one(DataTable).add_row(str(number), *summary(event))

    def on_service_event(self, message: ServiceEvent) -> None:
        if message.event.kind == APDU:
            self.add(len(self.session.apdu_events()), message.event)

    def on_input_changed(self, _: Input.Changed) -> None:
        self.refresh_view()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        row = self.query_one(DataTable).cursor_row
        text = ""
        if 0 <= row < len(self.shown):
            text = "\n".join(detail(*self.shown[row]))
        self.query_one("#apdu-detail", Static).update(text)

    def action_focus_filter(self) -> None:
        self.query_one("#apdu-filter", Input).focus()

    def action_clear(self) -> None:
        self.cleared = len(self.session.apdu_events())
        self.refresh_view()

    def action_export(self) -> None:
        path = self.session.config.data_dir / "apdu-log.txt"
        self.export(path)
        self.notify(f"APDU log exported to {path}")

    def export(self, path: Path) -> Path:
        lines: list[str] = []
        for number, event in self.shown:
            lines += detail(number, event)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
