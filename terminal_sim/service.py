"""The forecourt service: one synchronous API over a simulated station, its cards and its host.

The scenario runner, the CLI and the TUI call it; it returns typed results and everything that
happens (APDUs, ticks, messages, bills, state changes) is published on `events`. Card positions
are tracked here: a card sits in at most one terminal's slot.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from card_profiles.fuel_card import FuelCard
from card_profiles.inspect import Section, describe
from cardcore.errors import FuelsimError
from cardcore.layout import LockStatus
from cardcore.ports import Reader
from cardcore.records import Bill, LockRecord, PublicAppData
from terminal_sim.dispenser import Dispenser, Fuelling, Preset
from terminal_sim.events import APDU, Event
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
from terminal_sim.online import OnlineHost
from terminal_sim.scenario_world import ScenarioError, World, build_world
from terminal_sim.store_pos import Receipt, StorePos

if TYPE_CHECKING:
    from terminal_sim.scenarios import StepResult

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
    def __init__(self, world: World, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.world = world
        self.timer = timer  # times APDU exchanges; a fixed one makes traces reproducible
        self.reader_cards: dict[str, ReaderCard] = {}
        for name in world.terminals:
            self._trace_terminal(name)

    @classmethod
    def open(
        cls,
        actors: dict[str, Any],
        *,
        start: datetime,
        workdir: Path,
        transport: str = "inproc",
        seed: int = 1,
        timer: Callable[[], float] = time.perf_counter,
        host_kind: str = "inproc",
    ) -> Forecourt:
        """`host_kind`: `inproc`, or `http` (the host app on 127.0.0.1, `workdir/host.sqlite`)."""
        world = build_world(
            actors,
            start=start,
            transport=transport,
            workdir=workdir,
            seed=seed,
            host_kind=host_kind,
        )
        return cls(world, timer=timer)

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
        applet = self._applet(card)
        current = self.world.slot_of(card)
        if current is not None:
            current.remove()
        terminal.slot.insert(applet, card)
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
        self._trace_terminal(at)
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

    def recover(self, at: str) -> str:
        """Finish the store sale or the office's load/unlock left in doubt, with the card now
        in the terminal's slot; what happened, for a person."""
        device = self.world.terminal(at).device
        if isinstance(device, Dispenser):
            return f"{len(device.recover())} fuelling(s) finished"
        if device.in_doubt is None:
            raise ScenarioError(f"{at}: nothing is in doubt")
        done = device.recover()
        if done is None:
            return "the card did not do it: nothing changed"
        return f"finished: {type(done).__name__} of {done.amount / 100:.2f}"

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

    def use_host(self, host: OnlineHost) -> None:
        """Send the office's and the stores' host calls to `host` (a remote host over HTTP)."""
        self.world.host = host
        for terminal in self.world.terminals.values():
            if isinstance(terminal.device, IssuingOffice | StorePos):
                terminal.device.host = host

    # Time ------------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> datetime:
        self.world.clock.advance(seconds)
        return self.world.clock.now()

    # Views and tools for interactive clients (the TUI) -----------------------------------------
    def terminals(self) -> dict[str, str]:
        """Terminal name → kind (dispenser, pos, office), in the order of the actors."""
        return {name: terminal.kind for name, terminal in self.world.terminals.items()}

    def cards(self) -> list[str]:
        """Emulated cards, then cards reached through a reader."""
        return [*self.world.cards, *self.reader_cards]

    def is_emulated(self, card: str) -> bool:
        return card in self.world.cards

    def dispenser_view(self, name: str) -> DispenserView:
        pump = self.dispenser(name)
        fuelling = pump.fuelling
        current = None
        if fuelling is not None:
            current = FuellingView(
                fuelling.nozzle,
                fuelling.grade.name,
                fuelling.volume,
                fuelling.amount,
                fuelling.limit_volume,
                fuelling.card_lost,
            )
        nozzles = tuple(
            NozzleView(number, grade.name, grade.price) for number, grade in pump.nozzles.items()
        )
        slot = self.world.terminal(name).slot
        return DispenserView(name, pump.state.value, slot.card_name, pump.balance, nozzles, current)

    def card_sections(self, card: str) -> list[Section]:
        """The card's files, purse, counters, lock record and log, decoded for display."""
        return describe(dict(self._emulated(card).nvm.cells))

    def lock_record(self, card: str) -> LockRecord:
        return LockRecord.from_bytes(self._emulated(card).nvm.cells["lock"])

    def reset(self, card: str) -> bytes:
        """A warm reset of the card (its session state is lost); returns the ATR."""
        return self._applet(card).reset()

    def add_card(self, name: str, url: str) -> str:
        """A card from a reader URL: `inproc:PROFILE` issues a new emulated card, `pcsc:READER`
        puts the card in that PC/SC reader at the terminals' disposal (insert it like any)."""
        if name in self.world.cards or name in self.reader_cards:
            raise ServiceError(f"there is already a card {name!r}")
        scheme, _, target = url.partition(":")
        if scheme == "inproc" and target:
            from card_profiles.emulator import in_memory
            from cardcore.clockrng import SeededRng
            from terminal_sim.issuing import issue_profile

            issued = issue_profile(target, self.world.hsm)
            applet = in_memory(issued.cells, SeededRng(len(self.cards()) + 1))
            if not isinstance(applet, FuelCard):
                raise ServiceError(f"{target!r} is not a user card profile")
            self.world.cards[name] = applet
        else:
            from terminal_sim.reader_url import open_reader

            self.reader_cards[name] = ReaderCard(open_reader(url, self.world.hsm, name=name))
        return name

    def _emulated(self, card: str) -> FuelCard:
        if card in self.reader_cards:
            raise ServiceError(f"card {card!r} is in a real reader: its memory cannot be read")
        return self.world.card(card)

    def _applet(self, card: str) -> FuelCard:
        reader_card = self.reader_cards.get(card)
        if reader_card is not None:
            # The slots drive a card through power_on/power_off/process only, which a
            # reader-backed card provides.
            return cast(FuelCard, reader_card)
        return self.world.card(card)

    def _trace_terminal(self, name: str) -> None:
        """Publish every exchange of the terminal's card slot and PSAM as an APDU event."""
        terminal = self.world.terminals[name]
        self._trace(terminal.slot, name, "card")
        psam = getattr(terminal.device, "psam_reader", None)
        if psam is not None:
            self._trace(psam, name, "psam")

    def _trace(self, reader: Any, terminal: str, role: str) -> None:
        if getattr(reader, "_traced_by", None) is self:
            return
        inner: Callable[[bytes], bytes] = reader.transmit
        bus, timer = self.world.bus, self.timer

        def transmit(command: bytes) -> bytes:
            began = timer()
            response: bytes | None = None
            try:
                response = inner(command)
                return response
            finally:
                data = {
                    "reader": role,
                    "command": command,
                    "response": response,
                    "seconds": timer() - began,
                }
                bus.publish(Event(APDU, terminal, data))

        # An instance attribute: every holder of this reader (terminal, channel) sees it.
        reader.transmit = transmit
        reader._traced_by = self


