"""Traces: the text and JSON-lines formats, redaction, scriptor export, replay with patterns,
the replay card, and `fuelsim trace …` (docs/traces.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from card_profiles.emulator import in_memory
from cardcore import commands as cmd
from cardcore.apdu import CommandApdu
from cardcore.clockrng import SeededRng
from cardcore.ports import CardOS
from cardcore.sw import SW
from terminal_sim.channel import CardRefused, Channel
from terminal_sim.cli_trace import reader_plan, trace
from terminal_sim.demo import DEMO_SALE, FUELLING_TIME, run_demo
from terminal_sim.fuelling import FuellingResult, fuel, read_psam
from terminal_sim.issuing import IssuedCard
from terminal_sim.readers import CardLost, InProcReader, TracingReader
from terminal_sim.replay_card import ReplayCard, ReplayCardError
from terminal_sim.traces import (
    Pattern,
    Payload,
    Recorder,
    Trace,
    TraceEntry,
    TraceFormatError,
    UnreplayableTrace,
    Wild,
    differences,
    dumps_jsonl,
    dumps_text,
    load,
    loads_jsonl,
    loads_text,
    parse_payload,
    redact,
    replay,
    save,
    to_scriptor,
)

ROOT = Path(__file__).parents[2]
WHEN = datetime(2026, 11, 22, 10, 0, 0)
SEED = 4
VERIFY_STEP, GET_BALANCE_STEP, GREY_LOCK_INIT_STEP, SAM_INIT_STEP = 11, 14, 15, 16


# Fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo() -> Trace:
    """The demo fuelling recorded with SEED (card SeededRng(SEED), PSAM SeededRng(SEED + 1))."""
    run = run_demo(when=WHEN, seed=SEED)
    return Trace.from_exchanges(run.exchanges, {"seed": str(SEED), "note": "demo"})


def fresh_readers(
    issued: Callable[[str], IssuedCard], card_seed: int = SEED, psam_seed: int = SEED + 1
) -> dict[str, InProcReader]:
    card = in_memory(dict(issued("normal").cells), SeededRng(card_seed))
    psam = in_memory(dict(issued("psam-dispenser").cells), SeededRng(psam_seed))
    return {"card": InProcReader(card, "card"), "psam": InProcReader(psam, "psam")}


def with_response(recorded: Trace, step: int, response: Payload | None) -> Trace:
    entries = list(recorded.entries)
    entries[step - 1] = replace(entries[step - 1], response=response)
    return Trace(entries, dict(recorded.meta))


class ScriptedReader:
    """A Reader answering from a list: bytes, or None to lose the card."""

    def __init__(self, answers: list[bytes | None], name: str = "card") -> None:
        self.name = name
        self.answers = answers
        self.sent: list[bytes] = []

    def connect(self) -> bytes:
        return b"\x3b\x00"

    def disconnect(self) -> None:
        pass

    def transmit(self, command: bytes) -> bytes:
        self.sent.append(command)
        answer = self.answers.pop(0)
        if answer is None:
            raise CardLost("gone")
        return answer


# Strategies -------------------------------------------------------------------------------------
readers_st = st.sampled_from(["card", "psam", "Virtual PCD 00 00", 'odd "name"; #1', "読取機", ""])
bytes_st = st.binary(min_size=0, max_size=40)
wild_st = st.builds(
    Wild,
    st.integers(1, 6),
    st.none() | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
)
pattern_st = st.lists(bytes_st | wild_st, min_size=1, max_size=6).map(Pattern.of)
micros_st = st.integers(0, 10**9).map(lambda us: us / 1e6)
meta_st = st.dictionaries(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}", fullmatch=True).filter(lambda k: k != "format"),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20).map(
        str.strip
    ),
    max_size=4,
)


def entries_st(timing: st.SearchStrategy[float], patterns: bool) -> st.SearchStrategy[TraceEntry]:
    payload = (bytes_st | pattern_st) if patterns else bytes_st
    return st.builds(TraceEntry, readers_st, payload, st.none() | payload, timing, timing)


def traces_st(timing: st.SearchStrategy[float], patterns: bool) -> st.SearchStrategy[Trace]:
    return st.builds(Trace, st.lists(entries_st(timing, patterns), max_size=8), meta_st)


# Formats ----------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(traces_st(micros_st, patterns=True))
def test_text_round_trip(recorded: Trace) -> None:
    assert loads_text(dumps_text(recorded)) == recorded


@settings(max_examples=150, deadline=None)
@given(traces_st(st.floats(-1e6, 1e6, allow_nan=False), patterns=True))
def test_jsonl_round_trip_keeps_exact_timing(recorded: Trace) -> None:
    assert loads_jsonl(dumps_jsonl(recorded)) == recorded


@settings(max_examples=60, deadline=None)
@given(traces_st(micros_st, patterns=True))
def test_text_and_jsonl_hold_the_same_trace(recorded: Trace) -> None:
    assert loads_jsonl(dumps_jsonl(loads_text(dumps_text(recorded)))) == recorded


def test_without_timing_a_seeded_recording_is_byte_identical(demo: Trace) -> None:
    again = Trace.from_exchanges(run_demo(when=WHEN, seed=SEED).exchanges, demo.meta)
    assert dumps_text(again) != dumps_text(demo)  # the timing differs from run to run
    assert dumps_text(again, timing=False) == dumps_text(demo, timing=False)
    parsed = loads_text(dumps_text(demo, timing=False))
    assert {(e.started, e.elapsed) for e in parsed.entries} == {(0.0, 0.0)}


def test_the_text_format_as_documented() -> None:
    text = """# fuelsim-trace/1
