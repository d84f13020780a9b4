"""The errors the mock HSM raises, so callers can tell a bad key set from a bad request."""

from __future__ import annotations

from cardcore.errors import FuelsimError


class HsmError(FuelsimError):
    """Root of every mock-HSM error."""

    title = "HSM error"


class UnknownKeySet(HsmError, LookupError):
    """An operation named a key set the HSM does not hold."""

    title = "unknown key set"

    def __init__(self, key_set: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(f"no key set named {key_set!r} (loaded: {names})")
        self.key_set = key_set


class KeySetExists(HsmError):
    """An import would silently replace a key set already held."""

    title = "key set already loaded"

    def __init__(self, key_set: str) -> None:
        super().__init__(f"a key set named {key_set!r} is already loaded")
        self.key_set = key_set


class KeySetFormatError(HsmError, ValueError):
    """A key-set file or definition that does not validate: says where and what."""

    title = "invalid key set"


class KcvMismatch(KeySetFormatError):
    """A key whose check value differs from the one the key-set file declares."""

    title = "key check value mismatch"

    def __init__(self, source: str, label: str, expected: bytes, actual: bytes) -> None:
        super().__init__(
            f"{source}: key {label}: KCV is {actual.hex().upper()}, "
            f"the key set declares {expected.hex().upper()}"
        )
        self.label = label


class LmkError(HsmError):
    """The local master key cannot be created, read, or does not open a wrapped key."""

    title = "local master key error"


class HsmInputError(HsmError, ValueError):
    """A request field with the wrong size or range (a caller bug, not a bad MAC)."""

    title = "invalid HSM request"


class KeyMapError(HsmError, ValueError):
    """A key-map file (`fuelsim.keymap/1`) that does not validate: says where and what."""

    title = "invalid key map"
