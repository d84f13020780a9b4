"""The local master key (LMK): the one key that wraps every other key the mock HSM holds at rest.

A real HSM keeps its LMK in tamper-resistant memory; this mock keeps 32 random bytes in the process,
or in a file (raw 32 bytes, mode 0600) when a data directory should keep wrapped keys usable across
runs.

Wrapping is AES-256-GCM. A blob is nonce (12) ‖ ciphertext ‖ tag (16); the associated data binds it
to its key-set name and key label, so a blob copied into another slot, or opened under another LMK,
fails its tag check instead of yielding a wrong key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from Crypto.Cipher import AES

from hsm_mock.errors import LmkError

LMK_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_TAG = b"fuelsim.lmk-wrap/1"


def _aad(key_set: str, label: str) -> bytes:
    parts = [key_set.encode(), label.encode()]
    if any(len(part) > 0xFF for part in parts):
        raise LmkError("key-set names and key labels are at most 255 bytes")
    # Length-prefixed, so ("AB", "C") and ("A", "BC") never share associated data.
    return _AAD_TAG + b"".join(bytes([len(part)]) + part for part in parts)


class Lmk:
    """Wraps and unwraps keys; never shows its own bytes."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != LMK_SIZE:
            raise LmkError(f"an LMK is {LMK_SIZE} bytes")
        self._key = key

    @classmethod
    def generate(cls) -> Lmk:
        return cls(os.urandom(LMK_SIZE))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Lmk:
        """Read the LMK kept in `path`, or create it there (0600) if the file does not exist."""
        target = Path(path)
        if not target.exists():
            created = cls._create_file(target)
            if created is not None:
                return created
        return cls._read_file(target)

    @classmethod
    def _create_file(cls, target: Path) -> Lmk | None:
        """Write a fresh LMK atomically; None if another process created the file first."""
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = os.urandom(LMK_SIZE)
            # Write a private temporary file, then hard-link it into place: the LMK file never
            # exists half-written, and an LMK someone else just created is never overwritten.
            temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(temp, flags, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(key)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(temp, target)
            except FileExistsError:
                return None
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise LmkError(f"cannot create the LMK file {target}: {exc}") from exc
        return cls(key)

    @classmethod
    def _read_file(cls, target: Path) -> Lmk:
        try:
            info = target.stat()
            if not stat.S_ISREG(info.st_mode):
                raise LmkError(f"the LMK path {target} is not a regular file")
            if os.name == "posix" and info.st_mode & 0o077:
                raise LmkError(
                    f"the LMK file {target} is readable by others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
                )
            key = target.read_bytes()
        except OSError as exc:
            raise LmkError(f"cannot read the LMK file {target}: {exc}") from exc
        if len(key) != LMK_SIZE:
            raise LmkError(f"the LMK file {target} holds {len(key)} bytes, not {LMK_SIZE}")
        return cls(key)

    def wrap(self, key: bytes, *, key_set: str, label: str) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        cipher.update(_aad(key_set, label))
        ciphertext, tag = cipher.encrypt_and_digest(key)
        return nonce + bytes(ciphertext) + bytes(tag)

    def unwrap(self, blob: bytes, *, key_set: str, label: str) -> bytes:
        if len(blob) <= NONCE_SIZE + TAG_SIZE:
            raise LmkError(f"the wrapped blob of {key_set}/{label} is too short")
        nonce, body, tag = blob[:NONCE_SIZE], blob[NONCE_SIZE:-TAG_SIZE], blob[-TAG_SIZE:]
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        cipher.update(_aad(key_set, label))
        try:
            return bytes(cipher.decrypt_and_verify(body, tag))
        except ValueError:
            raise LmkError(
                f"the wrapped key {key_set}/{label} does not open under this LMK "
                "(another LMK wrapped it, or the blob is damaged)"
            ) from None

    def __repr__(self) -> str:
        return "Lmk(<hidden>)"
