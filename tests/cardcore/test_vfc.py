"""Virtual fleet cards: key derivation, strict token format, cryptogram and numeric code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardcore import vfc
from cardcore.vfc import Iad, Token, VfcFormatError

IMK = bytes(range(32))
CARD_ID = "VC-000001"
UN = bytes.fromhex("A1B2C3D4")
CONTEXT = vfc.NfcContext(amount_limit=50_000, station="ST-0001", pump=3)


def sp800_108_hmac_sha256(key: bytes, label: bytes, context: bytes) -> bytes:
    """SP 800-108 counter mode, written out: HMAC(K, [1]_32 ‖ label ‖ 00 ‖ context ‖ [256]_32)."""
    block = struct.pack(">I", 1) + label + b"\x00" + context + struct.pack(">I", 256)
    return hmac.new(key, block, hashlib.sha256).digest()


def make_iad(**changes: object) -> Iad:
    fields: dict[str, object] = {
        "kv": 1,
        "luk_index": 7,
        "t_gen": 1_795_000_000,
        "ttl": 60,
        "synced": True,
        "sync_age_bucket": 2,
        "wall_off": True,
        "skew_s": -3_600,
    }
    fields.update(changes)
    return Iad(**fields)  # type: ignore[arg-type]


def luk() -> bytes:
    return vfc.luk(vfc.card_key(IMK, CARD_ID, 1), 7)


def make_token(atc: int = 5, iad: Iad | None = None, context: bytes = b"") -> Token:
    return vfc.make_token(
        luk(), "8100000000000017", date(2029, 12, 31), atc, UN, iad or make_iad(), context
    )


# Keys ------------------------------------------------------------------------------------------


def test_key_derivation_is_sp800_108_counter_with_hmac_sha256() -> None:
    k_card = vfc.card_key(IMK, CARD_ID, 1)
    assert k_card == sp800_108_hmac_sha256(IMK, b"VFC-CARD", b"VC-000001:1")
    assert vfc.luk(k_card, 12) == sp800_108_hmac_sha256(k_card, b"VFC-LUK", b"12")


def test_keys_differ_by_card_version_and_index() -> None:
    keys = {
        vfc.card_key(IMK, CARD_ID, 1),
        vfc.card_key(IMK, CARD_ID, 2),
        vfc.card_key(IMK, "VC-000002", 1),
        vfc.luk(vfc.card_key(IMK, CARD_ID, 1), 0),
        vfc.luk(vfc.card_key(IMK, CARD_ID, 1), 1),
    }
    assert len(keys) == 5


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_card_id_must_be_text_without_nul(bad: str) -> None:
    with pytest.raises(ValueError):
        vfc.card_key(IMK, bad, 1)


# IAD -------------------------------------------------------------------------------------------


def test_iad_layout() -> None:
    raw = make_iad().encode()
    assert raw.hex().upper() == "010100076AFD86C03C15F1F0"
    assert Iad.decode(raw) == make_iad()
    assert make_iad().clock_flags == 0x15 and make_iad().expires_at == 1_795_000_060


@pytest.mark.parametrize(
    ("raw_hex", "code"),
    [
        ("0101000767E8B4003C150000", None),
        ("0201000767E8B4003C150000", "E_VERSION"),
        ("0101000767E8B4003C350000", "E_FORMAT"),  # reserved flag bit 5
        ("0101000767E8B40000150000", "E_FORMAT"),  # ttl 0
        ("0101000767E8B4003C1500", "E_FORMAT"),  # 11 bytes
    ],
)
def test_iad_decode_is_strict(raw_hex: str, code: str | None) -> None:
    if code is None:
        assert Iad.decode(bytes.fromhex(raw_hex)).ttl == 60
        return
    with pytest.raises(VfcFormatError) as err:
        Iad.decode(bytes.fromhex(raw_hex))
    assert err.value.code == code


def test_sync_age_buckets_and_skew_clamp() -> None:
    assert [vfc.sync_age_bucket(a) for a in (0, 59, 60, 299, 3_599, 86_399, 10**7, None)] == [
        0,
        0,
        1,
        1,
        3,
        5,
        7,
        7,
    ]
    assert vfc.clamp_skew(-(10**9)) == -0x8000 and vfc.clamp_skew(40_000.4) == 0x7FFF


# Token -----------------------------------------------------------------------------------------


def test_token_layout_and_size() -> None:
    token = make_token()
    raw = token.encode()
    assert len(raw) == 90 and len(vfc.to_qr_text(token)) == 120
    assert raw.startswith(bytes.fromhex("850543505630316113") + bytes.fromhex("4F07") + vfc.AID)
    assert bytes.fromhex("5A088100000000000017") + bytes.fromhex("5F2403291231") in raw
    assert bytes.fromhex("9F36020005") in raw and bytes.fromhex("9F270180") in raw
    assert raw.endswith(bytes.fromhex("9F3704") + UN)
    assert Token.parse(raw) == token


def _replace(raw: bytes, old: str, new: str) -> bytes:
    assert bytes.fromhex(old) in raw
    return raw.replace(bytes.fromhex(old), bytes.fromhex(new), 1)


def _mutations() -> list[tuple[str, object, str]]:
    raw = make_token().encode()
    body = raw[7:]
    return [
        ("empty", b"", "E_FORMAT"),
        ("trailing byte", raw + b"\x00", "E_FORMAT"),
        ("truncated", raw[:-1], "E_FORMAT"),
        ("version", _replace(raw, "4350563031", "4350563032"), "E_VERSION"),
        ("no 85 first", body + raw[:7], "E_FORMAT"),
        ("duplicate 85", raw[:7] + raw, "E_FORMAT"),
        ("unknown top tag", raw + bytes.fromhex("8701FF"), "E_FORMAT"),
        ("wrong AID", _replace(raw, "F04655454C0101", "F04655454C0102"), "E_FORMAT"),
        ("wrong label", _replace(raw, "4655454C43415244", "4655454C43415245"), "E_FORMAT"),
        ("CID 40", _replace(raw, "9F270180", "9F270140"), "E_FORMAT"),
        ("non-BCD PAN", _replace(raw, "5A088100", "5A088A00"), "E_FORMAT"),
        ("expiry 13th month", _replace(raw, "5F2403291231", "5F2403291331"), "E_FORMAT"),
        ("IAD fmt 02", _replace(raw, "9F100C01", "9F100C02"), "E_VERSION"),
    ]


@pytest.mark.parametrize(("name", "raw", "code"), _mutations(), ids=lambda v: str(v)[:20])
def test_parse_rejects(name: str, raw: bytes, code: str) -> None:
    with pytest.raises(VfcFormatError) as err:
        Token.parse(raw)
    assert err.value.code == code, name


def _rebuild(children_62: list[bytes], inner_64: list[bytes] | None = None) -> bytes:
    """A token whose 62 template holds the given encoded children (to test missing/extra/order)."""
    from cardcore import tlv

    raw = make_token().encode()
    top = tlv.decode_all(raw)
    body = b"".join(children_62)
    if inner_64 is not None:
        inner = b"".join(inner_64)
        body += tlv.encode_length(len(inner)).join([b"\x64", inner])
    return top[0].encode() + top[1].encode() + b"\x62" + tlv.encode_length(len(body)) + body


def test_parse_rejects_missing_extra_duplicate_and_reordered_tags() -> None:
    pan = bytes.fromhex("5A088100000000000017")
    exp = bytes.fromhex("5F2403291231")
    atc = bytes.fromhex("9F36020005")
    inner = [
        bytes.fromhex("9F260811223344556677 88".replace(" ", "")),
        bytes.fromhex("9F270180"),
        bytes.fromhex("9F100C") + make_iad().encode(),
        bytes.fromhex("9F3704") + UN,
    ]
    cases = {
        "missing ATC": _rebuild([pan, exp], inner),
        "missing 9F37": _rebuild([pan, exp, atc], inner[:3]),
        "missing 64": _rebuild([pan, exp, atc]),
        "extra 9F02": _rebuild([pan, exp, atc, bytes.fromhex("9F0206000000000100")], inner),
        "duplicate ATC": _rebuild([pan, exp, atc, atc], inner),
        "reordered": _rebuild([exp, pan, atc], inner),
        "long ATC": _rebuild([pan, exp, bytes.fromhex("9F3603000005")], inner),
    }
    assert Token.parse(_rebuild([pan, exp, atc], inner)).atc == 5  # the rebuild itself is valid
    for name, raw in cases.items():
        with pytest.raises(VfcFormatError) as err:
            Token.parse(raw)
        assert err.value.code == "E_FORMAT", name


@pytest.mark.parametrize("text", ["hQVD UFYw", "hQVDUFYw!!", "é", "hQVDUFY"])
def test_qr_text_must_be_strict_base64(text: str) -> None:
    with pytest.raises(VfcFormatError) as err:
        vfc.from_qr_text(text)
    assert err.value.code == "E_FORMAT"


def test_token_construction_checks_fields() -> None:
    good = make_token()
    for change in (
        {"card_number": "81000000000000"},
        {"atc": 0x10000},
        {"cryptogram": b"\x00" * 7},
        {"un": b"\x00" * 5},
        {"cid": 0x40},
        {"expiry": date(1999, 1, 1)},
    ):
        with pytest.raises(ValueError):
            Token(**{**good.__dict__, **change})  # type: ignore[arg-type]


# Cryptogram ------------------------------------------------------------------------------------


def test_cryptogram_formula() -> None:
    iad = make_iad()
    data = (
        vfc.AID
        + bytes.fromhex("8100000000000017")
        + bytes.fromhex("291231")
        + bytes.fromhex("0005")
        + UN
        + iad.encode()
    )
    want = hmac.new(luk(), data, hashlib.sha256).digest()[:8]
    assert make_token().cryptogram == want
    ctx = CONTEXT.encode()
    assert (
        make_token(context=ctx).cryptogram
        == hmac.new(luk(), data + ctx, hashlib.sha256).digest()[:8]
    )


def test_verify_cryptogram_binds_key_and_nfc_context() -> None:
    token = make_token(context=CONTEXT.encode())
    assert vfc.verify_cryptogram(luk(), token, CONTEXT.encode())
    assert not vfc.verify_cryptogram(luk(), token)
    other = vfc.NfcContext(amount_limit=50_000, station="ST-0001", pump=4).encode()
    assert not vfc.verify_cryptogram(luk(), token, other)
    assert not vfc.verify_cryptogram(
        vfc.luk(vfc.card_key(IMK, CARD_ID, 1), 8), token, CONTEXT.encode()
    )


tokens = st.builds(
    lambda pan, expiry, atc, un, kv, idx, t_gen, ttl, synced, bucket, off, skew: vfc.make_token(
        luk(),
        pan,
        expiry,
        atc,
        un,
        Iad(kv, idx, t_gen, ttl, synced, bucket, off, skew),
    ),
    st.text("0123456789", min_size=16, max_size=16),
    st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    st.integers(0, 0xFFFF),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(1, 255),
    st.booleans(),
    st.integers(0, 7),
    st.booleans(),
    st.integers(-0x8000, 0x7FFF),
)


@settings(max_examples=300)
@given(tokens, st.data())
def test_tokens_survive_qr_and_any_single_byte_change_is_rejected(
    token: Token, data: st.DataObject
) -> None:
    text = vfc.to_qr_text(token)
    decoded = vfc.from_qr_text(text)
    assert decoded == token and vfc.verify_cryptogram(luk(), decoded)
    raw = bytearray(token.encode())
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        changed = Token.parse(bytes(raw))
    except VfcFormatError:
        return
    assert not vfc.verify_cryptogram(luk(), changed)


# NFC context -----------------------------------------------------------------------------------


def test_get_token_data_round_trip_and_strictness() -> None:
    data = vfc.get_token_data(UN, CONTEXT)
    assert data.hex().upper() == ("9F3704A1B2C3D49F0206000000050000DF010753542D30303031DF020103")
    assert vfc.parse_get_token_data(data) == (UN, CONTEXT)
    bad = [
        data[:-1],
        data[7:] + data[:7],  # UN last
        data.replace(bytes.fromhex("DF020103"), bytes.fromhex("DF020100")),  # pump 0
        data.replace(bytes.fromhex("9F0206000000050000"), bytes.fromhex("9F02060000000500A0")),
        data.replace(bytes.fromhex("DF0107"), bytes.fromhex("DF0100")),
    ]
    for raw in bad:
        with pytest.raises(VfcFormatError):
            vfc.parse_get_token_data(raw)


# Numeric code ----------------------------------------------------------------------------------


def hotp_sha256(key: bytes, counter: int) -> str:
    """RFC 4226 dynamic truncation over HMAC-SHA256, written out."""
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    return f"{(int.from_bytes(mac[offset : offset + 4], 'big') & 0x7FFF_FFFF) % 10**6:06d}"


def test_numeric_code_layout() -> None:
    step = vfc.time_step(1_795_000_000)
    code = vfc.numeric_code("12345678", luk(), step, 261)
    assert len(code) == 19 and code.startswith("8112345678")
    assert code[10:12] == f"{step % 100:02d}" and code[12] == "1"
    assert code[13:] == hotp_sha256(luk(), step << 8 | 261 & 0xFF)
    parsed = vfc.parse_numeric_code(code)
    assert parsed == vfc.NumericCode("12345678", step % 100, 1, code[13:])
    assert parsed.encode() == code
    assert base64.b32decode(base64.b32encode(luk())) == luk()


@pytest.mark.parametrize(
    "bad", ["", "81123456780123456", "7112345678012345678", "81123456780123456x8", "８" * 19]
)
def test_numeric_code_parse_is_strict(bad: str) -> None:
    with pytest.raises(VfcFormatError):
        vfc.parse_numeric_code(bad)


@given(st.integers(100, 10**8), st.integers(-49, 49))
def test_recover_step_within_49_steps(server_step: int, delta: int) -> None:
    phone_step = server_step + delta
    assert vfc.recover_step(phone_step % 100, server_step) == phone_step


def test_recover_step_wraps_at_50() -> None:
    assert vfc.recover_step(50, 1000) == 950  # 50 steps either way: read as behind
    with pytest.raises(ValueError):
        vfc.recover_step(100, 1000)


def test_atc_candidates() -> None:
    assert vfc.atc_candidates(3, 95, 130) == [103, 113, 123]
    assert vfc.atc_candidates(0, 0, 25) == [0, 10, 20]
