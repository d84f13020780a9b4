"""Key maps (`fuelsim.keymap/1`): precedence, ASN8 lookups, lab key sets, strict validation."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cardcore import crypto
from cardcore.bcd import card_number_to_asn
from cardcore.keys import CARD_KEY_MASTERS, MASTER_KEY_LABELS
from hsm_mock import (
    KEYMAP_FORMAT,
    HsmInputError,
    KcvMismatch,
    KeyMap,
    KeyMapError,
    KeySetFormatError,
    KeyStore,
    MockHsm,
    hsm_from_key_map,
    load_key_map,
    parse_key_map,
)
from hsm_mock.keymap import parse_key_map_text

Doc = dict[str, Any]
DOCS = Path(__file__).parents[2] / "docs" / "lab-keys.md"

LAB_ASN = bytes.fromhex("01000114400000000001")  # the KAT card, here a lab card
OTHER_ASN = bytes.fromhex("01000114400000000002")  # an emulated card of the same issuer
DEV_ISSUER = bytes.fromhex("10FFFFFFFFFFFFFF")
TERM = bytes.fromhex("010203040506")
DT = bytes.fromhex("20240501123000")
RAND = bytes.fromhex("A1B2C3D4")


def random_keys() -> dict[str, bytes]:
    return {label: os.urandom(16) for label in MASTER_KEY_LABELS}


def key_set_document(name: str, keys: dict[str, bytes]) -> Doc:
    return {
        "format": "fuelsim.keyset/1",
        "name": name,
        "description": "lab keys for the tests",
        "keys": {
            label: {"value": key.hex().upper(), "kcv": crypto.kcv(key).hex().upper()}
            for label, key in keys.items()
        },
    }


def write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def lab_keys() -> dict[str, bytes]:
    return random_keys()


@pytest.fixture
def dev_keys(kat: dict[str, Any]) -> dict[str, bytes]:
    return {label: bytes.fromhex(value) for label, value in kat["master_keys"].items()}


@pytest.fixture
def lab_dir(tmp_path: Path, lab_keys: dict[str, bytes]) -> Path:
    """A lab folder: lab-keys.json (LAB1) and keymap.json mapping LAB_ASN to it."""
    write(tmp_path / "lab-keys.json", key_set_document("LAB1", lab_keys))
    write(
        tmp_path / "keymap.json",
        {
            "format": KEYMAP_FORMAT,
            "key_set_files": ["lab-keys.json"],
            "default": "DEV",
            "by_asn": {LAB_ASN.hex().upper(): "LAB1"},
        },
    )
    return tmp_path


# Precedence ---------------------------------------------------------------------------------------

PRECEDENCE_MAP: Doc = {
    "format": KEYMAP_FORMAT,
    "default": "FALLBACK",
    "by_asn": {"01000114400000000001": "EXACT"},
    "by_asn_prefix": {"01": "SHORT", "010001144": "MID", "0100011440": "LONG"},
    "by_issuer": {"10FFFFFFFFFFFF01": "ISSUER"},
}
ISSUER = bytes.fromhex("10FFFFFFFFFFFF01")

PRECEDENCE: list[tuple[str, str | None, bytes | None, str]] = [
    ("exact beats prefix and issuer", "01000114400000000001", ISSUER, "EXACT"),
    ("longest prefix", "01000114400000000002", ISSUER, "LONG"),
    ("odd-length prefix", "01000114410000000000", ISSUER, "MID"),
    ("short prefix", "01990000000000000000", None, "SHORT"),
    ("prefix beats issuer", "01990000000000000000", ISSUER, "SHORT"),
    ("issuer when no ASN entry", "02000000000000000000", ISSUER, "ISSUER"),
    ("issuer without ASN", None, ISSUER, "ISSUER"),
    ("default for another issuer", "02000000000000000000", DEV_ISSUER, "FALLBACK"),
    ("default without issuer", "02000000000000000000", None, "FALLBACK"),
    ("default with nothing", None, None, "FALLBACK"),
]


@pytest.mark.parametrize(
    ("asn", "issuer", "expected"),
    [case[1:] for case in PRECEDENCE],
    ids=[case[0] for case in PRECEDENCE],
)
def test_precedence(asn: str | None, issuer: bytes | None, expected: str) -> None:
    key_map = parse_key_map(PRECEDENCE_MAP)
    full = None if asn is None else bytes.fromhex(asn)
    assert key_map.key_set_for(asn=full, issuer=issuer) == expected


def test_prefix_is_matched_on_hex_digits_not_bytes() -> None:
    key_map = parse_key_map({"format": KEYMAP_FORMAT, "by_asn_prefix": {"010001144": "LAB"}})
    assert key_map.key_set_for(bytes.fromhex("01000114490000000000")) == "LAB"
    assert key_map.key_set_for(bytes.fromhex("01000114500000000000")) == "DEV"


def test_card_number_range_as_prefixes() -> None:
    """docs/lab-keys.md: cards 1000114400000000000-1000114400299999999 are three prefixes."""
    key_map = parse_key_map(
        {
            "format": KEYMAP_FORMAT,
            "by_asn_prefix": {p: "LAB" for p in ("010001144000", "010001144001", "010001144002")},
        }
    )
    inside = ["1000114400000000000", "1000114400150000000", "1000114400299999999"]
    outside = ["1000114400300000000", "1000114399999999999", "1000114410000000000"]
    assert [key_map.key_set_for(card_number_to_asn(n)) for n in inside] == ["LAB"] * 3
    assert [key_map.key_set_for(card_number_to_asn(n)) for n in outside] == ["DEV"] * 3


def test_lower_case_hex_is_accepted() -> None:
    key_map = parse_key_map(
        {
            "format": KEYMAP_FORMAT,
            "by_asn": {"0100011440000000000a": "A"},
            "by_asn_prefix": {"0b": "B"},
            "by_issuer": {"10ffffffffffffff": "C"},
        }
    )
    assert key_map.key_set_for(bytes.fromhex("0100011440000000000A")) == "A"
    assert key_map.key_set_for(bytes.fromhex("0B000000000000000000")) == "B"
    assert key_map.key_set_for(issuer=DEV_ISSUER) == "C"
    assert list(key_map.by_asn_prefix) == ["0B"]


def test_empty_map_means_dev_for_every_card() -> None:
    key_map = parse_key_map({"format": KEYMAP_FORMAT})
    assert key_map.default == "DEV"
    assert key_map.key_set_files == ()
    assert key_map.key_set_for(LAB_ASN, DEV_ISSUER) == "DEV"
    assert key_map.key_set_for_asn8(LAB_ASN[2:], DEV_ISSUER) == "DEV"


# ASN8 lookups -------------------------------------------------------------------------------------

ASN8_CASES: list[tuple[str, str, bytes | None, str]] = [
    ("by_asn on its last 8 bytes", "0114400000000001", None, "EXACT"),
    ("by_asn beats issuer", "0114400000000001", ISSUER, "EXACT"),
    ("prefixes are skipped, issuer", "0114400000000002", ISSUER, "ISSUER"),
    ("prefixes are skipped, default", "0114400000000002", None, "FALLBACK"),
    ("another issuer", "9999999999999999", DEV_ISSUER, "FALLBACK"),
]


@pytest.mark.parametrize(
    ("asn8", "issuer", "expected"),
    [case[1:] for case in ASN8_CASES],
    ids=[case[0] for case in ASN8_CASES],
)
def test_asn8_lookup(asn8: str, issuer: bytes | None, expected: str) -> None:
    key_map = parse_key_map(PRECEDENCE_MAP)
    assert key_map.key_set_for_asn8(bytes.fromhex(asn8), issuer) == expected


def test_asn8_shared_by_entries_of_the_same_key_set_is_fine() -> None:
    key_map = parse_key_map(
        {
            "format": KEYMAP_FORMAT,
            "by_asn": {"01000114400000000001": "LAB1", "02000114400000000001": "LAB1"},
        }
    )
    assert key_map.key_set_for_asn8(bytes.fromhex("0114400000000001")) == "LAB1"


LOOKUP_ERRORS: list[tuple[str, Callable[[KeyMap], object], str]] = [
    ("ASN8 given as ASN", lambda m: m.key_set_for(LAB_ASN[2:]), "key_set_for_asn8"),
    ("long ASN", lambda m: m.key_set_for(LAB_ASN + b"\x00"), "asn must be 10 bytes"),
    ("ASN as hex text", lambda m: m.key_set_for(LAB_ASN.hex()), "asn must be 10 bytes"),  # type: ignore[arg-type]
    ("ASN given as ASN8", lambda m: m.key_set_for_asn8(LAB_ASN), "asn8 must be 8 bytes"),
    ("short issuer", lambda m: m.key_set_for(issuer=DEV_ISSUER[1:]), "issuer must be 8"),
    ("short issuer, ASN8", lambda m: m.key_set_for_asn8(LAB_ASN[2:], b"\x10"), "issuer must"),
]


@pytest.mark.parametrize(
    ("call", "pattern"),
    [case[1:] for case in LOOKUP_ERRORS],
    ids=[case[0] for case in LOOKUP_ERRORS],
)
def test_lookup_with_a_wrong_size_is_refused(
    call: Callable[[KeyMap], object], pattern: str
) -> None:
    with pytest.raises(HsmInputError, match=pattern):
        call(parse_key_map(PRECEDENCE_MAP))


# A lab: key-set files loaded through the map ------------------------------------------------------


def test_lab_hsm_holds_dev_and_the_listed_sets(lab_dir: Path) -> None:
    hsm, key_map = hsm_from_key_map(lab_dir / "keymap.json")
    assert hsm.key_sets() == ["DEV", "LAB1"]
    assert key_map.key_set_files == (lab_dir / "lab-keys.json",)
    assert key_map.source == str(lab_dir / "keymap.json")


def test_mapped_card_gets_lab_keys_and_others_dev_keys(
    lab_dir: Path, lab_keys: dict[str, bytes], dev_keys: dict[str, bytes]
) -> None:
    hsm, key_map = hsm_from_key_map(lab_dir / "keymap.json")
    lab8, other8 = LAB_ASN[2:], OTHER_ASN[2:]

    assert key_map.key_set_for(LAB_ASN, DEV_ISSUER) == "LAB1"
    lab_card = hsm.personalise_card(lab8, DEV_ISSUER, key_map.key_set_for(LAB_ASN, DEV_ISSUER))
    dev_card = MockHsm().personalise_card(lab8, DEV_ISSUER)
    for label, master in CARD_KEY_MASTERS.items():
        assert getattr(lab_card, label) != getattr(dev_card, label), label
        if label != "dpk":
            assert getattr(lab_card, label) == crypto.diversify(lab_keys[master], lab8), label
    assert lab_card.dpk == crypto.purchase_key(lab_keys["MPK"], lab8, DEV_ISSUER)

    assert key_map.key_set_for(OTHER_ASN, DEV_ISSUER) == "DEV"
    other_card = hsm.personalise_card(other8, DEV_ISSUER, key_map.key_set_for(OTHER_ASN))
    assert other_card.dtk == crypto.diversify(dev_keys["MTK"], other8)
    assert other_card == MockHsm().personalise_card(other8, DEV_ISSUER)


def _purchase_tac(mtk: bytes, asn8: bytes, *, amount: int, ttc: int) -> bytes:
    """The TAC a card personalised from `mtk` computes (spec §3.4), without the HSM."""
    dtk = crypto.diversify(mtk, asn8)
    data = amount.to_bytes(4, "big") + b"\x05" + TERM + ttc.to_bytes(4, "big") + DT
    return crypto.mac_session(crypto.tac_key(dtk), data)


@pytest.mark.parametrize("asn", [LAB_ASN, OTHER_ASN], ids=["lab card", "emulated card"])
def test_purchase_tac_verifies_with_the_resolved_key_set_only(
    lab_dir: Path,
    lab_keys: dict[str, bytes],
    dev_keys: dict[str, bytes],
    asn: bytes,
) -> None:
    hsm, key_map = hsm_from_key_map(lab_dir / "keymap.json")
    asn8 = asn[2:]
    resolved = key_map.key_set_for_asn8(asn8, DEV_ISSUER)
    assert resolved == ("LAB1" if asn == LAB_ASN else "DEV")
    card_masters = lab_keys if resolved == "LAB1" else dev_keys
    tac = _purchase_tac(card_masters["MTK"], asn8, amount=4_321, ttc=7)

    def verify(key_set: str) -> bool:
        return hsm.verify_purchase_tac(
            asn8, amount=4_321, tx_type=5, term=TERM, ttc=7, dt=DT, tac=tac, key_set=key_set
        )

    assert verify(resolved)
    wrong = "DEV" if resolved == "LAB1" else "LAB1"
    assert not verify(wrong)


def test_load_macs_of_a_lab_card(lab_dir: Path, lab_keys: dict[str, bytes]) -> None:
    """MAC1 from the lab card checks, and the host's MAC2 is the one the card expects."""
    hsm, key_map = hsm_from_key_map(lab_dir / "keymap.json")
    asn8, ctc, amount, old_balance = LAB_ASN[2:], 3, 10_000, 500
    seslk = crypto.session_key_load(
        crypto.diversify(lab_keys["MLK"], asn8), RAND, ctc.to_bytes(2, "big")
    )
    mac1 = crypto.mac_session(
        seslk, old_balance.to_bytes(4, "big") + amount.to_bytes(4, "big") + b"\x01" + TERM
    )
    card_mac2 = crypto.mac_session(seslk, amount.to_bytes(4, "big") + b"\x01" + TERM + DT)
    resolved = key_map.key_set_for(LAB_ASN)

    def mac2(key_set: str) -> bytes:
        return hsm.load_mac2(
            asn8, rand=RAND, online_ctc=ctc, amount=amount, tx_type=1, term=TERM, dt=DT,
            key_set=key_set,
        )  # fmt: skip

    def mac1_ok(key_set: str) -> bool:
        return hsm.verify_load_mac1(
            asn8, rand=RAND, online_ctc=ctc, old_balance=old_balance, amount=amount,
            tx_type=1, term=TERM, mac1=mac1, key_set=key_set,
        )  # fmt: skip

    assert resolved == "LAB1"
    assert mac1_ok(resolved)
    assert mac2(resolved) == card_mac2
    assert not mac1_ok("DEV")
    assert mac2("DEV") != card_mac2


