"""Helpers for the card-profile tests: talk to applets, check that refusals change nothing, and
run the value flows (load, purchase, grey lock, unlock) against an emulated card and PSAM.

Test modules cannot import each other (pytest runs with --import-mode=importlib), so everything
shared is handed out through the fixtures at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from card_profiles.applet import Applet
from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.image import load_image
from card_profiles.psam import Psam
from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import bcd_dt
from cardcore.clockrng import SeededRng
from cardcore.ports import Rng
from cardcore.records import PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard, issue

PIN = "999999"
T0 = datetime(2026, 11, 22, 12, 0, 0)
PROFILES = Path(__file__).parents[2] / "card_profiles" / "profiles"

Apdu = bytes | str | CommandApdu


def raw_apdu(apdu: Apdu) -> bytes:
    if isinstance(apdu, CommandApdu):
        return bytes(apdu)
    if isinstance(apdu, str):
        return bytes.fromhex(apdu.replace(" ", ""))
    return apdu


def dt_at(minutes: int = 0) -> bytes:
    return bcd_dt(T0 + timedelta(minutes=minutes))


class Device:
    """An applet (user card or PSAM) with helpers to exchange APDUs and look at its memory."""

    def __init__(self, applet: Applet, name: str) -> None:
        self.applet = applet
        self.name = name

    def exchange(self, apdu: Apdu) -> tuple[bytes, int]:
        response = self.applet.process(raw_apdu(apdu))
        return response[:-2], int.from_bytes(response[-2:], "big")

    def sw(self, apdu: Apdu) -> int:
        return self.exchange(apdu)[1]

    def ok(self, apdu: Apdu) -> bytes:
        data, sw = self.exchange(apdu)
        assert sw == 0x9000, f"{self.name}: {raw_apdu(apdu).hex().upper()} answered {sw:04X}"
        return data

    def cells(self) -> dict[str, bytes]:
        return dict(self.applet.nvm.cells)

    def stored(self) -> dict[str, bytes]:
        """What the backend holds (the state a power cycle would bring back)."""
        cells, journal = self.applet.nvm.backend.load()
        assert journal is None, f"{self.name}: a journal was left behind"
        return cells

    def refuses(self, apdu: Apdu, sw: int, changes: Mapping[str, bytes] | None = None) -> None:
        """The command answers `sw` with no data and changes no cell (except `changes`)."""
        before, stored = self.cells(), self.stored()
        data, got = self.exchange(apdu)
        assert got == sw, f"{self.name}: {raw_apdu(apdu).hex().upper()} answered {got:04X}"
        assert data == b"", f"{self.name}: a refusal carried data {data.hex()}"
        expected = {**before, **(changes or {})}
        assert self.cells() == expected
        assert self.stored() == {**stored, **(changes or {})}

    def power_cycle(self) -> None:
        self.applet.power_off()
        self.applet.power_on()

    @property
    def public(self) -> PublicAppData:
        return PublicAppData.from_bytes(self.applet.nvm.cells["ef15"])

    @property
    def asn8(self) -> bytes:
        return self.public.asn8

    def int(self, cell: str) -> int:
        return int.from_bytes(self.applet.nvm.cells[cell], "big")


@dataclass(frozen=True)
class Purchase:
    amount: int
    ctc: int
    ttc: int
    dt: bytes
    mac1: bytes
    mac2: bytes
    tac: bytes
    balance_before: int


@dataclass(frozen=True)
class Lock:
    ctc: int
    ttc: int
    balance: int
    dt: bytes
    term: bytes
    mac2: bytes
    gtac: bytes


@dataclass(frozen=True)
class Load:
    amount: int
    ctc: int
    dt: bytes
    mac2: bytes
    tac: bytes


class Flows:
    """The value flows of spec §5, step by step, asserting 9000 at each step."""

    def __init__(self, hsm: MockHsm) -> None:
        self.hsm = hsm

    @staticmethod
    def term(psam: Device) -> bytes:
        return psam.applet.nvm.cells["ef16"]

    @staticmethod
    def open_et(card: Device, pin: str | None = PIN) -> None:
        card.ok(cmd.select(layout.ET_AID))
        if pin is not None:
            card.ok(cmd.verify(pin))

    def purchase(
        self, card: Device, psam: Device, amount: int, dt: bytes, issuer8: bool = True
    ) -> Purchase:
        term = self.term(psam)
        init = card.ok(cmd.initialize_for_purchase(amount, term))
        balance, ctc, rand = (
            int.from_bytes(init[:4], "big"),
            int.from_bytes(init[4:6], "big"),
            init[11:],
        )
        public = card.public
        sam = psam.ok(
            cmd.init_sam_for_purchase(
                rand, ctc, amount, dt, public.asn8, public.issuer_id if issuer8 else None
            )
        )
        ttc, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8]
        answer = card.ok(cmd.debit_for_purchase(ttc, dt, mac1))
        tac, mac2 = answer[:4], answer[4:8]
        psam.ok(cmd.credit_sam_for_purchase(mac2))
        return Purchase(amount, ctc, ttc, dt, mac1, mac2, tac, balance)

    def load(self, card: Device, amount: int, dt: bytes, term: bytes) -> Load:
        init = card.ok(cmd.initialize_for_load(amount, term))
        ctc, rand = int.from_bytes(init[4:6], "big"), init[8:12]
        mac2 = self.hsm.load_mac2(
            card.asn8,
            rand=rand,
            online_ctc=ctc,
            amount=amount,
            tx_type=layout.TxType.ED_LOAD,
            term=term,
            dt=dt,
        )
        tac = card.ok(cmd.credit_for_load(dt, mac2))
        return Load(amount, ctc, dt, mac2, tac)

    def grey_lock(self, card: Device, psam: Device, dt: bytes) -> Lock:
        term = self.term(psam)
        init = card.ok(cmd.initialize_for_grey_lock(term))
        balance, ctc, rand = (
            int.from_bytes(init[:4], "big"),
            int.from_bytes(init[4:6], "big"),
            init[11:],
        )
        public = card.public
        sam = psam.ok(
            cmd.init_sam_for_grey_lock(rand, ctc, balance, dt, public.asn8, public.issuer_id)
        )
        ttc, psam_rand, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8], sam[8:12]
        answer = card.ok(cmd.grey_lock(ttc, psam_rand, dt, mac1))
        gtac, mac2 = answer[:4], answer[4:8]
        psam.ok(cmd.verify_grey_lock_mac2(mac2))
        return Lock(ctc, ttc, balance, dt, term, mac2, gtac)

    def sm_mac(self, card: Device, header: bytes, challenge: bytes) -> bytes:
        return self.hsm.secure_messaging_mac(card.asn8, command=header, challenge=challenge)


@pytest.fixture
def flows(hsm: MockHsm) -> Flows:
    return Flows(hsm)


@pytest.fixture
def card_device(issued: Callable[[str], IssuedCard]) -> Callable[..., Device]:
    """A user card built from a shipped profile (or from `cells`), powered, ET selected and
    the PIN verified unless told otherwise."""

    def make(
        name: str = "normal",
        *,
        cells: Mapping[str, bytes] | None = None,
        rng: Rng | None = None,
        select: bool = True,
        pin: str | None = PIN,
    ) -> Device:
        applet = in_memory(
            dict(cells if cells is not None else issued(name).cells), rng or SeededRng(7)
        )
        assert isinstance(applet, FuelCard)
        applet.power_on()
        device = Device(applet, f"card {name}")
        if select:
            Flows.open_et(device, pin)
        return device

    return make


@pytest.fixture
def psam_device(issued: Callable[[str], IssuedCard]) -> Callable[..., Device]:
    """A PSAM, powered, with SINOPEC1 selected unless told otherwise."""

    def make(
        name: str = "psam-dispenser",
        *,
        cells: Mapping[str, bytes] | None = None,
        rng: Rng | None = None,
        select: bool = True,
    ) -> Device:
        applet = in_memory(
            dict(cells if cells is not None else issued(name).cells), rng or SeededRng(8)
        )
        assert isinstance(applet, Psam)
        applet.power_on()
        device = Device(applet, f"psam {name}")
        if select:
            device.ok(cmd.select(layout.PSAM_AID))
        return device

    return make


@pytest.fixture
def image_file(tmp_path: Path) -> Callable[..., Path]:
    """A card image written to tmp_path: a shipped profile's YAML with some sections replaced."""

    def write(base: str, name: str, **sections: Any) -> Path:
        document = yaml.safe_load((PROFILES / f"{base}.yaml").read_text(encoding="utf-8"))
        document.update(sections, name=name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return path

    return write


@pytest.fixture
def issue_image(hsm: MockHsm) -> Callable[[Path], IssuedCard]:
    def run(path: Path) -> IssuedCard:
        return issue(load_image(str(path)), hsm)

    return run
