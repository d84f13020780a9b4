"""Readers chosen by a URL-like name.

- `inproc:PROFILE` — a fresh emulated card issued from a profile (or image file), in memory;
  `inproc:FILE.nvm.json` — the card kept in that memory file.
- `pcsc:READER NAME` — a PC/SC reader by name (or unique prefix); `pcsc:#N` — the N-th reader.
"""

from __future__ import annotations

from pathlib import Path

from card_profiles.emulator import make_applet
from card_profiles.nvm import FileBackend, MemoryBackend
from cardcore.clockrng import SeededRng
from cardcore.errors import FuelsimError
from cardcore.ports import Hsm, Reader
from terminal_sim.issuing import issue_profile
from terminal_sim.readers import InProcReader

MEMORY_SUFFIX = ".nvm.json"


class ReaderUrlError(FuelsimError):
    title = "bad reader"


def open_reader(url: str, hsm: Hsm, *, seed: int = 1, name: str | None = None) -> Reader:
    scheme, sep, target = url.partition(":")
    if not sep or not target:
        raise ReaderUrlError(f"{url!r}: expected inproc:PROFILE, pcsc:READER NAME or pcsc:#N")
    if scheme == "inproc":
        if target.endswith(MEMORY_SUFFIX):
            backend: FileBackend | MemoryBackend = FileBackend(Path(target))
        else:
            backend = MemoryBackend(issue_profile(target, hsm).cells)
        return InProcReader(make_applet(backend, SeededRng(seed)), name or target)
    if scheme == "pcsc":
        from terminal_sim.pcsc_reader import PcscReader  # the only module that loads pyscard

        return PcscReader(target)
    raise ReaderUrlError(f"{url!r}: unknown reader scheme {scheme!r} (inproc or pcsc)")
