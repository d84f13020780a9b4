"""The issuer's maintenance commands on the ET application.

UPDATE BINARY with MAC and APPLICATION BLOCK/UNBLOCK use secure messaging (retail MAC with
DAMK, IV from the GET CHALLENGE just before; a wrong MAC is 6988). CHANGE PIN proves the old
PIN; RELOAD PIN carries a MAC under the folded DRPK (a wrong MAC is 9302).
"""

from __future__ import annotations

from collections.abc import Callable
from hmac import compare_digest
from typing import TYPE_CHECKING

from card_profiles.applet import expect_lc, fail, require
from card_profiles.fuel_card_memory import EF_CELLS
from card_profiles.fuel_card_states import Cmd
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import decode_pin
from cardcore.layout import AppBlock
from cardcore.sw import SW

if TYPE_CHECKING:
    from card_profiles.fuel_card import FuelCard

MAC_SIZE = 4


def sm_iv(challenge: bytes) -> bytes:
    """[SC] A 4-byte challenge is padded with 4 zero bytes; an 8-byte one is the IV itself."""
    return challenge.ljust(8, b"\x00")


class Admin:
    def __init__(self, card: FuelCard) -> None:
        self.card = card

    def check_sm_mac(self, apdu: CommandApdu) -> bytes:
        """Verify the MAC at the end of the data field; returns the data before it."""
        challenge = self.card.take_challenge()
        signed = apdu.header + bytes((len(apdu.data),)) + apdu.data[:-MAC_SIZE]
        expected = crypto.mac_retail(self.card.key("damk"), signed, sm_iv(challenge))
        require(compare_digest(expected, apdu.data[-MAC_SIZE:]), SW.SM_MAC_WRONG)
        return apdu.data[:-MAC_SIZE]

    # 04 D6: UPDATE BINARY with MAC --------------------------------------------------------------
    def update_binary(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 & 0xE0 != 0x80:
            fail(SW.WRONG_P1P2)
        if len(apdu.data) <= MAC_SIZE or apdu.ne is not None or apdu.extended:
            fail(SW.WRONG_LENGTH)
        self.card.enter(Cmd.UPDATE_BINARY_MAC)
        cell = EF_CELLS.get(apdu.p1 & 0x1F)
        if cell is None:
            fail(SW.FILE_NOT_FOUND)
        content, offset = self.card.nvm.cells[cell], apdu.p2
        if offset >= len(content):
            fail(SW.WRONG_OFFSET)
        if offset + len(apdu.data) - MAC_SIZE > len(content):
            fail(SW.WRONG_LENGTH)
        payload = self.check_sm_mac(apdu)
        updated = content[:offset] + payload + content[offset + len(payload) :]
        self.card.commit({cell: updated})
        return b""

    # 84 1E: APPLICATION BLOCK (P2 00 temporary, 01 permanent [SC]) -----------------------------
    def application_block(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 not in (0x00, 0x01):
            fail(SW.WRONG_P1P2)
        expect_lc(apdu, MAC_SIZE)
        if apdu.ne is not None:
            fail(SW.WRONG_LENGTH)
        self.card.enter(Cmd.APPLICATION_BLOCK)
        self.check_sm_mac(apdu)
        block = AppBlock.PERMANENT if apdu.p2 == 0x01 else AppBlock.TEMPORARY
        self.card.commit({"et.block": bytes((block,))})
        return b""

    # 84 18: APPLICATION UNBLOCK (a permanent block stays) --------------------------------------
    def application_unblock(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        expect_lc(apdu, MAC_SIZE)
        if apdu.ne is not None:
            fail(SW.WRONG_LENGTH)
        self.card.enter(Cmd.APPLICATION_UNBLOCK)
        block = AppBlock(self.card.nvm.cells["et.block"][0])
        require(block is not AppBlock.PERMANENT, SW.APP_PERMANENTLY_BLOCKED)
        require(block is AppBlock.TEMPORARY, SW.CONDITIONS_NOT_SATISFIED)
        self.check_sm_mac(apdu)
        self.card.commit({"et.block": bytes((AppBlock.ACTIVE,))})
        return b""

    # 80 5E: CHANGE PIN (P1 01) / RELOAD PIN (P1 00) ---------------------------------------------
    def pin(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 not in (0x00, 0x01) or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if apdu.ne is not None:
            fail(SW.WRONG_LENGTH)
        return self.change_pin(apdu) if apdu.p1 == 0x01 else self.reload_pin(apdu)

    def change_pin(self, apdu: CommandApdu) -> bytes:
        if not 3 <= len(apdu.data) <= 13:
            fail(SW.WRONG_LENGTH)
        card = self.card
        card.enter(Cmd.CHANGE_PIN)
        separator = apdu.data.find(b"\xff")
        old, new = apdu.data[:separator], apdu.data[separator + 1 :]
        if separator < 1 or decode_pin(new) is None:
            fail(SW.WRONG_DATA)
        card.check_pin(old, reset_tries=False)  # the commit below resets the tries
        ef1b = card.nvm.cells["ef1b"]
        card.commit(
            {
                "pin": new,
                "pin.tries": bytes((layout.PIN_TRIES,)),
                "ef1b": bytes((layout.DEFAULT_PIN_FLAG_CHANGED,)) + ef1b[1:],
            }
        )
        return b""

    def reload_pin(self, apdu: CommandApdu) -> bytes:
        if not 1 + MAC_SIZE <= len(apdu.data) <= 6 + MAC_SIZE:
            fail(SW.WRONG_LENGTH)
        card = self.card
        card.enter(Cmd.RELOAD_PIN)
        pin, mac = apdu.data[:-MAC_SIZE], apdu.data[-MAC_SIZE:]
        if decode_pin(pin) is None:
            fail(SW.WRONG_DATA)
        expected = crypto.mac_session(crypto.fold_key(card.key("drpk")), pin)
        require(compare_digest(expected, mac), SW.MAC_WRONG)
        card.commit({"pin": pin, "pin.tries": bytes((layout.PIN_TRIES,))})
        return b""


def admin_handlers(card: FuelCard) -> dict[tuple[int, int], Callable[[CommandApdu], bytes]]:
    admin = Admin(card)
    return {
        (0x04, 0xD6): admin.update_binary,
        (0x84, 0x1E): admin.application_block,
        (0x84, 0x18): admin.application_unblock,
        (0x80, 0x5E): admin.pin,
    }