class ServiceError(FuelsimError):
    title = "forecourt"


class ReaderCard:
    """A card reached through a reader (a real PC/SC slot), driven like an emulated one."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def power_on(self) -> bytes:
        return self.reader.connect()

    def power_off(self) -> None:
        self.reader.disconnect()

    def reset(self) -> bytes:
        self.reader.disconnect()
        return self.reader.connect()

    def process(self, apdu: bytes) -> bytes:
        return self.reader.transmit(apdu)


@dataclass(frozen=True)
class NozzleView:
    number: int
    grade: str
    price: int  # fen per litre


@dataclass(frozen=True)
class FuellingView:
    nozzle: int
    grade: str
    volume: int  # 0.01 L
    amount: int  # fen
    limit_volume: int  # 0.01 L the preset and balance allow
    card_lost: bool


@dataclass(frozen=True)
class DispenserView:
    name: str
    state: str
    card: str | None  # the card in the slot
    balance: int  # fen, read at insertion
    nozzles: tuple[NozzleView, ...]
    fuelling: FuellingView | None


@dataclass(frozen=True)
class PcscReaders:
    """The PC/SC readers pcscd lists, or why none could be listed."""

    names: tuple[str, ...]
    error: str | None = None


def pcsc_readers() -> PcscReaders:
    """List the PC/SC readers; no pcscd (or no PC/SC library) is an answer, not an error."""
    try:
        from terminal_sim.pcsc_reader import PcscContext  # loads pyscard
    except ImportError as exc:  # pragma: no cover - pyscard is a dependency
        return PcscReaders((), f"PC/SC is not available: {exc}")
    try:
        context = PcscContext()
    except FuelsimError as exc:
        return PcscReaders((), f"{exc} (start pcscd: sudo systemctl start pcscd)")
    try:
        return PcscReaders(tuple(context.readers()))
    except FuelsimError as exc:
        return PcscReaders((), str(exc))
    finally:
        context.close()


def scenario_steps(
    path: Path,
    *,
    on_event: Callable[[Event], None],
    transport: str = "inproc",
    timer: Callable[[], float] = time.perf_counter,
) -> Iterator[StepResult]:
    """Run a scenario file one step at a time: yields each step's result as it finishes (and
    stops after the first failure); its events go to `on_event` as they happen."""
    from terminal_sim.scenarios import load_scenario, run_step  # it imports this module

    scenario = load_scenario(path)
    with tempfile.TemporaryDirectory(prefix="fuelsim-scenario-") as workdir:
        forecourt = Forecourt.open(
            scenario.actors,
            start=scenario.start,
            transport=transport,
            workdir=Path(workdir),
            timer=timer,
        )
        unsubscribe = forecourt.subscribe(on_event)
        try:
            for number, step in enumerate(scenario.steps, 1):
                result = run_step(forecourt, number, step)
                yield result
                if not result.ok:
                    break
        finally:
            unsubscribe()
            forecourt.close()
