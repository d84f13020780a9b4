"""Key-set files: the documented JSON format master keys arrive in, and its strict validation.

Format `fuelsim.keyset/1` (one JSON object, no duplicate or unknown members)::

    {
      "format": "fuelsim.keyset/1",             required, exactly this string
      "name": "DEV",                            required, 1-32 of A-Z a-z 0-9 _ . - (first alnum)
      "description": "…",                       optional text
      "key_version": 1,                         optional integer 0-255, default 1
      "keys": {                                 required, exactly the labels of MASTER_KEY_LABELS
        "MPK": {"value": "32 hex digits",       the 2-key 3DES key (16 bytes)
                "kcv": "6 hex digits"},         optional; checked when present
        …
      }
    }

A `KeySet` is the validated, still clear content of one such file on its way into a `KeyStore`,
which wraps it under its LMK. The DEV set ships as package data (`hsm_mock/keysets/dev.json`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cardcore.crypto import is_single_des, kcv
from cardcore.keys import MASTER_KEY_LABELS
from hsm_mock.errors import KcvMismatch, KeySetFormatError

FORMAT = "fuelsim.keyset/1"
KEY_SIZE = 16
KCV_SIZE = 3
DEFAULT_KEY_VERSION = 1
SHIPPED_PACKAGE = "hsm_mock"
SHIPPED_FOLDER = "keysets"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_TOP_REQUIRED = frozenset({"format", "name", "keys"})
_TOP_ALLOWED = _TOP_REQUIRED | {"description", "key_version"}
_ENTRY_ALLOWED = frozenset({"value", "kcv"})


@dataclass(frozen=True, slots=True, repr=False)
class KeySet:
    """A named, validated set of clear master keys; validates itself however it is built."""

    name: str
    keys: Mapping[str, bytes]
    description: str = ""
    key_version: int = DEFAULT_KEY_VERSION
    declared_kcvs: Mapping[str, bytes] = field(default_factory=dict)
    source: str = "<key set>"

    def __post_init__(self) -> None:
        where = self.source
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise KeySetFormatError(
                f"{where}: name {self.name!r} must be 1-32 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if isinstance(self.key_version, bool) or not isinstance(self.key_version, int):
            raise KeySetFormatError(f"{where}: key_version must be an integer")
        if not 0 <= self.key_version <= 0xFF:
            raise KeySetFormatError(f"{where}: key_version {self.key_version} is not 0-255")
        _check_labels(where, "keys", self.keys, required=True)
        _check_labels(where, "KCVs", self.declared_kcvs, required=False)
        for label in MASTER_KEY_LABELS:
            key = self.keys[label]
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise KeySetFormatError(f"{where}: key {label} must be {KEY_SIZE} bytes")
            if is_single_des(key):
                raise KeySetFormatError(
                    f"{where}: key {label} degenerates to single DES (its halves are equal)"
                )
            actual = kcv(key)
            expected = self.declared_kcvs.get(label)
            if expected is None:
                continue
            if not isinstance(expected, bytes) or len(expected) != KCV_SIZE:
                raise KeySetFormatError(f"{where}: the KCV of {label} must be {KCV_SIZE} bytes")
            if actual != expected:
                raise KcvMismatch(where, label, expected, actual)
        # Freeze private copies so the caller's dicts cannot change a validated set.
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "declared_kcvs", MappingProxyType(dict(self.declared_kcvs)))

    def __repr__(self) -> str:
        return f"KeySet(name={self.name!r}, <{len(self.keys)} keys>)"


def _check_labels(where: str, what: str, found: Mapping[str, object], *, required: bool) -> None:
    unknown = sorted(set(found) - set(MASTER_KEY_LABELS))
    if unknown:
        raise KeySetFormatError(
            f"{where}: unknown key label(s) in {what}: {', '.join(map(str, unknown))} "
            f"(labels are {', '.join(MASTER_KEY_LABELS)})"
        )
    missing = [label for label in MASTER_KEY_LABELS if label not in found]
    if required and missing:
        raise KeySetFormatError(f"{where}: missing key(s): {', '.join(missing)}")


def _hex(where: str, path: str, value: object, size: int) -> bytes:
    if not isinstance(value, str):
        raise KeySetFormatError(f"{where}: {path} must be a hex string")
    if not re.fullmatch(r"[0-9A-Fa-f]*", value):
        raise KeySetFormatError(f"{where}: {path} is not hex: {value!r}")
    if len(value) != 2 * size:
        raise KeySetFormatError(
            f"{where}: {path} must be {2 * size} hex digits ({size} bytes), got {len(value)}"
        )
    return bytes.fromhex(value)


def _members(where: str, path: str, value: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KeySetFormatError(f"{where}: {path} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise KeySetFormatError(f"{where}: unknown member(s) in {path}: {', '.join(unknown)}")
    return value


def parse_key_set(document: object, source: str = "<key set>") -> KeySet:
    """Validate a decoded `fuelsim.keyset/1` document; errors name `source` and the member."""
    top = _members(source, "the key set", document, _TOP_ALLOWED)
    if "format" in top and top["format"] != FORMAT:
        raise KeySetFormatError(
            f"{source}: unknown format {top['format']!r} (this version reads {FORMAT!r})"
        )
    absent = sorted(_TOP_REQUIRED - set(top))
    if absent:
        raise KeySetFormatError(f"{source}: missing member(s): {', '.join(absent)}")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise KeySetFormatError(f"{source}: description must be a string")
    entries = top["keys"]
    if not isinstance(entries, dict):
        raise KeySetFormatError(f"{source}: keys must be a JSON object")
    _check_labels(source, "keys", entries, required=True)
    keys: dict[str, bytes] = {}
    kcvs: dict[str, bytes] = {}
    for label, entry in entries.items():
        member = _members(source, f"keys.{label}", entry, _ENTRY_ALLOWED)
        if "value" not in member:
            raise KeySetFormatError(f"{source}: keys.{label} has no value")
        keys[label] = _hex(source, f"keys.{label}.value", member["value"], KEY_SIZE)
        if "kcv" in member:
            kcvs[label] = _hex(source, f"keys.{label}.kcv", member["kcv"], KCV_SIZE)
    return KeySet(
        name=top["name"],
        keys=keys,
        description=description,
        key_version=top.get("key_version", DEFAULT_KEY_VERSION),
        declared_kcvs=kcvs,
        source=source,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def parse_key_set_text(text: str, source: str = "<key set>") -> KeySet:
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # JSONDecodeError is a ValueError, and so is a duplicate member
        raise KeySetFormatError(f"{source}: not a valid key-set JSON document: {exc}") from None
    return parse_key_set(document, source)


def load_key_set_file(path: str | os.PathLike[str]) -> KeySet:
    """Read and validate a user key-set file from any path."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeySetFormatError(f"{source}: cannot read the key-set file: {exc}") from None
    return parse_key_set_text(text, source)


def shipped_key_set_names() -> list[str]:
    """File stems of the key sets shipped as package data ("dev", …)."""
    folder = resources.files(SHIPPED_PACKAGE) / SHIPPED_FOLDER
    return sorted(
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def load_shipped_key_set(stem: str = "dev") -> KeySet:
    """Read a key set shipped with the package (`hsm_mock/keysets/<stem>.json`)."""
    if stem not in shipped_key_set_names():
        raise KeySetFormatError(f"no shipped key set {stem!r} (shipped: {shipped_key_set_names()})")
    source = f"{SHIPPED_PACKAGE}/{SHIPPED_FOLDER}/{stem}.json"
    entry = resources.files(SHIPPED_PACKAGE) / SHIPPED_FOLDER / f"{stem}.json"
    return parse_key_set_text(entry.read_text(encoding="utf-8"), source)
