"""Recorded APDU sessions: the `fuelsim-trace/1` text and JSON-lines formats, redaction, export
as a pcsc-tools `scriptor` script, and replay against live readers with byte patterns.

The formats and the rules are documented in docs/traces.md. In short:

- a `Trace` is a list of `TraceEntry` (reader name, command, answer or None when the card was
  lost, timing) and `key: value` metadata; `Recorder` builds one from a `TracingReader`;
- a command or an answer is `bytes`, or a `Pattern` when some bytes may be anything (`..` for
  one byte, `{name:N}` for N named bytes) — what `redact` leaves in place of PINs and MACs;
- `replay` sends every command to the reader of the same name and compares the answers; a
  command with masked bytes cannot be sent, so a redacted trace is refused unless `partial`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from typing import Literal

from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.commands import FIELDS, Fields, command_name, decode_exchange
from cardcore.errors import DecodeError, FuelsimError
from cardcore.ports import Reader
from cardcore.sw import SW
from terminal_sim.readers import CardLost, Exchange
from terminal_sim.trace_format import describe_exchange

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


# Traces -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One exchange: a command to `reader` and its answer (None: the card was lost), with the
    time it started (seconds from the start of the recording) and how long it took."""

    reader: str
    command: Payload
    response: Payload | None
    started: float = 0.0
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.started) and math.isfinite(self.elapsed)):
            raise ValueError("timing must be finite")

    @classmethod
    def from_exchange(cls, exchange: Exchange) -> TraceEntry:
        return cls(
            exchange.reader,
            exchange.command,
            exchange.response,
            exchange.started,
            exchange.seconds,
        )

    @property
    def masked(self) -> bool:
        """The command has masked bytes (a redacted trace) and cannot be sent."""
        return isinstance(self.command, Pattern)

    def exchange(self) -> Exchange | None:
        """The readers.Exchange of an entry without patterns (None when it has some)."""
        if isinstance(self.command, Pattern) or isinstance(self.response, Pattern):
            return None
        return Exchange(self.reader, self.command, self.response, self.started, self.elapsed)


@dataclass
class Trace:
    entries: list[TraceEntry] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_exchanges(
        cls, exchanges: Iterable[Exchange], meta: Mapping[str, str] | None = None
    ) -> Trace:
        return cls([TraceEntry.from_exchange(e) for e in exchanges], dict(meta or {}))

    @property
    def readers(self) -> list[str]:
        """Reader names in the order they first appear."""
        return list(dict.fromkeys(entry.reader for entry in self.entries))

    def for_reader(self, reader: str) -> list[tuple[int, TraceEntry]]:
        """The entries of one reader, with their step numbers in the whole trace (from 1)."""
        return [(n, e) for n, e in enumerate(self.entries, 1) if e.reader == reader]

    def masked_steps(self) -> list[int]:
        """Step numbers whose command has masked bytes."""
        return [n for n, e in enumerate(self.entries, 1) if e.masked]


class Recorder:
    """A TracingReader listener that builds a Trace: `TracingReader(inner, [recorder])`."""

    def __init__(self, meta: Mapping[str, str] | None = None) -> None:
        self.trace = Trace(meta=dict(meta or {}))

    def __call__(self, exchange: Exchange) -> None:
        self.trace.entries.append(TraceEntry.from_exchange(exchange))


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


# Replay -----------------------------------------------------------------------------------------
Status = Literal["match", "mismatch", "skipped"]


@dataclass(frozen=True)
class StepResult:
    """One step of a replay. `got` is the answer (None: the card was lost, or not sent)."""

    number: int
    entry: TraceEntry
    status: Status
    got: bytes | None = None
    reason: str = ""
    diff: tuple[int, ...] = ()  # byte offsets that differ


