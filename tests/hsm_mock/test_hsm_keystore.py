"""KeyStore and LMK: keys wrapped at rest, bound to their slot, opened only by the right LMK."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cardcore.errors import FuelsimError
from cardcore.keys import MASTER_KEY_LABELS
from hsm_mock import (
    HsmInputError,
    KcvMismatch,
    KeySetExists,
    KeyStore,
    LmkError,
    MockHsm,
    UnknownKeySet,
    WrappedKeySet,
)
from hsm_mock.lmk import LMK_SIZE, Lmk

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def dev_store(lmk: bytes | None = None) -> KeyStore:
    store = KeyStore(lmk)
    store.import_shipped_key_set("dev")
    return store


def master_keys(kat: dict[str, Any]) -> dict[str, bytes]:
    return {label: bytes.fromhex(value) for label, value in kat["master_keys"].items()}


def _byte_strings(value: object, seen: set[int]) -> Iterator[bytes]:
    """Every bytes / str object reachable from `value` (attributes, slots, containers)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value)
    elif isinstance(value, str):
        yield value.encode()
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _byte_strings(key, seen)
            yield from _byte_strings(item, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _byte_strings(item, seen)
    elif not isinstance(value, int | float | bool | type(None)):
        for name in getattr(value, "__dict__", {}):
            yield from _byte_strings(getattr(value, name), seen)
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(value, name):
                    yield from _byte_strings(getattr(value, name), seen)


def _assert_holds_no_master_key(obj: object, kat: dict[str, Any]) -> None:
    held = b"\x00".join(_byte_strings(obj, set()))
    assert held, "the walk found nothing: it would prove nothing"
    for label, key in master_keys(kat).items():
        for form in (key, key.hex().encode(), key.hex().upper().encode()):
            assert form not in held, label


def test_stored_blobs_do_not_contain_clear_keys(kat: dict[str, Any]) -> None:
    store = dev_store()
    wrapped = store.export_wrapped("DEV")
    raw = b"".join(wrapped.blobs.values())
    assert len(wrapped.blobs) == len(MASTER_KEY_LABELS)
    for label, key in master_keys(kat).items():
        assert key not in raw, label
        assert key[:8] not in raw and key[8:] not in raw, label
        assert key.hex().encode() not in raw and key.hex().upper().encode() not in raw


def test_the_store_object_holds_no_clear_master_key(kat: dict[str, Any]) -> None:
    _assert_holds_no_master_key(dev_store(), kat)


def test_the_hsm_holds_no_clear_master_key_after_use(
    kat: dict[str, Any], asn8: bytes, issuer8: bytes
) -> None:
    hsm = MockHsm()
    hsm.personalise_card(asn8, issuer8)
    hsm.bill_tmac(bytes(91))
    hsm.reload_pin_mac(asn8, pin=bytes.fromhex("999999"))
    _assert_holds_no_master_key(hsm, kat)


def test_walk_would_find_a_clear_key(kat: dict[str, Any]) -> None:
    # The walker itself can fail: a plain holder of the key is caught.
    holder = {"nested": [dataclasses.make_dataclass("Box", ["k"])(master_keys(kat)["MPK"])]}
    with pytest.raises(AssertionError):
        _assert_holds_no_master_key(holder, kat)


def test_same_key_wraps_differently_each_time() -> None:
    first, second = dev_store(bytes(32)), dev_store(bytes(32))
    assert first.export_wrapped("DEV").blobs["MPK"] != second.export_wrapped("DEV").blobs["MPK"]


def test_wrong_lmk_cannot_unwrap() -> None:
    wrapped = dev_store(b"\x01" * LMK_SIZE).export_wrapped("DEV")
    other = KeyStore(b"\x02" * LMK_SIZE)
    with pytest.raises(LmkError, match="does not open"):
        other.import_wrapped(wrapped)
    assert other.key_set_names() == []
    with pytest.raises(LmkError):
        Lmk(b"\x02" * LMK_SIZE).unwrap(wrapped.blobs["MPK"], key_set="DEV", label="MPK")


def test_default_lmks_differ_per_store() -> None:
    wrapped = dev_store().export_wrapped("DEV")
    with pytest.raises(LmkError):
        KeyStore().import_wrapped(wrapped)


def test_same_lmk_reopens_wrapped_keys(asn8: bytes, issuer8: bytes) -> None:
    lmk = os.urandom(LMK_SIZE)
    wrapped = dev_store(lmk).export_wrapped("DEV")
    store = KeyStore(lmk)
    assert store.import_wrapped(wrapped) == "DEV"
    assert (
        MockHsm(store).personalise_card(asn8, issuer8).dpk
        == MockHsm().personalise_card(asn8, issuer8).dpk
    )


def test_blob_is_bound_to_its_label_and_key_set() -> None:
    lmk = Lmk(bytes(range(32)))
    blob = lmk.wrap(bytes(16), key_set="DEV", label="MPK")
    assert lmk.unwrap(blob, key_set="DEV", label="MPK") == bytes(16)
    with pytest.raises(LmkError):
        lmk.unwrap(blob, key_set="DEV", label="MLK")
    with pytest.raises(LmkError):
        lmk.unwrap(blob, key_set="PROD", label="MPK")


def test_swapped_blobs_are_refused() -> None:
    lmk = os.urandom(LMK_SIZE)
    wrapped = dev_store(lmk).export_wrapped("DEV")
    blobs = dict(wrapped.blobs)
    blobs["MPK"], blobs["MLK"] = blobs["MLK"], blobs["MPK"]
    with pytest.raises(LmkError):
        KeyStore(lmk).import_wrapped(dataclasses.replace(wrapped, blobs=blobs))


def test_tampered_blob_is_refused() -> None:
    lmk = os.urandom(LMK_SIZE)
    wrapped = dev_store(lmk).export_wrapped("DEV")
    blob = bytearray(wrapped.blobs["MTK"])
    blob[14] ^= 0x01
    blobs = {**wrapped.blobs, "MTK": bytes(blob)}
    with pytest.raises(LmkError):
        KeyStore(lmk).import_wrapped(dataclasses.replace(wrapped, blobs=blobs))


def test_wrapped_import_checks_kcvs() -> None:
    lmk = os.urandom(LMK_SIZE)
    wrapped = dev_store(lmk).export_wrapped("DEV")
    kcvs = {**wrapped.kcvs, "MAMK": b"\x00\x00\x00"}
    with pytest.raises(KcvMismatch, match="MAMK") as caught:
        KeyStore(lmk).import_wrapped(dataclasses.replace(wrapped, kcvs=kcvs))
    assert caught.value.label == "MAMK"


def test_wrapped_import_needs_every_key() -> None:
    lmk = os.urandom(LMK_SIZE)
    wrapped = dev_store(lmk).export_wrapped("DEV")
    blobs = {k: v for k, v in wrapped.blobs.items() if k != "MIAK"}
    with pytest.raises(HsmInputError, match="MIAK"):
        KeyStore(lmk).import_wrapped(WrappedKeySet("DEV", blobs, wrapped.kcvs))


def test_kcvs(kat: dict[str, Any]) -> None:
    kcvs = dev_store().kcvs("DEV")
    assert {label: value.hex().upper() for label, value in kcvs.items()} == kat["master_kcv"]


def test_unknown_key_set() -> None:
    store = dev_store()
    with pytest.raises(UnknownKeySet, match="PROD") as caught:
        store.kcvs("PROD")
    assert isinstance(caught.value, FuelsimError)
    with pytest.raises(UnknownKeySet):
        store.use("PROD", "MPK", len)


def test_use_unknown_label() -> None:
    with pytest.raises(HsmInputError, match="XYZ"):
        dev_store().use("DEV", "XYZ", len)


def test_use_returns_only_the_operation_result() -> None:
    assert dev_store().use("DEV", "MPK", len) == 16


def test_duplicate_import_refused_unless_replace() -> None:
    store = dev_store()
    generation = store.info("DEV").generation
    with pytest.raises(KeySetExists):
        store.import_shipped_key_set("dev")
    store.import_shipped_key_set("dev", replace=True)
    assert store.info("DEV").generation != generation


def test_info(kat: dict[str, Any]) -> None:
    info = dev_store().info("DEV")
    assert info.name == "DEV"
    assert info.key_version == 1
    assert "simulation only" in info.description.lower()


def test_repr_shows_no_key() -> None:
    assert repr(Lmk(b"\xab" * 32)) == "Lmk(<hidden>)"
    assert "ab" not in repr(KeyStore(b"\xab" * 32)).lower()


# LMK sources ------------------------------------------------------------------------------------


def test_explicit_lmk_must_be_32_bytes() -> None:
    with pytest.raises(LmkError):
        KeyStore(bytes(16))


@posix_only
def test_lmk_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "hsm" / "lmk.bin"
    first = KeyStore.with_lmk_file(path)
    first.import_shipped_key_set("dev")
    assert path.stat().st_size == LMK_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["lmk.bin"]  # no temporary file left
    second = KeyStore.with_lmk_file(path)
    assert second.import_wrapped(first.export_wrapped("DEV")) == "DEV"


@posix_only
def test_lmk_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lmk.bin"
    path.write_bytes(os.urandom(LMK_SIZE))
    path.chmod(0o644)
    with pytest.raises(LmkError, match="chmod 600"):
        KeyStore.with_lmk_file(path)


@posix_only
def test_lmk_file_of_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lmk.bin"
    path.write_bytes(os.urandom(LMK_SIZE - 1))
    path.chmod(0o600)
    with pytest.raises(LmkError, match="31 bytes"):
        KeyStore.with_lmk_file(path)


def test_lmk_file_differs_from_a_random_lmk(tmp_path: Path) -> None:
    wrapped = KeyStore.with_lmk_file(tmp_path / "lmk.bin")
    wrapped.import_shipped_key_set("dev")
    with pytest.raises(LmkError):
        KeyStore().import_wrapped(wrapped.export_wrapped("DEV"))
