"""Virtual fleet cards: key derivation, the payment token, its cryptogram and the numeric code.

The phone (terminal_sim.phone), its HCE applet (card_profiles.hce_applet) and the host's
validation all build on this module, so the token has exactly one encoder and one strict parser.
Pure: no I/O and no clock reads; every time is an integer number of Unix seconds passed in.

Strict parsing means a token has exactly one encoding: tags, lengths, order and the fixed values
(AID, label, CID) are checked and the parsed token must re-encode to the input bytes. Together with
the cryptogram, which covers every variable field except itself, any single changed byte is
rejected (see `verify_cryptogram`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

import pyotp
from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.KDF import SP800_108_Counter

from cardcore import tlv
from cardcore.errors import DecodeError, FuelsimError

AID = bytes.fromhex("F04655454C0101")
APP_LABEL = b"FUELCARD"
PAYLOAD_FORMAT = b"CPV01"
IAD_FMT = 0x01
CID_ARQC = 0x80

DEFAULT_TTL_S = 60
LUK_TTL_S = 86_400
LUK_BUDGET = 20
REPLENISH_USES_LEFT = 2
REPLENISH_TIME_LEFT_S = 3_600
WALL_OFF_THRESHOLD_S = 30
STEP_S = 30
NUMERIC_PREFIX = "81"
NUMERIC_LENGTH = 19

# Upper bounds (seconds since the last sync) of sync-age buckets 0..6; bucket 7 is older or never.
SYNC_AGE_BUCKETS_S = (60, 300, 900, 3_600, 21_600, 86_400, 604_800)

TAG_PAYLOAD_FORMAT = 0x85
TAG_APP_TEMPLATE = 0x61
TAG_AID = 0x4F
TAG_APP_LABEL = 0x50
TAG_COMMON_DATA = 0x62
TAG_CARD_NUMBER = 0x5A
TAG_EXPIRY = 0x5F24
TAG_ATC = 0x9F36
TAG_TRANSPARENT = 0x64
TAG_CRYPTOGRAM = 0x9F26
TAG_CID = 0x9F27
TAG_IAD = 0x9F10
TAG_UN = 0x9F37
TAG_AMOUNT_LIMIT = 0x9F02
TAG_STATION = 0xDF01
TAG_PUMP = 0xDF02

CARD_NUMBER_DIGITS = 16
CRYPTOGRAM_LEN = 8
UN_LEN = 4
IAD_LEN = 12
MAX_STATION_LEN = 16

E_FORMAT = "E_FORMAT"
E_VERSION = "E_VERSION"


class VfcFormatError(FuelsimError, ValueError):
    """Token, IAD, request or numeric code that does not parse; `code`: E_FORMAT or E_VERSION."""

    title = "malformed virtual-card data"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


def _fmt(message: str) -> VfcFormatError:
    return VfcFormatError(E_FORMAT, message)


# --- keys (spec §1) -----------------------------------------------------------------------------


def _hmac_sha256(secret: bytes, data: bytes) -> bytes:
    return HMAC.new(secret, data, SHA256).digest()


def _kdf(master: bytes, label: bytes, context: str) -> bytes:
    key = SP800_108_Counter(master, 32, _hmac_sha256, label=label, context=context.encode())
    assert isinstance(key, bytes)  # one key requested, so one bytes object comes back
    return key


def card_key(imk: bytes, card_id: str, kv: int) -> bytes:
    """K_card = KDF(IMK, label "VFC-CARD", context "card_id:kv")."""
    if not card_id or "\x00" in card_id:
        raise ValueError("card_id must be non-empty text without NUL")
    return _kdf(imk, b"VFC-CARD", f"{card_id}:{kv}")


def luk(card_key: bytes, index: int) -> bytes:
    """LUK_i = KDF(K_card, label "VFC-LUK", context str(i))."""
    if not 0 <= index <= 0xFFFF:
        raise ValueError("a LUK index is 0..65535 (two bytes in the IAD)")
    return _kdf(card_key, b"VFC-LUK", str(index))


# --- issuer application data --------------------------------------------------------------------


def sync_age_bucket(age_s: float | None) -> int:
    """The 3-bit bucket of the time since the last clock sync; None (never synced) is 7."""
    if age_s is None:
        return 7
    return next((i for i, bound in enumerate(SYNC_AGE_BUCKETS_S) if age_s < bound), 7)


def clamp_skew(skew_s: float) -> int:
    """Wall − trusted seconds, rounded and clamped to the IAD's signed 16-bit field."""
    return max(-0x8000, min(0x7FFF, round(skew_s)))


