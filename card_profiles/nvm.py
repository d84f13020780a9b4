"""Non-volatile memory of an emulated card or PSAM: named cells committed atomically per command.

A command computes all its writes first, then `Nvm.commit` makes them durable the way a card's
EEPROM transaction buffer does: stage each write, store the journal (the commit point), apply
it to the cells, drop the journal. On the next power-on a stored journal is applied again, so
after a power loss at any point the memory holds the whole old or the whole new state.

A tear hook is called at every write point and may raise PowerLost to cut the power there.
Backends: MemoryBackend (tests, benchmarks) and FileBackend (JSON files written with temp file,
fsync and rename, so the process itself may die at any point too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cardcore.errors import FuelsimError

Cells = dict[str, bytes]
NVM_FORMAT = "fuelsim.nvm/1"


class PowerLost(BaseException):
    """The card lost power at a write point. Derives from BaseException so that an applet's
    "never raise" guard (which catches Exception) lets it through to the reader."""


@dataclass(frozen=True, slots=True)
class WritePoint:
    """A place inside a commit where power can be lost.

    step: "stage" (before the journal: old state survives), "journal" (after the commit point:
    new state survives), "apply" (cells written, journal not yet dropped: new state survives).
    """

    step: str
    cell: str | None
    index: int


TearHook = Callable[[WritePoint], None]


class NvmBackend(Protocol):
    def load(self) -> tuple[Cells, Cells | None]:
        """The stored cells and the stored journal, if any."""
        ...

    def save_journal(self, journal: Cells) -> None: ...

    def save_cells(self, cells: Cells) -> None: ...

    def clear_journal(self) -> None: ...


class MemoryBackend:
    """Keeps the "persistent" image in this process: survives power cycles, not the process."""

    def __init__(self, cells: Mapping[str, bytes] | None = None) -> None:
        self._cells: Cells = dict(cells or {})
        self._journal: Cells | None = None

    def load(self) -> tuple[Cells, Cells | None]:
        return dict(self._cells), (dict(self._journal) if self._journal is not None else None)

    def save_journal(self, journal: Cells) -> None:
        self._journal = journal

    def save_cells(self, cells: Cells) -> None:
        self._cells = cells

    def clear_journal(self) -> None:
        self._journal = None


def _write_atomically(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _encode(cells: Cells, key: str) -> dict[str, object]:
    return {"format": NVM_FORMAT, key: {name: value.hex().upper() for name, value in cells.items()}}


def _decode(path: Path, key: str) -> Cells:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != NVM_FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, expected {NVM_FORMAT!r}")
        return {name: bytes.fromhex(value) for name, value in payload[key].items()}
    except (ValueError, KeyError, AttributeError) as exc:
        raise FuelsimError(f"{path}: not a card memory file: {exc}", title="bad card file") from exc


class FileBackend:
    """`<path>` holds the cells, `<path>.journal` a committed but not yet applied journal."""

    def __init__(self, path: Path, initial: Mapping[str, bytes] | None = None) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        if not path.exists():
            if initial is None:
                raise FuelsimError(f"{path}: no such card memory file", title="card not found")
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, _encode(dict(initial), "cells"))

    def load(self) -> tuple[Cells, Cells | None]:
        journal = _decode(self.journal_path, "journal") if self.journal_path.exists() else None
        return _decode(self.path, "cells"), journal

    def save_journal(self, journal: Cells) -> None:
        _write_atomically(self.journal_path, _encode(journal, "journal"))

    def save_cells(self, cells: Cells) -> None:
        _write_atomically(self.path, _encode(cells, "cells"))

    def clear_journal(self) -> None:
        self.journal_path.unlink(missing_ok=True)


class Nvm:
    """The cells an applet reads (a RAM mirror) and commits (through the backend)."""

    def __init__(self, backend: NvmBackend) -> None:
        self.backend = backend
        self.tear_hook: TearHook | None = None
        self.cells: Cells = {}
        self.power_on()

    def power_on(self) -> None:
        """Load the memory, finishing a commit that a power loss interrupted."""
        cells, journal = self.backend.load()
        if journal is not None:
            cells.update(journal)
            self.backend.save_cells(cells)
            self.backend.clear_journal()
        self.cells = cells

    def __getitem__(self, name: str) -> bytes:
        return self.cells[name]

    def int(self, name: str) -> int:
        return int.from_bytes(self.cells[name], "big")

    def commit(self, writes: Cells) -> None:
        """Make `writes` durable as one unit (see the module docstring for the write points)."""
        hook = self.tear_hook
        if hook is not None:
            for index, cell in enumerate(writes):
                hook(WritePoint("stage", cell, index))
        self.backend.save_journal(writes)
        if hook is not None:
            hook(WritePoint("journal", None, len(writes)))
        cells = {**self.cells, **writes}
        self.backend.save_cells(cells)
        if hook is not None:
            hook(WritePoint("apply", None, len(writes) + 1))
        self.backend.clear_journal()
        self.cells = cells
