"""The one root error type of fuelsim, and the parse error that points at the offending byte."""

from __future__ import annotations


class FuelsimError(Exception):
    """Root of every error fuelsim raises on purpose; `title` is a short line for a UI."""

    title = "fuelsim error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        if title is not None:
            self.title = title


class DecodeError(FuelsimError, ValueError):
    """Bytes that do not parse: names the field and the offset where parsing stopped."""

    title = "malformed data"

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.field = field
        self.offset = offset
