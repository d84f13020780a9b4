"""The emulated fuel user card: PSE, the ET fuel purse with grey lock, and a loyalty purse.

This module holds the card's memory layout, session, selection, files and PIN; the value
commands live in `fuel_card_purse` and the issuer's maintenance commands (secure messaging,
block/unblock, PIN change and reload) in `fuel_card_admin`. Which command may run in which
state is decided by the table in `fuel_card_states`.
"""

from __future__ import annotations

from card_profiles.applet import Applet, fail, fixed_answer, require
from card_profiles.fuel_card_memory import EF_CELLS
from card_profiles.fuel_card_states import (
    RULES,
    App,
    Cmd,
    OpenInit,
    Pending,
    Session,
    SessionView,
    check_rule,
)
from card_profiles.nvm import Cells, Nvm
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import decode_pin
from cardcore.layout import AppBlock, LockStatus
from cardcore.ports import Rng
from cardcore.sw import SW, pin_tries_left
from cardcore.tlv import Tlv, encode


def fci(name: bytes, proprietary: list[Tlv]) -> bytes:
    return encode([Tlv(0x6F, children=(Tlv(0x84, name), Tlv(0xA5, children=tuple(proprietary))))])


ET_FCI = fci(layout.ET_AID, [Tlv(0x9F08, b"\x02")])
LOYALTY_FCI = fci(layout.LOYALTY_AID, [Tlv(0x9F08, b"\x02")])
PSE_FCI = fci(layout.PSE_NAME, [Tlv(0x88, bytes((layout.SFI_PSE_DIR,)))])
PSE_RECORDS = [
    encode([Tlv(0x70, children=(Tlv(0x61, children=(Tlv(0x4F, aid), Tlv(0x50, label))),))])
    for aid, label in ((layout.ET_AID, b"FUEL ET"), (layout.LOYALTY_AID, b"LOYALTY"))
]


