"""The real PC/SC stack for tests: pcscd with the vsmartcard-vpcd driver, and emulated cards
served into its slots. Nothing here skips: without pcscd and vpcd these tests fail."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore.clockrng import SeededRng
from terminal_sim.issuing import IssuedCard
from terminal_sim.pcsc_reader import PcscContext, PcscError, PcscReader
from terminal_sim.vpcd import VirtualSlot

SLOT_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")


def _vpcd_readers() -> list[str]:
    try:
        context = PcscContext()
    except PcscError:
        return []
    try:
        return [name for name in context.readers() if name in SLOT_READERS]
    finally:
        context.close()


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PcscContext]:
    """pcscd with both vpcd slots; started here when it is not running already."""
    started = None
    if len(_vpcd_readers()) < 2:
        binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
        started = subprocess.Popen(
            [binary, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while len(_vpcd_readers()) < 2:
            if started.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "pcscd with the vsmartcard-vpcd readers is required for the PC/SC tests "
                    "(apt-get install pcscd vsmartcard-vpcd; ./quickstart.sh installs them)"
                )
            time.sleep(0.1)
    context = PcscContext()
    yield context
    context.close()
    if started is not None:
        started.terminate()
        started.wait(timeout=10)


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
