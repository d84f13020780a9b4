"""Status words: every member is described, families are decoded, unknown values fall back."""

from __future__ import annotations

import pytest

from cardcore.sw import SW, pin_tries_left, sw_name, wrong_le


@pytest.mark.parametrize("member", list(SW), ids=lambda m: m.name)
def test_every_member_has_a_description(member: SW) -> None:
    assert isinstance(member.description, str) and member.description.strip()
    assert 0 <= member <= 0xFFFF
    assert SW.describe(member) == member.description
    assert sw_name(member) == member.name


def test_no_two_members_share_a_value() -> None:
    # An IntEnum silently turns a repeated value into an alias of the first name.
    assert len(SW.__members__) == len(list(SW))


@pytest.mark.parametrize(
    ("sw", "value"),
    [
        (SW.OK, 0x9000),
        (SW.WRONG_LENGTH, 0x6700),
        (SW.SECURITY_NOT_SATISFIED, 0x6982),
        (SW.PIN_BLOCKED, 0x6983),
        (SW.CONDITIONS_NOT_SATISFIED, 0x6985),
        (SW.SM_MAC_WRONG, 0x6988),
        (SW.FUNCTION_NOT_SUPPORTED_BLOCKED, 0x6A81),
        (SW.FILE_NOT_FOUND, 0x6A82),
        (SW.RECORD_NOT_FOUND, 0x6A83),
        (SW.WRONG_P1P2, 0x6A86),
        (SW.WRONG_OFFSET, 0x6B00),
        (SW.INS_NOT_SUPPORTED, 0x6D00),
        (SW.CLA_NOT_SUPPORTED, 0x6E00),
        (SW.UNKNOWN, 0x6F00),
        (SW.MAC_WRONG, 0x9302),
        (SW.APP_PERMANENTLY_BLOCKED, 0x9303),
        (SW.INSUFFICIENT_BALANCE, 0x9401),
        (SW.COUNTER_AT_MAXIMUM, 0x9402),
        (SW.KEY_INDEX_UNKNOWN, 0x9403),
        (SW.PROOF_NOT_FOUND, 0x9406),
        (SW.GREY_LOCKED, 0x9408),
    ],
)
def test_spec_values(sw: SW, value: int) -> None:
    assert sw == value
    assert SW(value) is sw


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x6110, "16 more bytes available"),
        (0x6100, "0 more bytes available"),
        (0x6C1E, "wrong Le: 30 bytes available"),
        (0x6C00, "wrong Le: 0 bytes available"),
        (0x63C2, "wrong PIN, 2 tries left"),
        (0x63C1, "wrong PIN, 1 tries left"),
        (0x63C0, "wrong PIN, 0 tries left"),
    ],
)
def test_describe_families(sw: int, text: str) -> None:
    assert text in SW.describe(sw)


@pytest.mark.parametrize(
    ("sw", "name"), [(0x6110, "MORE_DATA"), (0x6C05, "WRONG_LE"), (0x63C1, "PIN_WRONG")]
)
def test_family_names(sw: int, name: str) -> None:
    assert sw_name(sw) == name


@pytest.mark.parametrize("sw", [0x0000, 0x1234, 0x6300, 0x63D1, 0x6A84, 0x9001, 0xFFFF])
def test_unknown_values(sw: int) -> None:
    assert SW.describe(sw) == "unknown status word"
    assert sw_name(sw) == "SW"
    with pytest.raises(ValueError):
        SW(sw)


def test_builders() -> None:
    assert [pin_tries_left(n) for n in (2, 1, 0)] == [0x63C2, 0x63C1, 0x63C0]
    assert wrong_le(0x1E) == 0x6C1E
    assert wrong_le(256) == 0x6C00  # Le=00 means 256 in a short APDU
