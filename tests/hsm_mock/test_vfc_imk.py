"""IMK_VFC in the mock HSM: wrapped per key set and kv, LUKs by the spec's derivation, and clear
errors when a key set holds none."""

from __future__ import annotations

import pytest

from cardcore import vfc
from hsm_mock import HsmInputError, KeySetExists, KeyStore, MockHsm
from hsm_mock.vfc_imk import DEV_IMK_VFC, imk_kcv


def test_dev_imk_gives_the_spec_derivation() -> None:
    hsm = MockHsm()
    assert hsm.vfc_key_version() == 1
    assert hsm.vfc_imk_kcv().hex().upper() == "5E2D8E"
    card_key = vfc.card_key(DEV_IMK_VFC, "VFC12345678", 1)
    assert hsm.vfc_luk("VFC12345678", 1, 7) == vfc.luk(card_key, 7)
    assert hsm.vfc_luk("VFC12345678", 1, 7) != hsm.vfc_luk("VFC12345679", 1, 7)


def test_versions_coexist_and_the_newest_issues() -> None:
    store = KeyStore()
    store.import_shipped_key_set("dev")
    other = bytes(range(32))
    assert store.import_vfc_imk("DEV", other, 2) == imk_kcv(other)
    store.import_vfc_imk("DEV", DEV_IMK_VFC, 1)
    hsm = MockHsm(store)
    assert hsm.vfc_key_version() == 2
    assert hsm.vfc_luk("C1", 2, 0) == vfc.luk(vfc.card_key(other, "C1", 2), 0)
    assert hsm.vfc_luk("C1", 1, 0) == vfc.luk(vfc.card_key(DEV_IMK_VFC, "C1", 1), 0)
    with pytest.raises(KeySetExists):
        store.import_vfc_imk("DEV", other, 2)


def test_missing_imk_and_bad_input_are_clear_errors() -> None:
    store = KeyStore()
    store.import_shipped_key_set("dev")
    hsm = MockHsm(store)
    with pytest.raises(HsmInputError, match="holds no IMK_VFC"):
        hsm.vfc_key_version()
    with pytest.raises(HsmInputError, match="kv 1"):
        hsm.vfc_luk("C1", 1, 0)
    with pytest.raises(HsmInputError, match="32 bytes"):
        store.import_vfc_imk("DEV", b"short", 1)
    full = MockHsm()
    with pytest.raises(HsmInputError, match="LUK index"):
        full.vfc_luk("C1", 1, 70_000)
    with pytest.raises(HsmInputError, match="card_id"):
        full.vfc_luk("", 1, 0)
    assert full.key_check_values("DEV").keys().isdisjoint({"IMK_VFC", "IMK_VFC/1"})
