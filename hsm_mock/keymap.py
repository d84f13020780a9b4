"""Key maps: which HSM key set holds the master keys of which card (lab cards, `docs/lab-keys.md`).

Format `fuelsim.keymap/1` (one JSON object, no duplicate or unknown members)::

    {
      "format": "fuelsim.keymap/1",           required, exactly this string
      "description": "…",                     optional text
      "key_set_files": ["lab-keys.json"],     optional fuelsim.keyset/1 files to load; relative
                                              paths are relative to the map file's folder
      "default": "DEV",                       optional key-set name, default "DEV"
      "by_asn": {"<20 hex>": "LAB1"},         full ASN (10 bytes) → key-set name
      "by_asn_prefix": {"<1-19 hex>": "LAB1"},  leading hex digits of the ASN → key-set name
      "by_issuer": {"<16 hex>": "LAB2"}       issuer id (8 bytes) → key-set name
    }

Resolution, most specific first: exact ASN, then the longest matching ASN prefix, then the
issuer id, then the default. The HSM's card operations take ASN8 (the right-most 8 bytes of the
ASN); `KeyMap.key_set_for_asn8` matches `by_asn` entries on their last 8 bytes and skips the
prefixes, which describe the leading digits that ASN8 lacks.

Every key-set name the map references must be held by the HSM it is used with:
`KeyMap.import_key_sets` loads the listed files into a `KeyStore` and checks this before it
changes the store, and `hsm_from_key_map` builds a `MockHsm` (DEV plus the listed files) that way.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hsm_mock.errors import HsmInputError, KeyMapError
from hsm_mock.hsm import DEFAULT_KEY_SET, MockHsm
from hsm_mock.keyset_file import _NAME as _KEY_SET_NAME
from hsm_mock.keyset_file import KeySet, load_key_set_file
from hsm_mock.keystore import KeyStore

KEYMAP_FORMAT = "fuelsim.keymap/1"
ASN_SIZE = 10
ASN8_SIZE = 8
ISSUER_SIZE = 8
_PREFIX_MAX = 2 * ASN_SIZE - 1  # a 20-digit "prefix" is a whole ASN: it belongs in by_asn

_HEX = re.compile(r"[0-9A-Fa-f]*")
_TOP_ALLOWED = frozenset(
    {"format", "description", "key_set_files", "default", "by_asn", "by_asn_prefix", "by_issuer"}
)


def _check_name(where: str, path: str, name: object) -> str:
    if not isinstance(name, str) or not _KEY_SET_NAME.fullmatch(name):
        raise KeyMapError(
            f"{where}: {path}: {name!r} is not a key-set name (1-32 letters, digits, '_', '.' "
            "or '-', starting with a letter or digit)"
        )
    return name


def _argument(name: str, value: object, size: int, hint: str = "") -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise HsmInputError(f"{name} must be {size} bytes{hint}")
    return bytes(value)


@dataclass(frozen=True, slots=True)
class KeyMap:
    """Which key set to use for a card; validates itself however it is built.

    `by_asn` and `by_issuer` are keyed by bytes (10 and 8); `by_asn_prefix` by upper-case hex
    digits (1-19, an odd count is fine: ASNs are BCD, one digit per hex digit). `key_set_files`
    are the files `import_key_sets` loads, already resolved against the map file's folder.
    """

    default: str = DEFAULT_KEY_SET
    by_asn: Mapping[bytes, str] = field(default_factory=dict)
    by_asn_prefix: Mapping[str, str] = field(default_factory=dict)
    by_issuer: Mapping[bytes, str] = field(default_factory=dict)
    key_set_files: tuple[Path, ...] = ()
    description: str = ""
    source: str = "<key map>"
    _by_asn8: Mapping[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = self.source
        _check_name(where, "default", self.default)
        if not isinstance(self.description, str):
            raise KeyMapError(f"{where}: description must be a string")
        by_asn: dict[bytes, str] = {}
        by_asn8: dict[bytes, tuple[bytes, str]] = {}
        for asn, name in self.by_asn.items():
            label = asn.hex().upper() if isinstance(asn, bytes) else repr(asn)
            if not isinstance(asn, bytes) or len(asn) != ASN_SIZE:
                raise KeyMapError(f"{where}: by_asn: {label} is not an ASN ({ASN_SIZE} bytes)")
            by_asn[asn] = _check_name(where, f"by_asn.{label}", name)
            other = by_asn8.setdefault(asn[-ASN8_SIZE:], (asn, name))
            if other[1] != name:
                raise KeyMapError(
                    f"{where}: by_asn: {other[0].hex().upper()} ({other[1]}) and {label} "
                    f"({name}) share their ASN8 {asn[-ASN8_SIZE:].hex().upper()}, so a lookup "
                    "by ASN8 could not tell which key set to use"
                )
        prefixes: dict[str, str] = {}
        for prefix, name in self.by_asn_prefix.items():
            if (
                not isinstance(prefix, str)
                or not _HEX.fullmatch(prefix)
                or not 1 <= len(prefix) <= _PREFIX_MAX
            ):
                raise KeyMapError(
                    f"{where}: by_asn_prefix: {prefix!r} must be 1-{_PREFIX_MAX} hex digits "
                    f"(a whole ASN of {2 * ASN_SIZE} goes in by_asn)"
                )
            digits = prefix.upper()
            if digits in prefixes:
                raise KeyMapError(f"{where}: by_asn_prefix: duplicate entry {digits}")
            prefixes[digits] = _check_name(where, f"by_asn_prefix.{digits}", name)
        by_issuer: dict[bytes, str] = {}
        for issuer, name in self.by_issuer.items():
            label = issuer.hex().upper() if isinstance(issuer, bytes) else repr(issuer)
            if not isinstance(issuer, bytes) or len(issuer) != ISSUER_SIZE:
                raise KeyMapError(
                    f"{where}: by_issuer: {label} is not an issuer id ({ISSUER_SIZE} bytes)"
                )
            by_issuer[issuer] = _check_name(where, f"by_issuer.{label}", name)
        files = tuple(self.key_set_files)
        if not all(isinstance(path, Path) for path in files):
            raise KeyMapError(f"{where}: key_set_files must be paths")
        # Freeze private copies so the caller's dicts cannot change a validated map.
        object.__setattr__(self, "by_asn", MappingProxyType(by_asn))
        object.__setattr__(self, "by_asn_prefix", MappingProxyType(prefixes))
        object.__setattr__(self, "by_issuer", MappingProxyType(by_issuer))
        object.__setattr__(self, "key_set_files", files)
        object.__setattr__(
            self, "_by_asn8", MappingProxyType({k: v for k, (_, v) in by_asn8.items()})
        )

    # Lookup ------------------------------------------------------------------------------------

    def key_set_for(self, asn: bytes | None = None, issuer: bytes | None = None) -> str:
        """Exact ASN (10 bytes) > longest ASN prefix > issuer id (8 bytes) > default."""
        issuer = None if issuer is None else _argument("issuer", issuer, ISSUER_SIZE)
        if asn is not None:
            full = _argument(
                "asn", asn, ASN_SIZE, " (the whole ASN; for ASN8 use key_set_for_asn8)"
            )
            exact = self.by_asn.get(full)
            if exact is not None:
                return exact
            digits = full.hex().upper()
            for length in range(_PREFIX_MAX, 0, -1):
                by_prefix = self.by_asn_prefix.get(digits[:length])
                if by_prefix is not None:
                    return by_prefix
        return self._by_issuer(issuer)

    def key_set_for_asn8(self, asn8: bytes, issuer: bytes | None = None) -> str:
        """ASN8 = the last 8 bytes of a `by_asn` entry > issuer id > default (no prefixes)."""
        issuer = None if issuer is None else _argument("issuer", issuer, ISSUER_SIZE)
        exact = self._by_asn8.get(_argument("asn8", asn8, ASN8_SIZE))
        return exact if exact is not None else self._by_issuer(issuer)

    def _by_issuer(self, issuer: bytes | None) -> str:
        return self.default if issuer is None else self.by_issuer.get(issuer, self.default)

    # Key sets ----------------------------------------------------------------------------------

    def references(self) -> list[tuple[str, str]]:
        """(where, key-set name) for every name the map uses: default first, then the tables."""
        found = [("default", self.default)]
        found += [(f"by_asn.{asn.hex().upper()}", name) for asn, name in self.by_asn.items()]
        found += [(f"by_asn_prefix.{digits}", name) for digits, name in self.by_asn_prefix.items()]
        found += [(f"by_issuer.{iid.hex().upper()}", name) for iid, name in self.by_issuer.items()]
        return found

    def key_set_names(self) -> list[str]:
        """The distinct key-set names the map uses, in the order `references` first gives them."""
        return list(dict.fromkeys(name for _, name in self.references()))

    def check_key_sets(self, available: Iterable[str]) -> None:
        """Raise KeyMapError naming each key set the map uses that is not in `available`."""
        held = list(available)
        unknown: dict[str, str] = {}
        for where, name in self.references():
            if name not in held:
                unknown.setdefault(name, where)
        if unknown:
            listed = ", ".join(f"{name!r} (used by {where})" for name, where in unknown.items())
            raise KeyMapError(
                f"{self.source}: unknown key set(s) {listed}; loaded: {', '.join(held) or 'none'}"
            )

    def import_key_sets(self, store: KeyStore) -> list[str]:
        """Load `key_set_files` into `store`; returns their names.

        Every file is read and validated, and every name the map uses checked against the store
        plus the files, before the store changes: on an error the store is left as it was.
        """
        held = store.key_set_names()
        loaded: dict[str, tuple[Path, KeySet]] = {}
        for path in self.key_set_files:
            key_set = load_key_set_file(path)
            if key_set.name in loaded:
                raise KeyMapError(
                    f"{self.source}: key_set_files: {loaded[key_set.name][0]} and {path} both "
                    f"define key set {key_set.name!r}"
                )
            if key_set.name in held:
                raise KeyMapError(
                    f"{self.source}: key_set_files: {path} defines key set {key_set.name!r}, "
                    "which the HSM already holds; give the lab set another name"
                )
            loaded[key_set.name] = (path, key_set)
        self.check_key_sets([*held, *loaded])
        return [store.import_key_set(key_set) for _, key_set in loaded.values()]


# Files ------------------------------------------------------------------------------------------


def _object(where: str, path: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KeyMapError(f"{where}: {path} must be a JSON object")
    return value


def _hex(where: str, path: str, text: str, size: int) -> bytes:
    if not _HEX.fullmatch(text):
        raise KeyMapError(f"{where}: {path}: {text!r} is not hex")
    if len(text) != 2 * size:
        raise KeyMapError(
            f"{where}: {path}: {text!r} must be {2 * size} hex digits ({size} bytes), "
            f"got {len(text)}"
        )
    return bytes.fromhex(text)


def _table(where: str, member: str, value: object, size: int | None) -> dict[Any, str]:
    """A by_* object: hex keys (case-insensitive, so "ab" and "AB" are one entry) → names."""
    table: dict[Any, str] = {}
    for text, name in _object(where, member, value).items():
        path = f"{member}.{text}"
        if not isinstance(name, str):
            raise KeyMapError(f"{where}: {path} must be a key-set name (a string)")
        key: bytes | str
        if size is None:  # prefixes stay hex digits; KeyMap checks their length
            if not _HEX.fullmatch(text):
                raise KeyMapError(f"{where}: {path}: {text!r} is not hex")
            key = text.upper()
        else:
            key = _hex(where, member, text, size)
        if key in table:
            raise KeyMapError(f"{where}: {member}: duplicate entry {text!r} (hex case differs)")
        table[key] = name
    return table


def _files(where: str, value: object, base_dir: Path | None) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise KeyMapError(f"{where}: key_set_files must be a JSON array of paths")
    files: list[Path] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or not entry:
            raise KeyMapError(f"{where}: key_set_files[{index}] must be a non-empty path string")
        path = Path(os.path.normpath(Path(entry) if base_dir is None else base_dir / entry))
        if path in files:
            raise KeyMapError(f"{where}: key_set_files[{index}]: {entry!r} is listed twice")
        files.append(path)
    return tuple(files)


def parse_key_map(
    document: object, source: str = "<key map>", base_dir: str | os.PathLike[str] | None = None
) -> KeyMap:
    """Validate a decoded `fuelsim.keymap/1` document; errors name `source` and the member.

    Relative `key_set_files` are joined to `base_dir` (the map file's folder) when it is given.
    """
    top = _object(source, "the key map", document)
    if "format" not in top:
        raise KeyMapError(f"{source}: missing member: format (expected {KEYMAP_FORMAT!r})")
    if top["format"] != KEYMAP_FORMAT:
        raise KeyMapError(
            f"{source}: unknown format {top['format']!r} (this version reads {KEYMAP_FORMAT!r})"
        )
    unknown = sorted(set(top) - _TOP_ALLOWED)
    if unknown:
        raise KeyMapError(f"{source}: unknown member(s): {', '.join(unknown)}")
    default = top.get("default", DEFAULT_KEY_SET)
    if not isinstance(default, str):
        raise KeyMapError(f"{source}: default must be a key-set name (a string)")
    return KeyMap(
        default=default,
        by_asn=_table(source, "by_asn", top.get("by_asn", {}), ASN_SIZE),
        by_asn_prefix=_table(source, "by_asn_prefix", top.get("by_asn_prefix", {}), None),
        by_issuer=_table(source, "by_issuer", top.get("by_issuer", {}), ISSUER_SIZE),
        key_set_files=_files(
            source, top.get("key_set_files", []), None if base_dir is None else Path(base_dir)
        ),
        description=top.get("description", ""),
        source=source,
    )


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _Duplicate(name)
        result[name] = value
    return result


def parse_key_map_text(
    text: str, source: str = "<key map>", base_dir: str | os.PathLike[str] | None = None
) -> KeyMap:
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise KeyMapError(f"{source}: duplicate member or entry {exc.args[0]!r}") from None
    except ValueError as exc:  # JSONDecodeError
        raise KeyMapError(f"{source}: not a valid key-map JSON document: {exc}") from None
    return parse_key_map(document, source, base_dir)


def load_key_map(path: str | os.PathLike[str]) -> KeyMap:
    """Read and validate a key-map file; its `key_set_files` are resolved against its folder.

    This checks the map's own syntax only: which key sets exist is known once the files are
    loaded (`KeyMap.import_key_sets`, `hsm_from_key_map`) or an HSM is given (`check_key_sets`).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMapError(f"{source}: cannot read the key-map file: {exc}") from None
    return parse_key_map_text(text, source, Path(os.path.abspath(path)).parent)


def hsm_from_key_map(
    path: str | os.PathLike[str], *, keystore: KeyStore | None = None
) -> tuple[MockHsm, KeyMap]:
    """A MockHsm set up for a lab, and the map that picks its key set per card.

    `keystore` None = a fresh store (random LMK) holding DEV; the map's key-set files are added
    to it, and every key-set name the map uses must then be held.
    """
    key_map = load_key_map(path)
    if keystore is None:
        keystore = KeyStore()
        keystore.import_shipped_key_set("dev")
    key_map.import_key_sets(keystore)
    return MockHsm(keystore), key_map
