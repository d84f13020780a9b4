"""A session recorded through the real PC/SC stack replays against fresh emulated cards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from card_profiles.emulator import in_memory
from cardcore.clockrng import SeededRng
from terminal_sim.channel import Channel
from terminal_sim.fuelling import Sale, fuel, read_psam
from terminal_sim.issuing import IssuedCard
from terminal_sim.readers import InProcReader, TracingReader
from terminal_sim.traces import Recorder, load, replay, save

from .test_virtual_reader import LATER, WHEN


def test_recorded_session_replays_and_a_changed_byte_fails(
    station: Callable[..., Any], issued: Callable[[str], IssuedCard], tmp_path: Path
) -> None:
    _, _, card_reader, psam_reader = station(seed=7)  # card seed 7, PSAM seed 8
    recorder = Recorder({"seed": "7"})
    card = TracingReader(card_reader, [recorder])
    psam = TracingReader(psam_reader, [recorder])
    card.connect()
    psam.connect()
    psam_channel = Channel(psam)
    fuel(
        Channel(card),
        psam_channel,
        read_psam(psam_channel),
        pin="999999",
        sale=Sale(1, 0x0092, 750, 1200),
        clock_now=WHEN,
        unlock_at=LATER,
    )
    path = tmp_path / "fuelling.trace"
    save(recorder.trace, path)
    recorded = load(path)
    assert recorded.readers == [psam_reader.name, card_reader.name]

    def fresh() -> dict[str, InProcReader]:
        return {
            card_reader.name: InProcReader(
                in_memory(dict(issued("normal").cells), SeededRng(7)), card_reader.name
            ),
            psam_reader.name: InProcReader(
                in_memory(dict(issued("psam-dispenser").cells), SeededRng(8)), psam_reader.name
            ),
        }

    result = replay(recorded, fresh())
    assert result.ok and result.complete, result.format_diff()
    assert len(result.steps) == len(recorded.entries) >= 20

    step = next(
        n
        for n, e in enumerate(recorded.entries)
        if e.command[:2] == b"\x80\x5c"  # GET BALANCE
    )
    entry = recorded.entries[step]
    assert isinstance(entry.response, bytes)
    changed = bytes([entry.response[0] ^ 0x01]) + entry.response[1:]
    recorded.entries[step] = replace(entry, response=changed)
    broken = replay(recorded, fresh())
    assert not broken.ok
    diff = broken.format_diff()
    assert f"step {step + 1}" in diff and "GET BALANCE" in diff
