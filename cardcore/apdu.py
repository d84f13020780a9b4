"""Command and response APDUs (ISO 7816-3/-4): cases 1–4, short and extended lengths.

Parsing is strict: a byte string that is not exactly one well-formed APDU raises DecodeError
naming the field and offset. `ne` is the expected response length: None when there is no Le
field, 256 (short) or 65536 (extended) when Le is zero, as ISO 7816-4 defines it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardcore.errors import DecodeError
from cardcore.sw import SW


@dataclass(frozen=True, slots=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        if (self.cla | self.ins | self.p1 | self.p2) & ~0xFF:
            raise ValueError("CLA, INS, P1 and P2 are one byte each")
        limit = 65535 if self.extended else 255
        if len(self.data) > limit:
            raise ValueError(f"data of {len(self.data)} bytes does not fit Lc (max {limit})")
        if self.ne is not None and not 1 <= self.ne <= (65536 if self.extended else 256):
            raise ValueError(f"Ne {self.ne} out of range")

    @property
    def case(self) -> int:
        """ISO case: 1 no data no Le, 2 Le only, 3 data only, 4 both."""
        return 1 + (self.ne is not None) + 2 * bool(self.data)

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandApdu:
        n = len(raw)
        if n < 4:
            raise DecodeError(f"need 4 header bytes, got {n}", field="header", offset=n)
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        if n == 5:
            return cls(cla, ins, p1, p2, ne=raw[4] or 256)
        if raw[4] != 0:
            lc = raw[4]
            if n == 5 + lc:
                return cls(cla, ins, p1, p2, raw[5:])
            if n == 6 + lc:
                return cls(cla, ins, p1, p2, raw[5:-1], ne=raw[-1] or 256)
            raise DecodeError(f"Lc={lc} but {n - 5} bytes follow the header", field="Lc", offset=4)
        # Extended length: 00 then two bytes.
        if n == 7:
            return cls(cla, ins, p1, p2, ne=int.from_bytes(raw[5:7], "big") or 65536, extended=True)
        if n < 7:
            raise DecodeError("truncated extended length", field="Lc", offset=5)
        lc = int.from_bytes(raw[5:7], "big")
        if lc == 0:
            raise DecodeError("extended Lc of zero", field="Lc", offset=5)
        if n == 7 + lc:
            return cls(cla, ins, p1, p2, raw[7:], extended=True)
        if n == 9 + lc:
            ne = int.from_bytes(raw[-2:], "big") or 65536
            return cls(cla, ins, p1, p2, raw[7:-2], ne=ne, extended=True)
        raise DecodeError(f"extended Lc={lc} but {n - 7} bytes follow", field="Lc", offset=5)

    def __bytes__(self) -> bytes:
        if not self.extended:
            head = bytes((self.cla, self.ins, self.p1, self.p2))
            lc = bytes((len(self.data),)) + self.data if self.data else b""
            return head + lc + (b"" if self.ne is None else bytes((self.ne & 0xFF,)))
        out = self.header
        if self.data:
            out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
        if self.ne is not None:
            le = (self.ne % 65536).to_bytes(2, "big")
            out += le if self.data else b"\x00" + le
        return out

    def hex(self) -> str:
        return bytes(self).hex().upper()


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise DecodeError(f"need 2 status bytes, got {len(raw)}", field="SW", offset=0)
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    @classmethod
    def status(cls, sw: int) -> ResponseApdu:
        return cls(b"", sw)

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def __bytes__(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def hex(self) -> str:
        return bytes(self).hex().upper()
