"""Replaying a trace against live readers, with readable diffs of what differs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cardcore.commands import decode_exchange
from cardcore.ports import Reader
from terminal_sim.readers import CardLost
from terminal_sim.trace_format import describe_exchange
from terminal_sim.traces.errors import UnreplayableTrace
from terminal_sim.traces.formats import _apdu_of, _sw_label, command_label
from terminal_sim.traces.model import Trace, TraceEntry
from terminal_sim.traces.patterns import (
    Cell,
    Pattern,
    Payload,
    _cells,
    _from_cells,
    _spaced,
    differences,
    format_payload,
)

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
