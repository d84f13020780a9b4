"""An NFC tap through the real stack: pyscard → pcscd → vsmartcard-vpcd → the phone's HCE applet."""

from __future__ import annotations

from datetime import UTC, date, datetime

from card_profiles.hce_applet import ATR_HCE, HceApplet, get_token_command, select_command
from cardcore import vfc
from cardcore.clockrng import ManualClock, SeededRng
from terminal_sim.pcsc_reader import PcscContext, PcscReader
from terminal_sim.phone import Phone
from terminal_sim.phone_clock import PhoneClock
from terminal_sim.phone_state import CardGrant, HeldLuk, LukGrant, PhoneState

from .conftest import SLOT_READERS, served

START = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
LUK0 = vfc.luk(vfc.card_key(bytes(32), "VC-1", 1), 0)
CONTEXT = vfc.NfcContext(amount_limit=20_000, station="ST-0001", pump=4)


def test_nfc_tap_through_vpcd(pcscd: PcscContext) -> None:
    phone = Phone(None, PhoneClock(ManualClock(START)), SeededRng(1))
    state = PhoneState(
        "phone-1", card=CardGrant("VC-1", "8100000000000017", date(2029, 12, 31), "12345678", 1)
    )
    state.set_pin("1234", b"salt")
    state.luks = [HeldLuk(LukGrant(0, LUK0, int(START.timestamp()) + 86_400, 20))]
    phone.state = state
    un = bytes.fromhex("0BADF00D")
    with served(pcscd, HceApplet(phone, SeededRng(0)), 0) as slot:  # type: ignore[arg-type]
        reader = PcscReader(SLOT_READERS[0], pcscd)
        try:
            assert reader.connect() == ATR_HCE
            assert reader.transmit(bytes(select_command()))[-2:] == b"\x90\x00"
            refused = reader.transmit(bytes(get_token_command(un, CONTEXT)))
            assert refused == b"\x69\x85"  # not armed yet
            phone.arm("1234")
            answer = reader.transmit(bytes(get_token_command(un, CONTEXT)))
        finally:
            reader.disconnect()
        assert slot.stats.apdus >= 3  # the exchanges went through vpcd
    assert answer[-2:] == b"\x90\x00"
    token = vfc.Token.parse(answer[:-2])
    assert token.un == un and token.atc == 2 == phone.state.atc
    assert vfc.verify_cryptogram(LUK0, token, CONTEXT.encode())
