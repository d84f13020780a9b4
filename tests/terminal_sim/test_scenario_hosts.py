"""The pytest plugin's scenario items per transport and host: `[inproc]`, `[vpcd]`, `[http]`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "host-down-online-unlock.yaml"


def collected(folder: Path, *options: str) -> list[str]:
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *options,
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        check=True,
    )
    return sorted(line.split("::")[-1] for line in answer.stdout.splitlines() if "::" in line)


@pytest.mark.parametrize(
    ("options", "items"),
    [
        ((), ["http", "inproc", "vpcd"]),
        (("--scenario-host", "inproc"), ["inproc", "vpcd"]),
        (("--scenario-host", "http", "--scenario-transport", "inproc"), ["http"]),
        (("--scenario-transport", "vpcd"), ["vpcd"]),
    ],
)
def test_items_per_transport_and_host(
    tmp_path: Path, options: tuple[str, ...], items: list[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(SCENARIO, folder)
    assert collected(folder, *options) == items