@dataclass(frozen=True)
class Iad:
    """The 12-byte issuer application data: fmt ‖ kv ‖ LUK index ‖ t_gen ‖ ttl ‖ flags ‖ skew."""

    kv: int
    luk_index: int
    t_gen: int
    ttl: int = DEFAULT_TTL_S
    synced: bool = True
    sync_age_bucket: int = 0
    wall_off: bool = False
    skew_s: int = 0
    fmt: int = IAD_FMT

    def __post_init__(self) -> None:
        checks = {
            "fmt": 0 <= self.fmt <= 0xFF,
            "kv": 0 <= self.kv <= 0xFF,
            "luk_index": 0 <= self.luk_index <= 0xFFFF,
            "t_gen": 0 <= self.t_gen <= 0xFFFF_FFFF,
            "ttl": 1 <= self.ttl <= 0xFF,
            "sync_age_bucket": 0 <= self.sync_age_bucket <= 7,
            "skew_s": -0x8000 <= self.skew_s <= 0x7FFF,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"IAD field out of range: {', '.join(bad)}")

    @property
    def clock_flags(self) -> int:
        return int(self.synced) | self.sync_age_bucket << 1 | int(self.wall_off) << 4

    @property
    def expires_at(self) -> int:
        return self.t_gen + self.ttl

    def encode(self) -> bytes:
        return (
            bytes((self.fmt, self.kv))
            + self.luk_index.to_bytes(2, "big")
            + self.t_gen.to_bytes(4, "big")
            + bytes((self.ttl, self.clock_flags))
            + self.skew_s.to_bytes(2, "big", signed=True)
        )

    @classmethod
    def decode(cls, raw: bytes) -> Iad:
        if len(raw) != IAD_LEN:
            raise _fmt(f"IAD is {len(raw)} bytes, expected {IAD_LEN}")
        if raw[0] != IAD_FMT:
            raise VfcFormatError(E_VERSION, f"IAD format {raw[0]:02X}, expected {IAD_FMT:02X}")
        flags = raw[9]
        if flags & 0xE0:
            raise _fmt(f"IAD clock flags {flags:02X} set reserved bits 5-7")
        if raw[8] == 0:
            raise _fmt("IAD ttl is 0")
        return cls(
            fmt=raw[0],
            kv=raw[1],
            luk_index=int.from_bytes(raw[2:4], "big"),
            t_gen=int.from_bytes(raw[4:8], "big"),
            ttl=raw[8],
            synced=bool(flags & 0x01),
            sync_age_bucket=flags >> 1 & 0x07,
            wall_off=bool(flags & 0x10),
            skew_s=int.from_bytes(raw[10:12], "big", signed=True),
        )


# --- the NFC context (GET TOKEN data) -----------------------------------------------------------


@dataclass(frozen=True)
class NfcContext:
    """What the terminal binds a tap to: amount limit (fen), station id (ASCII), pump number."""

    amount_limit: int
    station: str
    pump: int

    def __post_init__(self) -> None:
        if not 0 <= self.amount_limit <= 999_999_999_999:
            raise ValueError("amount limit must fit n12 (fen)")
        raw = self.station.encode("ascii", "replace")
        if not 1 <= len(raw) <= MAX_STATION_LEN or not all(0x20 < b < 0x7F for b in raw):
            raise ValueError(f"station is 1..{MAX_STATION_LEN} printable ASCII characters")
        if not 1 <= self.pump <= 0xFF:
            raise ValueError("pump is 1..255")

    def encode(self) -> bytes:
        """9F02 ‖ DF01 ‖ DF02 as TLV: the GET TOKEN data after the UN and the cryptogram suffix."""
        return tlv.encode(
            [
                tlv.build(TAG_AMOUNT_LIMIT, bytes.fromhex(f"{self.amount_limit:012d}")),
                tlv.build(TAG_STATION, self.station.encode("ascii")),
                tlv.build(TAG_PUMP, bytes((self.pump,))),
            ]
        )


