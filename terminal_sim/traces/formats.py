"""The `fuelsim-trace/1` text format and its JSON-lines twin, and trace files."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cardcore.apdu import CommandApdu
from cardcore.commands import command_name
from cardcore.errors import DecodeError
from cardcore.sw import SW
from terminal_sim.traces.errors import FORMAT, HEADER, JSONL_SUFFIX, TEXT_SUFFIX, TraceFormatError
from terminal_sim.traces.model import Trace, TraceEntry
from terminal_sim.traces.patterns import Pattern, Payload, _cells, format_payload, parse_payload

# Text format ------------------------------------------------------------------------------------
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_META_LINE = re.compile(r"# ([A-Za-z][A-Za-z0-9_.-]*):(?: (.*))?")
_BARE_READER = re.compile(r"[A-Za-z0-9_.:/@+-]+")
_DIRECTION = re.compile(r"\s+([<>])(?=\s|$)")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_TIMING = re.compile(rf"\(at {_NUMBER} ms, took {_NUMBER} ms\)$")
_JSON = json.JSONDecoder()


def _check_meta(meta: Mapping[str, str]) -> None:
    for key, value in meta.items():
        if not _KEY.fullmatch(key) or key == "format":
            raise TraceFormatError(
                f"metadata key {key!r}: keys are [A-Za-z][A-Za-z0-9_.-]* and not 'format'"
            )
        if value != value.strip() or any(ch in value for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85"):
            raise TraceFormatError(
                f"metadata {key}: values are one line without surrounding blanks"
            )


def _quoted_reader(name: str) -> str:
    return name if _BARE_READER.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _apdu_of(command: Payload) -> CommandApdu | None:
    """The command's structure (wildcard bytes read as 00), or None when malformed."""
    raw = command.filled() if isinstance(command, Pattern) else command
    try:
        return CommandApdu.from_bytes(raw)
    except DecodeError:
        return None


def command_label(command: Payload) -> str:
    """The spec name of a command, with the file of READ BINARY / READ RECORD."""
    apdu = _apdu_of(command)
    if apdu is None:
        return "(malformed)"
    name = command_name(apdu)
    if apdu.ins == 0xB0 and apdu.p1 & 0x80:
        name += f" EF{apdu.p1 & 0x1F:02X}"
    elif apdu.ins == 0xB2:
        name += f" EF{apdu.p2 >> 3:02X} #{apdu.p1}"
    return name


def _sw_label(response: Payload | None) -> str:
    if response is None or len(response) < 2:
        return ""
    tail = _cells(response)[-2:]
    if not all(isinstance(c, int) for c in tail):
        return ""
    sw = int.from_bytes(bytes(c for c in tail if isinstance(c, int)), "big")
    return f"{sw:04X} {SW.describe(sw)}"


def dumps_text(trace: Trace, *, timing: bool = True, comments: bool = True) -> str:
    """The fuelsim-trace/1 text form; `timing=False` leaves out the run-to-run variable timing."""
    _check_meta(trace.meta)
    out = [HEADER]
    out += [f"# {key}: {value}".rstrip() for key, value in trace.meta.items()]
    out.append("")
    names = {reader: _quoted_reader(reader) for reader in trace.readers}
    width = max([5, *map(len, names.values())])
    for entry in trace.entries:
        name = names[entry.reader].ljust(width)
        command = f"{name} > {format_payload(entry.command)}".rstrip()
        if comments:
            command += f"  ; {command_label(entry.command)}"
        answer = "LOST" if entry.response is None else format_payload(entry.response)
        response = f"{name} < {answer}".rstrip()
        if timing:
            response += f"  (at {entry.started * 1000:.3f} ms, took {entry.elapsed * 1000:.3f} ms)"
        label = _sw_label(entry.response) if comments else ""
        if label:
            response += f"  ; {label}"
        out += [command, response]
    return "\n".join(out) + "\n"