# seed: 7
# note:   hand written
#

# free comments may follow the blank line that ends the header
card  > 00 84 00 00 04        ; GET CHALLENGE (comments are ignored)
card  < {rand:4} 90 00  (at 1.500 ms, took 0.250 ms)  ; 9000
"Virtual PCD 00 00" > 80 5C 00 01 04
"Virtual PCD 00 00" < 00 01 .. A0 9000
   psam > 00B0950000
   psam < LOST  (at 2.000 ms, took 0.001 ms)
"""
    parsed = loads_text(text)
    assert parsed.meta == {"seed": "7", "note": "hand written"}
    assert parsed.entries == [
        TraceEntry(
            "card",
            bytes.fromhex("0084000004"),
            Pattern((Wild(4, "rand"), b"\x90\x00")),
            0.0015,
            0.00025,
        ),
        TraceEntry(
            "Virtual PCD 00 00",
            bytes.fromhex("805C000104"),
            Pattern((b"\x00\x01", Wild(1), bytes.fromhex("A09000"))),
        ),
        TraceEntry("psam", bytes.fromhex("00B0950000"), None, 0.002, 0.000001),
    ]


def test_the_writer_lays_out_one_line_per_command_and_answer(demo: Trace) -> None:
    lines = dumps_text(demo).splitlines()
    assert lines[:4] == ["# fuelsim-trace/1", f"# seed: {SEED}", "# note: demo", ""]
    body = lines[4:]
    assert len(body) == 2 * len(demo.entries)
    assert body[2 * (GET_BALANCE_STEP - 1)] == "card  > 80 5C 00 01 04  ; GET BALANCE"
    answer = body[2 * (GET_BALANCE_STEP - 1) + 1]
    assert answer.startswith("card  < 00 01 86 A0 90 00  (at ")
    assert answer.endswith(" ms)  ; 9000 success")


ERRORS = [
    ("", 1, "starts with the line '# fuelsim-trace/1'"),
    ("card > 00\n", 1, "starts with the line"),
    ("# fuelsim-trace/2\n", 1, "unsupported format 'fuelsim-trace/2'"),
    ("# fuelsim-trace/1\n# seed: 1\n# just a comment\n", 3, "'# key: value' lines only"),
    ("# fuelsim-trace/1\n# seed: 1\n# seed: 2\n", 3, "given twice"),
    ("# fuelsim-trace/1\n# format: x\n", 2, "reserved"),
    ("# fuelsim-trace/1\n\ncard > 00 A4\ncard < 9G 00\n", 4, "'9G' is not a byte"),
    ("# fuelsim-trace/1\n\ncard > 00 A4 0\ncard < 90 00\n", 3, "'0' is not a byte"),
    ("# fuelsim-trace/1\n\ncard > 00\ncard < {rand:0} 90 00\n", 4, "at least 1"),
    ("# fuelsim-trace/1\n\ncard > 00\ncard < {1x:4}\n", 4, "pattern names"),
    ("# fuelsim-trace/1\n\ncard > 00\ncard < {rand}\n", 4, "is not a byte"),
    ("# fuelsim-trace/1\n\ncard < 90 00\n", 3, "answer without a command"),
    ("# fuelsim-trace/1\n\ncard > 00\n\ncard > 01\ncard < 90 00\n", 5, "of line 3, got a command"),
    ("# fuelsim-trace/1\n\ncard > 00\npsam < 90 00\n", 4, "went to 'card'"),
    ("# fuelsim-trace/1\n\ncard > 00\ncard < 90 00\n# end\ncard > 01\n", 6, "no answer line"),
    ("# fuelsim-trace/1\n\ncard > LOST\ncard < 90 00\n", 3, "LOST is an answer"),
    ("# fuelsim-trace/1\n\ncard > 00  (at 1 ms, took 1 ms)\n", 3, "timing belongs"),
    ("# fuelsim-trace/1\n\ncard 00 A4\n", 3, "expected '>' (command) or '<'"),
    ("# fuelsim-trace/1\n\n> 00 A4\n", 3, "expected a reader name"),
    ('# fuelsim-trace/1\n\n"card > 00\n', 3, "unterminated quoted reader name"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_text_parse_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TraceFormatError) as caught:
        loads_text(text)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ")


JSONL_ERRORS = [
    ("", 1, "empty"),
    ('{"format": "fuelsim-trace/2"}\n', 1, 'must have "format"'),
    ('{"format": "fuelsim-trace/1", "seed": 1}\n', 1, "string values only"),
    ('{"format": "fuelsim-trace/1"}\n\n{"reader": "card"\n', 3, "not JSON"),
    ('{"format": "fuelsim-trace/1"}\n[1]\n', 2, "expected a JSON object"),
    ('{"format": "fuelsim-trace/1"}\n{"reader": "c", "command": "00"}\n', 2, "missing"),
    (
        '{"format": "fuelsim-trace/1"}\n{"reader": "c", "command": "00", "response": null, '
        '"extra": 1}\n',
        2,
        "unknown ['extra']",
    ),
    (
        '{"format": "fuelsim-trace/1"}\n{"reader": "c", "command": "0", "response": null}\n',
        2,
        "'0' is not a byte",
    ),
    (
        '{"format": "fuelsim-trace/1"}\n{"reader": "c", "command": "00", "response": 9000}\n',
        2,
        "null when lost",
    ),
    (
        '{"format": "fuelsim-trace/1"}\n'
        '{"reader": "c", "command": "00", "response": null, "started": true}\n',
        2,
        "started is a number",
    ),
    (
        '{"format": "fuelsim-trace/1"}\n'
        '{"reader": "c", "command": "00", "response": null, "elapsed": NaN}\n',
        2,
        "finite",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), JSONL_ERRORS)
def test_jsonl_parse_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TraceFormatError) as caught:
        loads_jsonl(text)
    assert caught.value.line == line
    assert message in str(caught.value)


def test_files_are_read_and_written_by_suffix(demo: Trace, tmp_path: Path) -> None:
    save(demo, tmp_path / "a.trace")
    save(demo, tmp_path / "a.jsonl")
    assert (tmp_path / "a.trace").read_text().startswith("# fuelsim-trace/1\n")
    assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])["format"] == (
        "fuelsim-trace/1"
    )
    assert load(tmp_path / "a.jsonl") == demo
    assert [(e.command, e.response) for e in load(tmp_path / "a.trace").entries] == [
        (e.command, e.response) for e in demo.entries
    ]
    with pytest.raises(TraceFormatError, match=r"ends with \.trace .* or \.jsonl"):
        save(demo, tmp_path / "a.txt")
    (tmp_path / "bad.trace").write_text("# fuelsim-trace/1\n\ncard > 00\n")
    with pytest.raises(TraceFormatError, match=r"bad\.trace: line 3: "):
        load(tmp_path / "bad.trace")


def test_metadata_that_cannot_be_written_is_refused() -> None:
    for meta in ({"bad key": "x"}, {"format": "x"}, {"note": "two\nlines"}, {"note": " pad"}):
        with pytest.raises(TraceFormatError):
            dumps_text(Trace([], meta))
        with pytest.raises(TraceFormatError):
            dumps_jsonl(Trace([], meta))


# Patterns ---------------------------------------------------------------------------------------
def test_patterns_match_any_bytes_in_their_places() -> None:
    pattern = parse_payload("01 .. {rand:2} 90 00")
    assert isinstance(pattern, Pattern)
    assert pattern.parts == (b"\x01", Wild(1), Wild(2, "rand"), b"\x90\x00")
    assert len(pattern) == 6
    assert pattern.matches(bytes.fromhex("01FFAABB9000"))
    assert pattern.matches(bytes.fromhex("010000009000"))
    assert not pattern.matches(bytes.fromhex("02FFAABB9000"))
    assert not pattern.matches(bytes.fromhex("01FFAABB900000"))
    assert differences(pattern, bytes.fromhex("02FFAABB6A83")) == [0, 4, 5]
    assert differences(pattern, bytes.fromhex("01FFAA")) == [3, 4, 5]
    assert pattern.captures(bytes.fromhex("01FFAABB9000")) == [("rand", 2, b"\xaa\xbb")]
    assert pattern.filled() == bytes.fromhex("010000009000")
    assert pattern.filled(0xEE) == bytes.fromhex("01EEEEEE9000")
    assert str(pattern) == "01 .. {rand:2} 90 00"
    assert parse_payload("9000 6A") == b"\x90\x00\x6a"


def test_patterns_are_canonical() -> None:
    assert Pattern.of([b"\x01", b"\x02", Wild(1), Wild(2)]) == Pattern((b"\x01\x02", Wild(3)))
    assert Pattern.of([b"\x01", b"", b"\x02"]) == b"\x01\x02"
    assert Pattern.of([Wild(1, "a"), Wild(1, "a")]) == Pattern((Wild(1, "a"), Wild(1, "a")))
    for parts in ((b"\x01",), (b"\x01", b"\x02", Wild(1)), (Wild(1), Wild(1)), (b"", Wild(1))):
        with pytest.raises(ValueError):
            Pattern(parts)
    with pytest.raises(ValueError):
        Wild(0)
    with pytest.raises(ValueError):
        Wild(1, "no spaces")


# Redaction --------------------------------------------------------------------------------------
def secrets_of(recorded: Trace) -> dict[str, bytes]:
    """The PIN and every MAC/TAC value of the demo recording, from the raw bytes."""
    answers: dict[str, bytes] = {}
    for entry in recorded.entries:
        assert isinstance(entry.command, bytes) and isinstance(entry.response, bytes)
        answers[cmd.command_name(CommandApdu.from_bytes(entry.command))] = entry.response
    return {
        "MAC1": answers["INIT SAM FOR GREY LOCK"][8:12],
        "GTAC": answers["GREY LOCK"][:4],
        "MAC2": answers["GREY LOCK"][4:8],
        "GMAC": answers["GMAC FOR UNLOCK"][:4],
        "PSAM TAC": answers["GMAC FOR UNLOCK"][4:8],
        "TAC": answers["DEBIT FOR UNLOCK"][:4],
        "TMAC": answers["DES CRYPT"][:4],
    }


def test_redaction_masks_the_pin_and_every_mac_and_tac(demo: Trace) -> None:
    secrets = secrets_of(demo)
    original, redacted = dumps_text(demo), dumps_text(redact(demo))
    for name, value in secrets.items():
        assert value.hex(" ").upper() in original, name
        assert value.hex(" ").upper() not in redacted, name
    assert "00 20 00 00 03 99 99 99" in original
    assert "card  > 00 20 00 00 03 {PIN:3}  ; VERIFY" in redacted
    for masked in ("{MAC1:4}", "{GTAC:4} {MAC2:4} 90 00", "{GMAC:4} {PSAM_TAC:4} 90 00"):
        assert masked in redacted
    # The bill sent to DES CRYPT carries the TAC, GMAC and PSAM TAC too.
    assert "{TAC:4} {GMAC:4} {PSAM_TAC:4}" in redacted
    assert "# redacted: " in redacted


def test_redaction_keeps_everything_else(demo: Trace) -> None:
    redacted = redact(demo)
    assert [len(e.command) for e in redacted.entries] == [len(e.command) for e in demo.entries]
    assert [e.reader for e in redacted.entries] == [e.reader for e in demo.entries]
    kept = [n for n, e in enumerate(redacted.entries, 1) if isinstance(e.command, bytes)]
    assert VERIFY_STEP not in kept and GET_BALANCE_STEP in kept
    # The card's random (not a secret) is still there, and so is the balance.
    assert redacted.entries[GREY_LOCK_INIT_STEP - 1] == demo.entries[GREY_LOCK_INIT_STEP - 1]
    assert redact(redacted).entries == redacted.entries


MAC = b"\x11\x22\x33\x44"


@pytest.mark.parametrize(
    ("command", "masked", "secret"),
    [
        (cmd.change_pin("246813", "579135"), "80 5E 01 00 07 {old_PIN:3} FF {new_PIN:3}", "24 68"),
        (cmd.change_pin("579135", "246813"), "80 5E 01 00 07 {old_PIN:3} FF {new_PIN:3}", "24 68"),
        (cmd.reload_pin("246813", MAC), "80 5E 00 00 07 {PIN:3} {MAC:4}", "24 68"),
        (cmd.application_block(MAC), "84 1E 00 00 04 {MAC:4}", "11 22"),
        (cmd.update_binary_mac(0x15, 0, b"\xab\xcd", MAC), "04 D6 95 00 06 AB CD {MAC:4}", "11 22"),
        (
            cmd.credit_for_load(bytes(7), MAC),
            "80 52 00 00 0B " + "00 " * 7 + "{MAC2:4} 04",
            "11 22",
        ),
    ],
)
def test_redaction_of_pin_and_issuer_commands(
    command: CommandApdu, masked: str, secret: str
) -> None:
    raw = bytes(command)
    assert secret in raw.hex(" ").upper()
    redacted = redact(Trace([TraceEntry("card", raw, b"\x90\x00")]))
    assert str(redacted.entries[0].command) == masked
    assert secret not in dumps_text(redacted)


def test_a_redacted_trace_is_refused_unless_partial(
    demo: Trace, issued: Callable[[str], IssuedCard]
) -> None:
    redacted = loads_text(dumps_text(redact(demo)))
    with pytest.raises(UnreplayableTrace, match=r"step 11 card VERIFY"):
        replay(redacted, fresh_readers(issued))
    result = replay(redacted, fresh_readers(issued), partial=True)
    assert result.ok and not result.complete
    by_step = {step.number: step for step in result.steps}
    assert by_step[VERIFY_STEP].status == "skipped"
    assert "masked" in by_step[VERIFY_STEP].reason
    assert by_step[GET_BALANCE_STEP].status == "skipped"  # the card stopped at VERIFY
    # The PSAM still answered step 16, whose MAC1 is masked: the pattern accepted it.
    assert isinstance(redacted.entries[SAM_INIT_STEP - 1].response, Pattern)
    assert by_step[SAM_INIT_STEP].status == "match"
    assert "card stopped at step 11" in result.format_diff()


def test_a_redacted_answer_still_asserts_its_unmasked_bytes(
    demo: Trace, issued: Callable[[str], IssuedCard]
) -> None:
    redacted = redact(demo)
    answer = redacted.entries[SAM_INIT_STEP - 1].response
    assert isinstance(answer, Pattern) and isinstance(answer.parts[0], bytes)
    wrong_ttc = Pattern((b"\x00\x00\x00\x99" + answer.parts[0][4:], *answer.parts[1:]))
    result = replay(
        with_response(redacted, SAM_INIT_STEP, wrong_ttc), fresh_readers(issued), partial=True
    )
    assert [step.number for step in result.mismatches] == [SAM_INIT_STEP]
    assert result.mismatches[0].diff == (3,)


# scriptor ---------------------------------------------------------------------------------------
def scriptor_sends(script: str) -> list[bytes | str]:
    """What pcsc-tools' scriptor does with each line (its Perl loop, line by line)."""
    sent: list[bytes | str] = []
    for line in script.splitlines():
        if "exit" in line.lower():
            break
        if not line.strip() or line.startswith("#"):
            continue
        if "reset" in line.lower():
            sent.append("reset")
            continue
        sent.append(bytes.fromhex(line))
    return sent


