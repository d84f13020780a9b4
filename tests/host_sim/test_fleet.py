"""Fleet accounts over real HTTP: roles and their rights, issuing, binding, re-binding (which
revokes the old phone's keys), blocking, limits, top-ups and key provisioning."""

from __future__ import annotations

import pytest

from host_sim import ledger
from host_sim.fleet import luhn_valid
from terminal_sim.host_client import HostAuthError, HostError

from .conftest import Host
from .fleet_helpers import (
    APPROVED_CARD,
    COMPANY,
    OTHER_ADMIN_AK,
    OTHER_ADMIN_SK,
    admin,
    driver,
    issue_and_provision,
    pay,
    setup_fleet,
    terminal,
    top_up,
)


@pytest.fixture(autouse=True)
def fleet(host: Host) -> None:
    setup_fleet(host)


def test_admin_issues_a_card_at_once(host: Host) -> None:
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={})
        listed = a.request("GET", "/v1/fleet/cards")
    assert card["card_id"] == f"VFC{card['alias']}"
    assert len(card["alias"]) == 8 and card["alias"].isdigit()
    assert len(card["card_number"]) == 16 and luhn_valid(card["card_number"])
    assert card["card_number"][7:15] == card["alias"]
    assert (card["kv"], card["status"], card["driver_id"]) == (1, "active", None)
    assert card["expiry"] == "2029-11-21"  # three years of 365 days from 2026-11-22
    assert [c["card_id"] for c in listed["cards"]] == [card["card_id"]]
    row = host.sql("SELECT company_id, binding FROM vfc_cards")[0]
    assert (row["company_id"], row["binding"]) == (COMPANY, 0)


def test_drivers_cannot_do_admin_things_and_admins_get_no_keys(host: Host) -> None:
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave"})
    with driver(host) as d:
        for method, path, body in [
            ("POST", "/v1/fleet/cards", {}),
            ("POST", f"/v1/fleet/cards/{card['card_id']}/block", {}),
            ("POST", "/v1/fleet/topups", {"amount": 1, "card_number": APPROVED_CARD}),
        ]:
            with pytest.raises(HostAuthError) as refused:
                d.request(method, path, payload=body)
            assert (refused.value.code, refused.value.details["required"]) == (
                "E_SCOPE",
                "fleet.admin",
            )
    with admin(host) as a, pytest.raises(HostAuthError) as no_keys:
        a.request("POST", f"/v1/vfc/cards/{card['card_id']}/keys")
    assert no_keys.value.details["required"] == "fleet.driver"
    with terminal(host) as t, pytest.raises(HostAuthError):
        t.request("GET", "/v1/fleet/cards")
    assert host.scalar("SELECT COUNT(*) FROM vfc_luks") == 0


def test_driver_sees_and_gets_keys_only_for_cards_bound_to_them(host: Host) -> None:
    with admin(host) as a:
        mine = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave"})
        theirs = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "erin"})
    with driver(host) as d:
        assert [c["card_id"] for c in d.request("GET", "/v1/vfc/cards")["cards"]] == [
            mine["card_id"]
        ]
        keys = d.request("POST", f"/v1/vfc/cards/{mine['card_id']}/keys", payload={"count": 3})
        with pytest.raises(HostAuthError) as refused:
            d.request("POST", f"/v1/vfc/cards/{theirs['card_id']}/keys")
    assert refused.value.code == "E_NOT_BOUND"
    assert [k["index"] for k in keys["keys"]] == [0, 1, 2]
    assert {(k["budget"], k["ttl_s"], len(k["key"])) for k in keys["keys"]} == {(20, 86_400, 64)}
    assert keys["keys"][0]["expires_at"] == int(host.clock.now().timestamp()) + 86_400
    # The key is the HSM's LUK_i of the spec's derivation.
    from cardcore import vfc
    from hsm_mock.vfc_imk import DEV_IMK_VFC

    k_card = vfc.card_key(DEV_IMK_VFC, mine["card_id"], 1)
    assert keys["keys"][2]["key"] == vfc.luk(k_card, 2).hex()


def test_other_company_admin_cannot_see_or_touch_the_card(host: Host) -> None:
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={})
    with host.client(OTHER_ADMIN_AK, OTHER_ADMIN_SK) as other:
        assert other.request("GET", "/v1/fleet/cards")["cards"] == []
        for path in ("block", "bind"):
            with pytest.raises(HostError) as refused:
                other.request(
                    "POST",
                    f"/v1/fleet/cards/{card['card_id']}/{path}",
                    payload={"driver_id": "x"} if path == "bind" else {},
                )
            assert (refused.value.code, refused.value.status) == ("E_UNKNOWN_CARD", 404)
        with pytest.raises(HostError) as driver_elsewhere:
            other.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave"})
    assert driver_elsewhere.value.code == "E_UNKNOWN_USER"
    assert host.scalar("SELECT status FROM vfc_cards") == "active"


def test_rebind_revokes_the_old_phone(host: Host) -> None:
    top_up(host)
    old_phone = issue_and_provision(host)
    first = pay(host, old_phone.qr(host.clock.now()))
    assert first["status"] == "held"
    with admin(host) as a:
        rebound = a.request(
            "POST", f"/v1/fleet/cards/{old_phone.card_id}/bind", payload={"driver_id": "erin"}
        )
    assert rebound["driver_id"] == "erin"
    assert host.scalar("SELECT COUNT(*) FROM vfc_luks WHERE revoked = 0") == 0
    with pytest.raises(HostAuthError) as paid:
        pay(host, old_phone.qr(host.clock.now()))
    assert (paid.value.code, paid.value.details["reason"]) == ("E_KEY_INVALID", "revoked")
    with driver(host) as d, pytest.raises(HostAuthError) as no_keys:
        d.request("POST", f"/v1/vfc/cards/{old_phone.card_id}/keys")
    assert no_keys.value.code == "E_NOT_BOUND"
    with driver(host, second=True) as e:
        fresh = e.request("POST", f"/v1/vfc/cards/{old_phone.card_id}/keys")
    assert [k["index"] for k in fresh["keys"]] == [5, 6, 7, 8, 9]  # never reused
    assert host.scalar("SELECT binding FROM vfc_cards") == 2


