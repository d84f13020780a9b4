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

from terminal_sim.traces.errors import FORMAT, TraceFormatError, UnreplayableTrace
from terminal_sim.traces.export import redact, to_scriptor
from terminal_sim.traces.formats import (
    command_label,
    dumps,
    dumps_jsonl,
    dumps_text,
    load,
    loads_jsonl,
    loads_text,
    save,
    trace_kind,
)
from terminal_sim.traces.model import Recorder, Trace, TraceEntry
from terminal_sim.traces.patterns import (
    Pattern,
    Payload,
    Wild,
    differences,
    format_payload,
    parse_payload,
)
from terminal_sim.traces.replay import (
    ReplayResult,
    StepResult,
    describe_entry,
    format_mismatch,
    replay,
)

__all__ = [
    "FORMAT",
    "Pattern",
    "Payload",
    "Recorder",
    "ReplayResult",
    "StepResult",
    "Trace",
    "TraceEntry",
    "TraceFormatError",
    "UnreplayableTrace",
    "Wild",
    "command_label",
    "describe_entry",
    "differences",
    "dumps",
    "dumps_jsonl",
    "dumps_text",
    "format_mismatch",
    "format_payload",
    "load",
    "loads_jsonl",
    "loads_text",
    "parse_payload",
    "redact",
    "replay",
    "save",
    "to_scriptor",
    "trace_kind",
]
