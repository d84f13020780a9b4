"""Typed records of the profile: card files, log entries, the grey-lock record and the bill.

Each record is a frozen dataclass with `from_bytes` (strict: exact size, DecodeError otherwise)
and `to_bytes`; the fixed layouts are `struct` formats. Terminal ids, ASNs and `dt` stamps stay
raw bytes; amounts and counters are ints.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import date
from functools import reduce
from typing import Any

from cardcore import layout
from cardcore.bcd import bcd_date, parse_bcd_date
from cardcore.errors import DecodeError


def _unpack(layout_: struct.Struct, raw: bytes, record: str) -> tuple[Any, ...]:
    if len(raw) != layout_.size:
        raise DecodeError(
            f"{record} is {layout_.size} bytes, got {len(raw)}", field=record, offset=0
        )
    return layout_.unpack(raw)


def _date(raw: bytes, record: str, name: str, offset: int) -> date:
    try:
        return parse_bcd_date(raw, name)
    except DecodeError as exc:
        raise DecodeError(str(exc), field=f"{record}.{name}", offset=offset) from None


def _text(raw: bytes, encoding: str) -> str:
    return raw.rstrip(b"\x00").rstrip(b"\xff").decode(encoding, errors="replace")


def _padded(text: str, size: int, encoding: str) -> bytes:
    raw = text.encode(encoding)
    if len(raw) > size:
        raise ValueError(f"{text!r} does not fit {size} bytes")
    return raw.ljust(size, b"\x00")


EF15 = struct.Struct(">8sBB10s4s4sBB")
EF16 = struct.Struct(">BB20s18sB")
EF1B = struct.Struct(">BB2sBBB25s")
EF1C = struct.Struct(">2sB40s2s1s4s16s")
EF18_RECORD = struct.Struct(">H3sIB6s7s")
LOCK_RECORD = struct.Struct(">BBBIH6s7s4s4s")
PSAM_EF15 = struct.Struct(">10sBBBB")
PSAM_EF17 = struct.Struct(">B8s8s4s4s")


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
        return EF15.pack(
            self.issuer_id,
            self.app_type,
            self.app_version,
            self.asn,
            bcd_date(self.start),
            bcd_date(self.expiry),
            self.instruction_set_version,
            self.store_flag,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicAppData:
        issuer, app_type, version, asn, start, expiry, isv, flag = _unpack(EF15, raw, "EF15")
        return cls(
            issuer,
            asn,
            _date(start, "EF15", "start", 20),
            _date(expiry, "EF15", "expiry", 24),
            flag,
            app_type,
            version,
            isv,
        )


@dataclass(frozen=True, slots=True)
class Cardholder:
    """EF16, 41 bytes. The name is GBK, the ID number ASCII."""

    card_type: int = layout.CardType.USER
    staff_flag: int = 0
    name: str = ""
    id_number: str = ""
    id_type: int = 0

    def to_bytes(self) -> bytes:
        return EF16.pack(
            self.card_type,
            self.staff_flag,
            _padded(self.name, 20, "gbk"),
            _padded(self.id_number, 18, "ascii"),
            self.id_type,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Cardholder:
        card_type, staff_flag, name, id_number, id_type = _unpack(EF16, raw, "EF16")
        return cls(card_type, staff_flag, _text(name, "gbk"), _text(id_number, "ascii"), id_type)


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
        return EF1B.pack(
            self.default_pin_flag,
            self.staff_no,
            self.staff_password,
            self.debit_unit,
            self.discount_card,
            self.sub_type,
            b"\xff" * 25,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> EtGeneralInfo:
        flag, staff_no, password, unit, discount, sub_type, _ = _unpack(EF1B, raw, "EF1B")
        return cls(flag, staff_no, password, unit, discount, sub_type)


NO_LIMIT = -1  # a restriction field filled with FF


def _limit(raw: bytes) -> int:
    return NO_LIMIT if raw == b"\xff" * len(raw) else int.from_bytes(raw, "big")


def _limit_bytes(value: int, size: int) -> bytes:
    return b"\xff" * size if value == NO_LIMIT else value.to_bytes(size, "big")


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
        return EF1C.pack(
            _limit_bytes(self.product, 2),
            self.region_mode,
            self.regions,
            _limit_bytes(self.max_litres_per_fill, 2),
            _limit_bytes(self.max_fills_per_day, 1),
            _limit_bytes(self.max_amount_per_day, 4),
            _padded(self.plate, 16, "gbk"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Restrictions:
        product, mode, regions, litres, fills, amount, plate = _unpack(EF1C, raw, "EF1C")
        return cls(
            _limit(product),
            mode,
            regions,
            _limit(litres),
            _limit(fills),
            _limit(amount),
            _text(plate, "gbk"),
        )


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
        overdraft = self.overdraft_limit.to_bytes(3, "big")
        return EF18_RECORD.pack(self.ctc, overdraft, self.amount, self.tx_type, self.term, self.dt)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TxLogEntry:
        ctc, overdraft, amount, tx_type, term, dt = _unpack(EF18_RECORD, raw, "EF18 record")
        return cls(ctc, amount, tx_type, term, dt, int.from_bytes(overdraft, "big"))


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
        return LOCK_RECORD.pack(
            self.status,
            self.tx_type,
            self.app_id,
            self.balance,
            self.ctc,
            self.term,
            self.dt,
            self.word22,
            self.tac,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> LockRecord:
        status, tx_type, app_id, balance, ctc, term, dt, word22, tac = _unpack(
            LOCK_RECORD, raw, "lock record"
        )
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
        return PSAM_EF15.pack(
            self.serial, self.version, self.key_card_type, self.instruction_set_version, self.fci
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PsamSerial:
        return cls(*_unpack(PSAM_EF15, raw, "PSAM EF15"))


@dataclass(frozen=True, slots=True)
class PsamKeyInfo:
    """PSAM ADF EF17, 25 bytes."""

    key_index: int
    issuer_id: bytes
    acquirer_id: bytes
    start: date
    expiry: date

    def to_bytes(self) -> bytes:
        return PSAM_EF17.pack(
            self.key_index,
            self.issuer_id,
            self.acquirer_id,
            bcd_date(self.start),
            bcd_date(self.expiry),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PsamKeyInfo:
        key_index, issuer, acquirer, start, expiry = _unpack(PSAM_EF17, raw, "PSAM EF17")
        return cls(
            key_index,
            issuer,
            acquirer,
            _date(start, "PSAM EF17", "start", 17),
            _date(expiry, "PSAM EF17", "expiry", 21),
        )


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
        return BILL_BODY.pack(
            self.bill_ttc,
            self.tx_type,
            self.dt,
            self.asn,
            self.balance_after,
            self.amount.to_bytes(3, "big"),
            self.ctc,
            self.tac,
            self.gmac,
            self.psam_tac,
            self.psam_asn,
            self.term,
            self.psam_ttc,
            self.debit_source,
            self.unit,
            self.card_class,
            self.key_index,
            self.nozzle,
            self.grade,
            self.volume.to_bytes(3, "big"),
            self.price,
            self.staff_no,
            self.totaliser,
            bytes(11),
        )

    def to_bytes(self) -> bytes:
        head = self.body() + self.tmac + self.station
        return head + bytes((xor_check(head),))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Bill:
        if len(raw) != layout.BILL_SIZE:
            raise DecodeError(f"bill is 128 bytes, got {len(raw)}", field="bill", offset=0)
        if xor_check(raw[:127]) != raw[127]:
            raise DecodeError("XOR check byte does not match", field="bill.check", offset=127)
        fields: list[Any] = list(BILL_BODY.unpack(raw[: BILL_BODY.size]))[:-1]  # no RFU bytes
        fields[5] = int.from_bytes(fields[5], "big")  # amount (3 bytes)
        fields[19] = int.from_bytes(fields[19], "big")  # volume (3 bytes)
        fields += [raw[91:95], raw[95:127]]  # the TMAC and the station bytes
        return cls(*fields)


BILL_BODY = struct.Struct(">IB7s10sI3sH4s4s4s10s6sIBBBBBH3sHBI11s")


STORE_SALE = struct.Struct(">6sI10sII7s4sHI")


@dataclass(frozen=True, slots=True)
class StoreSale:
    """A store POS sale as the station uploads it [decision: 45 bytes, no PSAM MAC].

    The card's purchase TAC covers amount, type 05, term, PSAM TTC and dt, so the host can prove
    the sale without a TMAC; (term, PSAM TTC) identifies it. `number` is the receipt number.
    """

    term: bytes
    psam_ttc: int
    asn: bytes
    amount: int
    balance_after: int
    dt: bytes
    tac: bytes
    product: int
    number: int = 0

    def to_bytes(self) -> bytes:
        return STORE_SALE.pack(
            self.term,
            self.psam_ttc,
            self.asn,
            self.amount,
            self.balance_after,
            self.dt,
            self.tac,
            self.product,
            self.number,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoreSale:
        return cls(*_unpack(STORE_SALE, raw, "store sale"))
