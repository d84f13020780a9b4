"""Redaction of PINs and MACs, and export as a pcsc-tools `scriptor` script."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.commands import FIELDS, Fields, command_name
from terminal_sim.traces.errors import FORMAT, UnreplayableTrace
from terminal_sim.traces.formats import _apdu_of, command_label
from terminal_sim.traces.model import Trace
from terminal_sim.traces.patterns import (
    _NAME,
    Cell,
    _cells,
    _from_cells,
    _groups,
    _spaced,
    format_payload,
)

# Redaction --------------------------------------------------------------------------------------
SECRET_MARKERS = ("PIN", "MAC", "TAC")  # any field whose name contains one of these is masked

# Bill bytes 31–42 hold the card TAC, the GMAC and the PSAM TAC (cardcore.records.BILL_BODY);
# DES CRYPT carries them to the PSAM for the TMAC.
_BILL_SECRETS = ((31, 4, "TAC"), (35, 4, "GMAC"), (39, 4, "PSAM_TAC"))


def _secret_name(field_name: str) -> str | None:
    if not any(marker in field_name for marker in SECRET_MARKERS):
        return None
    name = re.sub(r"[^A-Za-z0-9_]", "_", field_name)
    return name if _NAME.fullmatch(name) else f"_{name}"


def _command_layout(name: str, data: Sequence[Cell]) -> Fields:
    """Where the secrets are in the data of commands whose FIELDS layout does not say."""
    size = len(data)
    if name == "CHANGE PIN":
        separator = next((i for i, c in enumerate(data) if c == 0xFF), None)
        if separator is None:
            return (("PIN", None),)
        return (("old PIN", separator), ("separator", 1), ("new PIN", None))
    if name == "RELOAD PIN":
        return (("PIN", max(size - 4, 0)), ("MAC", None))
    if name == "UPDATE BINARY (MAC)":
        return (("data", max(size - 4, 0)), ("MAC", None))
    if name in ("APPLICATION BLOCK", "APPLICATION UNBLOCK"):
        return (("MAC", None),)
    return FIELDS.get(name, ((), ()))[0]


def _field_ranges(layout_: Fields, size: int) -> list[tuple[str, int, int]]:
    """(name, start, end) of each field of a layout over `size` bytes (as split_fields cuts)."""
    out, pos = [], 0
    for name, length in layout_:
        if pos >= size:
            break
        end = size if length is None else min(pos + length, size)
        out.append((name, pos, end))
        pos = end
    return out


def _mask(cells: list[Cell], start: int, end: int, name: str) -> None:
    group = next(_groups)
    for pos in range(start, min(end, len(cells))):
        cells[pos] = (group, name)


def _mask_fields(cells: list[Cell], offset: int, layout_: Fields, size: int) -> None:
    for field_name, start, end in _field_ranges(layout_, size):
        secret = _secret_name(field_name)
        if secret is not None and end > start:
            _mask(cells, offset + start, offset + end, secret)


_SECRETS = {"VERIFY", "CHANGE PIN", "RELOAD PIN"} | {
    name for name, (cmd_fields, _) in FIELDS.items() if any(_secret_name(f) for f, _ in cmd_fields)
}


def redact(trace: Trace) -> Trace:
    """A copy with PINs, MACs and TACs replaced by named wildcards (`{PIN:3}`, `{MAC1:4}`…).

    Masked answers still replay as assertions (a wildcard matches anything); masked commands
    cannot be sent again (see `replay`). Lengths are kept, so the PIN's length shows.
    """
    entries = []
    bill_offset: dict[str, int] = {}
    for entry in trace.entries:
        command = _cells(entry.command)
        apdu = _apdu_of(entry.command)
        response = entry.response
        if apdu is None:  # malformed: hide everything after the header of a secret command
            header = bytes(c if isinstance(c, int) else 0 for c in command[:4])
            if len(header) == 4 and command_name(CommandApdu.from_bytes(header)) in _SECRETS:
                _mask(command, 5, len(command), "secret")
        else:
            name = command_name(apdu)
            data_at = 7 if apdu.extended else 5
            data = command[data_at : data_at + len(apdu.data)]
            _mask_fields(command, data_at, _command_layout(name, data), len(data))
            if name == "INIT FOR DESCRYPT":
                bill_offset[entry.reader] = 0
            elif name == "DES CRYPT" and apdu.p1 & layout.PSAM_DES_CRYPT_MAC:
                seen = bill_offset.get(entry.reader, 0)
                for start, size, secret in _BILL_SECRETS:
                    lo, hi = max(start - seen, 0), min(start + size - seen, len(data))
                    if lo < hi:
                        _mask(command, data_at + lo, data_at + hi, secret)
                more = apdu.p1 & layout.PSAM_DES_CRYPT_MORE
                bill_offset[entry.reader] = seen + len(data) if more else 0
            if response is not None and len(response) > 2:
                answer = _cells(response)
                _mask_fields(answer, 0, FIELDS.get(name, ((), ()))[1], len(answer) - 2)
                response = _from_cells(answer)
        entries.append(replace(entry, command=_from_cells(command), response=response))
    meta = dict(trace.meta)
    meta["redacted"] = "PIN, MAC and TAC fields masked"
    return Trace(entries, meta)


# scriptor ---------------------------------------------------------------------------------------
def _scriptor_comment(text: str) -> str:
    """A comment scriptor skips. Its loop stops at any line containing "exit" (even a comment),
    so that word is broken up."""
    return "# " + re.sub(r"(?i)(ex)(it)", r"\1-\2", text).replace("\r", " ").replace("\n", " ")


def to_scriptor(trace: Trace, reader: str = "card", *, reset: bool = True) -> str:
    """The commands of one reader as a pcsc-tools `scriptor` script (`scriptor -r READER FILE`).

    One spaced hex APDU per line, each after `#` comments naming the step and the recorded
    answer; `reset` first. Raises UnreplayableTrace for masked commands or an unknown reader.
    """
    steps = trace.for_reader(reader)
    if not steps:
        raise UnreplayableTrace(
            f"the trace has no exchanges with reader {reader!r} (readers: {trace.readers})"
        )
    masked = [number for number, entry in steps if entry.masked]
    if masked:
        raise UnreplayableTrace(
            f"steps {masked} of reader {reader!r} have masked command bytes (a redacted trace); "
            "scriptor can only send exact bytes"
        )
    lines = [
        _scriptor_comment(f"{FORMAT}: the {len(steps)} commands sent to reader {reader!r}"),
        _scriptor_comment("run with: scriptor -r 'PC/SC READER NAME' THIS_FILE"),
        _scriptor_comment("each '# expect:' line is the answer recorded for the APDU below it"),
    ]
    lines += [_scriptor_comment(f"{key}: {value}") for key, value in trace.meta.items()]
    if reset:
        lines += [
            "",
            _scriptor_comment("the recording starts with a freshly powered card"),
            "reset",
        ]
    for number, entry in steps:
        assert isinstance(entry.command, bytes)
        lines.append("")
        lines.append(_scriptor_comment(f"step {number}: {command_label(entry.command)}"))
        answer = (
            "LOST (the card did not answer)"
            if entry.response is None
            else (format_payload(entry.response))
        )
        lines.append(_scriptor_comment(f"expect: {answer}"))
        if entry.command:
            lines.append(_spaced(entry.command))
        else:
            lines.append(_scriptor_comment("(an empty command: nothing to send)"))
    return "\n".join(lines) + "\n"