def test_key_set_files_are_relative_to_the_map_not_the_cwd(
    tmp_path: Path, lab_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(lab_dir.parent)
    key_map = load_key_map(Path(lab_dir.name) / "keymap.json")  # a relative map path
    monkeypatch.chdir(elsewhere)
    store = KeyStore()
    store.import_shipped_key_set("dev")
    assert key_map.import_key_sets(store) == ["LAB1"]
    assert store.key_set_names() == ["DEV", "LAB1"]


def test_absolute_key_set_path(tmp_path: Path, lab_keys: dict[str, bytes]) -> None:
    keys = write(tmp_path / "vault" / "keys.json", key_set_document("LAB2", lab_keys))
    path = write(
        tmp_path / "maps" / "map.json",
        {"format": KEYMAP_FORMAT, "key_set_files": [str(keys)], "default": "LAB2"},
    )
    hsm, key_map = hsm_from_key_map(path)
    assert hsm.key_sets() == ["DEV", "LAB2"]
    assert key_map.key_set_for() == "LAB2"


def test_given_keystore_is_used_as_is(lab_dir: Path) -> None:
    """No DEV is added to a store the caller passes, so a map defaulting to DEV is refused."""
    with pytest.raises(KeyMapError, match=r"'DEV' \(used by default\); loaded: LAB1$"):
        hsm_from_key_map(lab_dir / "keymap.json", keystore=KeyStore())
    document = json.loads((lab_dir / "keymap.json").read_text(encoding="utf-8"))
    document["default"] = "LAB1"
    path = write(lab_dir / "lab-only.json", document)
    hsm, _ = hsm_from_key_map(path, keystore=KeyStore())
    assert hsm.key_sets() == ["LAB1"]


def test_references_and_names() -> None:
    key_map = parse_key_map(PRECEDENCE_MAP)
    assert key_map.references()[0] == ("default", "FALLBACK")
    assert ("by_asn_prefix.010001144", "MID") in key_map.references()
    assert key_map.key_set_names() == ["FALLBACK", "EXACT", "SHORT", "MID", "LONG", "ISSUER"]


def test_check_key_sets_against_an_hsm(lab_dir: Path) -> None:
    key_map = load_key_map(lab_dir / "keymap.json")
    with pytest.raises(KeyMapError, match=r"'LAB1' \(used by by_asn\.0100011440"):
        key_map.check_key_sets(MockHsm().key_sets())
    key_map.check_key_sets(["DEV", "LAB1"])  # no error


def test_documented_example(tmp_path: Path, lab_keys: dict[str, bytes]) -> None:
    """The example in docs/lab-keys.md loads, and resolves as the text says."""
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert example is not None
    write(tmp_path / "lab-keys.json", key_set_document("LAB1", lab_keys))
    path = tmp_path / "keymap.json"
    path.write_text(example.group(1), encoding="utf-8")
    hsm, key_map = hsm_from_key_map(path)
    assert hsm.key_sets() == ["DEV", "LAB1"]
    resolve = key_map.key_set_for
    assert resolve(bytes.fromhex("01000114400000000001")) == "LAB1"
    assert resolve(bytes.fromhex("01000114400000000002")) == "LAB1"
    assert resolve(bytes.fromhex("01000114409000000001")) == "DEV"
    assert resolve(bytes.fromhex("01000114500000000001"), bytes.fromhex("10FFFFFFFFFFFF01")) == (
        "LAB1"
    )
    assert resolve(bytes.fromhex("01000114500000000001"), DEV_ISSUER) == "DEV"
    assert "--key-map FILE" in text


# KeyMap built in code -----------------------------------------------------------------------------


def test_keymap_in_code_is_validated_and_frozen() -> None:
    by_asn = {LAB_ASN: "LAB1"}
    key_map = KeyMap(by_asn=by_asn, by_asn_prefix={"0a": "LAB2"})
    by_asn[OTHER_ASN] = "LAB1"
    assert key_map.key_set_for(OTHER_ASN) == "DEV"
    assert key_map.key_set_for(bytes.fromhex("0A000000000000000000")) == "LAB2"
    with pytest.raises(TypeError):
        key_map.by_asn[OTHER_ASN] = "LAB1"  # type: ignore[index]
    with pytest.raises(KeyMapError, match=r"by_asn: 0114400000000001 is not an ASN \(10 bytes\)"):
        KeyMap(by_asn={LAB_ASN[2:]: "LAB1"})
    with pytest.raises(
        KeyMapError, match=r"by_issuer: 01000114400000000001 is not an issuer id \(8 bytes\)"
    ):
        KeyMap(by_issuer={LAB_ASN: "LAB1"})
    with pytest.raises(KeyMapError, match="duplicate entry 0A"):
        KeyMap(by_asn_prefix={"0a": "X", "0A": "X"})
    with pytest.raises(KeyMapError, match="default: 'bad name'"):
        KeyMap(default="bad name")
    with pytest.raises(KeyMapError, match="key_set_files must be paths"):
        KeyMap(key_set_files=("keys.json",))  # type: ignore[arg-type]


# Validation ---------------------------------------------------------------------------------------


def valid_map() -> Doc:
    return {
        "format": KEYMAP_FORMAT,
        "description": "validation base",
        "key_set_files": ["lab-keys.json"],
        "default": "DEV",
        "by_asn": {"01000114400000000001": "LAB1"},
        "by_asn_prefix": {"0100011440": "LAB1"},
        "by_issuer": {"10FFFFFFFFFFFF01": "LAB1"},
    }


def _set(member: str, value: object, entry: str | None = None) -> Callable[[Doc], None]:
    def edit(document: Doc) -> None:
        if entry is None:
            document[member] = value
        else:
            document[member][entry] = value

    return edit


def _delete(member: str) -> Callable[[Doc], None]:
    def edit(document: Doc) -> None:
        del document[member]

    return edit


A1 = "01000114400000000001"
INVALID: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown format", _set("format", "fuelsim.keymap/2"), "unknown format 'fuelsim.keymap/2'"),
    ("key-set format", _set("format", "fuelsim.keyset/1"), "unknown format"),
    ("no format", _delete("format"), "missing member: format"),
    ("unknown member", _set("by_asn8", {}), r"unknown member\(s\): by_asn8"),
    ("description type", _set("description", 1), "description must be a string"),
    ("default type", _set("default", 1), "default must be a key-set name"),
    ("default name", _set("default", "has space"), "default: 'has space' is not a key-set name"),
    ("by_asn not object", _set("by_asn", ["LAB1"]), "by_asn must be a JSON object"),
    ("asn not hex", _set("by_asn", "LAB1", "0100011440000000000G"), "by_asn: .* is not hex"),
    ("asn short", _set("by_asn", "LAB1", "010001144000000000"), "must be 20 hex digits.*got 18"),
    ("asn long", _set("by_asn", "LAB1", A1 + "00"), "must be 20 hex digits.*got 22"),
    ("asn spaces", _set("by_asn", "LAB1", "0100 0114 4000 0000 00"), "is not hex"),
    ("asn name type", _set("by_asn", 1, A1), f"by_asn.{A1} must be a key-set name"),
    ("asn name empty", _set("by_asn", "", A1), f"by_asn.{A1}: '' is not a key-set name"),
    (
        "ASN8 ambiguous",
        _set("by_asn", "DEV", "02000114400000000001"),
        "share their ASN8 0114400000000001",
    ),
    ("prefix empty", _set("by_asn_prefix", "LAB1", ""), "must be 1-19 hex digits"),
    ("prefix whole ASN", _set("by_asn_prefix", "LAB1", A1), "1-19 hex digits.*by_asn"),
    ("prefix not hex", _set("by_asn_prefix", "LAB1", "01X"), "by_asn_prefix.01X: '01X' is not"),
    ("prefix name", _set("by_asn_prefix", "LAB 1", "0100"), "by_asn_prefix.0100: 'LAB 1'"),
    ("issuer length", _set("by_issuer", "LAB1", A1), "by_issuer: .* must be 16 hex digits"),
    ("issuer not hex", _set("by_issuer", "LAB1", "10FFFFFFFFFFFFFG"), "by_issuer: .* not hex"),
    ("issuer not object", _set("by_issuer", "LAB1"), "by_issuer must be a JSON object"),
    ("files not list", _set("key_set_files", "lab-keys.json"), "key_set_files must be a JSON"),
    ("file not string", _set("key_set_files", [3]), r"key_set_files\[0\] must be a non-empty"),
    ("file empty", _set("key_set_files", [""]), r"key_set_files\[0\] must be a non-empty"),
    (
        "file listed twice",
        _set("key_set_files", ["lab-keys.json", "./sub/../lab-keys.json"]),
        r"key_set_files\[1\]: './sub/../lab-keys.json' is listed twice",
    ),
    ("empty object", lambda d: d.clear(), "missing member: format"),
]


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_map_is_refused(tmp_path: Path, edit: Callable[[Doc], None], pattern: str) -> None:
    document = copy.deepcopy(valid_map())
    edit(document)
    path = write(tmp_path / "keymap.json", document)
    with pytest.raises(KeyMapError, match=pattern) as caught:
        load_key_map(path)
    assert str(path) in str(caught.value)


