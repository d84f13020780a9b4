"""Key-set files: the shipped DEV set, user files, and strict validation with clear errors."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cardcore import crypto
from cardcore.keys import CARD_KEY_MASTERS, MASTER_KEY_LABELS
from hsm_mock import (
    FORMAT,
    KcvMismatch,
    KeySet,
    KeySetExists,
    KeySetFormatError,
    MockHsm,
    UnknownKeySet,
    key_report,
    load_key_set_file,
    load_shipped_key_set,
    parse_key_set,
)
from hsm_mock.keyset_file import parse_key_set_text, shipped_key_set_names

Doc = dict[str, Any]


def user_keys() -> dict[str, bytes]:
    """A deterministic non-DEV key set: key i is bytes (16·i … 16·i + 15) + 0x20."""
    return {
        label: bytes((0x20 + 16 * i + j) & 0xFF for j in range(16))
        for i, label in enumerate(MASTER_KEY_LABELS)
    }


def user_document(name: str = "TEST1", *, with_kcvs: bool = True) -> Doc:
    keys: dict[str, dict[str, str]] = {}
    for label, key in user_keys().items():
        entry = {"value": key.hex().upper()}
        if with_kcvs:
            entry["kcv"] = crypto.kcv(key).hex().upper()
        keys[label] = entry
    return {
        "format": FORMAT,
        "name": name,
        "description": "test keys",
        "key_version": 2,
        "keys": keys,
    }


def write(tmp_path: Path, document: object, name: str = "keys.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# The shipped DEV set -----------------------------------------------------------------------------


def test_shipped_dev_matches_the_vectors(kat: dict[str, Any]) -> None:
    dev = load_shipped_key_set("dev")
    assert dev.name == "DEV"
    assert dev.key_version == 1
    assert {label: key.hex().upper() for label, key in dev.keys.items()} == kat["master_keys"]
    assert {k: v.hex().upper() for k, v in dev.declared_kcvs.items()} == kat["master_kcv"]
    assert "simulation only" in dev.description.lower()


def test_shipped_file_is_valid_json_in_the_documented_format() -> None:
    path = Path(__file__).parents[2] / "hsm_mock" / "keysets" / "dev.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "fuelsim.keyset/1"
    assert set(document) == {"format", "name", "description", "key_version", "keys"}
    assert list(document["keys"]) == list(MASTER_KEY_LABELS)
    assert all(set(entry) == {"value", "kcv"} for entry in document["keys"].values())


def test_shipped_names() -> None:
    assert "dev" in shipped_key_set_names()
    with pytest.raises(KeySetFormatError, match="no shipped key set"):
        load_shipped_key_set("prod")


# User key-set files -------------------------------------------------------------------------------


def test_user_file_loads_and_gives_other_card_keys(
    tmp_path: Path, asn8: bytes, issuer8: bytes
) -> None:
    path = write(tmp_path, user_document())
    hsm = MockHsm.with_key_set_files([path])
    assert hsm.key_sets() == ["DEV", "TEST1"]
    dev = hsm.personalise_card(asn8, issuer8, "DEV")
    test = hsm.personalise_card(asn8, issuer8, "TEST1")
    for label, master in CARD_KEY_MASTERS.items():
        assert getattr(test, label) != getattr(dev, label), label
        if label != "dpk":
            assert getattr(test, label) == crypto.diversify(user_keys()[master], asn8), label
    assert test.dpk == crypto.purchase_key(user_keys()["MPK"], asn8, issuer8)
    expected = [
        (label, crypto.kcv(user_keys()[label]).hex().upper()) for label in MASTER_KEY_LABELS
    ]
    assert key_report(hsm, "TEST1") == expected


def test_user_file_without_dev(tmp_path: Path) -> None:
    hsm = MockHsm.with_key_set_files([write(tmp_path, user_document())], include_dev=False)
    assert hsm.key_sets() == ["TEST1"]
    with pytest.raises(UnknownKeySet):
        hsm.personalise_psam("DEV")


def test_user_file_named_dev_clashes(tmp_path: Path) -> None:
    with pytest.raises(KeySetExists):
        MockHsm.with_key_set_files([write(tmp_path, user_document("DEV"))])


def test_kcvs_are_optional(tmp_path: Path) -> None:
    key_set = load_key_set_file(write(tmp_path, user_document(with_kcvs=False)))
    assert key_set.declared_kcvs == {}
    assert key_set.keys == user_keys()


def test_key_version_defaults_to_one() -> None:
    document = user_document()
    del document["key_version"]
    assert parse_key_set(document).key_version == 1


def test_keyset_repr_shows_no_key() -> None:
    text = repr(parse_key_set(user_document()))
    assert "TEST1" in text
    assert all(key.hex() not in text.lower() for key in user_keys().values())


# Validation ---------------------------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def edit(document: Doc) -> None:
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _delete(path: str) -> Callable[[Doc], None]:
    def edit(document: Doc) -> None:
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[part]
        del target[last]

    return edit


INVALID: list[tuple[str, Callable[[Doc], None], type[Exception], str]] = [
    ("missing key", _delete("keys.MRPK"), KeySetFormatError, "missing key.*MRPK"),
    ("short key", _set("keys.MLK.value", "00" * 15), KeySetFormatError, r"keys\.MLK\.value.*32"),
    ("long key", _set("keys.MLK.value", "00" * 17), KeySetFormatError, r"keys\.MLK\.value.*32"),
    ("bad hex", _set("keys.MTK.value", "ZZ" * 16), KeySetFormatError, r"keys\.MTK\.value.*hex"),
    ("hex spaces", _set("keys.MTK.value", "00 " * 16), KeySetFormatError, "not hex"),
    ("key not string", _set("keys.MTK.value", 5), KeySetFormatError, "hex string"),
    ("no value", _delete("keys.MPK.value"), KeySetFormatError, r"keys\.MPK has no value"),
    ("kcv mismatch", _set("keys.MAMK.kcv", "000000"), KcvMismatch, "MAMK"),
    ("kcv length", _set("keys.MAMK.kcv", "0000"), KeySetFormatError, r"keys\.MAMK\.kcv.*6"),
    ("unknown version", _set("format", "fuelsim.keyset/2"), KeySetFormatError, "unknown format"),
    ("no format", _delete("format"), KeySetFormatError, "missing member.*format"),
    ("no name", _delete("name"), KeySetFormatError, "missing member.*name"),
    ("no keys", _delete("keys"), KeySetFormatError, "missing member.*keys"),
    ("bad name", _set("name", "has space"), KeySetFormatError, "name"),
    ("empty name", _set("name", ""), KeySetFormatError, "name"),
    ("version range", _set("key_version", 256), KeySetFormatError, "key_version"),
    ("version type", _set("key_version", "1"), KeySetFormatError, "key_version"),
    ("unknown label", _set("keys.MXK", {"value": "00" * 16}), KeySetFormatError, "MXK"),
    ("unknown member", _set("keyz", {}), KeySetFormatError, "keyz"),
    ("unknown entry member", _set("keys.MPK.kvc", "000000"), KeySetFormatError, "kvc"),
    ("keys not object", _set("keys", []), KeySetFormatError, "keys must be"),
    ("entry not object", _set("keys.MPK", "00" * 16), KeySetFormatError, r"keys\.MPK"),
    ("description type", _set("description", 3), KeySetFormatError, "description"),
]


@pytest.mark.parametrize(
    ("edit", "error", "pattern"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_file_is_refused(
    tmp_path: Path, edit: Callable[[Doc], None], error: type[Exception], pattern: str
) -> None:
    document = copy.deepcopy(user_document())
    edit(document)
    path = write(tmp_path, document)
    with pytest.raises(error, match=pattern) as caught:
        load_key_set_file(path)
    assert str(path) in str(caught.value)


def test_kcv_mismatch_names_the_key(tmp_path: Path) -> None:
    document = user_document()
    document["keys"]["MUGK"]["kcv"] = "ABCDEF"
    with pytest.raises(KcvMismatch) as caught:
        MockHsm.with_key_set_files([write(tmp_path, document)])
    assert caught.value.label == "MUGK"
    assert "MUGK" in str(caught.value) and "ABCDEF" in str(caught.value)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(KeySetFormatError, match="not a valid key-set JSON"):
        load_key_set_file(path)


def test_duplicate_member_refused() -> None:
    text = json.dumps(user_document())
    text = text.replace('"name": "TEST1"', '"name": "TEST1", "name": "OTHER"')
    with pytest.raises(KeySetFormatError, match="duplicate member 'name'"):
        parse_key_set_text(text, "dup.json")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeySetFormatError, match="cannot read"):
        load_key_set_file(tmp_path / "absent.json")


def test_keyset_built_in_code_is_validated_too() -> None:
    keys = user_keys()
    with pytest.raises(KeySetFormatError, match="MPK must be 16 bytes"):
        KeySet(name="X", keys={**keys, "MPK": bytes(8)})
    with pytest.raises(KcvMismatch):
        KeySet(name="X", keys=keys, declared_kcvs={"MLK": b"\x00\x00\x00"})
    with pytest.raises(KeySetFormatError, match="MTK degenerates"):
        KeySet(name="X", keys={**keys, "MTK": bytes([2]) * 8 + bytes([3]) * 8})
    source = dict(keys)
    key_set = KeySet(name="X", keys=source)
    source["MPK"] = bytes(16)
    assert key_set.keys["MPK"] == keys["MPK"]
