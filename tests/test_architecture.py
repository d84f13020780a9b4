"""The rings hold: import-linter's contracts pass, and a headless import loads no UI or PC/SC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_headless_import_loads_neither_textual_nor_smartcard() -> None:
    probe = (
        "import sys, cardcore.apdu, card_profiles.emulator, hsm_mock.hsm, terminal_sim.cli;"
        "loaded = [m for m in ('textual', 'smartcard') if m in sys.modules];"
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