def test_the_validation_base_is_valid(tmp_path: Path) -> None:
    """So each case above fails for its own edit, not for the base document."""
    key_map = load_key_map(write(tmp_path / "keymap.json", valid_map()))
    assert key_map.key_set_names() == ["DEV", "LAB1"]


def test_case_duplicates_are_named(tmp_path: Path) -> None:
    cases = [
        ("by_asn", "0100011440000000000a"),
        ("by_asn_prefix", "0a"),
        ("by_issuer", "10ffffffffffff0a"),
    ]
    for member, entry in cases:
        document = valid_map()
        document[member] = {entry: "LAB1", entry.upper(): "LAB1"}
        with pytest.raises(KeyMapError, match=f"{member}: duplicate entry"):
            load_key_map(write(tmp_path / "keymap.json", document))


def test_document_not_an_object() -> None:
    with pytest.raises(KeyMapError, match="the key map must be a JSON object"):
        parse_key_map(["fuelsim.keymap/1"], "list.json")


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "keymap.json"
    path.write_text('{"format": "fuelsim.keymap/1",', encoding="utf-8")
    with pytest.raises(KeyMapError, match="not a valid key-map JSON document"):
        load_key_map(path)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (f'{{"format": "{KEYMAP_FORMAT}", "by_asn": {{"{A1}": "DEV", "{A1}": "LAB1"}}}}', A1),
        (f'{{"format": "{KEYMAP_FORMAT}", "default": "DEV", "default": "LAB1"}}', "default"),
    ],
    ids=["same ASN twice", "same member twice"],
)
def test_duplicate_json_members_are_refused(text: str, name: str) -> None:
    with pytest.raises(KeyMapError, match=f"dup.json: duplicate member or entry '{name}'"):
        parse_key_map_text(text, "dup.json")


