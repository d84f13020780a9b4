"""The real PC/SC stack for tests: pcscd with the vsmartcard-vpcd driver, and emulated cards
served into its slots. Nothing here skips: without pcscd and vpcd these tests fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.clockrng import SeededRng
from terminal_sim.issuing import IssuedCard
from terminal_sim.pcsc_reader import PcscContext, PcscReader
from terminal_sim.pcscd import VPCD_READERS, PcscdUnavailable, ensure_pcscd, stop_pcscd
from terminal_sim.vpcd import VirtualSlot

SLOT_READERS = VPCD_READERS


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PcscContext]:
    """pcscd with both vpcd slots; started here when it is not running already."""
    try:
        started = ensure_pcscd()
    except PcscdUnavailable as exc:
        pytest.fail(str(exc))
    context = PcscContext()
    yield context
    context.close()
    stop_pcscd(started)


@contextmanager
def served(context: PcscContext, applet: FuelCard | Psam, slot: int) -> Iterator[VirtualSlot]:
    """An emulated card inserted in a vpcd slot for the duration of the block."""
    virtual = VirtualSlot(applet, slot)
    virtual.insert()
    try:
        context.wait_for(SLOT_READERS[slot], True, timeout=10)
        yield virtual
    finally:
        virtual.remove()
        context.wait_for(SLOT_READERS[slot], False, timeout=10)


@pytest.fixture
def station(
    pcscd: PcscContext, issued: Callable[[str], IssuedCard]
) -> Iterator[Callable[..., tuple[VirtualSlot, VirtualSlot, PcscReader, PcscReader]]]:
    """Serve a card in slot 0 and a PSAM in slot 1; returns the slots and PC/SC readers."""
    stack: list[Callable[[], None]] = []

    def make(
        card: str = "normal", psam: str = "psam-dispenser", seed: int = 1
    ) -> tuple[VirtualSlot, VirtualSlot, PcscReader, PcscReader]:
        slots = []
        for number, profile in enumerate((card, psam)):
            applet = in_memory(dict(issued(profile).cells), SeededRng(seed + number))
            manager = served(pcscd, applet, number)
            slots.append(manager.__enter__())
            stack.append(lambda m=manager: m.__exit__(None, None, None))
        readers = (PcscReader(SLOT_READERS[0], pcscd), PcscReader(SLOT_READERS[1], pcscd))
        stack.append(readers[0].disconnect)
        stack.append(readers[1].disconnect)
        return slots[0], slots[1], readers[0], readers[1]

    yield make
    for undo in reversed(stack):
        undo()
