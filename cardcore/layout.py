"""The profile's layouts and simulator conventions ([SC]) in one table.

Everything the spec fixes as a byte value, size or offset, and every [SC] choice, lives here so a
vendor profile can replace them in one place. Other modules import names, never repeat numbers.
"""

from __future__ import annotations

from enum import IntEnum

# Applications (spec §1)
PSE_NAME = b"1PAY.SYS.DDF01"
ET_AID = bytes.fromhex("A000000003") + b"SINOPEC"
LOYALTY_AID = bytes.fromhex("A000000003") + b"LOYALTY"
PSAM_AID = bytes.fromhex("A000000003") + b"SINOPEC1"
ET_PURSE = 0x01  # P2 of purse commands on the ET application (ED)
LOYALTY_PURSE = 0x02  # P2 on the loyalty application (EP)
ET_APP_ID = 0x01  # "ET id" byte of the grey-lock status record

# Answers to reset [SC]: no interface bytes beyond TB1/TC1, historical bytes name the device.
ATR_USER_CARD = bytes.fromhex("3B680000") + b"FUELCARD"
ATR_PSAM = bytes.fromhex("3B680000") + b"FUELPSAM"

# User-card files (SFI → size); EF18 is the cyclic transaction log.
SFI_EF15, SFI_EF16, SFI_EF1B, SFI_EF1C, SFI_EF18 = 0x15, 0x16, 0x1B, 0x1C, 0x18
SFI_PSE_DIR = 0x01
EF_SIZES = {SFI_EF15: 30, SFI_EF16: 41, SFI_EF1B: 32, SFI_EF1C: 66}
EF18_RECORDS = 10
EF18_RECORD_SIZE = 23
STORE_FLAG_OFFSET = 29  # [SC] the spare byte of EF15
STORE_FLAG_ON, STORE_FLAG_OFF = 0x01, 0x00

# PSAM files
SFI_PSAM_EF15, SFI_PSAM_EF16, SFI_PSAM_EF17 = 0x15, 0x16, 0x17
PSAM_EF_SIZES = {SFI_PSAM_EF15: 14, SFI_PSAM_EF16: 6, SFI_PSAM_EF17: 25}
PSAM_GREY_SESSIONS = 16  # recent grey-lock sessions kept, persistent
PSAM_DES_CRYPT_MAC = 0x01  # [SC] P1 bit 0: MAC operation
PSAM_DES_CRYPT_MORE = 0x02  # [SC] P1 bit 1: more blocks follow in the next command

# Keys and algorithms
KEY_INDEX = 0x01
KEY_VERSION = 0x01
ALG_3DES = 0x00
TMAC_KEY_USAGE, TMAC_KEY_VERSION = 0x08, 0x01  # INIT FOR DESCRYPT P1/P2

# PIN
PIN_TRIES = 3
DEFAULT_PIN = "999999"
DEFAULT_PIN_FLAG_DEFAULT, DEFAULT_PIN_FLAG_CHANGED = 0x00, 0x01

# Counters
CTC_MAX = 0xFFFF
TTC_MAX = 0xFFFFFFFF


class TxType(IntEnum):
    """Transaction type bytes (spec §3.4)."""

    ED_LOAD = 0x01
    EP_LOAD = 0x02
    UNLOAD = 0x03
    ED_PURCHASE = 0x05
    EP_PURCHASE = 0x06
    GREY_LOCK = 0x91
    DEBIT_FOR_UNLOCK = 0x93
    ONLINE_UNLOCK = 0x95


class LockStatus(IntEnum):
    """Byte 0 of the grey-lock status record."""

    FREE = 0x00
    GREY = 0x01
    TAC_UNREAD = 0x10


class CardType(IntEnum):
    """EF16 byte 0."""

    USER = 0x01
    MANAGEMENT = 0x02
    STAFF = 0x04
    PUMP_TEST = 0x05
    SERVICE = 0x06


class AppBlock(IntEnum):
    """Application block state [SC]: SELECT answers 6A81 (temporary) or 9303 (permanent)."""

    ACTIVE = 0x00
    TEMPORARY = 0x01
    PERMANENT = 0x02


LOCK_RECORD_SIZE = 30
BILL_SIZE = 128
BILL_TMAC_SPAN = 91  # the TMAC covers bytes 0–90