def _split_line(line: str, number: int) -> tuple[str, str, str]:
    """Reader name, direction and the rest of an exchange line."""
    if line.startswith('"'):
        try:
            name, end = _JSON.raw_decode(line)
        except json.JSONDecodeError:
            raise TraceFormatError("unterminated quoted reader name", line=number) from None
        if not isinstance(name, str):  # pragma: no cover - a '"' always starts a JSON string
            raise TraceFormatError("bad reader name", line=number)
    else:
        match = _BARE_READER.match(line)
        if match is None:
            raise TraceFormatError(
                f"expected a reader name at the start of {line.strip()!r}", line=number
            )
        name, end = match[0], match.end()
    direction = _DIRECTION.match(line, end)
    if direction is None:
        raise TraceFormatError(
            f"expected '>' (command) or '<' (answer) after the reader name {name!r}", line=number
        )
    return name, direction[1], line[direction.end() :]


def _payload_at(text: str, number: int) -> Payload:
    try:
        return parse_payload(text)
    except ValueError as exc:
        raise TraceFormatError(str(exc), line=number) from None


def loads_text(text: str) -> Trace:
    """Parse the text form strictly; TraceFormatError names the offending line."""
    lines = text.splitlines()
    first = lines[0].rstrip() if lines else ""
    if first != HEADER:
        if first.startswith("# fuelsim-trace/"):
            raise TraceFormatError(f"unsupported format {first[2:]!r} (this is {FORMAT})", line=1)
        raise TraceFormatError(f"a trace starts with the line {HEADER!r}", line=1)
    meta: dict[str, str] = {}
    index = 1
    while index < len(lines) and lines[index].startswith("#"):
        line, number = lines[index].rstrip(), index + 1
        index += 1
        if line == "#":
            continue
        match = _META_LINE.fullmatch(line)
        if match is None:
            raise TraceFormatError(
                "the header holds '# key: value' lines only; "
                "put free comments after the blank line that ends it",
                line=number,
            )
        key, value = match[1], (match[2] or "").strip()
        if key == "format":
            raise TraceFormatError("'format' is a reserved metadata key", line=number)
        if key in meta:
            raise TraceFormatError(f"metadata key {key!r} given twice", line=number)
        meta[key] = value
    entries: list[TraceEntry] = []
    pending: tuple[int, str, Payload] | None = None
    for number in range(index + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        reader, direction, rest = _split_line(line, number)
        body = rest.partition(";")[0].strip()
        if direction == ">":
            if pending is not None:
                raise TraceFormatError(
                    f"expected the answer to the command of line {pending[0]}, got a command",
                    line=number,
                )
            if _TIMING.search(body):
                raise TraceFormatError("timing belongs on the answer line", line=number)
            if body == "LOST":
                raise TraceFormatError("LOST is an answer, not a command", line=number)
            pending = (number, reader, _payload_at(body, number))
            continue
        if pending is None:
            raise TraceFormatError("an answer without a command before it", line=number)
        if reader != pending[1]:
            raise TraceFormatError(
                f"answer from {reader!r}, but the command of line {pending[0]} "
                f"went to {pending[1]!r}",
                line=number,
            )
        started = elapsed = 0.0
        timing = _TIMING.search(body)
        if timing is not None:
            started = round(float(timing[1]) / 1000, 6)
            elapsed = round(float(timing[2]) / 1000, 6)
            body = body[: timing.start()].rstrip()
        response = None if body == "LOST" else _payload_at(body, number)
        entries.append(TraceEntry(reader, pending[2], response, started, elapsed))
        pending = None
    if pending is not None:
        raise TraceFormatError("the last command has no answer line", line=pending[0])
    return Trace(entries, meta)


# JSON lines -------------------------------------------------------------------------------------
def dumps_jsonl(trace: Trace, *, timing: bool = True) -> str:
    """A header object, then one object per exchange; hex strings, patterns in text form."""
    _check_meta(trace.meta)
    lines = [json.dumps({"format": FORMAT, **trace.meta}, ensure_ascii=False)]
    for entry in trace.entries:
        item: dict[str, object] = {
            "reader": entry.reader,
            "command": format_payload(entry.command, compact=True),
            "response": None
            if entry.response is None
            else format_payload(entry.response, compact=True),
        }
        if timing:
            item["started"], item["elapsed"] = entry.started, entry.elapsed
        lines.append(json.dumps(item, ensure_ascii=False))
    return "\n".join(lines) + "\n"


_REQUIRED = ("reader", "command", "response")
_OPTIONAL = ("started", "elapsed")


def _json_object(line: str, number: int) -> dict[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"not JSON: {exc.msg} (column {exc.colno})", line=number) from None
    if not isinstance(value, dict):
        raise TraceFormatError("expected a JSON object", line=number)
    return value


def loads_jsonl(text: str) -> Trace:
    """Parse JSON lines strictly: the header object, then exchange objects; blank lines skipped."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise TraceFormatError(f'empty: expected {{"format": "{FORMAT}", ...}}', line=1)
    number, line = numbered[0]
    head = _json_object(line, number)
    if head.get("format") != FORMAT:
        raise TraceFormatError(
            f'the first object must have "format": "{FORMAT}", got {head.get("format")!r}',
            line=number,
        )
    meta: dict[str, str] = {}
    for key, value in head.items():
        if key == "format":
            continue
        if not isinstance(value, str) or not _KEY.fullmatch(key):
            raise TraceFormatError(f"metadata {key!r}: keys and string values only", line=number)
        meta[key] = value
    entries = []
    for number, line in numbered[1:]:
        item = _json_object(line, number)
        missing = [key for key in _REQUIRED if key not in item]
        unknown = sorted(set(item) - {*_REQUIRED, *_OPTIONAL})
        if missing or unknown:
            raise TraceFormatError(
                f"missing {missing} / unknown {unknown} keys in an exchange", line=number
            )
        reader, command, response = item["reader"], item["command"], item["response"]
        if not isinstance(reader, str) or not isinstance(command, str):
            raise TraceFormatError("reader and command are strings", line=number)
        if response is not None and not isinstance(response, str):
            raise TraceFormatError("response is a hex string, or null when lost", line=number)
        timing = []
        for key in _OPTIONAL:
            value = item.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TraceFormatError(f"{key} is a number of seconds", line=number)
            timing.append(float(value))
        try:
            entries.append(
                TraceEntry(
                    reader,
                    _payload_at(command, number),
                    None if response is None else _payload_at(response, number),
                    *timing,
                )
            )
        except ValueError as exc:
            raise TraceFormatError(str(exc), line=number) from None
    return Trace(entries, meta)


# Files ------------------------------------------------------------------------------------------
def trace_kind(path: Path) -> Literal["text", "jsonl"]:
    if path.suffix == TEXT_SUFFIX:
        return "text"
    if path.suffix == JSONL_SUFFIX:
        return "jsonl"
    raise TraceFormatError(
        f"{path.name}: a trace file ends with {TEXT_SUFFIX} (text) or {JSONL_SUFFIX} (JSON lines)"
    )


def dumps(trace: Trace, kind: Literal["text", "jsonl"], *, timing: bool = True) -> str:
    return dumps_text(trace, timing=timing) if kind == "text" else dumps_jsonl(trace, timing=timing)


def save(trace: Trace, path: Path, *, timing: bool = True) -> None:
    """Write `trace` in the format its suffix names."""
    path.write_text(dumps(trace, trace_kind(path), timing=timing), encoding="utf-8")


def load(path: Path) -> Trace:
    """Read a trace in the format its suffix names; errors name the file and the line."""
    kind = trace_kind(path)
    text = path.read_text(encoding="utf-8")
    try:
        return loads_text(text) if kind == "text" else loads_jsonl(text)
    except TraceFormatError as exc:
        raise TraceFormatError(exc.detail, line=exc.line, source=str(path)) from None
