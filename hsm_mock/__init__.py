"""The simulator's mock HSM: master keys wrapped under a local master key, card and PSAM
personalisation, and the host-side MAC/TAC checks of the fuel-card protocol (spec §3).

It implements `cardcore.ports.Hsm` and imports only `cardcore`, the stdlib and pycryptodome.
"""

from hsm_mock.errors import (
    HsmError,
    HsmInputError,
    KcvMismatch,
    KeyMapError,
    KeySetExists,
    KeySetFormatError,
    LmkError,
    UnknownKeySet,
)
from hsm_mock.hsm import DEFAULT_KEY_SET, MockHsm, key_report
from hsm_mock.keymap import (
    KEYMAP_FORMAT,
    KeyMap,
    hsm_from_key_map,
    load_key_map,
    parse_key_map,
)
from hsm_mock.keyset_file import (
    FORMAT,
    KeySet,
    load_key_set_file,
    load_shipped_key_set,
    parse_key_set,
)
from hsm_mock.keystore import KeySetInfo, KeyStore, WrappedKeySet
from hsm_mock.lmk import Lmk

__all__ = [
    "DEFAULT_KEY_SET",
    "FORMAT",
    "KEYMAP_FORMAT",
    "HsmError",
    "HsmInputError",
    "KcvMismatch",
    "KeyMap",
    "KeyMapError",
    "KeySet",
    "KeySetExists",
    "KeySetFormatError",
    "KeySetInfo",
    "KeyStore",
    "Lmk",
    "LmkError",
    "MockHsm",
    "UnknownKeySet",
    "WrappedKeySet",
    "hsm_from_key_map",
    "key_report",
    "load_key_map",
    "load_key_set_file",
    "load_shipped_key_set",
    "parse_key_map",
    "parse_key_set",
]
