"""Byte patterns of recorded commands and answers: `..` for any byte, `{name:N}` for N named
bytes (what replays tolerate and what redaction leaves in place of secrets)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import count

# Patterns ---------------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAPTURE = re.compile(r"\{([^:{}]*):([^{}]*)\}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


@dataclass(frozen=True, slots=True)
class Wild:
    """`length` bytes that may be anything; a name (`{MAC:4}`) labels them in diffs."""

    length: int
    name: str | None = None

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError("a wildcard covers at least one byte")
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a pattern name ([A-Za-z_][A-Za-z0-9_]*)")

    def __str__(self) -> str:
        if self.name is None:
            return " ".join([".."] * self.length)
        return f"{{{self.name}:{self.length}}}"


Part = bytes | Wild


@dataclass(frozen=True, slots=True)
class Pattern:
    """Bytes with wildcards, in canonical form: at least one Wild, no empty or adjacent literal
    parts, no adjacent unnamed wildcards. `Pattern.of` builds one from any parts."""

    parts: tuple[Part, ...]

    def __post_init__(self) -> None:
        if not any(isinstance(part, Wild) for part in self.parts):
            raise ValueError("a pattern without wildcards is plain bytes")
        for before, after in zip(self.parts, self.parts[1:], strict=False):
            if isinstance(before, bytes) and isinstance(after, bytes):
                raise ValueError("adjacent literal parts: join them")
            if (
                isinstance(before, Wild)
                and isinstance(after, Wild)
                and not (before.name or after.name)
            ):
                raise ValueError("adjacent unnamed wildcards: join them")
        if any(part == b"" for part in self.parts):
            raise ValueError("empty literal part")

    @staticmethod
    def of(parts: Iterable[Part]) -> bytes | Pattern:
        """Canonical bytes or Pattern from any sequence of parts."""
        out: list[Part] = []
        for part in parts:
            if part == b"":
                continue
            last = out[-1] if out else None
            if isinstance(part, bytes) and isinstance(last, bytes):
                out[-1] = last + part
            elif (
                isinstance(part, Wild)
                and isinstance(last, Wild)
                and part.name is None
                and last.name is None
            ):
                out[-1] = Wild(last.length + part.length)
            else:
                out.append(part)
        if all(isinstance(part, bytes) for part in out):
            return b"".join(part for part in out if isinstance(part, bytes))
        return Pattern(tuple(out))

    def __len__(self) -> int:
        return sum(part.length if isinstance(part, Wild) else len(part) for part in self.parts)

    def __str__(self) -> str:
        return " ".join(
            _spaced(part) if isinstance(part, bytes) else str(part) for part in self.parts
        )

    def matches(self, data: bytes) -> bool:
        return len(data) == len(self) and not differences(self, data)

    def spans(self) -> list[tuple[int, Part]]:
        """Each part with its offset."""
        out, pos = [], 0
        for part in self.parts:
            out.append((pos, part))
            pos += part.length if isinstance(part, Wild) else len(part)
        return out

    def captures(self, data: bytes) -> list[tuple[str, int, bytes]]:
        """The bytes of `data` under each named wildcard: (name, offset, bytes)."""
        return [
            (part.name, pos, data[pos : pos + part.length])
            for pos, part in self.spans()
            if isinstance(part, Wild) and part.name is not None
        ]

    def filled(self, byte: int = 0) -> bytes:
        """The pattern with every wildcard byte set to `byte`."""
        return b"".join(
            bytes((byte,)) * part.length if isinstance(part, Wild) else part for part in self.parts
        )


Payload = bytes | Pattern


def differences(expected: Payload, got: bytes) -> list[int]:
    """Offsets where `got` does not fit `expected`, including every byte past the shorter one."""
    cells = _cells(expected)
    short = min(len(cells), len(got))
    wrong = [p for p in range(short) if isinstance(cells[p], int) and cells[p] != got[p]]
    return wrong + list(range(short, max(len(cells), len(got))))


def parse_payload(text: str) -> Payload:
    """Tokens separated by blanks: hex bytes (`90`, `9000`), `..`, `{name:N}`. ValueError if bad."""
    parts: list[Part] = []
    for token in text.split():
        if _HEX.fullmatch(token):
            parts.append(bytes.fromhex(token))
        elif token == "..":
            parts.append(Wild(1))
        elif match := _CAPTURE.fullmatch(token):
            name, size = match[1], match[2]
            if not _NAME.fullmatch(name):
                raise ValueError(f"{token}: pattern names are [A-Za-z_][A-Za-z0-9_]*")
            if not size.isdigit() or int(size) < 1:
                raise ValueError(f"{token}: the byte count must be a whole number of at least 1")
            parts.append(Wild(int(size), name))
        else:
            raise ValueError(
                f"{token!r} is not a byte: expected hex bytes (9000), '..' or '{{name:count}}'"
            )
    return Pattern.of(parts)


def format_payload(payload: Payload, *, compact: bool = False) -> str:
    """Spaced upper-case hex (or contiguous with `compact`), patterns in their text form."""
    if isinstance(payload, Pattern):
        return str(payload)
    return payload.hex().upper() if compact else _spaced(payload)


def _spaced(raw: bytes) -> str:
    return raw.hex(" ").upper()


# One byte of a payload: its value, or (group, name) for a wildcard byte; a group is one Wild.
Cell = int | tuple[int, str | None]
_groups = count()


def _cells(payload: Payload) -> list[Cell]:
    if isinstance(payload, bytes):
        return list(payload)
    out: list[Cell] = []
    for part in payload.parts:
        if isinstance(part, bytes):
            out += list(part)
        else:
            group = next(_groups)
            out += [(group, part.name)] * part.length
    return out


def _from_cells(cells: Sequence[Cell]) -> Payload:
    parts: list[Part] = []
    pos = 0
    while pos < len(cells):
        cell = cells[pos]
        end = pos + 1
        if isinstance(cell, int):
            while end < len(cells) and isinstance(cells[end], int):
                end += 1
            parts.append(bytes(c for c in cells[pos:end] if isinstance(c, int)))
        else:
            while end < len(cells) and cells[end] == cell:
                end += 1
            parts.append(Wild(end - pos, cell[1]))
        pos = end
    return Pattern.of(parts)
