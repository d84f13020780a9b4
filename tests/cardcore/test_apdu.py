"""Command and response APDUs: ISO cases 1–4, short and extended, and strict parsing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardcore.apdu import CommandApdu, ResponseApdu
from cardcore.errors import DecodeError
from cardcore.sw import SW

ET_AID = bytes.fromhex("A00000000353494E4F504543")


@pytest.mark.parametrize(
    ("hex_", "expected"),
    [
        # case 1
        ("E0CA0100", CommandApdu(0xE0, 0xCA, 0x01, 0x00)),
        # case 2 short: a 5-byte APDU is always case 2, and Le=00 means Ne=256
        ("0084000004", CommandApdu(0x00, 0x84, 0x00, 0x00, ne=4)),
        ("E0CA00001E", CommandApdu(0xE0, 0xCA, 0x00, 0x00, ne=30)),
        ("E0CA010000", CommandApdu(0xE0, 0xCA, 0x01, 0x00, ne=256)),
        # case 3 short: VERIFY with the DEV PIN
        ("0020000003999999", CommandApdu(0x00, 0x20, 0x00, 0x00, bytes.fromhex("999999"))),
        # case 4 short: SELECT by name with Le=00, INITIALIZE FOR PURCHASE with Le=0F
        (
            "00A404000C" + ET_AID.hex() + "00",
            CommandApdu(0x00, 0xA4, 0x04, 0x00, ET_AID, ne=256),
        ),
        (
            "805001010B0100000064440101000001" + "0F",
            CommandApdu(0x80, 0x50, 0x01, 0x01, bytes.fromhex("0100000064440101000001"), ne=15),
        ),
        # case 2 extended
        ("00B00000000100", CommandApdu(0x00, 0xB0, 0x00, 0x00, ne=256, extended=True)),
        ("00B00000000000", CommandApdu(0x00, 0xB0, 0x00, 0x00, ne=65536, extended=True)),
        ("00B00000000005", CommandApdu(0x00, 0xB0, 0x00, 0x00, ne=5, extended=True)),
        # case 3 extended
        ("00D6000000000201 02", CommandApdu(0x00, 0xD6, 0, 0, b"\x01\x02", extended=True)),
        # case 4 extended
        (
            "002A8086000003AABBCC0000",
            CommandApdu(0x00, 0x2A, 0x80, 0x86, bytes.fromhex("AABBCC"), 65536, extended=True),
        ),
        (
            "002A8086000003AABBCC0101",
            CommandApdu(0x00, 0x2A, 0x80, 0x86, bytes.fromhex("AABBCC"), 257, extended=True),
        ),
    ],
)
def test_known_apdus(hex_: str, expected: CommandApdu) -> None:
    raw = bytes.fromhex(hex_)
    assert CommandApdu.from_bytes(raw) == expected
    assert bytes(expected) == raw
    assert expected.hex() == raw.hex().upper()


def test_case_numbers() -> None:
    assert CommandApdu(0, 0xA4, 0, 0).case == 1
    assert CommandApdu(0, 0xB0, 0, 0, ne=256).case == 2
    assert CommandApdu(0, 0x20, 0, 0, b"\x99").case == 3
    assert CommandApdu(0, 0xA4, 4, 0, ET_AID, ne=256).case == 4
    assert CommandApdu(0, 0xA4, 4, 0, ET_AID, ne=256, extended=True).case == 4


def test_header() -> None:
    assert CommandApdu(0x80, 0x5C, 0x00, 0x01, ne=4).header == bytes.fromhex("805C0001")


def test_extended_data_of_300_bytes() -> None:
    data = bytes(range(256)) + bytes(44)
    raw = bytes.fromhex("04D69500 00012C") + data + bytes.fromhex("0000")
    apdu = CommandApdu.from_bytes(raw)
    assert (apdu.data, apdu.ne, apdu.extended, apdu.case) == (data, 65536, True, 4)
    assert bytes(apdu) == raw


def test_extended_data_of_65535_bytes() -> None:
    apdu = CommandApdu(0x00, 0xD6, 0, 0, bytes(65535), extended=True)
    raw = bytes(apdu)
    assert raw[4:7] == bytes.fromhex("00FFFF")
    assert CommandApdu.from_bytes(raw) == apdu


@pytest.mark.parametrize(
    ("hex_", "field", "offset"),
    [
        ("", "header", 0),
        ("00", "header", 1),
        ("00A404", "header", 3),
        ("00A4040005A000", "Lc", 4),  # Lc 5, 2 bytes follow
        ("00A4040002A0000000", "Lc", 4),  # Lc 2, then 3 bytes, not a single Le
        ("00B0000000FF", "Lc", 5),  # 00 announces an extended length, 1 byte of it
        ("00D60000000000AA", "Lc", 5),  # extended Lc of zero
        ("00D60000000000AABBCC", "Lc", 5),
        ("00D6000000000501 02", "Lc", 5),  # extended Lc 5, 2 bytes follow
        ("00D600000000020102FF", "Lc", 5),  # extended case 4 needs a 2-byte Le
    ],
)
def test_malformed_command(hex_: str, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        CommandApdu.from_bytes(bytes.fromhex(hex_))
    assert (info.value.field, info.value.offset) == (field, offset)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 0x100},
        {"ins": -1},
        {"p2": 0x1FF},
        {"data": bytes(256)},
        {"data": bytes(65536), "extended": True},
        {"ne": 0},
        {"ne": 257},
        {"ne": 65537, "extended": True},
    ],
)
def test_constructor_refuses_what_cannot_be_encoded(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0}
    with pytest.raises(ValueError):
        CommandApdu(**{**base, **kwargs})  # type: ignore[arg-type]


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    extended = draw(st.booleans())
    data = draw(st.binary(max_size=300 if extended else 255))
    ne = draw(st.none() | st.integers(1, 65536 if extended else 256))
    cla, ins, p1, p2 = draw(st.tuples(*[st.integers(0, 255)] * 4))
    return CommandApdu(cla, ins, p1, p2, data, ne, extended)


@given(commands())
def test_round_trip(apdu: CommandApdu) -> None:
    parsed = CommandApdu.from_bytes(bytes(apdu))
    if apdu.case == 1:
        # A case-1 APDU has no length field, so nothing says it was extended.
        apdu = dataclasses.replace(apdu, extended=False)
    assert parsed == apdu
    assert parsed.case == apdu.case


@st.composite
def near_apdus(draw: st.DrawFn) -> bytes:
    """Headers with length fields that are right, or off by a little: most inputs are edge cases."""
    header = draw(st.binary(min_size=4, max_size=4))
    if draw(st.booleans()):
        lc = draw(st.integers(0, 255))
        body = bytes((lc,)) + draw(st.binary(min_size=max(0, lc - 2), max_size=lc + 2))
    else:
        lc = draw(st.integers(0, 300))
        length = b"\x00" + lc.to_bytes(2, "big")
        body = length + draw(st.binary(min_size=max(0, lc - 2), max_size=lc + 3))
    return header + body[: draw(st.integers(0, len(body)))]


@given(st.binary(max_size=300) | near_apdus())
def test_arbitrary_bytes_parse_exactly_or_raise_decode_error(raw: bytes) -> None:
    try:
        apdu = CommandApdu.from_bytes(raw)
    except DecodeError:
        return
    assert bytes(apdu) == raw


# --- responses ---------------------------------------------------------------------------------


def test_response_parse() -> None:
    r = ResponseApdu.from_bytes(bytes.fromhex("000186A09000"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (bytes.fromhex("000186A0"), 0x9000, 0x90, 0, True)
    assert r.hex() == "000186A09000"


def test_response_status_only() -> None:
    r = ResponseApdu.status(SW.INSUFFICIENT_BALANCE)
    assert bytes(r) == bytes.fromhex("9401")
    assert not r.ok
    assert ResponseApdu.from_bytes(b"\x63\xc2") == ResponseApdu(b"", 0x63C2)


@pytest.mark.parametrize("hex_", ["", "90"])
def test_response_too_short(hex_: str) -> None:
    with pytest.raises(DecodeError) as info:
        ResponseApdu.from_bytes(bytes.fromhex(hex_))
    assert info.value.field == "SW"


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    r = ResponseApdu(data, sw)
    assert ResponseApdu.from_bytes(bytes(r)) == r
    assert r.ok == (sw == 0x9000)
