"""Status words as an IntEnum with descriptions; unknown values fall back to the raw int."""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    description: str

    def __new__(cls, value: int, description: str) -> SW:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0x9000, "success"
    # ISO 7816-4
    WRONG_LENGTH = 0x6700, "wrong length (Lc or Le)"
    SECURITY_NOT_SATISFIED = 0x6982, "security status not satisfied (VERIFY PIN first)"
    PIN_BLOCKED = 0x6983, "authentication method blocked (PIN blocked)"
    REFERENCE_DATA_UNUSABLE = 0x6984, "reference data not usable"
    CONDITIONS_NOT_SATISFIED = 0x6985, "conditions of use not satisfied"
    SM_MAC_WRONG = 0x6988, "secure-messaging MAC wrong"
    WRONG_DATA = 0x6A80, "incorrect parameters in the data field"
    FUNCTION_NOT_SUPPORTED_BLOCKED = 0x6A81, "application temporarily blocked"
    FILE_NOT_FOUND = 0x6A82, "file or application not found"
    RECORD_NOT_FOUND = 0x6A83, "record not found"
    WRONG_P1P2 = 0x6A86, "incorrect P1-P2"
    REFERENCED_DATA_NOT_FOUND = 0x6A88, "referenced data not found"
    WRONG_OFFSET = 0x6B00, "wrong parameters P1-P2 (offset outside the file)"
    INS_NOT_SUPPORTED = 0x6D00, "instruction not supported"
    CLA_NOT_SUPPORTED = 0x6E00, "class not supported"
    UNKNOWN = 0x6F00, "unexpected error, no precise diagnosis"
    # PBOC purse / fuel-card specific
    MAC_WRONG = 0x9302, "MAC invalid"
    APP_PERMANENTLY_BLOCKED = 0x9303, "application permanently blocked"
    INSUFFICIENT_BALANCE = 0x9401, "insufficient balance"
    COUNTER_AT_MAXIMUM = 0x9402, "transaction counter at maximum"
    KEY_INDEX_UNKNOWN = 0x9403, "key index not supported"
    PROOF_NOT_FOUND = 0x9406, "no such transaction to prove"
    GREY_LOCKED = 0x9408, "purse is grey-locked"

    @classmethod
    def describe(cls, sw: int) -> str:
        """A description for any status word, including families like 61xx, 6Cxx and 63Cx."""
        known = cls._value2member_map_.get(sw)
        if isinstance(known, SW):
            return known.description
        hi, lo = sw >> 8, sw & 0xFF
        if hi == 0x61:
            return f"{lo} more bytes available (GET RESPONSE)"
        if hi == 0x6C:
            return f"wrong Le: {lo} bytes available"
        if hi == 0x63 and lo & 0xF0 == 0xC0:
            return f"wrong PIN, {lo & 0x0F} tries left"
        return "unknown status word"


def sw_name(sw: int) -> str:
    """`9000 OK`-style label for traces."""
    known = SW._value2member_map_.get(sw)
    if isinstance(known, SW):
        return known.name
    hi = sw >> 8
    if hi == 0x63 and sw & 0xF0 == 0xC0:
        return "PIN_WRONG"
    return {0x61: "MORE_DATA", 0x6C: "WRONG_LE"}.get(hi, "SW")


def pin_tries_left(tries: int) -> int:
    """63Cx: wrong PIN with x tries left."""
    return 0x63C0 | (tries & 0x0F)


def wrong_le(available: int) -> int:
    """6Cxx: resend with Le = xx."""
    return 0x6C00 | (available & 0xFF)