def test_missing_map_file(tmp_path: Path) -> None:
    with pytest.raises(KeyMapError, match="cannot read the key-map file"):
        load_key_map(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("member", "entry", "where"),
    [
        ("default", None, "default"),
        ("by_asn", A1, f"by_asn.{A1}"),
        ("by_asn_prefix", "0100011440", "by_asn_prefix.0100011440"),
        ("by_issuer", "10FFFFFFFFFFFF01", "by_issuer.10FFFFFFFFFFFF01"),
    ],
)
def test_unknown_key_set_name_is_refused(
    lab_dir: Path, member: str, entry: str | None, where: str
) -> None:
    document = valid_map()
    _set(member, "LAB9", entry)(document)
    store = KeyStore()
    store.import_shipped_key_set("dev")
    path = write(lab_dir / "keymap.json", document)
    with pytest.raises(KeyMapError, match=rf"'LAB9' \(used by {where}\); loaded: DEV, LAB1"):
        hsm_from_key_map(path, keystore=store)
    assert store.key_set_names() == ["DEV"]  # nothing imported


def test_every_unknown_name_is_listed(lab_dir: Path) -> None:
    document = valid_map()
    document["default"] = "LAB8"
    document["by_issuer"] = {"10FFFFFFFFFFFF01": "LAB9"}
    path = write(lab_dir / "keymap.json", document)
    with pytest.raises(KeyMapError, match=r"'LAB8' .*'LAB9' "):
        hsm_from_key_map(path)


