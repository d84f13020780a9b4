"""The dispenser paid by virtual card: the real phone (trusted time, arming, HCE applet) against
the real host over HTTP; the pump only parses and forwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from card_profiles.hce_applet import HceApplet
from cardcore.clockrng import ManualClock, SeededRng
from host_sim import ledger
from terminal_sim.host_client import HostError
from terminal_sim.phone import Phone
from terminal_sim.readers import InProcReader
from terminal_sim.vfc_pump import VfcPumpError, presented_text
from terminal_sim.vfc_rig import DEFAULT_PIN, VfcRig

START = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[VfcRig]:
    rig = VfcRig.start(ManualClock(START), tmp_path)
    rig.add_fleet("taxi", ["ann"], ["bob"])
    rig.add_pump("pump1", "440101000011", "ST7", 1, seed=11)
    rig.add_pump("pump2", "440101000012", "ST7", 2, seed=12)
    with rig.user_client("ann") as admin:
        admin.request(
            "POST",
            "/v1/fleet/topups",
            payload={"amount": 500_000, "card_number": "4111111111111111"},
        )
        card = admin.request("POST", "/v1/fleet/cards", payload={"driver_id": "bob"})
    phone = rig.add_phone("bob-phone", "bob", offset_s=0, seed=5)
    phone.sync_time()
    phone.provision(card["card_id"], DEFAULT_PIN)
    try:
        yield rig
    finally:
        rig.close()


def phone_of(rig: VfcRig) -> Phone:
    return rig.phones["bob-phone"]


def balances(rig: VfcRig) -> tuple[int, int, int]:
    with rig.db.connect() as conn:
        return (
            ledger.balance(conn, "fleet:taxi"),
            ledger.balance(conn, "fleet:taxi:hold"),
            ledger.balance(conn, "station:ST7"),
        )


def test_qr_prepaid_fuelling(rig: VfcRig) -> None:
    code = phone_of(rig).arm(DEFAULT_PIN)
    pump = rig.pumps["pump1"]
    hold = pump.authorize(presented_text("qr", code.qr_text), "92", 30_000)
    assert (hold["status"], hold["held_amount"], hold["station_id"]) == ("held", 30_000, "ST7")
    rig.clock.advance(180)
    done = pump.settle(hold["hold_id"], 21_780)
    assert (done["status"], done["released_amount"]) == ("completed", 8_220)
    assert balances(rig) == (478_220, 0, 21_780)


def test_numeric_code_flash_pay_and_nothing_delivered(rig: VfcRig) -> None:
    phone = phone_of(rig)
    pump = rig.pumps["pump2"]
    code = phone.arm(DEFAULT_PIN)
    spaced = " ".join(code.numeric[i : i + 4] for i in range(0, 19, 4))
    paid = pump.flash_pay(presented_text("numeric", spaced), "95", 12_340, "S-1")
    assert (paid["status"], paid["method"]) == ("captured", "numeric")
    hold = pump.authorize(presented_text("qr", phone.arm(DEFAULT_PIN).qr_text), "95", 5_000)
    assert pump.settle(hold["hold_id"], 0)["status"] == "released"
    assert balances(rig) == (487_660, 0, 12_340)


def test_nfc_tap_is_bound_to_its_pump(rig: VfcRig) -> None:
    phone = phone_of(rig)
    reader = InProcReader(HceApplet(phone, SeededRng(3)), "pump1 NFC")
    with pytest.raises(VfcPumpError, match="not armed"):
        rig.pumps["pump1"].tap(reader, 30_000)
    phone.arm(DEFAULT_PIN)
    tapped = rig.pumps["pump1"].tap(reader, 30_000)
    with pytest.raises(HostError) as elsewhere:
        rig.pumps["pump2"].authorize(tapped, "92", 30_000)  # forwarded from another pump
    assert elsewhere.value.code == "E_CRYPTOGRAM"
    phone.arm(DEFAULT_PIN)
    tapped = rig.pumps["pump1"].tap(reader, 30_000)
    assert rig.pumps["pump1"].authorize(tapped, "92", 30_000)["method"] == "nfc"
    with pytest.raises(VfcPumpError, match="not armed"):
        rig.pumps["pump1"].tap(reader, 30_000)  # one tap per arming


def test_waiting_past_the_countdown(rig: VfcRig) -> None:
    phone = phone_of(rig)
    code = phone.arm(DEFAULT_PIN)
    rig.clock.advance(70)
    assert phone.screen().code is None  # "expired — refresh": never shown again
    with pytest.raises(HostError) as late:
        rig.pumps["pump1"].authorize(presented_text("qr", code.qr_text), "92", 10_000)
    assert (late.value.code, late.value.details["age_s"], late.value.details["ttl_s"]) == (
        "E_EXPIRED",
        70,
        60,
    )


def test_bad_input_is_refused_at_the_pump(rig: VfcRig) -> None:
    with pytest.raises(VfcPumpError):
        presented_text("qr", "   ")
    with pytest.raises(VfcPumpError):
        presented_text("nfc", "AAAA")
    with pytest.raises(HostError) as garbage:
        rig.pumps["pump1"].authorize(presented_text("qr", "hello"), "92", 100)
    assert garbage.value.code == "E_FORMAT"


def test_the_validation_bench_approves_fresh_tokens() -> None:
    from terminal_sim.bench_vfc import bench_token_validations

    assert bench_token_validations(0.05, synchronous="OFF") > 0