@dataclass(frozen=True)
class ReplayResult:
    steps: list[StepResult]
    total: int

    @property
    def mismatches(self) -> list[StepResult]:
        return [step for step in self.steps if step.status == "mismatch"]

    @property
    def skipped(self) -> list[StepResult]:
        return [step for step in self.steps if step.status == "skipped"]

    @property
    def ok(self) -> bool:
        """Every answer received matched (with `partial`, some steps may have been skipped)."""
        return not self.mismatches

    @property
    def complete(self) -> bool:
        """Every step of the trace was sent."""
        return len(self.steps) == self.total and not self.skipped

    def summary(self) -> str:
        matched = sum(step.status == "match" for step in self.steps)
        text = f"{matched} of {self.total} steps matched"
        if self.mismatches:
            text += f", {len(self.mismatches)} mismatched"
        if self.skipped:
            text += f", {len(self.skipped)} skipped (masked commands)"
        unsent = self.total - len(self.steps)
        if unsent:
            text += f", {unsent} not run (stopped at the first mismatch)"
        return text

    def format_diff(self) -> str:
        """A readable account of every mismatch and skipped step; empty when all matched."""
        blocks = ["\n".join(format_mismatch(step)) for step in self.mismatches]
        stops = list({step.entry.reader: step for step in reversed(self.skipped)}.values())
        stops.sort(key=lambda step: step.number)
        if stops:
            lines = ["not replayed: a command with masked bytes cannot be sent"]
            for stop in stops:
                later = [
                    step.number
                    for step in self.skipped
                    if step.entry.reader == stop.entry.reader and step.number > stop.number
                ]
                lines.append(f"  {stop.entry.reader} stopped at step {stop.number}: {stop.reason}")
                if later:
                    lines.append(f"    and did not send steps {', '.join(map(str, later))}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


def _compare(
    expected: Payload | None, got: bytes | None, patterns: bool
) -> tuple[Status, str, tuple[int, ...]]:
    if expected is None or got is None:
        if expected is None and got is None:
            return "match", "", ()
        if expected is None:
            return "mismatch", "the card was lost here in the recording, but it answered", ()
        return "mismatch", "the card was lost (no answer)", ()
    if isinstance(expected, Pattern) and not patterns:
        return "mismatch", "the recorded answer has patterns, and patterns are off", ()
    diff = tuple(differences(expected, got))
    if not diff:
        return "match", "", ()
    if len(expected) != len(got):
        reason = f"the answer has {len(got)} bytes, {len(expected)} expected"
    else:
        where = ", ".join(map(str, diff[:8])) + (" …" if len(diff) > 8 else "")
        verb = "bytes differ" if len(diff) > 1 else "byte differs"
        reason = f"{len(diff)} {verb} (offset {where})"
    return "mismatch", reason, diff


def replay(
    trace: Trace,
    readers: Mapping[str, Reader],
    *,
    patterns: bool = True,
    keep_going: bool = False,
    partial: bool = False,
    connect: bool = True,
) -> ReplayResult:
    """Send each recorded command to the reader of the same name and compare the answers.

    Answers must equal the recording, or fit its patterns (`patterns=False`: a pattern answer
    is a mismatch). Stops at the first mismatch unless `keep_going`. A trace with masked
    commands raises UnreplayableTrace before anything is sent, unless `partial`: then each
    reader stops at its first masked command and its later steps are reported as skipped
    (readers are independent in a replay: the recorded bytes are sent, not recomputed).
    `connect` powers every reader first, as the recording started with fresh cards.
    """
    missing = [name for name in trace.readers if name not in readers]
    if missing:
        raise UnreplayableTrace(
            f"no reader given for {', '.join(map(repr, missing))} "
            f"(the trace uses {', '.join(trace.readers)})"
        )
    masked = trace.masked_steps()
    if masked and not partial:
        details = "; ".join(
            f"step {n} {trace.entries[n - 1].reader} {command_label(trace.entries[n - 1].command)}"
            for n in masked[:6]
        )
        raise UnreplayableTrace(
            f"{len(masked)} commands have masked bytes (a redacted trace) and cannot be sent: "
            f"{details}{' …' if len(masked) > 6 else ''}. Replay the original recording, "
            "or replay partially (each reader up to its first masked command)"
        )
    if connect:
        for name in trace.readers:
            readers[name].connect()
    stopped: dict[str, int] = {}
    steps: list[StepResult] = []
    for number, entry in enumerate(trace.entries, 1):
        if entry.reader in stopped:
            reason = f"after step {stopped[entry.reader]} ({entry.reader} stopped there)"
            steps.append(StepResult(number, entry, "skipped", reason=reason))
            continue
        if isinstance(entry.command, Pattern):
            stopped[entry.reader] = number
            reason = f"{command_label(entry.command)} has masked bytes: {entry.command}"
            steps.append(StepResult(number, entry, "skipped", reason=reason))
            continue
        got: bytes | None
        try:
            got = readers[entry.reader].transmit(entry.command)
        except CardLost:
            got = None
        status, reason, diff = _compare(entry.response, got, patterns)
        steps.append(StepResult(number, entry, status, got, reason, diff))
        if status == "mismatch" and not keep_going:
            break
    return ReplayResult(steps, len(trace.entries))


# Readable diffs ---------------------------------------------------------------------------------
_ROW = 16  # bytes per row of a long answer's diff


def _tokens(payload: Payload) -> list[str]:
    return [f"{c:02X}" if isinstance(c, int) else ".." for c in _cells(payload)]


def _field_texts(cells: Sequence[Cell], fields: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """The decoded fields over `cells` (the layout comes from real bytes of the same length)."""
    out, pos = [], 0
    for name, value in fields:
        text = format_payload(_from_cells(cells[pos : pos + len(value)]), compact=True)
        out.append((name, text.replace(" ", "")))
        pos += len(value)
    return out


def _command_fields(command: Payload) -> list[tuple[str, str]]:
    apdu = _apdu_of(command)
    if apdu is None or not apdu.data:
        return []
    data_at = 7 if apdu.extended else 5
    _, fields, _ = decode_exchange(apdu, b"")
    return _field_texts(_cells(command)[data_at:], fields)


def _answer_fields(command: Payload, answer: Payload) -> list[tuple[str, str]]:
    apdu = _apdu_of(command)
    if apdu is None or len(answer) <= 2:
        return []
    cells = _cells(answer)[:-2]
    _, _, fields = decode_exchange(apdu, bytes(len(cells)))
    return _field_texts(cells, fields)


def _fields(command: Payload, answer: Payload) -> str:
    """The decoded fields of an answer (wildcards shown as such) and its status word."""
    sw = _sw_label(answer)
    fields = ", ".join(f"{name} {text}" for name, text in _answer_fields(command, answer))
    return fields + (f"; SW {sw}" if sw and fields else f"SW {sw}" if sw else "")


def format_mismatch(step: StepResult) -> list[str]:
    """Lines showing what a step expected and what it got, the differing bytes marked."""
    entry = step.entry
    command = entry.command if isinstance(entry.command, bytes) else entry.command.filled()
    lines = [f"step {step.number} · {entry.reader} · {command_label(entry.command)}: {step.reason}"]
    lines.append(f"  command   {_spaced(command)}")
    apdu = _apdu_of(command)
    if apdu is not None and apdu.data:
        _, command_fields, _ = decode_exchange(apdu, b"")
        fields = ", ".join(f"{name} {value.hex().upper()}" for name, value in command_fields)
        lines.append(f"            {fields}")
    if entry.response is None or step.got is None:
        expected = "LOST" if entry.response is None else format_payload(entry.response)
        got = "LOST (no answer)" if step.got is None else _spaced(step.got)
        return [*lines, f"  expected  {expected}", f"  got       {got}"]
    expected_tokens, got_tokens = _tokens(entry.response), [f"{b:02X}" for b in step.got]
    size = max(len(expected_tokens), len(got_tokens))
    row = size if size <= 2 * _ROW else _ROW  # short answers on one row, long ones wrapped
    marks = set(step.diff)
    for start in range(0, size, row):
        at = f"+{start:<4}" if row < size else ""
        caret = " ".join(
            "^^" if pos in marks else "  " for pos in range(start, min(start + row, size))
        ).rstrip()
        lines.append(f"  expected {at} {' '.join(expected_tokens[start : start + row])}".rstrip())
        lines.append(f"  got      {at} {' '.join(got_tokens[start : start + row])}".rstrip())
        if caret:
            lines.append(f"           {' ' * len(at)} {caret}")
    if isinstance(entry.response, Pattern):
        for name, offset, value in entry.response.captures(step.got):
            lines.append(f"  pattern   {{{name}}} at offset {offset} got {_spaced(value)}")
    expected_fields, got_fields = _fields(command, entry.response), _fields(command, step.got)
    if expected_fields or got_fields:
        lines.append(f"  expected fields  {expected_fields}")
        lines.append(f"  got fields       {got_fields}")
    return lines


def describe_entry(number: int, entry: TraceEntry) -> list[str]:
    """Decoded lines for one entry, as `fuelsim demo` shows exchanges; patterns kept as such."""
    exchange = entry.exchange()
    if exchange is not None:
        return describe_exchange(number, exchange)
    label = command_label(entry.command)
    lines = [f"#{number:<3} {entry.reader:<5} {label:<30} {entry.elapsed * 1000:8.3f} ms"]
    lines.append(f"     → {format_payload(entry.command)}")
    lines += [f"         {name}: {text}" for name, text in _command_fields(entry.command)]
    if entry.response is None:
        lines.append("     ← (no answer: the card was lost)")
        return lines
    lines.append(f"     ← {_sw_label(entry.response) or format_payload(entry.response)}")
    answer = _answer_fields(entry.command, entry.response)
    lines += [f"         {name}: {text}" for name, text in answer]
    return lines