def get_token_data(un: bytes, context: NfcContext) -> bytes:
    """The GET TOKEN command data: 9F37 UN ‖ the NFC context."""
    if len(un) != UN_LEN:
        raise ValueError(f"UN is {UN_LEN} bytes")
    return tlv.build(TAG_UN, un).encode() + context.encode()


def parse_get_token_data(data: bytes) -> tuple[bytes, NfcContext]:
    """Strictly parse GET TOKEN data into (UN, context); raises VfcFormatError(E_FORMAT)."""
    objs = _decode(data)
    tags = [o.tag for o in objs]
    if tags != [TAG_UN, TAG_AMOUNT_LIMIT, TAG_STATION, TAG_PUMP]:
        raise _fmt("GET TOKEN data must be 9F37, 9F02, DF01, DF02 in that order")
    un, amount, station, pump = (o.value for o in objs)
    if len(un) != UN_LEN or len(amount) != 6 or len(pump) != 1:
        raise _fmt("GET TOKEN field of the wrong length")
    if not amount.hex().isdigit():
        raise _fmt("amount limit is not BCD")
    try:
        context = NfcContext(int(amount.hex()), station.decode("ascii"), pump[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fmt(str(exc)) from None
    return un, context


# --- the token (spec §2) ------------------------------------------------------------------------


def _expiry_bytes(expiry: date) -> bytes:
    return bytes.fromhex(expiry.strftime("%y%m%d"))


@dataclass(frozen=True)
class Token:
    """One payment token; `encode()` gives the QR/NFC bytes, `parse()` reads them strictly."""

    card_number: str
    expiry: date
    atc: int
    cryptogram: bytes
    cid: int
    iad: Iad
    un: bytes

    def __post_init__(self) -> None:
        if len(self.card_number) != CARD_NUMBER_DIGITS or not self.card_number.isdigit():
            raise ValueError(f"card number is {CARD_NUMBER_DIGITS} decimal digits")
        if not 2000 <= self.expiry.year <= 2099:
            raise ValueError("expiry year must be 2000..2099 (YY on the wire)")
        if not 0 <= self.atc <= 0xFFFF:
            raise ValueError("ATC is 0..65535")
        if len(self.cryptogram) != CRYPTOGRAM_LEN or len(self.un) != UN_LEN:
            raise ValueError(f"cryptogram is {CRYPTOGRAM_LEN} bytes and UN {UN_LEN} bytes")
        if self.cid != CID_ARQC:
            raise ValueError(f"CID is {CID_ARQC:02X}")

    def encode(self) -> bytes:
        b = tlv.build
        return tlv.encode(
            [
                b(TAG_PAYLOAD_FORMAT, PAYLOAD_FORMAT),
                b(TAG_APP_TEMPLATE, [b(TAG_AID, AID), b(TAG_APP_LABEL, APP_LABEL)]),
                b(
                    TAG_COMMON_DATA,
                    [
                        b(TAG_CARD_NUMBER, bytes.fromhex(self.card_number)),
                        b(TAG_EXPIRY, _expiry_bytes(self.expiry)),
                        b(TAG_ATC, self.atc.to_bytes(2, "big")),
                        b(
                            TAG_TRANSPARENT,
                            [
                                b(TAG_CRYPTOGRAM, self.cryptogram),
                                b(TAG_CID, bytes((self.cid,))),
                                b(TAG_IAD, self.iad.encode()),
                                b(TAG_UN, self.un),
                            ],
                        ),
                    ],
                ),
            ]
        )

    def __bytes__(self) -> bytes:
        return self.encode()

    @classmethod
    def parse(cls, data: bytes) -> Token:
        return _parse_token(bytes(data))


def _decode(data: bytes) -> list[tlv.Tlv]:
    try:
        return tlv.decode_all(data, unique=True)
    except DecodeError as exc:
        raise _fmt(str(exc)) from None


def _children(
    objs: list[tlv.Tlv] | tuple[tlv.Tlv, ...], want: tuple[int, ...], where: str
) -> dict[int, tlv.Tlv]:
    found = {o.tag: o for o in objs}
    missing = [tlv.tag_hex(t) for t in want if t not in found]
    extra = [tlv.tag_hex(t) for t in found if t not in want]
    if missing:
        raise _fmt(f"{where}: missing mandatory tag(s) {', '.join(missing)}")
    if extra:
        raise _fmt(f"{where}: unexpected tag(s) {', '.join(extra)}")
    return found


def _fixed(obj: tlv.Tlv, length: int) -> bytes:
    if len(obj.value) != length:
        raise _fmt(f"{obj.tag_hex} is {len(obj.value)} bytes, expected {length}")
    return obj.value


def _parse_token(data: bytes) -> Token:
    top = _decode(data)
    if not top or top[0].tag != TAG_PAYLOAD_FORMAT:
        raise _fmt("a token starts with the payload format indicator 85")
    if top[0].value != PAYLOAD_FORMAT:
        raise VfcFormatError(E_VERSION, f"payload format {top[0].value!r}, expected 'CPV01'")
    objs = _children(top, (TAG_PAYLOAD_FORMAT, TAG_APP_TEMPLATE, TAG_COMMON_DATA), "token")
    app = _children(objs[TAG_APP_TEMPLATE].children or (), (TAG_AID, TAG_APP_LABEL), "61")
    if app[TAG_AID].value != AID:
        raise _fmt(f"AID {app[TAG_AID].value.hex().upper()} is not {AID.hex().upper()}")
    if app[TAG_APP_LABEL].value != APP_LABEL:
        raise _fmt("application label is not FUELCARD")
    common = _children(
        objs[TAG_COMMON_DATA].children or (),
        (TAG_CARD_NUMBER, TAG_EXPIRY, TAG_ATC, TAG_TRANSPARENT),
        "62",
    )
    inner = _children(
        common[TAG_TRANSPARENT].children or (), (TAG_CRYPTOGRAM, TAG_CID, TAG_IAD, TAG_UN), "64"
    )
    pan = _fixed(common[TAG_CARD_NUMBER], CARD_NUMBER_DIGITS // 2).hex()
    if not pan.isdigit():
        raise _fmt("card number is not BCD")
    expiry_raw = _fixed(common[TAG_EXPIRY], 3).hex()
    try:
        if not expiry_raw.isdigit():
            raise ValueError("not BCD")
        expiry = date(2000 + int(expiry_raw[:2]), int(expiry_raw[2:4]), int(expiry_raw[4:]))
    except ValueError as exc:
        raise _fmt(f"expiry {expiry_raw}: {exc}") from None
    cid = _fixed(inner[TAG_CID], 1)[0]
    if cid != CID_ARQC:
        raise _fmt(f"CID {cid:02X}, expected {CID_ARQC:02X}")
    token = Token(
        card_number=pan,
        expiry=expiry,
        atc=int.from_bytes(_fixed(common[TAG_ATC], 2), "big"),
        cryptogram=_fixed(inner[TAG_CRYPTOGRAM], CRYPTOGRAM_LEN),
        cid=cid,
        iad=Iad.decode(_fixed(inner[TAG_IAD], IAD_LEN)),
        un=_fixed(inner[TAG_UN], UN_LEN),
    )
    if token.encode() != data:
        raise _fmt("tags are not in the canonical order")
    return token


# --- the cryptogram -----------------------------------------------------------------------------


def cryptogram_input(
    card_number: str, expiry: date, atc: int, un: bytes, iad: Iad, nfc_context: bytes = b""
) -> bytes:
    """AID ‖ card number ‖ expiry ‖ ATC ‖ UN ‖ IAD [‖ NFC context], as on the wire."""
    return (
        AID
        + bytes.fromhex(card_number)
        + _expiry_bytes(expiry)
        + atc.to_bytes(2, "big")
        + un
        + iad.encode()
        + nfc_context
    )


def cryptogram(
    luk: bytes,
    card_number: str,
    expiry: date,
    atc: int,
    un: bytes,
    iad: Iad,
    nfc_context: bytes = b"",
) -> bytes:
    """HMAC-SHA256(LUK, cryptogram input)[:8]."""
    data = cryptogram_input(card_number, expiry, atc, un, iad, nfc_context)
    return hmac.new(luk, data, hashlib.sha256).digest()[:CRYPTOGRAM_LEN]


def make_token(
    luk: bytes,
    card_number: str,
    expiry: date,
    atc: int,
    un: bytes,
    iad: Iad,
    nfc_context: bytes = b"",
) -> Token:
    mac = cryptogram(luk, card_number, expiry, atc, un, iad, nfc_context)
    return Token(card_number, expiry, atc, mac, CID_ARQC, iad, un)


def verify_cryptogram(luk: bytes, token: Token, nfc_context: bytes = b"") -> bool:
    """Constant-time check of the token's cryptogram under `luk`."""
    want = cryptogram(
        luk, token.card_number, token.expiry, token.atc, token.un, token.iad, nfc_context
    )
    return hmac.compare_digest(want, token.cryptogram)


def to_qr_text(token: Token) -> str:
    return base64.b64encode(token.encode()).decode("ascii")


def from_qr_text(text: str) -> Token:
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _fmt(f"QR text is not base64: {exc}") from None
    return Token.parse(raw)


# --- the numeric payment code -------------------------------------------------------------------


def time_step(trusted_unix: int) -> int:
    return trusted_unix // STEP_S


def numeric_otp(luk: bytes, step: int, atc: int) -> str:
    """HOTP(base32(LUK), 6 digits, SHA-256) at counter (step << 8) | (ATC & 0xFF)."""
    if step < 0 or atc < 0:
        raise ValueError("step and ATC are non-negative")
    secret = base64.b32encode(luk).decode("ascii")
    return pyotp.HOTP(secret, digits=6, digest=hashlib.sha256).at(step << 8 | atc & 0xFF)


@dataclass(frozen=True)
class NumericCode:
    alias: str
    step_mod_100: int
    atc_mod_10: int
    otp: str

    def encode(self) -> str:
        return f"{NUMERIC_PREFIX}{self.alias}{self.step_mod_100:02d}{self.atc_mod_10}{self.otp}"


def numeric_code(alias: str, luk: bytes, step: int, atc: int) -> str:
    """`81` ‖ alias (8) ‖ step mod 100 (2) ‖ ATC mod 10 (1) ‖ OTP (6): 19 digits."""
    if len(alias) != 8 or not alias.isdigit():
        raise ValueError("alias is 8 decimal digits")
    return NumericCode(alias, step % 100, atc % 10, numeric_otp(luk, step, atc)).encode()


def parse_numeric_code(code: str) -> NumericCode:
    text = code.replace(" ", "")
    if len(text) != NUMERIC_LENGTH or not text.isascii() or not text.isdigit():
        raise _fmt(f"a numeric code is {NUMERIC_LENGTH} digits")
    if not text.startswith(NUMERIC_PREFIX):
        raise _fmt(f"a numeric code starts with {NUMERIC_PREFIX}")
    return NumericCode(text[2:10], int(text[10:12]), int(text[12]), text[13:])


def recover_step(step_mod_100: int, server_step: int) -> int:
    """The step ≡ step_mod_100 (mod 100) nearest the server's: exact within ±49 steps
    (a difference of 50 is read as the phone being behind)."""
    if not 0 <= step_mod_100 <= 99:
        raise ValueError("step_mod_100 is 0..99")
    delta = (step_mod_100 - server_step + 50) % 100 - 50
    return server_step + delta


def atc_candidates(atc_mod_10: int, low: int, high: int) -> list[int]:
    """ATC values in [low, high] whose last digit is `atc_mod_10` (the host tries these)."""
    start = low + (atc_mod_10 - low) % 10
    return list(range(start, min(high, 0xFFFF) + 1, 10))
