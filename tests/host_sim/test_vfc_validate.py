"""Every validation rule of virtual-cards spec §4, over real HTTP, each with its figures."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import date

import pytest

from cardcore import vfc
from host_sim.vfc_policy import VfcPolicy
from terminal_sim.host_client import HostError

from .conftest import Host
from .fleet_helpers import (
    STATION,
    TokenMaker,
    admin,
    issue_and_provision,
    nfc_data,
    pay,
    setup_fleet,
    top_up,
)


@pytest.fixture
def phone(host: Host) -> TokenMaker:
    setup_fleet(host)
    top_up(host, 1_000_000)
    return issue_and_provision(host)


def refused(host: Host, data: str, **kw: object) -> HostError:
    with pytest.raises(HostError) as caught:
        pay(host, data, **kw)  # type: ignore[arg-type]
    return caught.value


def uses(host: Host) -> int:
    return int(host.scalar("SELECT COUNT(*) FROM vfc_uses"))


def test_a_fresh_code_is_approved_with_its_figures(host: Host, phone: TokenMaker) -> None:
    now = host.clock.now()
    answer = pay(host, phone.qr(now, t_gen=int(now.timestamp()) - 12))
    assert (answer["status"], answer["held_amount"], answer["atc"]) == ("held", 30_000, 1)
    assert (answer["delta_s"], answer["warnings"], answer["station_id"]) == (12, [], STATION)
    assert answer["luk"] == {
        "index": 0,
        "used": 1,
        "budget": 20,
        "remaining": 19,
        "expires_at": int(now.timestamp()) + 86_400,
    }


# Step 1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("qr", "not base64!"),
        ("qr", base64.b64encode(b"\x85\x05CPV01").decode()),
        ("numeric", "8112345678"),
        ("numeric", "9912345678001123456"),
    ],
)
def test_malformed_codes_are_e_format(
    host: Host, phone: TokenMaker, method: str, data: str
) -> None:
    error = refused(host, data, method=method)
    assert (error.code, error.status, error.details["method"]) == ("E_FORMAT", 400, method)
    assert uses(host) == 0


def test_another_payload_version_is_e_version(host: Host, phone: TokenMaker) -> None:
    raw = phone.token(host.clock.now()).encode().replace(b"CPV01", b"CPV02")
    error = refused(host, base64.b64encode(raw).decode())
    assert (error.code, error.status) == ("E_VERSION", 400)


def test_tampered_qr_code(host: Host, phone: TokenMaker) -> None:
    raw = bytearray(phone.token(host.clock.now()).encode())
    at = raw.index(bytes.fromhex("9F26")) + 3  # first cryptogram byte
    raw[at] ^= 0x01
    error = refused(host, base64.b64encode(bytes(raw)).decode())
    assert (error.code, error.details["failures"], error.details["attempts_left"]) == (
        "E_CRYPTOGRAM",
        1,
        4,
    )
    raw[at] ^= 0x01
    raw[raw.index(bytes.fromhex("9F36")) + 4] ^= 0x01  # the ATC's low byte
    assert refused(host, base64.b64encode(bytes(raw)).decode()).code == "E_CRYPTOGRAM"
    assert uses(host) == 0


# Step 2 -------------------------------------------------------------------------------------


def test_unknown_card_and_alias(host: Host, phone: TokenMaker) -> None:
    stranger = replace(phone, card_number="8156000999999990", alias="99999999")
    error = refused(host, stranger.qr(host.clock.now()))
    assert (error.code, error.status, error.details["card_number"]) == (
        "E_UNKNOWN_CARD",
        404,
        "8156000999999990",
    )
    by_alias = refused(host, stranger.numeric(host.clock.now()), method="numeric")
    assert (by_alias.code, by_alias.details["alias"]) == ("E_UNKNOWN_CARD", "99999999")


def test_unknown_luk_is_e_key_invalid(host: Host, phone: TokenMaker) -> None:
    error = refused(host, phone.qr(host.clock.now(), luk_index=77))
    assert (error.code, error.details["luk_index"], error.details["reason"]) == (
        "E_KEY_INVALID",
        77,
        "unknown",
    )


# Step 3 -------------------------------------------------------------------------------------


def test_failures_throttle_the_card_then_clear(host: Host, phone: TokenMaker) -> None:
    now = host.clock.now()
    for attempt in range(1, 6):
        error = refused(host, phone.qr(now, key=bytes(32)))
        assert (error.code, error.details["failures"]) == ("E_CRYPTOGRAM", attempt)
    throttled = refused(host, phone.qr(now))  # even a good code
    assert (throttled.code, throttled.status) == ("E_THROTTLED", 429)
    assert throttled.details["failures"] == 5
    assert throttled.details["retry_after_s"] == 601
    host.clock.advance(601)
    assert pay(host, phone.qr(host.clock.now()))["status"] == "held"


# Step 4 -------------------------------------------------------------------------------------


def test_blocked_card_after_a_valid_cryptogram(host: Host, phone: TokenMaker) -> None:
    with admin(host) as a:
        a.request("POST", f"/v1/fleet/cards/{phone.card_id}/block", payload={"reason": "stolen"})
    error = refused(host, phone.qr(host.clock.now()))
    assert (error.code, error.status, error.details["reason"]) == ("E_CARD_BLOCKED", 403, "stolen")
    assert refused(host, phone.qr(host.clock.now(), key=bytes(32))).code == "E_CRYPTOGRAM"


def test_expired_card(host: Host) -> None:
    setup_fleet(host)
    with admin(host) as a:
        a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave", "expiry": "2026-11-22"})
    from .fleet_helpers import driver

    with driver(host) as d:
        card_id = host.scalar("SELECT card_id FROM vfc_cards")
        maker = TokenMaker.from_answer(d.request("POST", f"/v1/vfc/cards/{card_id}/keys"))
    assert maker.expiry == date(2026, 11, 22)
    host.clock.advance(21 * 3600)  # 23:00 UTC on the expiry day: still valid
    assert refused(host, maker.qr(host.clock.now())).code == "E_INSUFFICIENT_FUNDS"
    host.clock.advance(2 * 3600)
    error = refused(host, maker.qr(host.clock.now()))
    assert (error.code, error.details["expiry"], error.details["today"]) == (
        "E_CARD_EXPIRED",
        "2026-11-22",
        "2026-11-23",
    )


def test_key_budget_then_ttl(host: Host) -> None:
    host.app.state.vfc_policy = VfcPolicy(luk_budget=2)
    setup_fleet(host)
    top_up(host)
    phone = issue_and_provision(host, count=1)
    for _ in range(2):
        pay(host, phone.qr(host.clock.now()))
    error = refused(host, phone.qr(host.clock.now()))
    assert (error.code, error.details["used"], error.details["budget"]) == ("E_KEY_EXHAUSTED", 2, 2)
    assert error.details["reason"] == "budget used"
    from .fleet_helpers import driver

    with driver(host) as d:
        phone.add(d.request("POST", f"/v1/vfc/cards/{phone.card_id}/keys"))
    host.clock.advance(86_400)
    aged = refused(host, phone.qr(host.clock.now(), luk_index=1))
    assert (aged.code, aged.details["reason"], aged.details["used"]) == (
        "E_KEY_EXHAUSTED",
        "TTL over",
        0,
    )


# Step 5 -------------------------------------------------------------------------------------


def test_synced_phone_ahead(host: Host, phone: TokenMaker) -> None:
    now = int(host.clock.now().timestamp())
    error = refused(host, phone.qr(host.clock.now(), t_gen=now + 6))
    assert (error.code, error.status) == ("E_CLOCK_SKEW", 422)
    assert (error.details["direction"], error.details["skew_s"], error.details["tolerance_s"]) == (
        "ahead",
        6,
        5,
    )
    assert pay(host, phone.qr(host.clock.now(), t_gen=now + 5))["status"] == "held"


def test_unsynced_phone_two_minutes_ahead(host: Host, phone: TokenMaker) -> None:
    now = int(host.clock.now().timestamp())
    error = refused(host, phone.qr(host.clock.now(), t_gen=now + 120, synced=False))
    assert (error.code, error.details["skew_s"], error.details["tolerance_s"]) == (
        "E_CLOCK_SKEW",
        120,
        30,
    )
    assert error.details["synced"] is False
    ok = pay(host, phone.qr(host.clock.now(), t_gen=now + 20, synced=False))
    assert [(w["code"], w["drift_s"], w["direction"]) for w in ok["warnings"]] == [
        ("W_CLOCK_DRIFT", 20, "ahead")
    ]


def test_synced_code_too_old_is_expired(host: Host, phone: TokenMaker) -> None:
    now = int(host.clock.now().timestamp())
    error = refused(host, phone.qr(host.clock.now(), t_gen=now - 66))
    assert (error.code, error.details["age_s"], error.details["ttl_s"]) == ("E_EXPIRED", 66, 60)
    assert "suspected_skew_s" not in error.details
    assert pay(host, phone.qr(host.clock.now(), t_gen=now - 65))["delta_s"] == 65


def test_unsynced_phone_behind_is_suspected_then_recognised(host: Host, phone: TokenMaker) -> None:
    now = int(host.clock.now().timestamp())
    first = refused(host, phone.qr(host.clock.now(), t_gen=now - 300, synced=False))
    assert (first.code, first.details["suspected_skew_s"], first.details["age_s"]) == (
        "E_EXPIRED",
        300,
        300,
    )
    second = refused(host, phone.qr(host.clock.now(), t_gen=now - 304, synced=False))
    assert (second.code, second.details["direction"], second.details["skew_s"]) == (
        "E_CLOCK_SKEW",
        "behind",
        304,
    )
    assert second.details["previous_offset_s"] == 300


def test_synced_phone_with_a_wrong_wall_clock_passes_with_a_warning(
    host: Host, phone: TokenMaker
) -> None:
    answer = pay(host, phone.qr(host.clock.now(), skew_s=-3_600))
    assert answer["status"] == "held"
    assert answer["warnings"] == [
        {
            "code": "W_CLOCK_DRIFT",
            "message": "the phone's wall clock is off: turn on automatic time",
            "drift_s": -3_600,
            "direction": "behind",
            "synced": True,
        }
    ]


# Step 6 -------------------------------------------------------------------------------------


def test_same_code_twice_is_replayed(host: Host, phone: TokenMaker) -> None:
    code = phone.qr(host.clock.now())
    first = pay(host, code)
    error = refused(host, code, second=True)
    assert (error.code, error.status, error.details["reason"]) == (
        "E_REPLAYED",
        409,
        "already used",
    )
    assert (error.details["atc"], error.details["first_terminal"]) == (1, "440101000001")
    assert host.scalar("SELECT COUNT(*) FROM vfc_payments") == 1
    assert first["payment_id"] == 1


def test_atc_far_below_and_far_above(host: Host, phone: TokenMaker) -> None:
    jump = refused(host, phone.qr(host.clock.now(), atc=101))
    assert (jump.code, jump.details["atc_high"], jump.details["max_forward"]) == (
        "E_ATC_OUT_OF_RANGE",
        -1,
        100,
    )
    pay(host, phone.qr(host.clock.now(), atc=60))
    pay(host, phone.qr(host.clock.now(), atc=45))  # out of order but within the window
    below = refused(host, phone.qr(host.clock.now(), atc=39))
    assert (below.code, below.details["reason"], below.details["atc_high"]) == (
        "E_REPLAYED",
        "far below the high-water mark",
        60,
    )
    assert uses(host) == 2


# Step 7 -------------------------------------------------------------------------------------


def set_limits(host: Host, phone: TokenMaker, **limits: object) -> None:
    with admin(host) as a:
        a.request("PUT", f"/v1/fleet/cards/{phone.card_id}/limits", payload=limits)


def test_restricted_product_and_station(host: Host, phone: TokenMaker) -> None:
    set_limits(host, phone, products=["95"])
    error = refused(host, phone.qr(host.clock.now()), product="92")
    assert (error.code, error.details["rule"], error.details["allowed"]) == (
        "E_RESTRICTED",
        "product",
        ["95"],
    )
    set_limits(host, phone, stations=["ST99"])
    other = refused(host, phone.qr(host.clock.now()))
    assert (other.details["rule"], other.details["value"]) == ("station", STATION)
    assert host.scalar("SELECT outcome FROM vfc_uses WHERE atc = 2") == "E_RESTRICTED"


def test_limits_per_fill_per_day_and_count(host: Host, phone: TokenMaker) -> None:
    set_limits(host, phone, per_fill_amount=40_000, per_day_amount=70_000, per_day_count=3)
    fill = refused(host, phone.qr(host.clock.now()), amount=40_001)
    assert (fill.code, fill.status, fill.details["limit_name"]) == (
        "E_LIMIT_EXCEEDED",
        402,
        "per_fill_amount",
    )
    pay(host, phone.qr(host.clock.now()), amount=40_000)
    day = refused(host, phone.qr(host.clock.now()), amount=30_001)
    assert (day.details["limit_name"], day.details["used"], day.details["remaining"]) == (
        "per_day_amount",
        40_000,
        30_000,
    )
    pay(host, phone.qr(host.clock.now()), amount=10_000)
    pay(host, phone.qr(host.clock.now()), amount=10_000)
    count = refused(host, phone.qr(host.clock.now()), amount=1)
    assert (count.details["limit_name"], count.details["used"], count.details["limit"]) == (
        "per_day_count",
        3,
        3,
    )
    host.clock.advance(22 * 3600)  # midnight UTC: a new day (the keys live 24 h)
    assert pay(host, phone.qr(host.clock.now()), amount=40_000)["status"] == "held"


def test_insufficient_funds(host: Host) -> None:
    setup_fleet(host)
    top_up(host, 20_000)
    phone = issue_and_provision(host)
    error = refused(host, phone.qr(host.clock.now()), amount=20_001)
    assert (error.code, error.details["balance"], error.details["requested"]) == (
        "E_INSUFFICIENT_FUNDS",
        20_000,
        20_001,
    )


def test_flash_pay_pays_a_sale_once(host: Host, phone: TokenMaker) -> None:
    paid = pay(host, phone.qr(host.clock.now()), sale_id="S-1001", amount=23_450)
    assert (paid["status"], paid["amount"], paid["model"]) == ("captured", 23_450, "flash")
    error = refused(host, phone.qr(host.clock.now()), sale_id="S-1001", amount=23_450)
    assert (error.code, error.status, error.details["payment_id"]) == (
        "E_SALE_ALREADY_PAID",
        409,
        paid["payment_id"],
    )
    assert host.scalar("SELECT COUNT(*) FROM vfc_payments") == 1


def test_fraud_rules_block_the_card(host: Host, phone: TokenMaker) -> None:
    error = refused(host, phone.qr(host.clock.now()), amount=300_001)
    assert (error.code, error.details["rule"], error.details["max"]) == (
        "E_CARD_BLOCKED",
        "unusual amount",
        300_000,
    )
    assert host.sql("SELECT status, block_reason FROM vfc_cards")[0][:] == (
        "blocked",
        "fraud: unusual amount",
    )


def test_velocity_blocks_the_card(host: Host) -> None:
    host.app.state.vfc_policy = VfcPolicy(velocity_max=2, velocity_window_s=300)
    setup_fleet(host)
    top_up(host)
    phone = issue_and_provision(host)
    pay(host, phone.qr(host.clock.now()), amount=100)
    pay(host, phone.qr(host.clock.now()), amount=100)
    error = refused(host, phone.qr(host.clock.now()), amount=100)
    assert (error.code, error.details["rule"], error.details["payments"]) == (
        "E_CARD_BLOCKED",
        "velocity",
        2,
    )
    host.clock.advance(301)
    assert refused(host, phone.qr(host.clock.now()), amount=100).code == "E_CARD_BLOCKED"


# Numeric codes and NFC ------------------------------------------------------------------------


def test_numeric_code_happy_path_and_replay(host: Host, phone: TokenMaker) -> None:
    code = phone.numeric(host.clock.now())
    assert len(code) == 19 and code.startswith("81" + phone.alias)
    answer = pay(host, code, method="numeric")
    assert (answer["status"], answer["atc"], answer["skew_steps"], answer["method"]) == (
        "held",
        1,
        0,
        "numeric",
    )
    assert refused(host, code, method="numeric").code == "E_REPLAYED"


def test_numeric_code_skew_in_steps_without_widening(host: Host, phone: TokenMaker) -> None:
    step = vfc.time_step(int(host.clock.now().timestamp()))
    ahead = refused(host, phone.numeric(host.clock.now(), step=step + 2), method="numeric")
    assert (ahead.code, ahead.details["skew_steps"], ahead.details["skew_s"]) == (
        "E_CLOCK_SKEW",
        2,
        60,
    )
    old = refused(host, phone.numeric(host.clock.now(), step=step - 3), method="numeric")
    assert (old.code, old.details["age_steps"], old.details["window_steps"]) == (
        "E_EXPIRED",
        3,
        [-2, 1],
    )
    edge = pay(host, phone.numeric(host.clock.now(), step=step + 1), method="numeric")
    assert edge["skew_steps"] == 1 and edge["warnings"][0]["code"] == "W_CLOCK_DRIFT"
    wrong = phone.numeric(host.clock.now())
    bad = wrong[:-1] + str((int(wrong[-1]) + 1) % 10)
    assert refused(host, bad, method="numeric").code == "E_CRYPTOGRAM"


def test_nfc_token_is_bound_to_the_pump(host: Host, phone: TokenMaker) -> None:
    context = vfc.NfcContext(30_000, STATION, 3)
    token = phone.token(host.clock.now(), nfc=context)
    wrong_pump = refused(host, nfc_data(token), method="nfc", pump=4)
    assert wrong_pump.code == "E_CRYPTOGRAM"
    token = phone.token(host.clock.now(), nfc=context)
    assert pay(host, nfc_data(token), method="nfc", pump=3)["method"] == "nfc"


def test_too_many_stations_in_a_day_block_the_card(host: Host) -> None:
    from host_sim.access import add_terminal

    from .fleet_helpers import TERMINAL2

    host.app.state.vfc_policy = VfcPolicy(max_stations_per_day=1)
    setup_fleet(host)
    add_terminal(host.db, TERMINAL2, "ST02")
    top_up(host)
    phone = issue_and_provision(host)
    pay(host, phone.qr(host.clock.now()), amount=100)
    error = refused(host, phone.qr(host.clock.now()), amount=100, second=True)
    assert (error.code, error.details["rule"], error.details["stations_today"]) == (
        "E_CARD_BLOCKED",
        "unusual stations",
        2,
    )
    assert host.scalar("SELECT block_reason FROM vfc_cards") == "fraud: unusual stations"
