"""BCD helpers: dates, times, the 10-byte ASN, compressed PINs, and 19-digit card numbers."""

from __future__ import annotations

from datetime import date, datetime

from cardcore.errors import DecodeError


def to_bcd(digits: str) -> bytes:
    if len(digits) % 2 or not digits.isdigit():
        raise ValueError(f"BCD needs an even number of decimal digits, got {digits!r}")
    return bytes.fromhex(digits)


def from_bcd(raw: bytes, field: str = "BCD") -> str:
    text = raw.hex()
    if text.isdigit():
        return text
    for i, ch in enumerate(text):
        if not ch.isdigit():
            raise DecodeError(f"nibble {ch!r} is not a decimal digit", field=field, offset=i // 2)
    return text


def bcd_date(d: date) -> bytes:
    return to_bcd(f"{d.year:04d}{d.month:02d}{d.day:02d}")


def parse_bcd_date(raw: bytes, field: str = "date") -> date:
    text = from_bcd(raw, field)
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise DecodeError(str(exc), field=field, offset=0) from None


def bcd_dt(moment: datetime) -> bytes:
    """`dt` = BCD YYYYMMDD ‖ hhmmss (7 bytes), in the terminal's local wall time."""
    return to_bcd(moment.strftime("%Y%m%d%H%M%S"))


def parse_bcd_dt(raw: bytes, field: str = "dt") -> datetime:
    text = from_bcd(raw, field)
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise DecodeError(str(exc), field=field, offset=0) from None


def encode_pin(pin: str) -> bytes:
    """Compressed BCD, F-padded, 2–12 digits: '999999' → 99 99 99, '12345' → 12 34 5F."""
    if not pin.isdigit() or not 2 <= len(pin) <= 12:
        raise ValueError("a PIN is 2 to 12 decimal digits")
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


def decode_pin(raw: bytes) -> str | None:
    """The digits of a compressed PIN block, or None when it is not one."""
    text = raw.hex().upper()
    digits = text.rstrip("F")
    if not 2 <= len(digits) <= 12 or len(text) - len(digits) > 1 or not digits.isdigit():
        return None
    return digits


def card_number_to_asn(card_number: str) -> bytes:
    """ASN = BCD of '0' ‖ 19-digit card number."""
    if len(card_number) != 19 or not card_number.isdigit():
        raise ValueError("a card number is 19 digits")
    return to_bcd("0" + card_number)


def asn_to_card_number(asn: bytes) -> str:
    return from_bcd(asn, "ASN")[1:]