def test_scriptor_script_sends_the_card_commands_in_order(demo: Trace) -> None:
    script = to_scriptor(demo)
    card = [e.command for e in demo.entries if e.reader == "card"]
    assert scriptor_sends(script) == ["reset", *card]
    lines = script.splitlines()
    verify = lines.index("00 20 00 00 03 99 99 99")
    assert lines[verify - 2] == f"# step {VERIFY_STEP}: VERIFY"
    assert lines[verify - 1] == "# expect: 90 00"
    assert all(line.startswith("#") or not line or line == "reset" or
               all(len(t) == 2 for t in line.split()) for line in lines)  # fmt: skip
    psam = to_scriptor(demo, "psam", reset=False)
    assert scriptor_sends(psam) == [e.command for e in demo.entries if e.reader == "psam"]


def test_scriptor_comments_never_stop_scriptor(demo: Trace) -> None:
    noted = Trace(demo.entries, {"note": "Exit lane 3, then exit"})
    script = to_scriptor(noted)
    assert "exit" not in script.lower()
    assert "Ex-it lane 3" in script
    assert len(scriptor_sends(script)) == 1 + sum(e.reader == "card" for e in demo.entries)


def test_scriptor_refuses_masked_commands_and_unknown_readers(demo: Trace) -> None:
    with pytest.raises(UnreplayableTrace, match=r"steps \[11, 17, 20\] of reader 'card'"):
        to_scriptor(redact(demo))
    with pytest.raises(UnreplayableTrace, match="no exchanges with reader 'pinpad'"):
        to_scriptor(demo, "pinpad")


