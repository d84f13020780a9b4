"""Typed records of the profile: card files, log entries, the grey-lock record and the bill.

Each record is a frozen dataclass with `from_bytes` (strict: exact size, DecodeError otherwise)
and `to_bytes`. Terminal ids, ASNs and `dt` stamps stay raw bytes; amounts and counters are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import reduce

from cardcore import layout
from cardcore.bcd import bcd_date, parse_bcd_date
from cardcore.errors import DecodeError


class _Reader:
    """Walks a fixed-layout record, naming each field in errors."""

    def __init__(self, raw: bytes, record: str, size: int) -> None:
        if len(raw) != size:
            raise DecodeError(f"{record} is {size} bytes, got {len(raw)}", field=record, offset=0)
        self.raw, self.record, self.pos = raw, record, 0

    def take(self, n: int) -> bytes:
        chunk = self.raw[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def date(self, name: str) -> date:
        start = self.pos
        try:
            return parse_bcd_date(self.take(4), name)
        except DecodeError as exc:
            raise DecodeError(str(exc), field=f"{self.record}.{name}", offset=start) from None


def _text(raw: bytes, encoding: str) -> str:
    return raw.rstrip(b"\x00").rstrip(b"\xff").decode(encoding, errors="replace")


def _padded(text: str, size: int, encoding: str) -> bytes:
    raw = text.encode(encoding)
    if len(raw) > size:
        raise ValueError(f"{text!r} does not fit {size} bytes")
    return raw.ljust(size, b"\x00")


@dataclass(frozen=True, slots=True)
class PublicAppData:
    """EF15, 30 bytes."""

    issuer_id: bytes
    asn: bytes
    start: date
    expiry: date
    store_flag: int = layout.STORE_FLAG_OFF
    app_type: int = 0x11
    app_version: int = 0x01
    instruction_set_version: int = 0x01

    @property
    def asn8(self) -> bytes:
        return self.asn[2:]

    @property
    def store_enabled(self) -> bool:
        return self.store_flag == layout.STORE_FLAG_ON

    def to_bytes(self) -> bytes:
        return (
            self.issuer_id
            + bytes((self.app_type, self.app_version))
            + self.asn
            + bcd_date(self.start)
            + bcd_date(self.expiry)
            + bytes((self.instruction_set_version, self.store_flag))
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicAppData:
        r = _Reader(raw, "EF15", layout.EF_SIZES[layout.SFI_EF15])
        issuer, app_type, app_version, asn = r.take(8), r.int(1), r.int(1), r.take(10)
        start, expiry = r.date("start"), r.date("expiry")
        isv, flag = r.int(1), r.int(1)
        return cls(issuer, asn, start, expiry, flag, app_type, app_version, isv)


@dataclass(frozen=True, slots=True)
class Cardholder:
    """EF16, 41 bytes. The name is GBK, the ID number ASCII."""

    card_type: int = layout.CardType.USER
    staff_flag: int = 0
    name: str = ""
    id_number: str = ""
    id_type: int = 0

    def to_bytes(self) -> bytes:
        return (
            bytes((self.card_type, self.staff_flag))
            + _padded(self.name, 20, "gbk")
            + _padded(self.id_number, 18, "ascii")
            + bytes((self.id_type,))
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Cardholder:
        r = _Reader(raw, "EF16", layout.EF_SIZES[layout.SFI_EF16])
        card_type, staff_flag = r.int(1), r.int(1)
        name, id_number = _text(r.take(20), "gbk"), _text(r.take(18), "ascii")
        return cls(card_type, staff_flag, name, id_number, r.int(1))


@dataclass(frozen=True, slots=True)
class EtGeneralInfo:
    """EF1B, 32 bytes."""

    default_pin_flag: int = layout.DEFAULT_PIN_FLAG_DEFAULT
    staff_no: int = 0
    staff_password: bytes = b"\x00\x00"
    debit_unit: int = 0
    discount_card: int = 0
    sub_type: int = 0x01

    def to_bytes(self) -> bytes:
        head = bytes((self.default_pin_flag, self.staff_no)) + self.staff_password
        return head + bytes((self.debit_unit, self.discount_card, self.sub_type)) + b"\xff" * 25

    @classmethod
    def from_bytes(cls, raw: bytes) -> EtGeneralInfo:
        r = _Reader(raw, "EF1B", layout.EF_SIZES[layout.SFI_EF1B])
        flag, staff_no, password = r.int(1), r.int(1), r.take(2)
        return cls(flag, staff_no, password, r.int(1), r.int(1), r.int(1))


NO_LIMIT = -1  # a restriction field filled with FF


@dataclass(frozen=True, slots=True)
class Restrictions:
    """EF1C, 66 bytes; all-FF fields mean "no restriction". The terminal enforces them."""

    product: int = NO_LIMIT  # grade code, FFFF = any
    region_mode: int = 0xFF
    regions: bytes = b"\xff" * 40
    max_litres_per_fill: int = NO_LIMIT
    max_fills_per_day: int = NO_LIMIT
    max_amount_per_day: int = NO_LIMIT
    plate: str = ""

    def to_bytes(self) -> bytes:
        def num(value: int, size: int) -> bytes:
            return b"\xff" * size if value == NO_LIMIT else value.to_bytes(size, "big")

        return (
            num(self.product, 2)
            + bytes((self.region_mode,))
            + self.regions
            + num(self.max_litres_per_fill, 2)
            + num(self.max_fills_per_day, 1)
            + num(self.max_amount_per_day, 4)
            + _padded(self.plate, 16, "gbk")
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Restrictions:
        r = _Reader(raw, "EF1C", layout.EF_SIZES[layout.SFI_EF1C])

        def num(size: int) -> int:
            chunk = r.take(size)
            return NO_LIMIT if chunk == b"\xff" * size else int.from_bytes(chunk, "big")

        product, region_mode, regions = num(2), r.int(1), r.take(40)
        litres, fills, amount = num(2), num(1), num(4)
        return cls(product, region_mode, regions, litres, fills, amount, _text(r.take(16), "gbk"))


@dataclass(frozen=True, slots=True)
class TxLogEntry:
    """One EF18 record, 23 bytes."""

    ctc: int
    amount: int
    tx_type: int
    term: bytes
    dt: bytes
    overdraft_limit: int = 0

    def to_bytes(self) -> bytes:
        return (
            self.ctc.to_bytes(2, "big")
            + self.overdraft_limit.to_bytes(3, "big")
            + self.amount.to_bytes(4, "big")
            + bytes((self.tx_type,))
            + self.term
            + self.dt
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> TxLogEntry:
        r = _Reader(raw, "EF18 record", layout.EF18_RECORD_SIZE)
        ctc, overdraft, amount, tx_type = r.int(2), r.int(3), r.int(4), r.int(1)
        return cls(ctc, amount, tx_type, r.take(6), r.take(7), overdraft)


@dataclass(frozen=True, slots=True)
class LockRecord:
    """The 30-byte grey-lock status record of GET LOCK PROOF (spec §1 table).

    `word22` is the amount (status 00 and 10) or the MAC2 of the lock (status 01); `tac` is the
    TAC, MAC3 or GTAC of the same row.
    """

    status: int = layout.LockStatus.FREE
    tx_type: int = 0
    balance: int = 0
    ctc: int = 0
    term: bytes = bytes(6)
    dt: bytes = bytes(7)
    word22: bytes = bytes(4)
    tac: bytes = bytes(4)
    app_id: int = layout.ET_APP_ID

    @property
    def amount(self) -> int:
        return int.from_bytes(self.word22, "big")

    @classmethod
    def never_locked(cls) -> LockRecord:
        return cls(app_id=0)

    def to_bytes(self) -> bytes:
        return (
            bytes((self.status, self.tx_type, self.app_id))
            + self.balance.to_bytes(4, "big")
            + self.ctc.to_bytes(2, "big")
            + self.term
            + self.dt
            + self.word22
            + self.tac
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> LockRecord:
        r = _Reader(raw, "lock record", layout.LOCK_RECORD_SIZE)
        status, tx_type, app_id, balance, ctc = r.int(1), r.int(1), r.int(1), r.int(4), r.int(2)
        term, dt, word22, tac = r.take(6), r.take(7), r.take(4), r.take(4)
        return cls(status, tx_type, balance, ctc, term, dt, word22, tac, app_id)


@dataclass(frozen=True, slots=True)
class PsamSerial:
    """PSAM MF EF15, 14 bytes."""

    serial: bytes
    version: int = 0x01
    key_card_type: int = 0x06
    instruction_set_version: int = 0x01
    fci: int = 0x00

    def to_bytes(self) -> bytes:
        tail = (self.version, self.key_card_type, self.instruction_set_version, self.fci)
        return self.serial + bytes(tail)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PsamSerial:
        r = _Reader(raw, "PSAM EF15", layout.PSAM_EF_SIZES[layout.SFI_PSAM_EF15])
        return cls(r.take(10), r.int(1), r.int(1), r.int(1), r.int(1))


@dataclass(frozen=True, slots=True)
class PsamKeyInfo:
    """PSAM ADF EF17, 25 bytes."""

    key_index: int
    issuer_id: bytes
    acquirer_id: bytes
    start: date
    expiry: date

    def to_bytes(self) -> bytes:
        head = bytes((self.key_index,)) + self.issuer_id + self.acquirer_id
        return head + bcd_date(self.start) + bcd_date(self.expiry)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PsamKeyInfo:
        r = _Reader(raw, "PSAM EF17", layout.PSAM_EF_SIZES[layout.SFI_PSAM_EF17])
        key_index, issuer, acquirer = r.int(1), r.take(8), r.take(8)
        return cls(key_index, issuer, acquirer, r.date("start"), r.date("expiry"))


def xor_check(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


@dataclass(frozen=True, slots=True)
class Bill:
    """The 128-byte dispenser bill of spec §5 (escape bills carry the lock CTC and the GMAC)."""

    bill_ttc: int
    tx_type: int
    dt: bytes
    asn: bytes
    balance_after: int
    amount: int
    ctc: int
    tac: bytes
    gmac: bytes
    psam_tac: bytes
    psam_asn: bytes
    term: bytes
    psam_ttc: int
    debit_source: int = 0
    unit: int = 0
    card_class: int = 0
    key_index: int = layout.KEY_INDEX
    nozzle: int = 0
    grade: int = 0
    volume: int = 0  # 0.01 L
    price: int = 0  # fen per litre
    staff_no: int = 0
    totaliser: int = 0
    tmac: bytes = bytes(4)
    station: bytes = field(default=bytes(32))

    def body(self) -> bytes:
        """Bytes 0–90, the span the PSAM's TMAC covers."""
        return (
            self.bill_ttc.to_bytes(4, "big")
            + bytes((self.tx_type,))
            + self.dt
            + self.asn
            + self.balance_after.to_bytes(4, "big")
            + self.amount.to_bytes(3, "big")
            + self.ctc.to_bytes(2, "big")
            + self.tac
            + self.gmac
            + self.psam_tac
            + self.psam_asn
            + self.term
            + self.psam_ttc.to_bytes(4, "big")
            + bytes((self.debit_source, self.unit, self.card_class, self.key_index, self.nozzle))
            + self.grade.to_bytes(2, "big")
            + self.volume.to_bytes(3, "big")
            + self.price.to_bytes(2, "big")
            + bytes((self.staff_no,))
            + self.totaliser.to_bytes(4, "big")
            + bytes(11)
        )

    def to_bytes(self) -> bytes:
        head = self.body() + self.tmac + self.station
        return head + bytes((xor_check(head),))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Bill:
        r = _Reader(raw, "bill", layout.BILL_SIZE)
        if xor_check(raw[:127]) != raw[127]:
            raise DecodeError("XOR check byte does not match", field="bill.check", offset=127)
        bill_ttc, tx_type, dt, asn = r.int(4), r.int(1), r.take(7), r.take(10)
        balance_after, amount, ctc = r.int(4), r.int(3), r.int(2)
        tac, gmac, psam_tac, psam_asn, term = r.take(4), r.take(4), r.take(4), r.take(10), r.take(6)
        psam_ttc, source, unit, card_class, kidx, nozzle = (
            r.int(4),
            r.int(1),
            r.int(1),
            r.int(1),
            r.int(1),
            r.int(1),
        )
        grade, volume, price, staff, totaliser = r.int(2), r.int(3), r.int(2), r.int(1), r.int(4)
        r.take(11)
        tmac, station = r.take(4), r.take(32)
        return cls(
            bill_ttc,
            tx_type,
            dt,
            asn,
            balance_after,
            amount,
            ctc,
            tac,
            gmac,
            psam_tac,
            psam_asn,
            term,
            psam_ttc,
            source,
            unit,
            card_class,
            kidx,
            nozzle,
            grade,
            volume,
            price,
            staff,
            totaliser,
            tmac,
            station,
        )
