"""Issue a card image: its memory from the HSM, and its history played with the real commands.

A `history.grey_lock` is run as a dispenser would run it, against a PSAM issued from the image
it names: lock, deliver, and then either stop (the card stays grey and an escape bill is kept)
or re-debit without reading the TAC (status 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from card_profiles.emulator import in_memory
from card_profiles.fuel_card_memory import FuelCardContent
from card_profiles.image import CardImage, GreyLockSetup, load_image
from card_profiles.nvm import Cells
from cardcore import commands as cmd
from cardcore.clockrng import ScriptedRng
from cardcore.ports import Hsm
from cardcore.records import Bill
from terminal_sim.channel import Channel
from terminal_sim.fuelling import (
    BillType,
    debit,
    lock,
    lock_bill,
    read_card,
    read_psam,
    unlock_answer,
)
from terminal_sim.readers import InProcReader

UNLOCK_AFTER = timedelta(minutes=5)  # when the history's re-debit happens, after the lock


@dataclass(frozen=True)
class IssuedCard:
    image: CardImage
    cells: Cells
    escape_bill: Bill | None = None


def issue(image: CardImage, hsm: Hsm) -> IssuedCard:
    content = image.content(hsm)
    cells = {**content.cells(), "profile": image.name.encode()}
    if image.grey_lock is None or not isinstance(content, FuelCardContent):
        return IssuedCard(image, cells)
    return _play_grey_lock(image, image.grey_lock, cells, content.pin, hsm)


def issue_profile(name_or_path: str, hsm: Hsm) -> IssuedCard:
    return issue(load_image(name_or_path), hsm)


def _play_grey_lock(
    image: CardImage, setup: GreyLockSetup, cells: Cells, pin: str, hsm: Hsm
) -> IssuedCard:
    applet = in_memory(cells, ScriptedRng([setup.card_rand]))
    card = Channel(InProcReader(applet, "card"))
    psam_cells = load_image(setup.psam).cells(hsm)
    psam = Channel(InProcReader(in_memory(psam_cells, ScriptedRng([setup.psam_rand])), "psam"))
    psam_data = read_psam(psam)
    data = read_card(card)
    card.send(cmd.verify(pin))
    locked = lock(card, psam, data, psam_data.term, setup.at)
    unlock = unlock_answer(psam, data.public.asn8, locked, setup.delivered)
    if setup.unlock:
        debit(card, locked, unlock, setup.at + UNLOCK_AFTER)
        return IssuedCard(image, dict(applet.nvm.cells))
    escape = lock_bill(psam, BillType.ESCAPE, data, psam_data, locked, unlock)
    return IssuedCard(image, dict(applet.nvm.cells), escape)