def test_block_and_unblock(host: Host) -> None:
    top_up(host)
    phone = issue_and_provision(host)
    with admin(host) as a:
        blocked = a.request(
            "POST", f"/v1/fleet/cards/{phone.card_id}/block", payload={"reason": "lost phone"}
        )
        assert (blocked["status"], blocked["block_reason"]) == ("blocked", "lost phone")
        with driver(host) as d, pytest.raises(HostAuthError) as keys:
            d.request("POST", f"/v1/vfc/cards/{phone.card_id}/keys")
        assert keys.value.code == "E_CARD_BLOCKED"
        a.request("POST", f"/v1/fleet/cards/{phone.card_id}/unblock", payload={})
    with driver(host) as d:
        phone.add(d.request("POST", f"/v1/vfc/cards/{phone.card_id}/keys"))
    assert pay(host, phone.qr(host.clock.now(), luk_index=5))["status"] == "held"


def test_limits_are_stored_and_shown(host: Host) -> None:
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={})
        limits = {
            "per_day_amount": 50_000,
            "per_day_count": 2,
            "per_fill_amount": 30_000,
            "products": ["92", "95"],
            "stations": ["ST01"],
        }
        shown = a.request("PUT", f"/v1/fleet/cards/{card['card_id']}/limits", payload=limits)
        with pytest.raises(HostError) as bad:
            a.request(
                "PUT", f"/v1/fleet/cards/{card['card_id']}/limits", payload={"per_day_count": -1}
            )
    assert shown["limits"] == limits
    assert bad.value.code == "E_VALIDATION"
    assert host.scalar("SELECT per_day_count FROM vfc_limits") == 2


def test_top_up_is_booked_and_declines_book_nothing(host: Host) -> None:
    approved = top_up(host, 250_00)
    assert (approved["status"], approved["amount"], approved["balance"]) == (
        "approved",
        25_000,
        25_000,
    )
    with admin(host) as a:
        for number, code in [
            ("4000000000000002", "do_not_honour"),
            ("4000000000009995", "insufficient_funds"),
            ("4000000000000069", "expired_card"),
            ("4242424242424242", "not_a_test_card"),
        ]:
            with pytest.raises(HostError) as declined:
                a.request(
                    "POST", "/v1/fleet/topups", payload={"amount": 100, "card_number": number}
                )
            assert (declined.value.code, declined.value.status) == ("E_TOPUP_DECLINED", 402)
            assert declined.value.details["decline_code"] == code
        with pytest.raises(HostError) as not_luhn:
            a.request("POST", "/v1/fleet/topups", payload={"amount": 100, "card_number": "4111"})
        assert (not_luhn.value.code, not_luhn.value.details["field"]) == (
            "E_BAD_REQUEST",
            "card_number",
        )
        account = a.request("GET", "/v1/fleet/account")
    assert (account["balance"], account["held"]) == (25_000, 0)
    with host.app.state.host.db.connect() as conn:
        assert ledger.balance(conn, "clearing:acquirer") == 25_000
        assert ledger.unbalanced_transactions(conn) == []
    rows = host.sql("SELECT status, decline_code, card_last4 FROM fleet_topups ORDER BY topup_id")
    assert [(r["status"], r["card_last4"]) for r in rows] == [
        ("approved", "1111"),
        ("declined", "0002"),
        ("declined", "9995"),
        ("declined", "0069"),
        ("declined", "4242"),
    ]


def test_key_replenishment_and_cap(host: Host) -> None:
    phone = issue_and_provision(host, count=8)
    with driver(host) as d:
        more = d.request("POST", f"/v1/vfc/cards/{phone.card_id}/keys", payload={"count": 5})
        assert [k["index"] for k in more["keys"]] == [8, 9]  # at most 10 usable at once
        with pytest.raises(HostError) as full:
            d.request("POST", f"/v1/vfc/cards/{phone.card_id}/keys")
    assert (full.value.code, full.value.details["active"]) == ("E_TOO_MANY_KEYS", 10)


def test_dev_fleet_bootstrap_is_made_once_and_works(host: Host) -> None:
    from host_sim.fleet import bootstrap_dev_fleet

    lines: list[str] = []
    first = bootstrap_dev_fleet(host.db, host.clock.now(), lines.append)
    again = bootstrap_dev_fleet(host.db, host.clock.now(), lines.append)
    assert [u.user_id for u in first] == [u.user_id for u in again] == ["dev-admin", "dev-driver"]
    assert lines[0] == lines[2] and lines[0].startswith("dev fleet admin dev-admin:  AK dev-admin")
    secrets = {line.split()[-1] for line in lines}
    admin_sk, driver_sk = lines[0].split()[-1], lines[1].split()[-1]
    assert len(secrets) == 2
    with host.client("dev-admin", admin_sk) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dev-driver"})
    with host.client("dev-driver", driver_sk) as d:
        assert len(d.vfc_keys(card["card_id"], 2)["keys"]) == 2
