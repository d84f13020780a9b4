"""MockHsm: the simulator's host/issuer HSM, `cardcore.ports.Hsm` over an LMK-wrapped KeyStore.

It personalises cards and PSAMs and computes or checks the host-side values of spec §3.4. Master
keys stay wrapped in the KeyStore and are opened only for one operation (`KeyStore.use`). The one
export is `personalise_psam`: a PSAM legitimately holds MPK, MTK and MTMAC in its secure memory and
diversifies per card itself, so issuing one hands those master keys to the PSAM being built.

Per-card derived keys (single diversification by ASN8) are cached in a small private LRU, keyed
by key-set generation so re-importing a set never serves stale keys.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cardcore import crypto
from cardcore.keys import CARD_KEY_MASTERS, MASTER_KEY_LABELS, PSAM_KEY_MASTERS, CardKeys, PsamKeys
from cardcore.layout import TxType
from hsm_mock.errors import HsmInputError
from hsm_mock.keystore import KeyStore
from hsm_mock.vfc_imk import DEV_IMK_VFC, DEV_VFC_KV, derive_card_key, derive_luk

if TYPE_CHECKING:
    from cardcore.ports import Hsm

DEFAULT_KEY_SET = "DEV"
_CACHE_SIZE = 1024  # derived card keys (about 110 cards × 9 keys)
_ASN8, _ISSUER8, _TERM, _DT, _RAND = 8, 8, 6, 7, 4
_AMOUNT, _CTC, _TTC, _TYPE = 4, 2, 4, 1


def _field(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise HsmInputError(f"{name} must be {size} bytes")
    return bytes(value)


def _uint(name: str, value: int, size: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise HsmInputError(f"{name} must be an integer that fits {size} byte(s), got {value!r}")
    return value.to_bytes(size, "big")


def _matches(expected: bytes, given: bytes) -> bool:
    """Constant-time comparison; a MAC of the wrong length or type simply does not match."""
    return isinstance(given, bytes | bytearray) and hmac.compare_digest(expected, bytes(given))


class MockHsm:
    """An in-process HSM holding named key sets ("DEV" unless told otherwise)."""

    def __init__(self, keystore: KeyStore | None = None) -> None:
        """`keystore` None = a fresh store (random LMK) with the shipped DEV key set loaded."""
        if keystore is None:
            keystore = KeyStore()
            keystore.import_shipped_key_set("dev")
            keystore.import_vfc_imk(DEFAULT_KEY_SET, DEV_IMK_VFC, DEV_VFC_KV)
        self._store = keystore
        self._cache: OrderedDict[tuple[str, int, bytes, str], bytes] = OrderedDict()
        self._vfc_cache: OrderedDict[tuple[str, int, int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def with_key_set_files(
        cls, paths: Iterable[str | os.PathLike[str]], *, include_dev: bool = True
    ) -> MockHsm:
        """An HSM holding the key sets of these files (plus DEV unless `include_dev` is False)."""
        store = KeyStore()
        if include_dev:
            store.import_shipped_key_set("dev")
            store.import_vfc_imk(DEFAULT_KEY_SET, DEV_IMK_VFC, DEV_VFC_KV)
        for path in paths:
            store.import_key_set_file(path)
        return cls(store)

    def __repr__(self) -> str:
        return f"MockHsm(key_sets={self.key_sets()!r})"

    # Key material ------------------------------------------------------------------------------

    def _card_key(self, key_set: str, asn8: bytes, label: str) -> bytes:
        """Div(master, ASN8) for one card key other than DPK."""
        asn8 = _field("asn8", asn8, _ASN8)
        slot = (key_set, self._store.info(key_set).generation, asn8, label)
        with self._lock:
            cached = self._cache.get(slot)
            if cached is not None:
                self._cache.move_to_end(slot)
                return cached
        key = self._store.use(
            key_set, CARD_KEY_MASTERS[label], lambda master: crypto.diversify(master, asn8)
        )
        with self._lock:
            self._cache[slot] = key
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return key

    def _tac_key(self, key_set: str, asn8: bytes) -> bytes:
        return crypto.tac_key(self._card_key(key_set, asn8, "dtk"))

    def key_sets(self) -> list[str]:
        return self._store.key_set_names()

    def key_check_values(self, key_set: str = DEFAULT_KEY_SET) -> dict[str, bytes]:
        return self._store.kcvs(key_set)

    def personalise_card(
        self, asn8: bytes, issuer8: bytes | None, key_set: str = DEFAULT_KEY_SET
    ) -> CardKeys:
        """Every card key is Div(master, ASN8), except DPK = Div(Div(MPK, issuer8), ASN8).

        issuer8 None gives DPK = Div(MPK, ASN8), the PSAM's one-factor (n = 1) case.
        """
        asn8 = _field("asn8", asn8, _ASN8)
        issuer = None if issuer8 is None else _field("issuer8", issuer8, _ISSUER8)
        keys = {
            label: self._card_key(key_set, asn8, label)
            for label in CARD_KEY_MASTERS
            if label != "dpk"
        }
        keys["dpk"] = self._store.use(
            key_set, "MPK", lambda mpk: crypto.purchase_key(mpk, asn8, issuer)
        )
        return CardKeys(**keys)

    def personalise_psam(self, key_set: str = DEFAULT_KEY_SET) -> PsamKeys:
        """The master keys a PSAM holds (the HSM's one deliberate master-key export)."""
        keys = {
            name: self._store.use(key_set, master, bytes)
            for name, master in PSAM_KEY_MASTERS.items()
        }
        return PsamKeys(**keys)

    # Load (spec §3.3 SESLK, §3.4) --------------------------------------------------------------

    def _seslk(self, key_set: str, asn8: bytes, rand: bytes, online_ctc: int) -> bytes:
        return crypto.session_key_load(
            self._card_key(key_set, asn8, "dlk"),
            _field("rand", rand, _RAND),
            _uint("online_ctc", online_ctc, _CTC),
        )

    def verify_load_mac1(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        old_balance: int,
        amount: int,
        tx_type: int,
        term: bytes,
        mac1: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("old_balance", old_balance, _AMOUNT)
            + _uint("amount", amount, _AMOUNT)
            + _uint("tx_type", tx_type, _TYPE)
            + _field("term", term, _TERM)
        )
        key = self._seslk(key_set, asn8, rand, online_ctc)
        return _matches(crypto.mac_session(key, data), mac1)

    def load_mac2(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        amount: int,
        tx_type: int,
        term: bytes,
        dt: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bytes:
        data = (
            _uint("amount", amount, _AMOUNT)
            + _uint("tx_type", tx_type, _TYPE)
            + _field("term", term, _TERM)
            + _field("dt", dt, _DT)
        )
        return crypto.mac_session(self._seslk(key_set, asn8, rand, online_ctc), data)

    def verify_load_tac(
        self,
        asn8: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        tx_type: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        """`online_ctc` is the card's online CTC before CREDIT FOR LOAD incremented it."""
        data = (
            _uint("new_balance", new_balance, _AMOUNT)
            + _uint("online_ctc", online_ctc, _CTC)
            + _uint("amount", amount, _AMOUNT)
            + _uint("tx_type", tx_type, _TYPE)
            + _field("term", term, _TERM)
            + _field("dt", dt, _DT)
        )
        return _matches(crypto.mac_session(self._tac_key(key_set, asn8), data), tac)

    # Purchase, grey lock and unlock TACs (DTK') -------------------------------------------------

    def verify_purchase_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        tx_type: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        tac: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("amount", amount, _AMOUNT)
            + _uint("tx_type", tx_type, _TYPE)
            + _field("term", term, _TERM)
            + _uint("ttc", ttc, _TTC)
            + _field("dt", dt, _DT)
        )
        return _matches(crypto.mac_session(self._tac_key(key_set, asn8), data), tac)

    def verify_gtac(
        self,
        asn8: bytes,
        *,
        balance: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        gtac: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("balance", balance, _AMOUNT)
            + bytes([TxType.GREY_LOCK])
            + _field("term", term, _TERM)
            + _uint("ttc", ttc, _TTC)
            + _field("dt", dt, _DT)
        )
        return _matches(crypto.mac_session(self._tac_key(key_set, asn8), data), gtac)

    def verify_psam_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        lock_term: bytes,
        lock_ttc: int,
        lock_dt: bytes,
        tac: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("amount", amount, _AMOUNT)
            + bytes([TxType.DEBIT_FOR_UNLOCK])
            + _field("lock_term", lock_term, _TERM)
            + _uint("lock_ttc", lock_ttc, _TTC)
            + _field("lock_dt", lock_dt, _DT)
        )
        return _matches(crypto.mac_session(self._tac_key(key_set, asn8), data), tac)

    def verify_unlock_tac(
        self,
        asn8: bytes,
        *,
        amount: int,
        term: bytes,
        ttc: int,
        dt: bytes,
        tac: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("amount", amount, _AMOUNT)
            + bytes([TxType.DEBIT_FOR_UNLOCK])
            + _field("term", term, _TERM)
            + _uint("ttc", ttc, _TTC)
            + _field("dt", dt, _DT)
        )
        return _matches(crypto.mac_session(self._tac_key(key_set, asn8), data), tac)

    # Online unlock (SESUK) ---------------------------------------------------------------------

    def _sesuk(self, key_set: str, asn8: bytes, rand: bytes, online_ctc: int) -> bytes:
        return crypto.session_key_online_unlock(
            self._card_key(key_set, asn8, "dugk"),
            _field("rand", rand, _RAND),
            _uint("online_ctc", online_ctc, _CTC),
        )

    def verify_online_unlock_mac1(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        data = (
            _uint("balance", balance, _AMOUNT)
            + _uint("offline_ctc", offline_ctc, _CTC)
            + bytes([TxType.ONLINE_UNLOCK])
            + _field("term", term, _TERM)
        )
        key = self._sesuk(key_set, asn8, rand, online_ctc)
        return _matches(crypto.mac_session(key, data), mac1)

    def online_unlock_mac2(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bytes:
        data = (
            _uint("amount", amount, _AMOUNT)
            + bytes([TxType.ONLINE_UNLOCK])
            + _field("term", term, _TERM)
            + _field("dt", dt, _DT)
        )
        return crypto.mac_session(self._sesuk(key_set, asn8, rand, online_ctc), data)

    def verify_online_unlock_mac3(
        self,
        asn8: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance_after: int,
        amount: int,
        term: bytes,
        dt: bytes,
        mac3: bytes,
        key_set: str = DEFAULT_KEY_SET,
    ) -> bool:
        """`online_ctc` is the one of the session (before ONLINE UNLOCK incremented it)."""
        data = (
            _uint("balance_after", balance_after, _AMOUNT)
            + _uint("online_ctc", online_ctc, _CTC)
            + _uint("amount", amount, _AMOUNT)
            + bytes([TxType.ONLINE_UNLOCK])
            + _field("term", term, _TERM)
            + _field("dt", dt, _DT)
        )
        key = self._sesuk(key_set, asn8, rand, online_ctc)
        return _matches(crypto.mac_session(key, data), mac3)

    # Maintenance MACs --------------------------------------------------------------------------

    def secure_messaging_mac(
        self, asn8: bytes, *, command: bytes, challenge: bytes, key_set: str = DEFAULT_KEY_SET
    ) -> bytes:
        """DAMK retail MAC over CLA‖INS‖P1‖P2‖Lc(incl. MAC)‖data, IV from the card challenge.

        A 4-byte challenge gives IV = challenge ‖ 00000000; an 8-byte one is the IV itself.
        """
        if not isinstance(challenge, bytes | bytearray) or len(challenge) not in (4, 8):
            raise HsmInputError("challenge must be 4 or 8 bytes")
        if not isinstance(command, bytes | bytearray) or len(command) < 5:
            raise HsmInputError("command must hold at least CLA INS P1 P2 Lc")
        iv = bytes(challenge).ljust(crypto.BLOCK, b"\x00")
        return crypto.mac_retail(self._card_key(key_set, asn8, "damk"), bytes(command), iv)

    def reload_pin_mac(self, asn8: bytes, *, pin: bytes, key_set: str = DEFAULT_KEY_SET) -> bytes:
        """MAC(DRPK[0:8] ⊕ DRPK[8:16], PIN), PIN as the RELOAD PIN command carries it."""
        if not isinstance(pin, bytes | bytearray) or not pin:
            raise HsmInputError("pin must be non-empty bytes")
        key = crypto.fold_key(self._card_key(key_set, asn8, "drpk"))
        return crypto.mac_session(key, bytes(pin))

    def bill_tmac(self, data: bytes, key_set: str = DEFAULT_KEY_SET) -> bytes:
        """The TMAC a PSAM puts on a bill (bytes 0–90), for checking uploads."""
        if not isinstance(data, bytes | bytearray):
            raise HsmInputError("data must be bytes")
        return self.bill_tmacs([data], key_set)[0]

    def bill_tmacs(self, datas: Sequence[bytes], key_set: str = DEFAULT_KEY_SET) -> list[bytes]:
        """`bill_tmac` of a whole upload batch with MTMAC opened once for all of them."""
        if not all(isinstance(data, bytes | bytearray) for data in datas):
            raise HsmInputError("data must be bytes")
        messages = [bytes(data) for data in datas]
        return self._store.use(
            key_set, "MTMAC", lambda mtmac: [crypto.mac_retail(mtmac, m) for m in messages]
        )

    # Virtual fleet cards (IMK_VFC, virtual-cards spec §1) --------------------------------------

    def vfc_key_version(self, key_set: str = DEFAULT_KEY_SET) -> int:
        """The newest IMK_VFC version held: new cards are issued under it."""
        versions = self._store.vfc_versions(key_set)
        if not versions:
            raise HsmInputError(f"key set {key_set!r} holds no IMK_VFC")
        return versions[-1]

    def vfc_imk_kcv(self, key_set: str = DEFAULT_KEY_SET, kv: int | None = None) -> bytes:
        kv = self.vfc_key_version(key_set) if kv is None else kv
        return self._store.vfc_info(key_set, kv)[0]

    def _vfc_card_key(self, key_set: str, card_id: str, kv: int) -> bytes:
        generation = self._store.vfc_info(key_set, kv)[1]
        slot = (key_set, generation, kv, card_id)
        with self._lock:
            cached = self._vfc_cache.get(slot)
            if cached is not None:
                self._vfc_cache.move_to_end(slot)
                return cached
        key = self._store.use_vfc_imk(key_set, kv, lambda imk: derive_card_key(imk, card_id, kv))
        with self._lock:
            self._vfc_cache[slot] = key
            while len(self._vfc_cache) > _CACHE_SIZE:
                self._vfc_cache.popitem(last=False)
        return key

    def vfc_luk(self, card_id: str, kv: int, index: int, key_set: str = DEFAULT_KEY_SET) -> bytes:
        """LUK_index of a virtual card: handed to the bound phone at provisioning, and used by
        the host to check cryptograms (the HSM's deliberate export of limited-use keys)."""
        return derive_luk(self._vfc_card_key(key_set, card_id, kv), index)


def key_report(hsm: Hsm, key_set: str = DEFAULT_KEY_SET) -> list[tuple[str, str]]:
    """(label, KCV as upper-case hex) per master key, in the spec's table order."""
    kcvs = hsm.key_check_values(key_set)
    order = [label for label in MASTER_KEY_LABELS if label in kcvs]
    order += sorted(label for label in kcvs if label not in MASTER_KEY_LABELS)
    return [(label, kcvs[label].hex().upper()) for label in order]


if TYPE_CHECKING:
    # mypy proves MockHsm meets the Protocol exactly (names, keywords, defaults, types).
    _conforms: type[Hsm] = MockHsm
