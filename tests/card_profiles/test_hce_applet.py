"""The phone's HCE applet: SELECT, GET TOKEN, every status word, and a refused command changes
nothing on the phone (ATC, key uses, arming)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card_profiles.hce_applet import (
    ATR_HCE,
    FCI,
    HceApplet,
    get_token_command,
    select_command,
)
from cardcore import tlv, vfc
from cardcore.clockrng import ManualClock, SeededRng
from cardcore.sw import SW
from terminal_sim.phone import Phone
from terminal_sim.phone_clock import PhoneClock
from terminal_sim.phone_state import CardGrant, HeldLuk, LukGrant, PhoneState
from terminal_sim.readers import InProcReader

START = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
PAN = "8100000000000017"
LUK0 = vfc.luk(vfc.card_key(bytes(32), "VC-1", 1), 0)
UN = bytes.fromhex("01020304")
CONTEXT = vfc.NfcContext(amount_limit=30_000, station="ST-0001", pump=2)
SELECT = bytes(select_command())
GET_TOKEN = bytes(get_token_command(UN, CONTEXT))


def make_phone(clock: ManualClock) -> Phone:
    phone = Phone(None, PhoneClock(clock), SeededRng(1))
    state = PhoneState("phone-1", card=CardGrant("VC-1", PAN, date(2029, 12, 31), "12345678", 1))
    state.set_pin("1234", b"salt")
    state.luks = [HeldLuk(LukGrant(0, LUK0, int(START.timestamp()) + 86_400, 20))]
    phone.state = state
    return phone


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def phone(clock: ManualClock) -> Phone:
    phone = make_phone(clock)
    phone.arm("1234")
    return phone


def snapshot(phone: Phone) -> Any:
    screen = phone.screen()
    return phone.state.to_json(), screen.face, screen.code


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def test_select_answers_the_fci(phone: Phone) -> None:
    applet = HceApplet(phone, SeededRng(0))
    assert applet.power_on() == ATR_HCE
    response = applet.process(SELECT)
    assert sw(response) == SW.OK and response[:-2] == FCI
    fci = tlv.decode_one(response[:-2])
    label = fci.find(0x50)
    aid = fci.find(0x84)
    assert label is not None and label.value == b"FUELCARD"
    assert aid is not None and aid.value == vfc.AID


def test_get_token_returns_a_token_bound_to_the_tap(phone: Phone) -> None:
    applet = HceApplet(phone, SeededRng(0))
    applet.process(SELECT)
    atc_before = phone.state.atc
    response = applet.process(GET_TOKEN)
    assert sw(response) == SW.OK
    token = vfc.Token.parse(response[:-2])
    assert token.un == UN and token.atc == atc_before + 1 == phone.state.atc
    assert vfc.verify_cryptogram(LUK0, token, CONTEXT.encode())
    assert not vfc.verify_cryptogram(LUK0, token)  # not valid without the pump it was made for
    assert token.iad.t_gen == int(START.timestamp()) and not token.iad.synced
    # one tap per arming: the next GET TOKEN is refused
    assert sw(applet.process(GET_TOKEN)) == SW.CONDITIONS_NOT_SATISFIED


def test_get_token_through_the_in_process_reader(phone: Phone) -> None:
    reader = InProcReader(HceApplet(phone, SeededRng(0)), "phone")
    assert reader.connect() == ATR_HCE
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    answer = reader.transmit(GET_TOKEN)
    assert answer[-2:] == b"\x90\x00" and len(answer) == 92


def test_not_armed_and_countdown_over_give_6985(clock: ManualClock) -> None:
    phone = make_phone(clock)
    applet = HceApplet(phone, SeededRng(0))
    applet.process(SELECT)
    before = snapshot(phone)
    assert sw(applet.process(GET_TOKEN)) == SW.CONDITIONS_NOT_SATISFIED  # never armed
    assert snapshot(phone) == before
    phone.arm("1234")
    clock.advance(60)
    before = snapshot(phone)
    assert sw(applet.process(GET_TOKEN)) == SW.CONDITIONS_NOT_SATISFIED  # countdown over
    assert snapshot(phone) == before


def _data(value: bytes) -> bytes:
    return bytes.fromhex("80E20000") + bytes((len(value),)) + value + b"\x00"


GOOD_DATA = vfc.get_token_data(UN, CONTEXT)
REFUSALS = [
    # (name, commands before, command, status word)
    ("get token before select", [], GET_TOKEN, SW.CONDITIONS_NOT_SATISFIED),
    ("select unknown AID", [], bytes.fromhex("00A4040007A000000003101000"), SW.FILE_NOT_FOUND),
    ("select by FID", [], bytes.fromhex("00A40000023F0000"), SW.WRONG_P1P2),
    ("select short AID", [], bytes.fromhex("00A4040003F0465500"), SW.WRONG_LENGTH),
    ("select small Le", [], SELECT[:-1] + b"\x05", SW.WRONG_LENGTH),
    ("get token P1", [SELECT], bytes.fromhex("80E20100") + GET_TOKEN[4:], SW.WRONG_P1P2),
    ("get token no data", [SELECT], bytes.fromhex("80E2000000"), SW.WRONG_LENGTH),
    ("get token short data", [SELECT], _data(GOOD_DATA[:20]), SW.WRONG_LENGTH),
    ("get token long data", [SELECT], _data(GOOD_DATA + bytes(20)), SW.WRONG_LENGTH),
    ("get token small Le", [SELECT], GET_TOKEN[:-1] + b"\x10", SW.WRONG_LENGTH),
    ("UN missing", [SELECT], _data(GOOD_DATA[7:] + bytes.fromhex("9F3704")), SW.WRONG_DATA),
    (
        "amount not BCD",
        [SELECT],
        _data(GOOD_DATA.replace(bytes.fromhex("9F020600"), bytes.fromhex("9F02060A"))),
        SW.WRONG_DATA,
    ),
    (
        "pump 0",
        [SELECT],
        _data(GOOD_DATA.replace(bytes.fromhex("DF020102"), bytes.fromhex("DF020100"))),
        SW.WRONG_DATA,
    ),
    (
        "station not ASCII",
        [SELECT],
        _data(GOOD_DATA.replace(b"ST-0001", b"ST\x80\x00001")),
        SW.WRONG_DATA,
    ),
    ("unknown INS", [SELECT], bytes.fromhex("80CA9F3600"), SW.INS_NOT_SUPPORTED),
    ("GET TOKEN with CLA 00", [SELECT], b"\x00" + GET_TOKEN[1:], SW.CLA_NOT_SUPPORTED),
    ("SELECT with CLA 80", [], b"\x80" + SELECT[1:], SW.CLA_NOT_SUPPORTED),
    ("not an APDU", [], bytes.fromhex("00A404"), SW.WRONG_LENGTH),
    ("Lc beyond the data", [], bytes.fromhex("00A4040010F04655454C0101"), SW.WRONG_LENGTH),
]


@pytest.mark.parametrize(
    ("name", "before", "command", "status"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refusals_change_nothing(
    phone: Phone, name: str, before: list[bytes], command: bytes, status: int
) -> None:
    applet = HceApplet(phone, SeededRng(0))
    for setup in before:
        assert sw(applet.process(setup)) == SW.OK
    state = snapshot(phone)
    response = applet.process(command)
    assert response == status.to_bytes(2, "big"), name
    assert snapshot(phone) == state
    # the refusal did not spoil the tap: a good GET TOKEN still works afterwards
    applet.process(SELECT)
    assert sw(applet.process(GET_TOKEN)) == SW.OK


def test_failed_select_keeps_the_selection(phone: Phone) -> None:
    applet = HceApplet(phone, SeededRng(0))
    applet.process(SELECT)
    applet.process(bytes.fromhex("00A4040007A000000003101000"))
    assert sw(applet.process(GET_TOKEN)) == SW.OK


def test_power_cycle_deselects(phone: Phone) -> None:
    applet = HceApplet(phone, SeededRng(0))
    applet.process(SELECT)
    applet.power_off()
    assert sw(applet.process(GET_TOKEN)) == SW.CONDITIONS_NOT_SATISFIED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.booleans())
def test_fuzzed_commands_never_crash_and_only_get_token_moves_the_atc(
    raw: bytes, selected: bool
) -> None:
    phone = make_phone(ManualClock(START))
    phone.arm("1234")
    applet = HceApplet(phone, SeededRng(0))
    if selected:
        applet.process(SELECT)
    atc = phone.state.atc
    response = applet.process(raw)
    assert len(response) >= 2 and sw(response) != SW.UNKNOWN
    if sw(response) == SW.OK and raw[:2] == b"\x80\xe2":
        assert phone.state.atc == atc + 1
    else:
        assert phone.state.atc == atc
