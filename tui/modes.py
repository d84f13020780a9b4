"""The TUI's modes, in the order of their keys. Adding a screen is one module and one line here."""

from __future__ import annotations

from dataclasses import dataclass

from tui.base import ServiceScreen
from tui.screens.apdu_log import ApduLogScreen
from tui.screens.cards import CardsScreen
from tui.screens.forecourt import ForecourtScreen
from tui.screens.host import HostScreen
from tui.screens.office import OfficeScreen
from tui.screens.phone import PhoneScreen
from tui.screens.scenarios import ScenariosScreen
from tui.screens.store import StoreScreen


@dataclass(frozen=True)
class Mode:
    name: str
    key: str
    title: str
    screen: type[ServiceScreen]


MODES: tuple[Mode, ...] = (
    Mode("forecourt", "f1", "Forecourt", ForecourtScreen),
    Mode("store", "f2", "Store POS", StoreScreen),
    Mode("office", "f3", "Issuing office", OfficeScreen),
    Mode("cards", "f4", "Cards", CardsScreen),
    Mode("apdu", "f5", "APDU log", ApduLogScreen),
    Mode("host", "f6", "Host", HostScreen),
    Mode("scenarios", "f7", "Scenarios", ScenariosScreen),
    Mode("phone", "f8", "Phone", PhoneScreen),
)
