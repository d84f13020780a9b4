"""The phone simulator against the real host over HTTP: provisioning, clock sync, and payments
by QR, numeric code and NFC tap (through the HCE applet) that the host accepts."""

from __future__ import annotations

import base64

import pytest

from card_profiles.hce_applet import HceApplet, get_token_command, select_command
from cardcore import vfc
from cardcore.clockrng import SeededRng
from terminal_sim.host_client import HostError
from terminal_sim.phone import Phone
from terminal_sim.phone_clock import PhoneClock
from terminal_sim.phone_http import HttpPhoneHost

from .conftest import Host
from .fleet_helpers import STATION, admin, driver, pay, setup_fleet, top_up


@pytest.fixture(autouse=True)
def fleet(host: Host) -> None:
    setup_fleet(host)
    top_up(host)


def provisioned_phone(host: Host, **clock_args: float) -> Phone:
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave"})
    phone = Phone(HttpPhoneHost(driver(host)), PhoneClock(host.clock, **clock_args), SeededRng(5))
    phone.provision(card["card_id"], "2468")
    return phone


def test_phone_with_a_wrong_clock_pays_by_qr_after_syncing(host: Host) -> None:
    phone = provisioned_phone(host, offset_s=-5_400)  # the phone is 90 minutes behind
    assert phone.state.luks and phone.state.card is not None
    phone.sync_time()
    assert abs(phone.clock_status().trusted_now - host.clock.now().timestamp()) <= 1
    code = phone.arm("2468")
    assert code.token.iad.wall_off and phone.clock_warning() is not None
    host.clock.advance(20)
    answer = pay(host, code.qr_text, amount=20_000)
    assert answer["status"] == "held", answer


def test_numeric_code_is_accepted(host: Host) -> None:
    phone = provisioned_phone(host)
    phone.sync_time()
    code = phone.arm("2468")
    answer = pay(host, code.numeric, method="numeric", amount=10_000)
    assert answer["status"] == "held", answer


def test_nfc_tap_is_accepted_for_its_pump_only(host: Host) -> None:
    phone = provisioned_phone(host)
    phone.sync_time()
    phone.arm("2468")
    applet = HceApplet(phone, SeededRng(0))
    assert applet.process(bytes(select_command()))[-2:] == b"\x90\x00"
    context = vfc.NfcContext(amount_limit=15_000, station=STATION, pump=3)
    answer = applet.process(bytes(get_token_command(bytes.fromhex("11223344"), context)))
    assert answer[-2:] == b"\x90\x00"
    data = base64.b64encode(answer[:-2]).decode()
    with pytest.raises(HostError) as refused:
        pay(host, data, method="nfc", amount=15_000, pump=4)  # another pump
    assert refused.value.code == "E_CRYPTOGRAM"
    result = pay(host, data, method="nfc", amount=15_000, pump=3)
    assert result["status"] == "held" and result["atc"] == phone.state.atc
