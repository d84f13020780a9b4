"""The cryptography of spec §3, as a handful of pure, spec-named functions.

Everything is 2-key 3DES (EDE) or single DES from pycryptodome. Cipher objects are cached by key:
building a DES3 key schedule costs about five times an 8-byte encryption, and a fuelling reuses
the same card keys many times. ECB objects are stateless, so sharing them is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from Crypto.Cipher import DES, DES3

BLOCK = 8
_CACHE_SIZE = 4096
_ciphers: dict[bytes, Any] = {}


def is_single_des(key16: bytes) -> bool:
    """2-key EDE with K1 = K2, ignoring parity bits, is single DES (pycryptodome refuses it)."""
    return bytes(b & 0xFE for b in key16[:8]) == bytes(b & 0xFE for b in key16[8:])


def _new_cipher(key: bytes) -> Any:
    if len(key) == 8:
        return DES.new(key, DES.MODE_ECB)
    if len(key) == 16:
        if is_single_des(key):
            return DES.new(key[:8], DES.MODE_ECB)
        return DES3.new(key, DES3.MODE_ECB)
    raise ValueError(f"DES keys are 8 or 16 bytes, got {len(key)}")


def _ecb(key: bytes) -> Any:
    cipher = _ciphers.get(key)
    if cipher is None:
        if len(_ciphers) >= _CACHE_SIZE:
            _ciphers.clear()
        cipher = _ciphers[key] = _new_cipher(key)
    return cipher


def cached_keys() -> frozenset[bytes]:
    """Keys whose cipher objects are cached (the benchmark uses this to measure fairly)."""
    return frozenset(_ciphers)


def forget_keys(keys: Iterable[bytes]) -> None:
    for key in keys:
        _ciphers.pop(key, None)


def des_encrypt(key8: bytes, block: bytes) -> bytes:
    """Single DES, one or more blocks, ECB."""
    if len(key8) != 8:
        raise ValueError("single DES takes an 8-byte key")
    result: bytes = _ecb(key8).encrypt(block)
    return result


def tdes_encrypt(key16: bytes, block: bytes) -> bytes:
    """2-key 3DES (EDE), one or more blocks, ECB."""
    if len(key16) != 16:
        raise ValueError("2-key 3DES takes a 16-byte key")
    result: bytes = _ecb(key16).encrypt(block)
    return result


def pad80(data: bytes) -> bytes:
    """ISO 9797-1 method 2: always append 80, then zeros to a whole block."""
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _cbc_last_block(cipher: Any, data: bytes, iv: bytes) -> bytes:
    chain = iv
    for i in range(0, len(data), BLOCK):
        chain = cipher.encrypt(_xor(chain, data[i : i + BLOCK]))
    return chain


def mac_session(key8: bytes, data: bytes) -> bytes:
    """Session MAC (MAC1/MAC2/MAC3/TAC/GTAC/GMAC): DES-CBC, IV 0, left 4 bytes."""
    if len(key8) != 8:
        raise ValueError("the session MAC takes an 8-byte key")
    return _cbc_last_block(_ecb(key8), pad80(data), bytes(BLOCK))[:4]


def mac_retail(key16: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """Secure-messaging MAC: ISO 9797-1 algorithm 3 (DES-CBC with K1, final 3DES), left 4 bytes."""
    if len(key16) != 16 or len(iv) != BLOCK:
        raise ValueError("the retail MAC takes a 16-byte key and an 8-byte IV")
    padded = pad80(data)
    chain = _cbc_last_block(_ecb(key16[:8]), padded[:-BLOCK], iv)
    last = _xor(chain, padded[-BLOCK:])
    return tdes_encrypt(key16, last)[:4]


def diversify(master: bytes, factor8: bytes) -> bytes:
    """Div(MK, F) = 3DES(MK, F) ‖ 3DES(MK, F ⊕ FF…FF)."""
    if len(factor8) != 8:
        raise ValueError("a diversification factor is 8 bytes")
    inverted = bytes(b ^ 0xFF for b in factor8)
    return tdes_encrypt(master, factor8 + inverted)


def purchase_key(mpk: bytes, asn8: bytes, issuer8: bytes | None) -> bytes:
    """DPK = Div(Div(MPK, issuer8), ASN8) [SC for the order]; no issuer factor: Div(MPK, ASN8)."""
    if issuer8 is None:
        return diversify(mpk, asn8)
    return diversify(diversify(mpk, issuer8), asn8)


def tac_key(dtk: bytes) -> bytes:
    """DTK' = DTK[0:8] ⊕ DTK[8:16]."""
    return _xor(dtk[:8], dtk[8:])


def fold_key(key16: bytes) -> bytes:
    """K[0:8] ⊕ K[8:16], the single-DES key of TAC and RELOAD PIN MACs."""
    return _xor(key16[:8], key16[8:])


def kcv(key: bytes) -> bytes:
    """Key check value: first 3 bytes of the key encrypting 8 zero bytes."""
    return _ecb(key).encrypt(bytes(BLOCK))[:3]  # type: ignore[no-any-return]


def session_key_load(dlk: bytes, rand: bytes, online_ctc: bytes) -> bytes:
    """SESLK = 3DES(DLK, rand ‖ online CTC ‖ 8000)."""
    return tdes_encrypt(dlk, rand + online_ctc + b"\x80\x00")


def session_key_online_unlock(dugk: bytes, rand: bytes, online_ctc: bytes) -> bytes:
    """SESUK = 3DES(DUGK, rand ‖ online CTC ‖ 8000)."""
    return tdes_encrypt(dugk, rand + online_ctc + b"\x80\x00")


def session_key_purchase(dpk: bytes, rand: bytes, offline_ctc: bytes, ttc: bytes) -> bytes:
    """SESPK = 3DES(DPK, rand ‖ offline CTC ‖ TTC[2:4])."""
    return tdes_encrypt(dpk, rand + offline_ctc + ttc[2:4])


def session_key_grey_lock(
    dpk: bytes, rand: bytes, offline_ctc: bytes, ttc: bytes, psam_rand: bytes
) -> bytes:
    """SESGK = DES(SESPK-style key, psamRand ‖ 80000000)."""
    return des_encrypt(
        session_key_purchase(dpk, rand, offline_ctc, ttc), psam_rand + b"\x80\x00\x00\x00"
    )