# Replay -----------------------------------------------------------------------------------------
def test_the_demo_replays_byte_for_byte_on_fresh_cards(
    demo: Trace, issued: Callable[[str], IssuedCard]
) -> None:
    result = replay(loads_text(dumps_text(demo)), fresh_readers(issued))
    assert result.ok and result.complete
    assert [step.status for step in result.steps] == ["match"] * len(demo.entries)
    assert result.format_diff() == ""


def test_a_changed_byte_fails_with_a_diff_naming_step_and_byte(
    demo: Trace, issued: Callable[[str], IssuedCard]
) -> None:
    changed = with_response(demo, GET_BALANCE_STEP, bytes.fromhex("0001FFA09000"))
    result = replay(changed, fresh_readers(issued))
    assert not result.ok
    assert len(result.steps) == GET_BALANCE_STEP  # stopped at the first mismatch
    [mismatch] = result.mismatches
    assert (mismatch.number, mismatch.diff) == (GET_BALANCE_STEP, (2,))
    diff = result.format_diff().splitlines()
    assert diff[0] == "step 14 · card · GET BALANCE: 1 byte differs (offset 2)"
    expected = next(line for line in diff if line.startswith("  expected  "))
    got = next(line for line in diff if line.startswith("  got  "))
    caret = diff[diff.index(got) + 1]
    assert expected.endswith("00 01 FF A0 90 00") and got.endswith("00 01 86 A0 90 00")
    assert caret.index("^^") == expected.index("FF") and caret.count("^") == 2
    assert "  expected fields  balance 0001FFA0; SW 9000 success" in diff
    assert "  got fields       balance 000186A0; SW 9000 success" in diff

    every = replay(changed, fresh_readers(issued), keep_going=True)
    assert len(every.steps) == len(demo.entries)
    assert [step.number for step in every.mismatches] == [GET_BALANCE_STEP]


