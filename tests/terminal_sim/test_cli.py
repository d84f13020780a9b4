"""The fuelsim command line, driven as a user would (in process with CliRunner, and once as the
installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from card_profiles.image import shipped_profiles
from terminal_sim.cli import main

ET_SELECT = "00A404000CA00000000353494E4F504543"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FUELSIM_DATA_DIR", str(tmp_path))
    return CliRunner()


def test_demo_prints_a_decoded_trace_and_the_bill(runner: CliRunner) -> None:
    result = runner.invoke(main, ["demo", "--at", "2026-11-22T10:00:00"])
    assert result.exit_code == 0, result.output
    out = result.output
    for step in (
        "INITIALIZE FOR GREY LOCK",
        "INIT SAM FOR GREY LOCK",
        "GREY LOCK",
        "VERIFY GREY-LOCK MAC2",
        "GMAC FOR UNLOCK",
        "DEBIT FOR UNLOCK",
        "CLEAR TAC-UNREAD",
        "DES CRYPT",
    ):
        assert step in out
    assert "balance 1,000.00 → 850.00" in out
    assert "date and time  2026-11-22 10:01:30" in out  # unlocked after 90 s of fuelling
    assert " ms" in out


def test_demo_is_reproducible_with_a_seed(runner: CliRunner) -> None:
    args = ["demo", "--at", "2026-11-22T10:00:00", "--seed", "7"]
    first, second = runner.invoke(main, args), runner.invoke(main, args)
    bill = [line for line in first.output.splitlines() if line.strip().startswith("bytes")]
    assert bill and bill == [
        line for line in second.output.splitlines() if line.strip().startswith("bytes")
    ]


def test_demo_refuses_a_bad_date(runner: CliRunner) -> None:
    result = runner.invoke(main, ["demo", "--at", "yesterday"])
    assert result.exit_code == 2
    assert "not an ISO date" in result.output


def test_card_list_names_every_shipped_profile(runner: CliRunner) -> None:
    result = runner.invoke(main, ["card", "list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == shipped_profiles()
    for required in (
        "normal",
        "new",
        "store-enabled",
        "grey-locked",
        "tac-unread",
        "pin-blocked",
        "blacklisted",
        "expired",
        "restricted",
        "low-balance",
        "staff",
        "psam-dispenser",
        "psam-store",
    ):
        assert required in names


def test_card_show_decodes_a_grey_locked_card_and_its_escape_bill(runner: CliRunner) -> None:
    result = runner.invoke(main, ["card", "show", "grey-locked"])
    assert result.exit_code == 0, result.output
    assert "grey (01)" in result.output
    assert "escape bill" in result.output
    assert "amount             200.00" in result.output


def test_card_new_then_apdu_changes_the_memory_file(runner: CliRunner, tmp_path: Path) -> None:
    created = runner.invoke(main, ["card", "new", "normal"])
    assert created.exit_code == 0, created.output
    path = Path(created.output.strip())
    assert path == tmp_path / "cards" / "normal.nvm.json" and path.exists()
    wrong_pin = runner.invoke(main, ["card", "apdu", str(path), ET_SELECT, "0020000003123456"])
    assert "63C2 wrong PIN, 2 tries left" in wrong_pin.output
    shown = runner.invoke(main, ["card", "show", str(path)])
    assert "2 tries left" in shown.output
    again = runner.invoke(main, ["card", "new", "normal"])
    assert again.exit_code == 1 and "exists" in again.output


def test_card_apdu_on_a_profile_leaves_no_trace(runner: CliRunner) -> None:
    result = runner.invoke(main, ["card", "apdu", "normal", ET_SELECT, "805C000104"])
    assert result.exit_code == 0
    assert "GET BALANCE" in result.output and "balance: 000186A0" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["card", "apdu", "normal", "zz"], "'zz' is not hex"),
        (["card", "show", "no-such-profile"], "no card profile 'no-such-profile'"),
        (["hsm", "keys", "--key-set", "PROD"], "PROD"),
    ],
)
def test_bad_input_gets_a_clear_error(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_hsm_keys_shows_check_values_only(runner: CliRunner, kat: dict[str, object]) -> None:
    result = runner.invoke(main, ["hsm", "keys"])
    assert result.exit_code == 0
    kcvs = kat["master_kcv"]
    keys = kat["master_keys"]
    assert isinstance(kcvs, dict) and isinstance(keys, dict)
    for label, kcv in kcvs.items():
        assert f"{label:<6} KCV {kcv}" in result.output
    for value in keys.values():
        assert value not in result.output


def test_bench_json_has_the_required_keys(runner: CliRunner) -> None:
    result = runner.invoke(main, ["bench", "--json", "--seconds", "0.05", "--no-vpcd"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for key in ("apdus_per_s", "purchases_per_s", "fuellings_per_s", "fuelling_crypto_floor_ratio"):
        assert figures[key] > 0
    assert figures["apdus_per_fuelling"] == 19  # the PSAM is read once, at dispenser start


def test_console_script_runs_the_demo() -> None:
    script = Path(sys.executable).with_name("fuelsim")
    assert script.exists(), "the fuelsim console script is installed beside the interpreter"
    done = subprocess.run(
        [str(script), "demo", "--at", "2026-11-22T10:00:00"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Bill" in done.stdout


def write_lab(tmp_path: Path) -> Path:
    """A lab key set LAB1 and a key map that gives it to card ...0002 (the `normal` card)."""
    from cardcore.crypto import kcv
    from cardcore.keys import MASTER_KEY_LABELS

    keys = {
        label: {"value": f"{i:02X}" * 8 + f"{i + 16:02X}" * 8}
        for i, label in enumerate(MASTER_KEY_LABELS, 1)
    }
    for entry in keys.values():
        entry["kcv"] = kcv(bytes.fromhex(entry["value"])).hex().upper()
    (tmp_path / "lab.json").write_text(
        json.dumps({"format": "fuelsim.keyset/1", "name": "LAB1", "keys": keys})
    )
    key_map = tmp_path / "keymap.json"
    key_map.write_text(
        json.dumps(
            {
                "format": "fuelsim.keymap/1",
                "key_set_files": ["lab.json"],
                "by_asn": {"01000114400000000002": "LAB1"},
            }
        )
    )
    return key_map


def test_key_map_brings_lab_key_sets_to_every_command(runner: CliRunner, tmp_path: Path) -> None:
    key_map = write_lab(tmp_path)
    which = runner.invoke(main, ["--key-map", str(key_map), "hsm", "which", "1000114400000000002"])
    assert which.output.strip() == "LAB1"
    other = runner.invoke(main, ["--key-map", str(key_map), "hsm", "which", "1000114400000000003"])
    assert other.output.strip() == "DEV"
    keys = runner.invoke(main, ["--key-map", str(key_map), "hsm", "keys", "--key-set", "LAB1"])
    assert keys.exit_code == 0 and "MPK    KCV" in keys.output
    lab_image = tmp_path / "lab-card.yaml"
    normal = Path(__file__).parents[2] / "card_profiles" / "profiles" / "normal.yaml"
    lab_image.write_text(normal.read_text().replace("issued_by: DEV", "issued_by: LAB1"))
    dev_card = runner.invoke(main, ["card", "show", "normal"])
    lab_card = runner.invoke(main, ["--key-map", str(key_map), "card", "show", str(lab_image)])
    assert lab_card.exit_code == 0, lab_card.output

    def dpk(output: str) -> str:
        return next(line for line in output.splitlines() if line.strip().startswith("DPK"))

    assert dpk(lab_card.output) != dpk(dev_card.output)
    without_map = runner.invoke(main, ["card", "show", str(lab_image)])
    assert without_map.exit_code == 1 and "LAB1" in without_map.output