class FuelCard(Applet):
    atr = layout.ATR_USER_CARD

    def __init__(self, nvm: Nvm, rng: Rng) -> None:
        super().__init__(nvm, rng)
        self.session = Session()
        self.handlers = {
            (0x00, 0xA4): self.select,
            (0x00, 0xB0): self.read_binary,
            (0x00, 0xB2): self.read_record,
            (0x00, 0x20): self.verify,
            (0x00, 0x84): self.get_challenge,
            (0x80, 0x5C): self.get_balance,
        }
        from card_profiles.fuel_card_admin import admin_handlers
        from card_profiles.fuel_card_purse import purse_handlers

        self.handlers.update(purse_handlers(self))
        self.handlers.update(admin_handlers(self))

    def reset_session(self) -> None:
        self.session = Session()

    # Shared helpers ----------------------------------------------------------------------------
    def key(self, name: str) -> bytes:
        return self.nvm.cells["key." + name]

    def tac_key(self) -> bytes:
        return crypto.tac_key(self.nvm.cells["key.dtk"])

    @property
    def lock_status(self) -> LockStatus:
        return LockStatus(self.nvm.cells["lock"][0])

    @property
    def asn8(self) -> bytes:
        return self.nvm.cells["ef15"][12:20]

    def enter(self, cmd: Cmd) -> OpenInit | None:
        """Apply the state table; a value command takes the open INITIALIZE, returned here."""
        session, cells = self.session, self.nvm.cells
        view = SessionView(
            session.app, cells["et.block"][0], session.pin_ok, session.pending, cells["lock"][0]
        )
        rule = RULES[cmd]
        sw = check_rule(rule, view)
        opened = session.init
        if rule.value:
            session.pending, session.init = Pending.NONE, None
        if sw is not None:
            fail(sw)
        return opened

    def open(self, pending: Pending, init: OpenInit) -> None:
        self.session.pending, self.session.init = pending, init

    def commit(self, writes: Cells) -> None:
        self.nvm.commit(writes)

    def take_challenge(self) -> bytes:
        """The challenge of the GET CHALLENGE just before; it serves one command only."""
        challenge, self.session.challenge = self.session.challenge, None
        require(challenge is not None, SW.CONDITIONS_NOT_SATISFIED)
        assert challenge is not None
        return challenge

    # Selection and files -----------------------------------------------------------------------
    def select(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x04 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if not 5 <= len(apdu.data) <= 16:
            fail(SW.WRONG_LENGTH)
        self.enter(Cmd.SELECT)
        targets = {
            layout.PSE_NAME: (App.PSE, PSE_FCI),
            layout.ET_AID: (App.ET, ET_FCI),
            layout.LOYALTY_AID: (App.LOYALTY, LOYALTY_FCI),
        }
        target = targets.get(apdu.data)
        if target is None:
            fail(SW.FILE_NOT_FOUND)
        app, answer = target
        fixed_answer(apdu, len(answer))
        self.session = Session(app=app)
        if app is App.ET:
            block = AppBlock(self.nvm.cells["et.block"][0])
            if block is AppBlock.TEMPORARY:
                fail(SW.FUNCTION_NOT_SUPPORTED_BLOCKED)
            if block is AppBlock.PERMANENT:
                fail(SW.APP_PERMANENTLY_BLOCKED)
        return answer

    def read_binary(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 & 0xE0 != 0x80 or apdu.data:
            fail(SW.WRONG_P1P2 if not apdu.data else SW.WRONG_LENGTH)
        self.enter(Cmd.READ_BINARY)
        sfi, offset = apdu.p1 & 0x1F, apdu.p2
        cell = EF_CELLS.get(sfi) if self.session.app is App.ET else None
        if cell is None:
            fail(SW.FILE_NOT_FOUND)
        content = self.nvm.cells[cell]
        if offset >= len(content):
            fail(SW.WRONG_OFFSET)
        available = len(content) - offset
        wanted = available if apdu.ne is None or apdu.ne == 256 else apdu.ne
        if wanted > available:
            fail(0x6C00 | available)
        return content[offset : offset + wanted]

    def read_record(self, apdu: CommandApdu) -> bytes:
        if apdu.p2 & 0x07 != 0x04 or apdu.p1 == 0 or apdu.data:
            fail(SW.WRONG_P1P2 if not apdu.data else SW.WRONG_LENGTH)
        self.enter(Cmd.READ_RECORD)
        sfi, number = apdu.p2 >> 3, apdu.p1
        if self.session.app is App.PSE and sfi == layout.SFI_PSE_DIR:
            records = PSE_RECORDS
        elif self.session.app is App.ET and sfi == layout.SFI_EF18:
            log = self.nvm.cells["ef18"]
            size = layout.EF18_RECORD_SIZE
            records = [log[i : i + size] for i in range(0, len(log), size)]
        else:
            fail(SW.FILE_NOT_FOUND)
        if number > len(records):
            fail(SW.RECORD_NOT_FOUND)
        record = records[number - 1]
        fixed_answer(apdu, len(record))
        return record

    # PIN ---------------------------------------------------------------------------------------
    def verify(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if len(apdu.data) > 6 or apdu.ne is not None:
            fail(SW.WRONG_LENGTH)
        self.enter(Cmd.VERIFY)
        tries = self.nvm.int("pin.tries")
        if not apdu.data:  # ISO: VERIFY without data asks for the tries left
            if self.session.pin_ok:
                return b""
            fail(self.pin_status(tries))
        self.check_pin(apdu.data)
        self.session.pin_ok = True
        return b""

    def pin_status(self, tries: int) -> int:
        return SW.PIN_BLOCKED if tries == 0 else pin_tries_left(tries)

    def check_pin(self, offered: bytes, *, reset_tries: bool = True) -> None:
        """Compare a PIN block with the card's PIN, counting wrong tries (63Cx, then 6983).

        `reset_tries=False`: the caller's own commit resets the tries, so that a command makes
        one commit only (two would let a power loss between them leave a mixed memory).
        """
        tries = self.nvm.int("pin.tries")
        if tries == 0:
            fail(SW.PIN_BLOCKED)
        digits = decode_pin(offered)
        if digits is None:
            fail(SW.WRONG_DATA)
        if digits == decode_pin(self.nvm.cells["pin"]):
            if tries != layout.PIN_TRIES and reset_tries:
                self.commit({"pin.tries": bytes((layout.PIN_TRIES,))})
            return
        self.session.pin_ok = False
        self.commit({"pin.tries": bytes((tries - 1,))})
        fail(self.pin_status(tries - 1))

    # Simple reads ------------------------------------------------------------------------------
    def get_challenge(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if apdu.data or apdu.ne not in (4, 8):
            fail(SW.WRONG_LENGTH)
        self.enter(Cmd.GET_CHALLENGE)
        challenge = self.random(apdu.ne)
        self.session.challenge = challenge
        return challenge

    def get_balance(self, apdu: CommandApdu) -> bytes:
        purse = {App.ET: layout.ET_PURSE, App.LOYALTY: layout.LOYALTY_PURSE}
        if apdu.p1 != 0x00 or apdu.p2 not in purse.values():
            fail(SW.WRONG_P1P2)
        if apdu.data:
            fail(SW.WRONG_LENGTH)
        fixed_answer(apdu, 4)
        self.enter(Cmd.GET_BALANCE)
        if purse[self.session.app] != apdu.p2:
            fail(SW.WRONG_P1P2)
        cell = "et.balance" if self.session.app is App.ET else "loyalty.balance"
        return self.nvm.cells[cell]
