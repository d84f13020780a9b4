"""The forecourt service: one synchronous API over a simulated station, its cards and its host.

The scenario runner, the CLI and the TUI call it; it returns typed results and everything that
happens (APDUs, ticks, messages, bills, state changes) is published on `events`. Card positions
are tracked here: a card sits in at most one terminal's slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cardcore.layout import LockStatus
from cardcore.records import Bill, LockRecord, PublicAppData
from terminal_sim.dispenser import Dispenser, Fuelling, Preset
from terminal_sim.events import Event
from terminal_sim.fuelling import CardData
from terminal_sim.office import (
    IssuingOffice,
    LoadResult,
    LossReport,
    OnlineUnlockResult,
    PinReloaded,
    StoreFlagResult,
    UnblockResult,
)
from terminal_sim.scenario_world import ScenarioError, World, build_world
from terminal_sim.store_pos import Receipt, StorePos

DEFAULT_PIN = "999999"


@dataclass(frozen=True)
class CardStatus:
    name: str
    asn: bytes
    balance: int
    lock: LockStatus
    store_enabled: bool
    slot: str | None  # the terminal holding the card


class Forecourt:
    def __init__(self, world: World) -> None:
        self.world = world

    @classmethod
    def open(
        cls, actors: dict[str, Any], *, start: datetime, workdir: Path, transport: str = "inproc"
    ) -> Forecourt:
        return cls(build_world(actors, start=start, transport=transport, workdir=workdir))

    def close(self) -> None:
        self.world.close()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self.world.bus.subscribe(callback)

    # Cards and slots -------------------------------------------------------------------------
    def card_status(self, card: str) -> CardStatus:
        cells = self.world.card(card).nvm.cells
        public = PublicAppData.from_bytes(cells["ef15"])
        slot = self.world.slot_of(card)
        holder = next((name for name, t in self.world.terminals.items() if t.slot is slot), None)
        return CardStatus(
            card,
            public.asn,
            int.from_bytes(cells["et.balance"], "big"),
            LockStatus(LockRecord.from_bytes(cells["lock"]).status),
            public.store_enabled,
            holder,
        )

    def insert(self, card: str, at: str, pin: str | None = None) -> CardData | None:
        """Put the card in a terminal's slot; at a pump with a PIN, check and verify it too."""
        terminal = self.world.terminal(at)
        current = self.world.slot_of(card)
        if current is not None:
            current.remove()
        terminal.slot.insert(self.world.card(card), card)
        if terminal.kind == "dispenser" and pin is not None:
            return self.dispenser(at).insert_card(pin)
        return None

    def remove(self, card: str) -> None:
        """Pull a card from whatever slot holds it (mid-fuelling the pump keeps going)."""
        slot = self.world.slot_of(card)
        if slot is None:
            raise ScenarioError(f"card {card!r} is in no slot")
        for terminal in self.world.terminals.values():
            if terminal.slot is slot and isinstance(terminal.device, Dispenser):
                terminal.device.pull_card()
        slot.remove()

    # Pumps -----------------------------------------------------------------------------------
    def dispenser(self, name: str) -> Dispenser:
        device = self.world.terminal(name, "dispenser").device
        assert isinstance(device, Dispenser)
        return device

    def lift(self, at: str, preset: Preset) -> Fuelling:
        return self.dispenser(at).lift_nozzle(preset)

    def tick(self, at: str, count: int = 1) -> int:
        return self.dispenser(at).tick(count)

    def hang_up(self, at: str) -> Bill:
        return self.dispenser(at).hang_up()

    def fuel(
        self,
        at: str,
        preset: Preset,
        *,
        card: str | None = None,
        pin: str = DEFAULT_PIN,
        ticks: int = 10_000,
        pull_at_tick: int | None = None,
    ) -> Bill:
        """Insert (with PIN), lift, deliver until the preset stops the nozzle (or `ticks`), hang
        up; `pull_at_tick` pulls the card after that many ticks."""
        if card is not None:
            self.insert(card, at, pin)
        elif pull_at_tick is not None:
            raise ScenarioError("fuel: pull_at_tick needs the card")
        pump = self.dispenser(at)
        fuelling = pump.lift_nozzle(preset)
        for count in range(1, ticks + 1):
            before = fuelling.volume
            pump.tick()
            if card is not None and count == pull_at_tick:
                self.remove(card)
            if fuelling.volume == before:
                break
        return pump.hang_up()

    def crash(self, at: str, *, card_removed: bool = False, card: str | None = None) -> list[Bill]:
        """The pump loses power and restarts, then recovers from its journal. `card_removed`:
        the card was pulled while it was down; `card`: that card is in the slot at restart."""
        terminal = self.world.terminal(at, "dispenser")
        if card_removed and card is not None:
            raise ScenarioError("crash: card_removed and card exclude each other")
        terminal.slot.disconnect()
        if card_removed:
            if terminal.slot.card_name is None:
                raise ScenarioError(f"crash: card_removed, but {at} holds no card")
            terminal.slot.remove()
        elif card is not None:
            for other in {id(t.slot): t.slot for t in self.world.terminals.values()}.values():
                if other.card_name is not None and (
                    other is terminal.slot or other.card_name == card
                ):
                    other.remove()
            terminal.slot.insert(self.world.card(card), card)
        terminal.device = self.world.restarts[at]()
        return self.dispenser(at).recover()

    # Store and office ------------------------------------------------------------------------
    def pos(self, name: str) -> StorePos:
        device = self.world.terminal(name, "pos").device
        assert isinstance(device, StorePos)
        return device

    def office(self, name: str) -> IssuingOffice:
        device = self.world.terminal(name, "office").device
        assert isinstance(device, IssuingOffice)
        return device

    def present(self, card: str | None, at: str) -> None:
        """The card is handed over at the counter (put in the terminal's reader)."""
        if card is not None:
            self.insert(card, at)

    def pay(
        self, at: str, amount: int, *, card: str | None = None, pin: str = DEFAULT_PIN
    ) -> Receipt:
        self.present(card, at)
        return self.pos(at).pay(pin, amount)

    def load(
        self, at: str, amount: int, *, card: str | None = None, pin: str = DEFAULT_PIN
    ) -> LoadResult:
        self.present(card, at)
        return self.office(at).load(pin, amount)

    def set_store_flag(self, at: str, on: bool, *, card: str | None = None) -> StoreFlagResult:
        self.present(card, at)
        return self.office(at).set_store_flag(on)

    def asn(self, card: str) -> bytes:
        return self.world.card(card).nvm.cells["ef15"][10:20]

    def report_loss(self, at: str, card: str, *, present: bool = True) -> LossReport:
        self.present(card if present else None, at)
        return self.office(at).report_loss(self.asn(card))

    def unblock(self, at: str, card: str, *, present: bool = True) -> UnblockResult:
        self.present(card if present else None, at)
        return self.office(at).unblock(self.asn(card))

    def reload_pin(self, at: str, pin: str, *, card: str | None = None) -> PinReloaded:
        self.present(card, at)
        return self.office(at).reload_pin(pin)

    def online_unlock(
        self, at: str, *, card: str | None = None, pin: str = DEFAULT_PIN
    ) -> OnlineUnlockResult:
        self.present(card, at)
        return self.office(at).online_unlock(pin)

    # Time ------------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> datetime:
        self.world.clock.advance(seconds)
        return self.world.clock.now()
