"""BCD helpers and the profile's fixed-layout records, checked against the spec's sizes and
example values (ASN 01000114400000000001, issuer 10FFFFFFFFFFFFFF, terminal 440101000001)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardcore import bcd, layout, records
from cardcore.errors import DecodeError
from cardcore.records import (
    NO_LIMIT,
    Bill,
    Cardholder,
    EtGeneralInfo,
    LockRecord,
    PsamKeyInfo,
    PsamSerial,
    PublicAppData,
    Restrictions,
    TxLogEntry,
)

ASN = bytes.fromhex("01000114400000000001")
CARD_NUMBER = "1000114400000000001"
ISSUER = bytes.fromhex("10FFFFFFFFFFFFFF")
TERM = bytes.fromhex("440101000001")
DT = bytes.fromhex("20261122093000")

# --- BCD ---------------------------------------------------------------------------------------


def test_to_and_from_bcd() -> None:
    assert bcd.to_bcd("20261122") == bytes.fromhex("20261122")
    assert bcd.from_bcd(bytes.fromhex("0123456789")) == "0123456789"


@pytest.mark.parametrize("digits", ["1", "123", "12a4", "12 4", "１２"])
def test_to_bcd_refuses_non_digits_and_odd_lengths(digits: str) -> None:
    with pytest.raises(ValueError):
        bcd.to_bcd(digits)


def test_from_bcd_names_the_bad_byte() -> None:
    with pytest.raises(DecodeError) as info:
        bcd.from_bcd(bytes.fromhex("12345A78"), "ASN")
    assert (info.value.field, info.value.offset) == ("ASN", 2)


def test_dates() -> None:
    assert bcd.bcd_date(date(2026, 11, 22)) == bytes.fromhex("20261122")
    assert bcd.parse_bcd_date(bytes.fromhex("20240229")) == date(2024, 2, 29)
    assert bcd.bcd_dt(datetime(2026, 11, 22, 9, 30, 0)) == DT
    assert bcd.parse_bcd_dt(DT) == datetime(2026, 11, 22, 9, 30, 0)


@pytest.mark.parametrize("hex_", ["20261301", "20230229", "20260100", "2026112A"])
def test_bad_dates(hex_: str) -> None:
    with pytest.raises(DecodeError) as info:
        bcd.parse_bcd_date(bytes.fromhex(hex_))
    assert info.value.field == "date"


@pytest.mark.parametrize("hex_", ["20261122240000", "20261122096000", "20261122095960"])
def test_bad_times(hex_: str) -> None:
    with pytest.raises(DecodeError) as info:
        bcd.parse_bcd_dt(bytes.fromhex(hex_))
    assert info.value.field == "dt"


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_dt_round_trip(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert bcd.parse_bcd_dt(bcd.bcd_dt(moment)) == moment
    assert bcd.parse_bcd_date(bcd.bcd_date(moment.date())) == moment.date()


@pytest.mark.parametrize(
    ("pin", "hex_"),
    [("999999", "999999"), ("12345", "12345F"), ("12", "12"), ("123456789012", "123456789012")],
)
def test_encode_pin(pin: str, hex_: str) -> None:
    assert bcd.encode_pin(pin) == bytes.fromhex(hex_)
    assert bcd.decode_pin(bytes.fromhex(hex_)) == pin


@pytest.mark.parametrize("pin", ["", "1", "1234567890123", "12a4", "12 34", "-1234", "１２３４"])
def test_invalid_pins_are_refused(pin: str) -> None:
    with pytest.raises(ValueError):
        bcd.encode_pin(pin)


@pytest.mark.parametrize(
    "hex_",
    [
        "",
        "FF",  # no digits
        "1F",  # one digit
        "12FF",  # two pad nibbles
        "F123",  # pad in front
        "1A23",  # not a digit
        "12F4",  # pad in the middle
        "1234567890123F",  # 13 digits
    ],
)
def test_decode_pin_of_bad_blocks_is_none(hex_: str) -> None:
    assert bcd.decode_pin(bytes.fromhex(hex_)) is None


@given(st.text(alphabet="0123456789", min_size=2, max_size=12))
def test_pin_round_trip(pin: str) -> None:
    assert bcd.decode_pin(bcd.encode_pin(pin)) == pin


def test_card_number_and_asn() -> None:
    assert bcd.card_number_to_asn(CARD_NUMBER) == ASN
    assert bcd.asn_to_card_number(ASN) == CARD_NUMBER
    for bad in (CARD_NUMBER[:-1], CARD_NUMBER + "1", CARD_NUMBER[:-1] + "x"):
        with pytest.raises(ValueError):
            bcd.card_number_to_asn(bad)


# --- sizes -------------------------------------------------------------------------------------


def test_layout_sizes_match_the_spec() -> None:
    assert layout.EF_SIZES == {0x15: 30, 0x16: 41, 0x1B: 32, 0x1C: 66}
    assert layout.EF18_RECORD_SIZE == 23
    assert layout.LOCK_RECORD_SIZE == 30
    assert layout.PSAM_EF_SIZES == {0x15: 14, 0x16: 6, 0x17: 25}
    assert layout.BILL_SIZE == 128
    assert layout.BILL_TMAC_SPAN == 91


def ef15() -> PublicAppData:
    return PublicAppData(ISSUER, ASN, date(2024, 1, 1), date(2034, 12, 31), layout.STORE_FLAG_ON)


def tx_log() -> TxLogEntry:
    return TxLogEntry(ctc=7, amount=100_000, tx_type=layout.TxType.ED_PURCHASE, term=TERM, dt=DT)


def grey_lock() -> LockRecord:
    return LockRecord(
        status=layout.LockStatus.GREY,
        tx_type=layout.TxType.GREY_LOCK,
        balance=500_000,
        ctc=3,
        term=TERM,
        dt=DT,
        word22=bytes.fromhex("A1B2C3D4"),
        tac=bytes.fromhex("11223344"),
    )


def bill() -> Bill:
    return Bill(
        bill_ttc=0x01020304,
        tx_type=layout.TxType.DEBIT_FOR_UNLOCK,
        dt=DT,
        asn=ASN,
        balance_after=450_000,
        amount=50_000,
        ctc=4,
        tac=bytes.fromhex("AAAAAAAA"),
        gmac=bytes.fromhex("BBBBBBBB"),
        psam_tac=bytes.fromhex("CCCCCCCC"),
        psam_asn=bytes.fromhex("00000000000000000042"),
        term=TERM,
        psam_ttc=9,
        nozzle=2,
        grade=0x0092,
        volume=6_250,
        price=800,
        staff_no=5,
        totaliser=123_456,
        tmac=bytes.fromhex("DDDDDDDD"),
        station=b"STATION 44-01".ljust(32, b"\x00"),
    )


EXAMPLES: list[tuple[Any, int]] = [
    (ef15(), 30),
    (Cardholder(name="张三", id_number="110101199001011234"), 41),
    (EtGeneralInfo(staff_no=3, staff_password=bytes.fromhex("1234")), 32),
    (Restrictions(product=0x0092, max_amount_per_day=1_000_000, plate="京A12345"), 66),
    (tx_log(), 23),
    (grey_lock(), 30),
    (PsamSerial(bytes.fromhex("00000000000000000042")), 14),
    (PsamKeyInfo(0x01, ISSUER, bytes(8), date(2024, 1, 1), date(2034, 12, 31)), 25),
    (bill(), 128),
]


@pytest.mark.parametrize(("record", "size"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_records_round_trip_at_spec_size(record: Any, size: int) -> None:
    raw = record.to_bytes()
    assert len(raw) == size
    assert type(record).from_bytes(raw) == record


@pytest.mark.parametrize(("record", "size"), EXAMPLES, ids=lambda x: type(x).__name__)
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_size_is_a_decode_error(record: Any, size: int, delta: int) -> None:
    raw = record.to_bytes()
    raw = raw[:delta] if delta < 0 else raw + b"\x00"
    with pytest.raises(DecodeError, match=f"is {size} bytes, got {size + delta}") as info:
        type(record).from_bytes(raw)
    assert info.value.offset == 0


# --- field positions ---------------------------------------------------------------------------


def test_ef15_layout() -> None:
    raw = ef15().to_bytes()
    assert raw.hex().upper() == ("10FFFFFFFFFFFFFF11010100011440000000000120240101203412310101")
    assert raw[layout.STORE_FLAG_OFFSET] == layout.STORE_FLAG_ON
    assert ef15().asn8 == bytes.fromhex("0114400000000001")
    assert ef15().store_enabled
    assert not PublicAppData(ISSUER, ASN, date(2024, 1, 1), date(2034, 12, 31)).store_enabled


def test_ef15_bad_date_names_the_field() -> None:
    raw = bytearray(ef15().to_bytes())
    raw[22] = 0x13  # start month 13
    with pytest.raises(DecodeError) as info:
        PublicAppData.from_bytes(bytes(raw))
    assert (info.value.field, info.value.offset) == ("EF15.start", 20)
    raw = bytearray(ef15().to_bytes())
    raw[27] = 0x3A
    with pytest.raises(DecodeError) as info:
        PublicAppData.from_bytes(bytes(raw))
    assert (info.value.field, info.value.offset) == ("EF15.expiry", 24)


def test_ef16_layout() -> None:
    raw = Cardholder(layout.CardType.STAFF, 1, "张三", "110101199001011234", 2).to_bytes()
    assert raw[:2] == b"\x04\x01"
    assert raw[2:22] == "张三".encode("gbk").ljust(20, b"\x00")
    assert raw[22:40] == b"110101199001011234"
    assert raw[40] == 2


def test_ef16_name_too_long_is_refused() -> None:
    with pytest.raises(ValueError):
        Cardholder(name="张" * 11).to_bytes()


def test_ef1b_layout() -> None:
    raw = EtGeneralInfo(0x01, 3, bytes.fromhex("1234"), 0, 1, 0x11).to_bytes()
    assert raw.hex().upper() == "01031234000111" + "FF" * 25


def test_ef1c_no_limits_are_all_ff() -> None:
    raw = Restrictions().to_bytes()
    assert raw[:43] == b"\xff" * 43
    assert raw[43:50] == b"\xff" * 7
    assert raw[50:] == bytes(16)
    limits = Restrictions(0x0092, 0x01, bytes(40), 500, 3, 1_000_000, "A").to_bytes()
    assert limits[:3] == bytes.fromhex("009201")
    assert limits[43:50] == bytes.fromhex("01F403000F4240")
    assert limits[50:51] == b"A"


def test_ef18_record_layout() -> None:
    raw = TxLogEntry(7, 100_000, 0x05, TERM, DT, overdraft_limit=0x010203).to_bytes()
    assert raw.hex().upper() == "0007010203000186A00544010100000120261122093000"


def test_lock_record_layout() -> None:
    raw = grey_lock().to_bytes()
    assert raw.hex().upper() == ("0191010007A120000344010100000120261122093000A1B2C3D411223344")
    assert grey_lock().amount == 0xA1B2C3D4


def test_never_locked_is_all_zero() -> None:
    assert LockRecord.never_locked().to_bytes() == bytes(30)
    assert LockRecord.from_bytes(bytes(30)) == LockRecord.never_locked()


def test_psam_records_layout() -> None:
    serial = PsamSerial(bytes.fromhex("00000000000000000042"), 2, 6, 1, 0).to_bytes()
    assert serial.hex().upper() == "0000000000000000004202060100"
    info = PsamKeyInfo(1, ISSUER, bytes(8), date(2024, 1, 1), date(2034, 12, 31)).to_bytes()
    assert info.hex().upper() == "0110FFFFFFFFFFFFFF" + "00" * 8 + "2024010120341231"


def test_bill_layout() -> None:
    b = bill()
    raw = b.to_bytes()
    assert len(b.body()) == layout.BILL_TMAC_SPAN == 91
    assert raw[:91] == b.body()
    assert raw[0:4] == bytes.fromhex("01020304")
    assert raw[4] == 0x93
    assert raw[5:12] == DT
    assert raw[12:22] == ASN
    assert raw[22:26] == (450_000).to_bytes(4, "big")
    assert raw[26:29] == (50_000).to_bytes(3, "big")
    assert raw[29:31] == b"\x00\x04"
    assert (raw[31:35], raw[35:39], raw[39:43]) == (b"\xaa" * 4, b"\xbb" * 4, b"\xcc" * 4)
    assert raw[43:53] == bytes.fromhex("00000000000000000042")
    assert raw[53:59] == TERM
    assert raw[59:63] == b"\x00\x00\x00\x09"
    assert raw[63:68] == bytes((0, 0, 0, layout.KEY_INDEX, 2))
    assert raw[68:70] == b"\x00\x92"
    assert raw[70:73] == (6_250).to_bytes(3, "big")
    assert raw[73:75] == (800).to_bytes(2, "big")
    assert raw[75] == 5
    assert raw[76:80] == (123_456).to_bytes(4, "big")
    assert raw[80:91] == bytes(11)
    assert raw[91:95] == b"\xdd" * 4
    assert raw[95:127] == b.station
    assert raw[127] == records.xor_check(raw[:127])


def test_bill_check_byte_makes_the_whole_bill_xor_to_zero() -> None:
    assert records.xor_check(bill().to_bytes()) == 0
    assert records.xor_check(b"") == 0
    assert records.xor_check(bytes.fromhex("0F F0 33")) == 0xCC


@pytest.mark.parametrize("position", [0, 90, 91, 126, 127])
def test_bill_bad_xor_is_a_decode_error(position: int) -> None:
    raw = bytearray(bill().to_bytes())
    raw[position] ^= 0x01
    with pytest.raises(DecodeError) as info:
        Bill.from_bytes(bytes(raw))
    assert (info.value.field, info.value.offset) == ("bill.check", 127)


# --- round-trip properties ---------------------------------------------------------------------

dates = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))
u8, u16, u24, u32 = (st.integers(0, (1 << bits) - 1) for bits in (8, 16, 24, 32))


def fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


def limit(bits: int) -> st.SearchStrategy[int]:
    return st.just(NO_LIMIT) | st.integers(0, (1 << bits) - 2)


def padded_text(alphabet: str, size: int, encoding: str) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=size).filter(
        lambda s: len(s.encode(encoding)) <= size
    )


GBK_TEXT = "ABCXYZ0123456789 -京沪粤张三李四油站"

record_strategies: dict[str, st.SearchStrategy[Any]] = {
    "EF15": st.builds(PublicAppData, fixed(8), fixed(10), dates, dates, u8, u8, u8, u8),
    "EF16": st.builds(
        Cardholder,
        u8,
        u8,
        padded_text(GBK_TEXT, 20, "gbk"),
        padded_text("0123456789X", 18, "ascii"),
        u8,
    ),
    "EF1B": st.builds(EtGeneralInfo, u8, u8, fixed(2), u8, u8, u8),
    "EF1C": st.builds(
        Restrictions,
        limit(16),
        u8,
        fixed(40),
        limit(16),
        limit(8),
        limit(32),
        padded_text(GBK_TEXT, 16, "gbk"),
    ),
    "EF18": st.builds(TxLogEntry, u16, u32, u8, fixed(6), fixed(7), u24),
    "lock": st.builds(LockRecord, u8, u8, u32, u16, fixed(6), fixed(7), fixed(4), fixed(4), u8),
    "PSAM EF15": st.builds(PsamSerial, fixed(10), u8, u8, u8, u8),
    "PSAM EF17": st.builds(PsamKeyInfo, u8, fixed(8), fixed(8), dates, dates),
    "bill": st.builds(
        Bill,
        u32,
        u8,
        fixed(7),
        fixed(10),
        u32,
        u24,
        u16,
        fixed(4),
        fixed(4),
        fixed(4),
        fixed(10),
        fixed(6),
        u32,
        u8,
        u8,
        u8,
        u8,
        u8,
        u16,
        u24,
        u16,
        u8,
        u32,
        fixed(4),
        fixed(32),
    ),
}


@pytest.mark.parametrize("name", list(record_strategies))
@given(data=st.data())
def test_generated_records_round_trip(name: str, data: st.DataObject) -> None:
    record = data.draw(record_strategies[name])
    raw = record.to_bytes()
    assert type(record).from_bytes(raw) == record
    assert type(record).from_bytes(raw).to_bytes() == raw