def test_patterns_accept_differing_randoms(issued: Callable[[str], IssuedCard]) -> None:
    challenge = bytes(cmd.get_challenge())
    recorded = Trace([TraceEntry("card", challenge, bytes.fromhex("010203049000"))])

    def card(seed: int) -> dict[str, InProcReader]:
        applet = in_memory(dict(issued("normal").cells), SeededRng(seed))
        return {"card": InProcReader(applet, "card")}

    assert not replay(recorded, card(9)).ok
    for answer in ("{rand:4} 90 00", ".. .. .. .. 90 00", "{a:2} .. .. 9000"):
        patterned = with_response(recorded, 1, parse_payload(answer))
        assert replay(patterned, card(9)).ok, answer
        assert replay(loads_text(dumps_text(patterned)), card(10)).ok, answer
        assert not replay(patterned, card(9), patterns=False).ok
    wrong_sw = with_response(recorded, 1, parse_payload("{rand:4} 6A 82"))
    result = replay(wrong_sw, card(9))
    assert result.mismatches[0].diff == (4, 5)
    assert "{rand} at offset 0 got" in result.format_diff()


def test_a_lost_card_is_part_of_the_recording() -> None:
    recorded = Trace(
        [
            TraceEntry("card", b"\x00\x84\x00\x00\x04", bytes.fromhex("112233449000")),
            TraceEntry("card", b"\xe0\x7c\x08\x00", None),
        ]
    )
    assert replay(recorded, {"card": ScriptedReader([bytes.fromhex("112233449000"), None])}).ok
    answered = replay(
        recorded, {"card": ScriptedReader([bytes.fromhex("112233449000"), b"\x90\x00"])}
    )
    assert answered.mismatches[0].reason.startswith("the card was lost here in the recording")
    lost = replay(recorded, {"card": ScriptedReader([None])})
    assert lost.mismatches[0].number == 1
    assert "LOST (no answer)" in lost.format_diff()


