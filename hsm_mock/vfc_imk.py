"""The virtual fleet card issuer master key (IMK_VFC): the DEV value, its KCV, and the derivations
the HSM performs with it (virtual-cards spec §1).

IMK_VFC is a 32-byte HMAC-SHA256 key with a key version `kv` (0-255). It is held LMK-wrapped in
the `KeyStore` next to the fuel-card master keys of the same key set, under its own label
`IMK_VFC/<kv>`, so several versions can coexist while cards move from one to the next. The HSM
derives card keys and limited-use keys (LUKs) from it; the IMK itself never leaves.

The DEV value below is public (documented in docs/virtual-cards.md): simulation only.
"""

from __future__ import annotations

from Crypto.Cipher import AES

from cardcore import vfc
from hsm_mock.errors import HsmInputError

IMK_SIZE = 32
DEV_IMK_VFC = bytes.fromhex("6BF8726AEFE3B27EB207417A30EE524DDC8789D0A61F0C1344D3B1D0DC931AE9")
DEV_VFC_KV = 1


def imk_label(kv: int) -> str:
    """The key-store label of IMK_VFC version `kv` (the LMK wrap binds it)."""
    check_kv(kv)
    return f"IMK_VFC/{kv}"


def check_kv(kv: int) -> int:
    if isinstance(kv, bool) or not isinstance(kv, int) or not 0 <= kv <= 0xFF:
        raise HsmInputError(f"kv must be an integer 0-255, got {kv!r}")
    return kv


def check_imk(imk: bytes) -> bytes:
    if not isinstance(imk, bytes | bytearray) or len(imk) != IMK_SIZE:
        raise HsmInputError(f"IMK_VFC must be {IMK_SIZE} bytes")
    return bytes(imk)


def imk_kcv(imk: bytes) -> bytes:
    """KCV of a 32-byte key: AES-256 of a zero block, first 3 bytes (the usual AES KCV)."""
    return bytes(AES.new(check_imk(imk), AES.MODE_ECB).encrypt(bytes(16)))[:3]


def derive_card_key(imk: bytes, card_id: str, kv: int) -> bytes:
    """K_card for one virtual card (computed inside the HSM boundary)."""
    if not isinstance(card_id, str) or not card_id or "\x00" in card_id:
        raise HsmInputError("card_id must be non-empty text without NUL")
    return vfc.card_key(imk, card_id, check_kv(kv))


def derive_luk(card_key: bytes, index: int) -> bytes:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 0xFFFF:
        raise HsmInputError(f"LUK index must be 0-65535, got {index!r}")
    return vfc.luk(card_key, index)
