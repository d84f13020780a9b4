"""The trace format's name and file suffixes, and the errors of reading and replaying traces."""

from __future__ import annotations

from cardcore.errors import FuelsimError

FORMAT = "fuelsim-trace/1"
HEADER = f"# {FORMAT}"
TEXT_SUFFIX = ".trace"
JSONL_SUFFIX = ".jsonl"


class TraceFormatError(FuelsimError):
    """A trace file that does not follow fuelsim-trace/1; names the line (1-based) at fault."""

    title = "bad trace"

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None):
        where = (f"{source}: " if source else "") + (f"line {line}: " if line else "")
        super().__init__(where + message)
        self.detail, self.line, self.source = message, line, source


class UnreplayableTrace(FuelsimError):
    """A trace (or part of one) that cannot be sent to a card: masked commands, missing readers."""

    title = "trace cannot be replayed"
