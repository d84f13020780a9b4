"""The world a scenario runs in: cards, a station's terminals with card slots, clock and host.

Every terminal has a card slot. In process, a slot hands commands straight to the card that was
inserted in it. With the `vpcd` transport, the inserted card is served into a free vpcd slot and the
terminal talks to it through pyscard and pcscd; the PSAMs, which never leave their terminals,
stay in process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.nvm import PowerLost
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.errors import FuelsimError
from cardcore.ports import CardOS, Reader
from cardcore.records import Bill
from host_sim.promotions import PromotionError, rules_from_document
from hsm_mock.hsm import MockHsm
from terminal_sim.dispenser import Dispenser, Grade, StationBills
from terminal_sim.events import BILL, Event, EventBus, Recorder
from terminal_sim.fuelling import BillType
from terminal_sim.host_link import HostLink, open_host
from terminal_sim.issuing import issue_profile
from terminal_sim.journal import Journal
from terminal_sim.office import IssuingOffice
from terminal_sim.online import OnlineHost
from terminal_sim.promotions import InProcessQuoter
from terminal_sim.readers import CardLost, InProcReader
from terminal_sim.store_pos import StorePos
from terminal_sim.vpcd import Tear

TRANSPORTS = ("inproc", "vpcd")


class ScenarioError(FuelsimError):
    title = "scenario"


class CardSlot:
    """A terminal's card slot (a Reader): empty, or holding one card.

    `tears` (shared by the world's slots) holds the cards to pull mid-command: a card listed
    there is armed when it enters a slot (see `terminal_sim.vpcd.Tear`)."""

    def __init__(self, name: str, tears: dict[str, Tear] | None = None) -> None:
        self.name = name
        self.card: FuelCard | None = None
        self.card_name: str | None = None
        self.tears = {} if tears is None else tears
        self._tear: Tear | None = None

    def insert(self, card: FuelCard, card_name: str) -> None:
        self.card, self.card_name = card, card_name
        self.arm()

    def arm(self) -> None:
        """Arm the tear waiting for the card in the slot, if there is one."""
        if self.card_name in self.tears:
            self.tear_next(self.tears.pop(self.card_name))

    def tear_next(self, tear: Tear) -> None:
        self._tear = tear

    def remove(self) -> None:
        if self.card is not None:
            self.card.power_off()
        self.card = self.card_name = None

    def connect(self) -> bytes:
        return self.applet().power_on()

    def disconnect(self) -> None:
        if self.card is not None:
            self.card.power_off()

    def transmit(self, command: bytes) -> bytes:
        applet, tear = self.applet(), self._tear
        if tear is None or not tear.applies(command):
            return InProcReader(applet, self.name).transmit(command)
        self._tear = None
        applet.nvm.tear_hook = None if tear.point is None else tear.hook()
        try:
            response = applet.process(command)
        except PowerLost:
            self.remove()
            raise CardLost(f"{self.name}: the card gave no answer") from None  # as over PC/SC
        finally:
            applet.nvm.tear_hook = None
        if tear.point is not None:  # the command wrote nothing: wait for one that does
            self._tear = tear
            return response
        self.remove()  # committed, but the answer never left the card
        raise CardLost(f"{self.name}: the card gave no answer")

    def applet(self) -> FuelCard:
        if self.card is None:
            raise CardLost(f"{self.name}: no card in the slot")
        return self.card


class VpcdSlot(CardSlot):
    """A card slot behind the real PC/SC stack: the inserted card is served in a free slot of
    vpcd (it has two readers, so two cards can be in terminals at once); `in_use` is shared by
    the world's slots."""

    def __init__(
        self,
        name: str,
        tears: dict[str, Tear] | None = None,
        in_use: dict[int, str] | None = None,
    ) -> None:
        super().__init__(name, tears)
        from terminal_sim.pcsc_reader import PcscContext, PcscReader  # loads pyscard
        from terminal_sim.pcscd import VPCD_READERS
        from terminal_sim.vpcd import VirtualSlot

        self._virtual_slot = VirtualSlot
        self._pcsc_reader = PcscReader
        self._readers = VPCD_READERS
        self.context = PcscContext()
        self.in_use = {} if in_use is None else in_use
        self.index: int | None = None
        self.reader: Reader | None = None
        self.served: Any = None

    def insert(self, card: FuelCard, card_name: str) -> None:
        self.card, self.card_name = card, card_name
        self.serve(card)
        self.arm()

    def tear_next(self, tear: Tear) -> None:
        self.served.tear_next(tear.applies, tear.point)  # vpcd pulls it: pcscd sees it go

    def serve(self, applet: CardOS) -> None:
        """Put any card OS (a fuel card, a phone's HCE applet) into a free vpcd slot."""
        free = [i for i in range(len(self._readers)) if i not in self.in_use]
        if not free:
            held = ", ".join(f"{name} (vpcd slot {i})" for i, name in sorted(self.in_use.items()))
            raise ScenarioError(f"{self.name}: both virtual readers hold a card: {held}")
        self.index = free[0]
        self.in_use[self.index] = self.name
        name = self._readers[self.index]
        self.reader = self._pcsc_reader(name, self.context)
        self.served = self._virtual_slot(applet, self.index)
        self.served.insert()
        self.context.wait_for(name, True, timeout=10)

    def remove(self) -> None:
        if self.served is not None and self.index is not None:
            self.served.remove()
            self.context.wait_for(self._readers[self.index], False, timeout=10)
            self.served = None
        if self.reader is not None:
            self.reader.disconnect()
        if self.index is not None:
            self.in_use.pop(self.index, None)
            self.index = self.reader = None
        super().remove()

    def _held(self) -> Reader:
        if self.served is None or self.reader is None:
            raise CardLost(f"{self.name}: no card in the slot")
        return self.reader

    def connect(self) -> bytes:
        return self._held().connect()

    def disconnect(self) -> None:
        if self.reader is not None:
            self.reader.disconnect()

    def transmit(self, command: bytes) -> bytes:
        reader = self._held()
        try:
            return reader.transmit(command)
        except CardLost:
            self.remove()  # pulled (a tear): the slot is empty until the card is put back
            raise


@dataclass
class Terminal:
    kind: str  # dispenser | pos | office
    device: Dispenser | StorePos | IssuingOffice
    slot: CardSlot


@dataclass
class World:
    clock: ManualClock
    hsm: MockHsm
    host: OnlineHost
    bus: EventBus
    events: Recorder
    journal: Journal
    station: StationBills
    transport: str
    cards: dict[str, FuelCard] = field(default_factory=dict)
    terminals: dict[str, Terminal] = field(default_factory=dict)
    restarts: dict[str, Callable[[], Dispenser]] = field(default_factory=dict)
    link: HostLink | None = None  # the host's on/off switch and the escape bills' outbox
    tears: dict[str, Tear] = field(default_factory=dict)  # cards to pull mid-command
    vpcd_in_use: dict[int, str] = field(default_factory=dict)  # vpcd slot → terminal
    extensions: dict[str, Any] = field(default_factory=dict)  # set by ACTOR_HOOKS
    closers: list[Callable[[], None]] = field(default_factory=list)

    def card(self, name: str) -> FuelCard:
        if name not in self.cards:
            raise ScenarioError(f"no card {name!r}; cards: {', '.join(self.cards)}")
        return self.cards[name]

    def terminal(self, name: str, kind: str | None = None) -> Terminal:
        terminal = self.terminals.get(name)
        if terminal is None or (kind and terminal.kind != kind):
            raise ScenarioError(f"no {kind or 'terminal'} {name!r}")
        return terminal

    def slot_of(self, card: str) -> CardSlot | None:
        for terminal in self.terminals.values():
            if terminal.slot.card_name == card:
                return terminal.slot
        return None

    def close(self) -> None:
        for terminal in self.terminals.values():
            terminal.slot.remove()
        self.journal.close()
        if self.link is not None:
            self.link.close()
        for close in self.closers:
            close()


def build_world(
    actors: dict[str, Any],
    *,
    start: datetime,
    transport: str,
    workdir: Path,
    seed: int = 1,
    host_kind: str = "inproc",
) -> World:
    """Cards, terminals and host (`inproc` or `http`) from a scenario's `actors` section."""
    if transport not in TRANSPORTS:
        raise ScenarioError(f"transport {transport!r}: expected one of {', '.join(TRANSPORTS)}")
    clock = ManualClock(start)
    hsm = MockHsm()
    bus, events = EventBus(), Recorder()
    bus.subscribe(events)
    link = open_host(host_kind, hsm, clock, bus, workdir)
    host = link.host
    world = World(
        clock,
        hsm,
        host,
        bus,
        events,
        Journal(workdir / "journal.sqlite"),
        StationBills(),
        transport,
        link=link,
    )

    def escape_to_host(event: Event) -> None:
        bill = event.data.get("bill")
        if event.kind == BILL and bill is not None and bill.tx_type == BillType.ESCAPE:
            link.send_escape_bill(bill)  # kept for later while the host is down

    bus.subscribe(escape_to_host)
    for offset, (name, spec) in enumerate(dict(actors.get("cards", {})).items()):
        profile, escape_bill = card_spec(str(name), spec)
        issued = issue_profile(profile, hsm)
        applet = in_memory(issued.cells, SeededRng(seed + offset))
        if not isinstance(applet, FuelCard):
            raise ScenarioError(f"card {name!r}: {profile!r} is not a user card")
        world.cards[name] = applet
        place_escape_bill(world, str(name), issued.escape_bill, escape_bill)
    quoter = promotions_of(actors)
    for offset, (name, spec) in enumerate(dict(actors.get("terminals", {})).items(), 100):
        spec = dict(spec or {})
        kind = spec.get("kind")
        slot = (
            VpcdSlot(name, world.tears, world.vpcd_in_use)
            if transport == "vpcd"
            else CardSlot(name, world.tears)
        )
        if kind == "dispenser":
            psam = in_memory(
                issue_profile(spec.get("psam", "psam-dispenser"), hsm).cells,
                SeededRng(seed + offset),
            )
            nozzles = {
                int(number): Grade(int(n["grade"]), str(n.get("name", n["grade"])), int(n["price"]))
                for number, n in dict(spec.get("nozzles") or DEFAULT_NOZZLES).items()
            }

            def make(
                name: str = name,
                slot: CardSlot = slot,
                psam: Any = psam,
                nozzles: dict[int, Grade] = nozzles,
            ) -> Dispenser:
                dispenser = Dispenser(
                    name,
                    slot,
                    InProcReader(psam, f"{name} PSAM"),
                    nozzles,
                    bus=bus,
                    clock=clock,
                    journal=world.journal,
                    station=world.station,
                    blacklisted=host.blacklisted,
                    quoter=quoter,
                )
                dispenser.start()
                return dispenser

            world.restarts[name] = make
            world.terminals[name] = Terminal(kind, make(), slot)
        elif kind == "pos":
            psam = in_memory(
                issue_profile(spec.get("psam", "psam-store"), hsm).cells, SeededRng(seed + offset)
            )
            psam_reader = InProcReader(psam, f"{name} PSAM")
            pos = StorePos(name, slot, psam_reader, host, bus, clock, journal=world.journal)
            pos.start()
            world.terminals[name] = Terminal(kind, pos, slot)
        elif kind == "office":
            term = bytes.fromhex(str(spec.get("terminal_id", "440101000901")))
            link.register([term])
            world.terminals[name] = Terminal(
                kind, IssuingOffice(name, slot, host, bus, clock, term, world.journal), slot
            )
        else:
            raise ScenarioError(f"terminal {name!r}: kind must be dispenser, pos or office")
    for hook in ACTOR_HOOKS:
        hook(world, actors, workdir, seed)
    return world


# More actor kinds (e.g. terminal_sim.scenario_vfc: fleets, phones): hook(world, actors, …).
ACTOR_HOOKS: list[Callable[[World, dict[str, Any], Path, int], None]] = []


def promotions_of(actors: dict[str, Any]) -> InProcessQuoter | None:
    """`promotions:` — host promotion rules (docs/promotions.md) the pumps quote at lift."""
    if "promotions" not in actors:
        return None
    try:
        return InProcessQuoter(rules_from_document(actors["promotions"]))
    except PromotionError as exc:
        raise ScenarioError(f"promotions: {exc}") from None


ESCAPE_BILL_PLACES = ("host", "station", "none")


def card_spec(name: str, spec: Any) -> tuple[str, str]:
    """A card actor: `profile` or `{profile: P, escape_bill: host|station|none}`.

    `escape_bill` says where the escape bill of a profile issued grey-locked (its
    `history.grey_lock`) is: uploaded to the `host` (the default: online unlock works, the
    scenario's pumps refuse the card), also kept by this `station`'s pumps (they re-debit it),
    or `none` (lost: neither can settle it).
    """
    if isinstance(spec, str):
        return spec, "host"
    if not isinstance(spec, dict):
        raise ScenarioError(f"card {name!r}: a profile name or {{profile: …}} expected")
    unknown = set(spec) - {"profile", "escape_bill"}
    if unknown:
        raise ScenarioError(f"card {name!r}: unknown option {sorted(unknown)[0]!r}")
    if not isinstance(spec.get("profile"), str):
        raise ScenarioError(f"card {name!r}: profile: a profile name or image file expected")
    place = spec.get("escape_bill", "host")
    if place not in ESCAPE_BILL_PLACES:
        places = ", ".join(ESCAPE_BILL_PLACES)
        raise ScenarioError(f"card {name!r}: escape_bill: {place!r}, expected one of {places}")
    return spec["profile"], str(place)


def place_escape_bill(world: World, name: str, bill: Bill | None, place: str) -> None:
    if bill is None:
        if place != "host":
            raise ScenarioError(f"card {name!r}: escape_bill: the profile has no escape bill")
        return
    if place in ("host", "station"):
        assert world.link is not None
        world.link.record_escape_bill(bill)
    if place == "station":
        world.station.escape[(bill.asn, bill.ctc)] = bill


DEFAULT_NOZZLES = {
    1: {"grade": 0x0092, "name": "92#", "price": 750},
    2: {"grade": 0x0095, "name": "95#", "price": 800},
    3: {"grade": 0x0000, "name": "diesel", "price": 700},
}
