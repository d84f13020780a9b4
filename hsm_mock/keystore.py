"""The mock HSM's key storage: named key sets of master keys, held only as LMK-wrapped blobs.

Each key is wrapped with AES-256-GCM under the store's LMK (see `hsm_mock.lmk`), with the key-set
name and the key label as associated data. A clear key exists only inside `KeyStore.use`, for the
length of one operation; no method returns a clear master key. KCVs are kept in clear: they
identify a key without revealing it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from cardcore.crypto import kcv
from cardcore.keys import MASTER_KEY_LABELS
from hsm_mock.errors import HsmInputError, KcvMismatch, KeySetExists, UnknownKeySet
from hsm_mock.keyset_file import KeySet, load_key_set_file, load_shipped_key_set
from hsm_mock.lmk import Lmk
from hsm_mock.vfc_imk import check_imk, check_kv, imk_kcv, imk_label

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeySetInfo:
    """What the store tells about a key set: never key bytes."""

    name: str
    description: str
    key_version: int
    generation: int  # changes whenever the set is (re)imported; lets callers key caches on it


@dataclass(frozen=True, slots=True)
class WrappedKeySet:
    """A key set as LMK-wrapped blobs with clear KCVs: what a store keeps, and can hand out."""

    name: str
    blobs: Mapping[str, bytes]
    kcvs: Mapping[str, bytes]
    description: str = ""
    key_version: int = 1


@dataclass(frozen=True, slots=True)
class _Stored:
    wrapped: WrappedKeySet
    generation: int


class KeyStore:
    """Key sets by name, each a mapping master-key label → LMK-wrapped key."""

    def __init__(self, lmk: bytes | Lmk | None = None) -> None:
        """`lmk`: 32 bytes or an `Lmk`; None = a fresh random LMK for this store alone."""
        if lmk is None:
            lmk = Lmk.generate()
        self._lmk = lmk if isinstance(lmk, Lmk) else Lmk(lmk)
        self._sets: dict[str, _Stored] = {}
        self._generations = itertools.count(1)
        # IMK_VFC per (key set, kv): (LMK-wrapped blob, KCV, generation).
        self._vfc: dict[tuple[str, int], tuple[bytes, bytes, int]] = {}

    @classmethod
    def with_lmk_file(cls, path: str | os.PathLike[str]) -> KeyStore:
        """A store whose LMK is read from `path`, or created there (mode 0600) on first use."""
        return cls(Lmk.from_file(path))

    # Import ------------------------------------------------------------------------------------

    def import_key_set(self, key_set: KeySet, *, replace: bool = False) -> str:
        """Wrap a validated key set (its KCVs were checked when it was built); returns its name."""
        blobs = {
            label: self._lmk.wrap(key_set.keys[label], key_set=key_set.name, label=label)
            for label in MASTER_KEY_LABELS
        }
        kcvs = {label: kcv(key_set.keys[label]) for label in MASTER_KEY_LABELS}
        wrapped = WrappedKeySet(
            name=key_set.name,
            blobs=MappingProxyType(blobs),
            kcvs=MappingProxyType(kcvs),
            description=key_set.description,
            key_version=key_set.key_version,
        )
        self._store(wrapped, replace=replace)
        return key_set.name

    def import_key_set_file(self, path: str | os.PathLike[str], *, replace: bool = False) -> str:
        return self.import_key_set(load_key_set_file(path), replace=replace)

    def import_shipped_key_set(self, stem: str = "dev", *, replace: bool = False) -> str:
        return self.import_key_set(load_shipped_key_set(stem), replace=replace)

    def import_wrapped(self, wrapped: WrappedKeySet, *, replace: bool = False) -> str:
        """Take blobs wrapped under this store's LMK; each must open and match its KCV."""
        source = f"wrapped key set {wrapped.name!r}"
        missing = [label for label in MASTER_KEY_LABELS if label not in wrapped.blobs]
        if missing:
            raise HsmInputError(f"{source}: missing key(s): {', '.join(missing)}")
        kcvs: dict[str, bytes] = {}
        for label in MASTER_KEY_LABELS:
            actual = kcv(self._lmk.unwrap(wrapped.blobs[label], key_set=wrapped.name, label=label))
            expected = wrapped.kcvs.get(label)
            if expected is not None and expected != actual:
                raise KcvMismatch(source, label, expected, actual)
            kcvs[label] = actual
        copy = WrappedKeySet(
            name=wrapped.name,
            blobs=MappingProxyType({label: wrapped.blobs[label] for label in MASTER_KEY_LABELS}),
            kcvs=MappingProxyType(kcvs),
            description=wrapped.description,
            key_version=wrapped.key_version,
        )
        self._store(copy, replace=replace)
        return wrapped.name

    def _store(self, wrapped: WrappedKeySet, *, replace: bool) -> None:
        if wrapped.name in self._sets and not replace:
            raise KeySetExists(wrapped.name)
        self._sets[wrapped.name] = _Stored(wrapped, next(self._generations))

    # Queries -----------------------------------------------------------------------------------

    def key_set_names(self) -> list[str]:
        return list(self._sets)

    def _get(self, key_set: str) -> _Stored:
        try:
            return self._sets[key_set]
        except KeyError:
            raise UnknownKeySet(key_set, self.key_set_names()) from None

    def info(self, key_set: str) -> KeySetInfo:
        stored = self._get(key_set)
        return KeySetInfo(
            name=key_set,
            description=stored.wrapped.description,
            key_version=stored.wrapped.key_version,
            generation=stored.generation,
        )

    def kcvs(self, key_set: str) -> dict[str, bytes]:
        """Label → KCV (3 bytes), in MASTER_KEY_LABELS order."""
        return dict(self._get(key_set).wrapped.kcvs)

    def export_wrapped(self, key_set: str) -> WrappedKeySet:
        """The set as stored: blobs that only this store's LMK opens, and clear KCVs."""
        return self._get(key_set).wrapped

    # Use ---------------------------------------------------------------------------------------

    def use(self, key_set: str, label: str, operation: Callable[[bytes], T]) -> T:
        """Unwrap one master key, run `operation` on it, return only the operation's result.

        This is the HSM boundary: callers pass the computation in, the clear key stays here.
        """
        stored = self._get(key_set)
        if label not in stored.wrapped.blobs:
            raise HsmInputError(
                f"no key labelled {label!r} (labels are {', '.join(MASTER_KEY_LABELS)})"
            )
        key = self._lmk.unwrap(stored.wrapped.blobs[label], key_set=key_set, label=label)
        return operation(key)

    # Virtual fleet card issuer master keys ------------------------------------------------------

    def import_vfc_imk(self, key_set: str, imk: bytes, kv: int, *, replace: bool = False) -> bytes:
        """Wrap IMK_VFC version `kv` into a key set already held; returns its KCV."""
        self._get(key_set)
        label = imk_label(kv)
        if (key_set, kv) in self._vfc and not replace:
            raise KeySetExists(f"{key_set}/{label}")
        blob = self._lmk.wrap(check_imk(imk), key_set=key_set, label=label)
        kcv_value = imk_kcv(imk)
        self._vfc[(key_set, kv)] = (blob, kcv_value, next(self._generations))
        return kcv_value

    def vfc_versions(self, key_set: str) -> list[int]:
        """The IMK_VFC versions held for the key set, ascending (empty: none loaded)."""
        return sorted(kv for name, kv in self._vfc if name == key_set)

    def vfc_info(self, key_set: str, kv: int) -> tuple[bytes, int]:
        """(KCV, generation) of IMK_VFC version `kv`."""
        _blob, kcv_value, generation = self._vfc_entry(key_set, kv)
        return kcv_value, generation

    def _vfc_entry(self, key_set: str, kv: int) -> tuple[bytes, bytes, int]:
        self._get(key_set)
        entry = self._vfc.get((key_set, check_kv(kv)))
        if entry is None:
            held = ", ".join(map(str, self.vfc_versions(key_set))) or "none"
            raise HsmInputError(f"key set {key_set!r} holds no IMK_VFC kv {kv} (held: {held})")
        return entry

    def use_vfc_imk(self, key_set: str, kv: int, operation: Callable[[bytes], T]) -> T:
        """`use` for IMK_VFC: the clear key exists only for the operation."""
        blob = self._vfc_entry(key_set, kv)[0]
        return operation(self._lmk.unwrap(blob, key_set=key_set, label=imk_label(kv)))

    def __repr__(self) -> str:
        return f"KeyStore(key_sets={self.key_set_names()!r})"
