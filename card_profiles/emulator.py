"""Build a running emulator (fuel card or PSAM) over its memory."""

from __future__ import annotations

from card_profiles import psam as psam_module
from card_profiles.fuel_card import FuelCard
from card_profiles.nvm import Cells, MemoryBackend, Nvm, NvmBackend
from card_profiles.psam import Psam
from cardcore.ports import Rng


def make_applet(backend: NvmBackend, rng: Rng) -> FuelCard | Psam:
    """The card or PSAM whose memory `backend` holds (its `kind` cell says which)."""
    nvm = Nvm(backend)
    if nvm.cells.get("kind") == psam_module.KIND:
        return Psam(nvm, rng)
    return FuelCard(nvm, rng)


def in_memory(cells: Cells, rng: Rng) -> FuelCard | Psam:
    return make_applet(MemoryBackend(cells), rng)
