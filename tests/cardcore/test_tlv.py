"""BER-TLV codec: known encodings, round trips, and every malformed-input class."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytlv.TLV import emv_tags

from cardcore import tlv
from cardcore.errors import DecodeError
from cardcore.tlv import Tlv, build, decode_all, decode_one, encode, find, find_all

ET_AID = bytes.fromhex("A00000000353494E4F504543")
FCI_HEX = "6F14840CA00000000353494E4F504543A5049F080102"


def fci() -> Tlv:
    return build(0x6F, [build(0x84, ET_AID), build(0xA5, [build(0x9F08, b"\x02")])])


def token() -> list[Tlv]:
    """The virtual-card token layout of virtual-cards-and-api.md §2, with made-up values."""
    return [
        build(0x85, b"CPV01"),
        build(0x61, [build(0x4F, bytes.fromhex("F04655454C0101")), build(0x50, b"FUELCARD")]),
        build(
            0x62,
            [
                build(0x5A, bytes.fromhex("8100000000000017")),
                build(0x5F24, bytes.fromhex("271231")),
                build(0x9F36, b"\x00\x07"),
                build(
                    0x64,
                    [
                        build(0x9F26, bytes.fromhex("1122334455667788")),
                        build(0x9F27, b"\x80"),
                        build(0x9F10, bytes(12)),
                        build(0x9F37, bytes.fromhex("CAFEBABE")),
                    ],
                ),
            ],
        ),
    ]


# --- known encodings ---------------------------------------------------------------------------


def test_fci_of_the_et_application() -> None:
    assert fci().encode().hex().upper() == FCI_HEX
    assert decode_all(bytes.fromhex(FCI_HEX)) == [fci()]


def test_decoded_fci_exposes_children() -> None:
    (top,) = decode_all(bytes.fromhex(FCI_HEX))
    assert top.constructed and top.children is not None
    assert [c.tag for c in top.children] == [0x84, 0xA5]
    assert top.children[0].value == ET_AID
    assert top.find(0x9F08) == Tlv(0x9F08, b"\x02")


@pytest.mark.parametrize(
    ("n", "header"),
    [
        (0, "00"),
        (127, "7F"),
        (128, "8180"),
        (255, "81FF"),
        (256, "820100"),
        (300, "82012C"),
        (65535, "82FFFF"),
        (65536, "83010000"),
        (0xFFFFFF, "83FFFFFF"),
    ],
)
def test_length_forms_are_minimal(n: int, header: str) -> None:
    assert tlv.encode_length(n).hex().upper() == header


@pytest.mark.parametrize("n", [-1, 0x1000000])
def test_length_out_of_range_is_refused(n: int) -> None:
    with pytest.raises(ValueError):
        tlv.encode_length(n)


def test_300_byte_value_uses_the_82_form() -> None:
    value = bytes(range(256)) + bytes(44)
    raw = build(0x53, value).encode()
    assert raw[:4] == bytes.fromhex("5382012C")
    assert len(raw) == 304
    assert decode_one(raw) == Tlv(0x53, value)


def test_65536_byte_value_uses_the_83_form() -> None:
    raw = build(0xDF8101, bytes(65536)).encode()
    assert raw[:7] == bytes.fromhex("DF810183010000")
    assert decode_one(raw).value == bytes(65536)


@pytest.mark.parametrize(
    ("tag", "hex_"),
    [(0x9F8101, "9F8101"), (0xDF8101, "DF8101"), (0x5F24, "5F24"), (0x9F26, "9F26"), (0x5A, "5A")],
)
def test_multi_byte_tags(tag: int, hex_: str) -> None:
    raw = build(tag, b"\xab").encode()
    assert raw.hex().upper() == hex_ + "01AB"
    assert decode_one(raw).tag == tag
    assert Tlv(tag, b"").tag_hex == hex_


def test_three_byte_constructed_tag() -> None:
    obj = build(0xBF8101, [build(0x9F8101, b"\x01")])
    assert obj.encode().hex().upper() == "BF8101059F81010101"
    assert decode_one(obj.encode()) == obj


def test_constructed_bit_decides_recursion() -> None:
    # 0x70 is constructed: its content is parsed; 0x50 is primitive: the same bytes stay a value.
    content = bytes.fromhex("5A0112")
    assert decode_one(b"\x70\x03" + content).children == (Tlv(0x5A, b"\x12"),)
    assert decode_one(b"\x50\x03" + content) == Tlv(0x50, content)


def test_empty_constructed_and_empty_primitive() -> None:
    assert decode_all(bytes.fromhex("61005A00")) == [Tlv(0x61, children=()), Tlv(0x5A, b"")]
    assert decode_all(b"") == []


def test_token_round_trip_with_unique_tags() -> None:
    raw = encode(token())
    assert decode_all(raw, unique=True) == token()
    assert raw[:7] == b"\x85\x05CPV01"


def test_encode_accepts_one_object_or_many() -> None:
    assert encode(fci()) == encode([fci()]) == bytes(fci()) == bytes.fromhex(FCI_HEX)


def test_build_accepts_bytearray_and_generators() -> None:
    assert build(0x5A, bytearray(b"\x01")) == Tlv(0x5A, b"\x01")
    assert build(0x61, (build(0x4F, b"\x01") for _ in range(2))).value == bytes.fromhex(
        "4F01014F0101"
    )


# --- the Tlv type's invariants -----------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        0,  # no tag
        -1,
        0xFF,  # padding
        0x1F,  # announces a second byte that is missing
        0x5A01,  # second byte not announced
        0x9F80,  # last byte has b8 set
        0x9F0101,  # middle byte has b8 clear
        0x9F818101,  # four bytes
    ],
)
def test_malformed_tags_are_refused(tag: int) -> None:
    with pytest.raises(ValueError):
        Tlv(tag, b"")


def test_primitive_tag_refuses_children() -> None:
    with pytest.raises(ValueError, match="primitive"):
        Tlv(0x5A, b"", children=())


def test_constructed_tag_needs_children() -> None:
    with pytest.raises(ValueError, match="needs children"):
        Tlv(0x6F, b"\x84\x00")


def test_constructed_value_must_match_children() -> None:
    child = Tlv(0x84, b"\x01")
    assert Tlv(0x6F, b"\x84\x01\x01", (child,)).value == b"\x84\x01\x01"
    with pytest.raises(ValueError, match="encoding of children"):
        Tlv(0x6F, b"\x84\x01\x02", (child,))


def test_value_longer_than_83_form_is_refused() -> None:
    with pytest.raises(ValueError, match="83 form"):
        Tlv(0x53, bytes(0x1000000))


# --- malformed input: every class names its field and offset -----------------------------------


@pytest.mark.parametrize(
    ("hex_", "field", "offset"),
    [
        ("9F", "tag", 1),  # truncated two-byte tag
        ("9F81", "tag", 2),  # truncated three-byte tag
        ("9F818101", "tag", 2),  # four-byte tag
        ("00", "tag", 0),  # padding without padding=True
        ("FF", "tag", 0),
        ("5A", "length", 1),  # no length byte
        ("5A82", "length", 1),  # truncated long-form length
        ("5A8201", "length", 1),
        ("5A830000", "length", 1),
        ("5A0501020304", "length", 1),  # length beyond data
        ("5A820100" + "00" * 255, "length", 1),
        ("6F808401000000", "length", 1),  # indefinite
        ("5A84000000010A", "length", 1),  # length-of-length 4
        ("5A8F00", "length", 1),
        ("5AFF", "length", 1),
        ("5A817F" + "00" * 127, "length", 1),  # non-minimal 81
        ("5A820080" + "00" * 128, "length", 1),  # non-minimal 82
        ("5A83000100" + "00" * 256, "length", 1),  # non-minimal 83
        ("5A010100", "tag", 3),  # trailing garbage
        ("5A01019F", "tag", 4),
        ("5A01015A", "length", 4),
        ("5A01015A02AA", "length", 4),
        ("6F03840501", "length", 3),  # child longer than its parent
        ("6F028401AA", "length", 3),  # parent shorter than its child
        ("6F0100", "tag", 2),  # padding inside a template
        ("6F03A5019F", "tag", 5),  # truncated tag two levels down
    ],
)
def test_malformed_input(hex_: str, field: str, offset: int) -> None:
    raw = bytes.fromhex(hex_)
    with pytest.raises(DecodeError) as info:
        decode_all(raw)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_error_message_names_field_and_offset() -> None:
    with pytest.raises(DecodeError, match=r"^length at offset 1: indefinite"):
        decode_all(bytes.fromhex("6F80"))


def test_nesting_limit() -> None:
    def nest(levels: int) -> bytes:
        raw = b""
        for _ in range(levels):
            raw = b"\x61" + tlv.encode_length(len(raw)) + raw
        return raw

    assert decode_one(nest(tlv.MAX_DEPTH - 1)).tag == 0x61
    with pytest.raises(DecodeError) as info:
        decode_all(nest(tlv.MAX_DEPTH))
    assert info.value.field == "tag"
    with pytest.raises(DecodeError):
        decode_all(nest(1000))


def test_decode_one_needs_exactly_one_object() -> None:
    with pytest.raises(DecodeError) as info:
        decode_one(bytes.fromhex(FCI_HEX) + b"\x5a\x00")
    assert (info.value.field, info.value.offset) == ("tag", 22)
    with pytest.raises(DecodeError):
        decode_one(b"")
    with pytest.raises(DecodeError):
        decode_one(b"\x00\x00", padding=True)


# --- padding and duplicates --------------------------------------------------------------------


def test_padding_is_skipped_when_allowed() -> None:
    raw = bytes.fromhex("00FF5A0101006F0500840100FF0000")
    assert decode_all(raw, padding=True) == [
        Tlv(0x5A, b"\x01"),
        build(0x6F, [build(0x84, b"\x00")]),
    ]
    assert decode_one(bytes.fromhex("005A010100"), padding=True) == Tlv(0x5A, b"\x01")


def test_padding_inside_a_template_is_dropped_from_its_value() -> None:
    (top,) = decode_all(bytes.fromhex("6F0600840101FF00"), padding=True)
    assert top.value == bytes.fromhex("840101")


def test_padding_does_not_excuse_a_bad_object() -> None:
    with pytest.raises(DecodeError) as info:
        decode_all(bytes.fromhex("00005A05"), padding=True)
    assert (info.value.field, info.value.offset) == ("length", 3)


def test_duplicates_allowed_by_default() -> None:
    raw = bytes.fromhex("5A01015A0102")
    assert [t.value for t in decode_all(raw)] == [b"\x01", b"\x02"]


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("5A01015A0102", 3),
        ("9F3601009F2701809F360101", 8),
        ("620A5A01019F2701805A0102", 9),  # offsets inside templates are absolute
        ("620864065A01015A0102", 7),
    ],
)
def test_duplicates_rejected_when_unique(hex_: str, offset: int) -> None:
    with pytest.raises(DecodeError, match="duplicate tag") as info:
        decode_all(bytes.fromhex(hex_), unique=True)
    assert (info.value.field, info.value.offset) == ("tag", offset)


def test_same_tag_at_different_levels_is_not_a_duplicate() -> None:
    raw = bytes.fromhex("6103 5A0101 5A0102".replace(" ", ""))
    assert len(decode_all(raw, unique=True)) == 2
    assert len(decode_all(encode(token()), unique=True)) == 3


# --- search ------------------------------------------------------------------------------------


def test_find_is_depth_first_in_encoding_order() -> None:
    tree = decode_all(bytes.fromhex("6108 5A0101 6303 5A0102 5A0103".replace(" ", "")))
    assert find(tree, 0x5A) == Tlv(0x5A, b"\x01")
    assert [t.value for t in find_all(tree, 0x5A)] == [b"\x01", b"\x02", b"\x03"]
    assert find(tree, 0x9F26) is None


def test_find_in_token() -> None:
    objects = token()
    cryptogram = find(objects, 0x9F26)
    assert cryptogram is not None and cryptogram.value == bytes.fromhex("1122334455667788")
    assert find(objects, 0x64) is not None
    template = find(objects, 0x62)
    assert template is not None and template.find(0x9F37) == Tlv(0x9F37, bytes.fromhex("CAFEBABE"))


def test_tlv_find_excludes_itself() -> None:
    obj = build(0x61, [build(0x61, [])])
    assert obj.find(0x61) == Tlv(0x61, children=())
    assert Tlv(0x5A, b"").find(0x5A) is None


def test_walk_order() -> None:
    assert [t.tag for t in tlv.walk(token())] == [
        0x85,
        0x61,
        0x4F,
        0x50,
        0x62,
        0x5A,
        0x5F24,
        0x9F36,
        0x64,
        0x9F26,
        0x9F27,
        0x9F10,
        0x9F37,
    ]


# --- names and pretty printing -----------------------------------------------------------------


def test_tag_name_uses_pytlv_table() -> None:
    assert tlv.tag_name(0x9F26) == emv_tags["9F26"] == "Application Cryptogram"
    assert tlv.tag_name(0x9F1A) == emv_tags["9F1A"]


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        (0x85, "Payload Format Indicator"),
        (0x62, "Common Data Template"),
        (0x64, "Common Data Transparent Template"),
        (0x70, "Record Template"),
        (0xDF01, "Station ID"),  # pytlv calls it "Reference PIN"
        (0xDF02, "Pump Number"),
        (0x9F08, "Application Version Number"),
        (0x88, "Short File Identifier (SFI)"),
    ],
)
def test_tag_name_profile_tags(tag: int, name: str) -> None:
    assert tlv.tag_name(tag) == name


def test_tag_name_unknown() -> None:
    assert tlv.tag_name(0xDF7F) is None
    assert tlv.tag_name(0x9F6E) is None  # pytlv's "Unknown Tag" placeholder


def test_pretty_fci() -> None:
    assert tlv.pretty(fci()) == "\n".join(
        [
            "6F File Control Information (FCI) Template (20)",
            "  84 Dedicated File (DF) Name (12) A00000000353494E4F504543",
            "  A5 File Control Information (FCI) Proprietary Template (4)",
            "    9F08 Application Version Number (1) 02",
        ]
    )


def test_pretty_shows_text_and_unknown_tags() -> None:
    text = tlv.pretty([build(0x50, b"FUELCARD"), build(0xDF7F, b""), build(0xDF7E, b"\x00A")])
    assert text.splitlines() == [
        '50 Application Label (8) 4655454C43415244 "FUELCARD"',
        "DF7F ? (0)",
        "DF7E ? (2) 0041",
    ]


# --- properties --------------------------------------------------------------------------------


@st.composite
def tags(draw: st.DrawFn, constructed: bool) -> int:
    b6 = 0x20 if constructed else 0
    if draw(st.booleans()):
        first = draw(st.integers(1, 0xFE).filter(lambda b: b & 0x1F != 0x1F))
        return (first & ~0x20) | b6 or 0x01
    firsts = [c | 0x1F | b6 for c in (0x00, 0x40, 0x80, 0xC0)]
    first = draw(st.sampled_from([b for b in firsts if b != 0xFF]))
    middle = draw(st.lists(st.integers(0x80, 0xFF), max_size=1))
    last = draw(st.integers(0x00, 0x7F))
    return int.from_bytes(bytes([first, *middle, last]), "big")


primitives = st.builds(Tlv, tags(constructed=False), st.binary(max_size=300))
trees = st.recursive(
    primitives,
    lambda kids: st.builds(
        lambda tag, children: Tlv(tag, children=tuple(children)),
        tags(constructed=True),
        st.lists(kids, max_size=4),
    ),
    max_leaves=16,
)


@given(st.lists(trees, max_size=4))
def test_round_trip(objects: list[Tlv]) -> None:
    raw = encode(objects)
    assert decode_all(raw) == objects
    assert encode(decode_all(raw)) == raw


@given(trees)
def test_every_proper_prefix_of_one_object_is_refused(obj: Tlv) -> None:
    raw = obj.encode()
    for cut in range(1, len(raw), max(1, len(raw) // 40)):
        with pytest.raises(DecodeError):
            decode_all(raw[:cut])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_canonically_or_raise_decode_error(raw: bytes) -> None:
    try:
        objects = decode_all(raw)
    except DecodeError:
        return
    assert encode(objects) == raw


@given(trees, st.data())
def test_mutated_encodings_decode_canonically_or_raise_decode_error(
    obj: Tlv, data: st.DataObject
) -> None:
    raw = bytearray(obj.encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 0xFF))
    try:
        objects = decode_all(bytes(raw))
    except DecodeError:
        return
    assert encode(objects) == raw


@given(st.binary(max_size=200), st.booleans(), st.booleans())
def test_only_decode_error_escapes_any_options(raw: bytes, unique: bool, padding: bool) -> None:
    try:
        tlv.pretty(decode_all(raw, unique=unique, padding=padding))
        decode_one(raw, unique=unique, padding=padding)
    except DecodeError:
        pass
