"""Every action in the command palette: switch screens, insert a card, run a scenario, …"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from tui.modes import MODES

if TYPE_CHECKING:
    from tui.app import FuelsimApp


def palette_commands(app: FuelsimApp) -> Iterator[SystemCommand]:
    for mode in MODES:
        yield SystemCommand(
            f"Show {mode.title}",
            f"Switch to the {mode.title} screen ({mode.key})",
            lambda name=mode.name: app.switch_mode(name),
        )
    forecourt = app.session.forecourt
    for card in forecourt.cards():
        for terminal in forecourt.terminals():
            yield SystemCommand(
                f"Insert card {card} at {terminal}",
                f"Put {card} in the card slot of {terminal}",
                lambda card=card, terminal=terminal: app.insert_card(card, terminal),
            )
        yield SystemCommand(
            f"Remove card {card}",
            f"Pull {card} from its slot",
            lambda card=card: app.remove_card(card),
        )
    folder = app.session.config.scenario_dir
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        yield SystemCommand(
            f"Run scenario {path.stem}",
            f"Run {path.name} on the Scenarios screen",
            lambda name=path.stem: app.run_scenario(name),
        )
    for card in forecourt.cards():
        yield SystemCommand(
            f"Switch reader: watch {card} on the Cards screen",
            "Select the card (emulated, or in a real reader) on the Cards screen",
            lambda card=card: app.show_card(card),
        )
    yield SystemCommand(
        "Export APDU trace",
        "Write the APDU log, decoded, to apdu-log.txt in the data directory",
        app.export_trace,
    )
    yield SystemCommand("Upload bills", "Send the station's pending bills to the host", app.upload)
