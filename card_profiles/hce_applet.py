"""The phone's NFC card (host card emulation) as a sans-IO applet.

A phone presents its virtual fleet card only while the driver has armed it. The applet itself
holds no keys and no memory: it checks the command, then asks the phone (an `HceTokenSource`)
for a token bound to the terminal's UN, amount limit, station and pump. The phone answers None
when it is not armed or the countdown is over. Every check happens before the phone is asked,
so a refused command leaves the phone (its ATC in particular) unchanged.

Commands:
- SELECT `00 A4 04 00 07 F04655454C0101` → FCI `6F { 84 AID, A5 { 50 "FUELCARD" } }`;
- GET TOKEN `80 E2 00 00 Lc 9F37 UN ‖ 9F02 amount limit ‖ DF01 station ‖ DF02 pump 00` → token.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from typing import Protocol

from card_profiles.applet import Applet, expect_lc, fail, fixed_answer, require
from card_profiles.nvm import MemoryBackend, Nvm
from cardcore import vfc
from cardcore.apdu import CommandApdu
from cardcore.ports import Rng
from cardcore.sw import SW
from cardcore.tlv import Tlv, encode

INS_GET_TOKEN = 0xE2
# The PC/SC pseudo-ATR of an ISO 14443-4 card (3B 8n 80 01, historical bytes, TCK).
_HISTORICAL = b"FUELHCE"
_ATR_BODY = bytes((0x3B, 0x80 | len(_HISTORICAL), 0x80, 0x01)) + _HISTORICAL
ATR_HCE = _ATR_BODY + bytes((reduce(xor, _ATR_BODY[1:]),))  # TCK: XOR of T0..last byte

FCI = encode(
    [Tlv(0x6F, children=(Tlv(0x84, vfc.AID), Tlv(0xA5, children=(Tlv(0x50, vfc.APP_LABEL),))))]
)
TOKEN_LEN = 90  # every token has the same length (fixed fields; see cardcore.vfc)
# GET TOKEN data: 9F37 (7) + 9F02 (9) + DF01 (3 + 1..16) + DF02 (4).
MIN_GET_TOKEN_LC = 7 + 9 + 4 + 4
MAX_GET_TOKEN_LC = 7 + 9 + 3 + vfc.MAX_STATION_LEN + 4


class HceTokenSource(Protocol):
    """The phone behind the NFC card."""

    def nfc_token(self, un: bytes, context: vfc.NfcContext) -> bytes | None:
        """The encoded token for this tap, or None when not armed or the countdown is over."""
        ...


class HceApplet(Applet):
    """SELECT and GET TOKEN; the token comes from the phone, the applet only checks commands."""

    atr = ATR_HCE

    def __init__(self, phone: HceTokenSource, rng: Rng) -> None:
        super().__init__(Nvm(MemoryBackend()), rng)
        self.phone = phone
        self.selected = False
        self.handlers = {
            (0x00, 0xA4): self.select,
            (0x80, INS_GET_TOKEN): self.get_token,
        }

    def reset_session(self) -> None:
        self.selected = False

    def select(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x04 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if not 5 <= len(apdu.data) <= 16:
            fail(SW.WRONG_LENGTH)
        if apdu.data != vfc.AID:
            fail(SW.FILE_NOT_FOUND)
        fixed_answer(apdu, len(FCI))
        self.selected = True
        return FCI

    def get_token(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, *range(MIN_GET_TOKEN_LC, MAX_GET_TOKEN_LC + 1))
        fixed_answer(apdu, TOKEN_LEN)
        require(self.selected, SW.CONDITIONS_NOT_SATISFIED)
        try:
            un, context = vfc.parse_get_token_data(data)
        except vfc.VfcFormatError:
            fail(SW.WRONG_DATA)
        token = self.phone.nfc_token(un, context)
        if token is None:
            fail(SW.CONDITIONS_NOT_SATISFIED)
        return token


def select_command() -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, vfc.AID, ne=256)


def get_token_command(un: bytes, context: vfc.NfcContext) -> CommandApdu:
    return CommandApdu(0x80, INS_GET_TOKEN, 0x00, 0x00, vfc.get_token_data(un, context), ne=256)