def test_lab_set_named_dev_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "lab-keys.json", key_set_document("DEV", random_keys()))
    path = write(
        tmp_path / "keymap.json", {"format": KEYMAP_FORMAT, "key_set_files": ["lab-keys.json"]}
    )
    with pytest.raises(KeyMapError, match="key set 'DEV', which the HSM already holds"):
        hsm_from_key_map(path)


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.json", key_set_document("LAB1", random_keys()))
    write(tmp_path / "b.json", key_set_document("LAB1", random_keys()))
    path = write(
        tmp_path / "keymap.json", {"format": KEYMAP_FORMAT, "key_set_files": ["a.json", "b.json"]}
    )
    store = KeyStore()
    with pytest.raises(KeyMapError, match=r"a\.json and .*b\.json both define key set 'LAB1'"):
        hsm_from_key_map(path, keystore=store)
    assert store.key_set_names() == []


def test_bad_key_set_file_is_refused_before_anything_loads(
    tmp_path: Path, lab_keys: dict[str, bytes]
) -> None:
    write(tmp_path / "good.json", key_set_document("LAB1", lab_keys))
    bad = key_set_document("LAB2", random_keys())
    bad["keys"]["MTK"]["kcv"] = "000000" if bad["keys"]["MTK"]["kcv"] != "000000" else "111111"
    write(tmp_path / "bad.json", bad)
    path = write(
        tmp_path / "keymap.json",
        {"format": KEYMAP_FORMAT, "key_set_files": ["good.json", "bad.json"]},
    )
    store = KeyStore()
    with pytest.raises(KcvMismatch, match="MTK") as caught:
        hsm_from_key_map(path, keystore=store)
    assert str(tmp_path / "bad.json") in str(caught.value)
    assert store.key_set_names() == []


def test_missing_key_set_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "keymap.json", {"format": KEYMAP_FORMAT, "key_set_files": ["no.json"]})
    with pytest.raises(KeySetFormatError, match=r"no\.json: cannot read the key-set file"):
        hsm_from_key_map(path)