def test_replay_needs_a_reader_for_every_name(demo: Trace) -> None:
    with pytest.raises(UnreplayableTrace, match="no reader given for 'psam'"):
        replay(demo, {"card": ScriptedReader([])})


def test_recorder_builds_a_trace_from_a_tracing_reader(
    issued: Callable[[str], IssuedCard],
) -> None:
    recorder = Recorder({"note": "live"})
    inner = InProcReader(in_memory(dict(issued("normal").cells), SeededRng(1)), "card")
    reader = TracingReader(inner, [recorder])
    reader.connect()
    reader.transmit(bytes(cmd.select(b"1PAY.SYS.DDF01")))
    inner.remove()
    with pytest.raises(CardLost):
        reader.transmit(bytes(cmd.get_challenge()))
    entries = recorder.trace.entries
    assert recorder.trace.meta == {"note": "live"}
    assert [e.reader for e in entries] == ["card", "card"]
    assert isinstance(entries[0].response, bytes) and entries[0].response.endswith(b"\x90\x00")
    assert entries[1].response is None
    assert 0 <= entries[0].started <= entries[1].started and entries[0].elapsed > 0
    assert loads_jsonl(dumps_jsonl(recorder.trace)) == recorder.trace


# Replay card ------------------------------------------------------------------------------------
def fuel_with(card: CardOS, psam: CardOS, pin: str = "999999") -> FuellingResult:
    card_reader, psam_reader = InProcReader(card, "card"), InProcReader(psam, "psam")
    card_reader.connect()
    psam_reader.connect()
    psam_channel = Channel(psam_reader)
    return fuel(
        Channel(card_reader),
        psam_channel,
        read_psam(psam_channel),
        pin=pin,
        sale=DEMO_SALE,
        clock_now=WHEN,
        unlock_at=WHEN + FUELLING_TIME,
    )


def test_a_replay_card_serves_the_recorded_card_to_the_real_flow(
    demo: Trace, issued: Callable[[str], IssuedCard]
) -> None:
    recorded_bill = run_demo(when=WHEN, seed=SEED).result.bill
    card = ReplayCard(loads_text(dumps_text(demo)), "card")
    psam = in_memory(dict(issued("psam-dispenser").cells), SeededRng(SEED + 1))
    result = fuel_with(card, psam)
    assert result.bill == recorded_bill
    assert card.ok and card.finished and card.divergences == []
    assert isinstance(card, CardOS)
    assert card.power_on() == bytes.fromhex("3B680000") + b"FUELCARD"


