"""`fuelsim tui` started in tmux as a person would: it draws the forecourt and answers keys.

The draw time is measured and printed (run with -s to see it); only a generous bound guards
against a hang.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from terminal_sim import qr

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
FUELSIM = Path(sys.executable).with_name("fuelsim")
HANG = 60.0  # seconds: a hang, not a speed target


def capture(session: str) -> str:
    done = subprocess.run(
        [TMUX, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    )
    return done.stdout


def wait_for(session: str, text: str, count: int = 1) -> str:
    """The screen once `text` shows (`count` times: a drawing may be captured half done)."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        screen = capture(session)
        if screen.count(text) >= count:
            return screen
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared {count} times:\n{capture(session)}")


def test_fuelsim_tui_draws_and_answers_keys(tmp_path: Path) -> None:
    session = f"fuelsim-tui-{tmp_path.name}"
    # COLUMNS and LINES (set under pytest) would override the 120×40 pane the app draws in.
    command = f"env -u COLUMNS -u LINES {FUELSIM} tui --data-dir {tmp_path / 'data'}"
    command += f" --scenarios {tmp_path}"
    started = time.monotonic()
    subprocess.run(
        [TMUX, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True
    )
    try:
        before = wait_for(session, "card slot: empty")
        drawn = time.monotonic() - started
        print(f"\nfuelsim tui drew the forecourt in {drawn:.2f} s")
        assert "pump1" in before and "pump2" in before
        subprocess.run([TMUX, "send-keys", "-t", session, "i"], check=True)
        after = wait_for(session, "card slot: alice")
        assert after != before
        subprocess.run([TMUX, "send-keys", "-t", session, "F4"], check=True)
        assert "ASN" in wait_for(session, "insert into:")
        subprocess.run([TMUX, "send-keys", "-t", session, "F8", "a"], check=True)
        wait_for(session, "numeric code: 81")  # the phone, armed on the embedded host
        armed = wait_for(session, qr.UPPER_HALF, 53 * 27)  # the whole QR beside the details
        assert "armed" in armed and "s left" in armed
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)
