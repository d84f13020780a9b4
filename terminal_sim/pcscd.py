"""Find pcscd with the vpcd readers, or start it (as root, in the foreground, as a child)."""

from __future__ import annotations

import shutil
import subprocess
import time

from cardcore.errors import FuelsimError

VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")


class PcscdUnavailable(FuelsimError):
    title = "pcscd unavailable"


def vpcd_readers() -> list[str]:
    from terminal_sim.pcsc_reader import PcscContext, PcscError

    try:
        context = PcscContext()
    except PcscError:
        return []
    try:
        return [name for name in context.readers() if name in VPCD_READERS]
    finally:
        context.close()


def ensure_pcscd(timeout: float = 15.0) -> subprocess.Popen[bytes] | None:
    """None when pcscd already shows the vpcd readers; else the pcscd started here."""
    if len(vpcd_readers()) == len(VPCD_READERS):
        return None
    binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
    try:
        process = subprocess.Popen(
            [binary, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        raise PcscdUnavailable(f"cannot start pcscd: {exc}") from None
    deadline = time.monotonic() + timeout
    while len(vpcd_readers()) < len(VPCD_READERS):
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            raise PcscdUnavailable(
                "pcscd with the vsmartcard-vpcd readers did not come up "
                "(apt-get install pcscd vsmartcard-vpcd; ./quickstart.sh installs them)"
            )
        time.sleep(0.1)
    return process


def stop_pcscd(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