def test_a_diverging_terminal_gets_6f00_and_the_divergence_is_kept(demo: Trace) -> None:
    card, psam = ReplayCard(demo, "card"), ReplayCard(demo, "psam")
    with pytest.raises(CardRefused) as refused:
        fuel_with(card, psam, pin="123456")
    assert refused.value.sw == SW.UNKNOWN == 0x6F00
    [divergence] = card.divergences
    assert divergence.step == VERIFY_STEP
    assert divergence.expected == bytes(cmd.verify("999999"))
    assert divergence.got == bytes(cmd.verify("123456"))
    assert "step 11: expected 00 20 00 00 03 99 99 99 (VERIFY)" in divergence.describe()
    assert not card.ok
    # The card still waits for the recorded command.
    assert card.process(bytes(cmd.verify("999999"))) == b"\x90\x00"


def test_a_replay_card_never_raises_and_answers_6f00_past_the_end() -> None:
    answer = bytes.fromhex("010203049000")
    recorded = Trace([TraceEntry("card", b"\x00\x84\x00\x00\x04", answer)])
    card = ReplayCard(recorded, divergence_sw=0x6985)
    assert card.process(b"") == b"\x69\x85"
    assert card.process(b"\x00\x84\x00\x00\x04") == answer
    assert card.process(b"\x00\x84\x00\x00\x04") == b"\x69\x85"
    assert [d.step for d in card.divergences] == [1, None]
    assert "after the last step" in card.divergences[1].describe()
    card.rewind()
    assert card.divergences == [] and card.process(b"\x00\x84\x00\x00\x04").endswith(b"\x90\x00")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_a_replay_card_answers_anything_with_a_status_word(commands: list[bytes]) -> None:
    card = ReplayCard(Trace([TraceEntry("card", b"\x00\x84\x00\x00\x04", b"\x90\x00")]))
    for command in commands:
        answer = card.process(command)
        assert answer in (b"\x90\x00", b"\x6f\x00")


def test_a_replay_card_plays_lost_and_masked_answers(demo: Trace) -> None:
    recorded = Trace(
        [
            TraceEntry("card", b"\x00\x20\x00\x00\x01\x99", b"\x90\x00"),
            TraceEntry("card", b"\x00\x84\x00\x00\x04", parse_payload("{rand:4} 90 00")),
            TraceEntry("card", b"\xe0\x7c\x08\x00", None),
        ],
        {"atr.card": "3B00"},
    )
    card = ReplayCard(redact(recorded))
    assert card.power_on() == b"\x3b\x00"
    assert card.process(b"\x00\x20\x00\x00\x01\x42") == b"\x90\x00"  # the masked PIN fits any
    assert card.process(b"\x00\x84\x00\x00\x04") == b"\x00\x00\x00\x00\x90\x00"
    assert card.process(b"\xe0\x7c\x08\x00") == b"\x6f\x00"
    assert (card.masked_answers, card.lost_steps, card.divergences) == ([2], [3], [])
    torn = InProcReader(ReplayCard(recorded, tear=True), "card")
    torn.transmit(b"\x00\x20\x00\x00\x01\x99")
    torn.transmit(b"\x00\x84\x00\x00\x04")
    with pytest.raises(CardLost):
        torn.transmit(b"\xe0\x7c\x08\x00")
    with pytest.raises(ReplayCardError, match="no exchanges with reader 'psam'"):
        ReplayCard(recorded, "psam")
    assert ReplayCard(demo, "psam").atr.endswith(b"FUELPSAM")


# The command line -------------------------------------------------------------------------------
@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def record(cli: CliRunner, out: Path, *args: str) -> str:
    result = cli.invoke(trace, ["record", str(out), "--at", WHEN.isoformat(), *args])
    assert result.exit_code == 0, result.output
    return result.output


REPLAY_READERS = ["--reader", "card=inproc:normal", "--reader", "psam=inproc:psam-dispenser"]


def test_cli_record_and_replay_pass(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.trace"
    assert "recorded 23 exchanges (psam, card)" in record(cli, out, "--seed", "6")
    recorded = load(out)
    assert recorded.meta["seed"] == "6" and recorded.meta["at"] == WHEN.isoformat()
    passed = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS, "--seed", "6"])
    assert passed.exit_code == 0, passed.output
    assert passed.output.strip() == "PASS: 23 of 23 steps matched"
    # The seed defaults to the trace's own.
    assert cli.invoke(trace, ["replay", str(out), *REPLAY_READERS]).exit_code == 0
    wrong_seed = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS, "--seed", "7"])
    assert wrong_seed.exit_code == 1


def test_cli_seeds_follow_the_reader_order(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    record(cli, out, "--seed", "2")
    swapped = ["--reader", "psam=inproc:psam-dispenser", "--reader", "card=inproc:normal"]
    failed = cli.invoke(trace, ["replay", str(out), *swapped, "--seed", "2"])
    assert failed.exit_code == 1 and "FAIL:" in failed.output
    explicit = ["--reader", "psam=inproc:psam-dispenser?seed=3", "--reader", "card=inproc:normal"]
    # psam: its own seed 3; card, second in order: 1 + 1 = 2, as recorded.
    passed = cli.invoke(trace, ["replay", str(out), *explicit, "--seed", "1"])
    assert passed.exit_code == 0, passed.output
    assert reader_plan(("psam=inproc:x?seed=3", "card=inproc:y"), 1) == [
        ("psam", "inproc:x", 3),
        ("card", "inproc:y", 2),
    ]


def test_cli_replay_of_a_changed_trace_prints_the_diff(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.trace"
    record(cli, out)
    text = out.read_text().replace("card  < 00 01 86 A0 90 00", "card  < 00 01 86 A1 90 00")
    out.write_text(text)
    result = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS])
    assert result.exit_code == 1
    assert "step 14 · card · GET BALANCE: 1 byte differs (offset 3)" in result.output
    assert "^^" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("FAIL: 13 of 23 steps matched")


def test_cli_redacted_record_and_partial_replay(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "red.trace"
    record(cli, out, "--redact", "--no-timing")
    text = out.read_text()
    assert "{PIN:3}" in text and "99 99 99" not in text and "(at " not in text
    refused = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS])
    assert refused.exit_code == 1
    assert "trace cannot be replayed" in refused.output and "step 11 card VERIFY" in refused.output
    partial = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS, "--partial"])
    assert partial.exit_code == 0, partial.output
    assert "card stopped at step 11" in partial.output
    assert "PASS: 11 of 23 steps matched, 12 skipped" in partial.output


def test_cli_record_without_timing_is_reproducible(cli: CliRunner, tmp_path: Path) -> None:
    record(cli, tmp_path / "a.trace", "--no-timing")
    record(cli, tmp_path / "b.trace", "--no-timing")
    assert (tmp_path / "a.trace").read_text() == (tmp_path / "b.trace").read_text()
    assert "# recorded:" not in (tmp_path / "a.trace").read_text()


def test_cli_show_convert_and_scriptor(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "demo.trace"
    record(cli, source)
    shown = cli.invoke(trace, ["show", str(source)])
    assert shown.exit_code == 0
    assert "#17  card  GREY LOCK" in shown.output and "seed: 1" in shown.output
    assert "23 exchanges with psam, card" in shown.output

    converted = tmp_path / "demo.jsonl"
    done = cli.invoke(trace, ["convert", str(source), str(converted), "--redact"])
    assert done.exit_code == 0
    assert load(converted) == redact(load(source))
    shown_redacted = cli.invoke(trace, ["show", str(converted)])
    assert "MAC1: {MAC1:4}" in shown_redacted.output
    assert "5 commands have masked bytes" in shown_redacted.output

    script = cli.invoke(trace, ["scriptor", str(source)])
    assert script.exit_code == 0
    assert script.output == to_scriptor(load(source), "card")
    written = tmp_path / "psam.script"
    exported = cli.invoke(trace, ["scriptor", str(source), "--reader", "psam", "-o", str(written)])
    assert exported.exit_code == 0
    assert written.read_text() == to_scriptor(load(source), "psam")
    refused = cli.invoke(trace, ["scriptor", str(converted)])
    assert refused.exit_code == 1 and "masked command bytes" in refused.output


def test_cli_usage_errors(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(trace, ["record", str(tmp_path / "x.txt")]).exit_code == 2
    assert cli.invoke(trace, ["record", str(tmp_path / "x.trace"), "--at", "soon"]).exit_code == 2
    out = tmp_path / "demo.trace"
    record(cli, out)
    only_card = cli.invoke(trace, ["replay", str(out), "--reader", "card=inproc:normal"])
    assert only_card.exit_code == 1 and "no reader given for 'psam'" in only_card.output
    extra = cli.invoke(trace, ["replay", str(out), *REPLAY_READERS, "--reader", "pad=inproc:new"])
    assert extra.exit_code == 2 and "pad not in the trace" in extra.output
    bad = cli.invoke(trace, ["replay", str(out), "--reader", "card"])
    assert bad.exit_code == 2 and "expected NAME=URL" in bad.output
    twice = cli.invoke(trace, ["replay", str(out), "--reader", "card=a:b", "--reader", "card=a:c"])
    assert twice.exit_code == 2 and "given twice" in twice.output
    bad_url = cli.invoke(trace, ["replay", str(out), "--reader", "card=tcp:x", *REPLAY_READERS[2:]])
    assert bad_url.exit_code == 1 and "unknown reader scheme" in bad_url.output
    (tmp_path / "broken.trace").write_text("# fuelsim-trace/1\n\ncard < 90 00\n")
    broken = cli.invoke(trace, ["show", str(tmp_path / "broken.trace")])
    assert broken.exit_code == 1 and "broken.trace: line 3: " in broken.output


def test_the_trace_commands_load_no_pyscard() -> None:
    probe = (
        "import sys, terminal_sim.cli_trace, terminal_sim.replay_card;"
        "sys.exit(1 if 'smartcard' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
