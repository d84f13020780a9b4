"""Promotion rules, quotes, coupons and refunds over the real server and SQLite file."""

from __future__ import annotations

from typing import Any

import pytest

from host_sim.access import add_access_key, add_terminal
from host_sim.db import transaction
from host_sim.ledger import Leg, balance, post
from terminal_sim.host_client import HostClient, HostError

from .conftest import TERMINAL, Host

ADMIN_AK, ADMIN_SK = "marketing-1", "marketing-secret-0123456789abcd"
ASN = "01000114400000000001"


@pytest.fixture
def admin(host: Host) -> HostClient:
    add_access_key(
        host.db,
        ADMIN_AK,
        ADMIN_SK,
        "app",
        ["promotions.manage", "coupons.redeem", "payments.refund"],
        "marketing",
    )
    return host.client(ADMIN_AK, ADMIN_SK)


def put(admin: HostClient, rule_id: str, **body: Any) -> Any:
    return admin.request("PUT", f"/v1/promotions/rules/{rule_id}", payload=body)


def quote(host: Host, **body: Any) -> Any:
    payload = {"terminal_id": TERMINAL, "asn": ASN, "grade": 0x0092, "amount": 15_000}
    with host.client() as client:
        return client.request("POST", "/v1/promotions/quote", payload={**payload, **body})


def test_rules_are_managed_and_validated(host: Host, admin: HostClient) -> None:
    stored = put(admin, "N-92", level="national", kind="per_litre", value=30, grades=[0x0092])
    assert stored["created"] is True
    assert stored["rule"]["id"] == "N-92" and stored["rule"]["grades"] == [0x0092]
    assert put(admin, "N-92", level="national", kind="per_litre", value=40)["created"] is False
    listed = admin.request("GET", "/v1/promotions/rules")["rules"]
    assert [(r["id"], r["value"]) for r in listed] == [("N-92", 40)]
    with pytest.raises(HostError) as bad:
        put(admin, "P-1", level="province", region="Guangdong", kind="fixed", value=100)
    assert (bad.value.status, bad.value.code, bad.value.details["field"]) == (
        400,
        "E_BAD_REQUEST",
        "region",
    )
    assert host.scalar("SELECT COUNT(*) FROM promotion_rules") == 1  # nothing stored
    assert admin.request("DELETE", "/v1/promotions/rules/N-92")["id"] == "N-92"
    with pytest.raises(HostError) as gone:
        admin.request("DELETE", "/v1/promotions/rules/N-92")
    assert gone.value.code == "E_UNKNOWN_RULE"
    with pytest.raises(HostError) as scope, host.client() as pump:
        pump.request("GET", "/v1/promotions/rules")
    assert scope.value.code == "E_SCOPE"


def test_a_pump_quote_takes_the_best_rule_and_counts_a_use(host: Host, admin: HostClient) -> None:
    add_terminal(host.db, TERMINAL, "ST-0001")
    put(admin, "N-92", level="national", kind="per_litre", value=30, grades=[0x0092])
    put(admin, "S-FIX", level="station", region="ST-0001", kind="fixed", value=500)
    put(admin, "P-44", level="province", region="44", kind="percent", value=500, limit_total=1)
    answer = quote(host, volume=2_000)
    assert (answer["rule_id"], answer["level"], answer["discount"], answer["pay"]) == (
        "P-44",
        "province",
        750,
        14_250,
    )
    assert answer["station_id"] == "ST-0001" and answer["quote_id"].startswith("Q")
    # P-44's one use is gone: the per-litre rule (6.00 on 20 L) now beats the 5.00 reduction.
    again = quote(host, volume=2_000)
    assert (again["rule_id"], again["discount"], again["text"]) == ("N-92", 600, "discount 0.30/L")
    assert quote(host, grade=0x0095)["rule_id"] == "S-FIX"
    none = quote(host, amount=0)
    assert (none["rule_id"], none["discount"], none["quote_id"]) == (None, 0, None)
    rows = host.sql("SELECT rule_id, discount FROM promotion_quotes ORDER BY created_at, rowid")
    assert [tuple(r) for r in rows] == [("P-44", 750), ("N-92", 600), ("S-FIX", 500)]


def test_a_pump_may_quote_only_for_itself(host: Host) -> None:
    with pytest.raises(HostError) as refused:
        quote(host, terminal_id="440101000099")
    assert (refused.value.status, refused.value.code) == (403, "E_TERMINAL_MISMATCH")


def test_a_coupon_is_redeemed_within_its_limits(host: Host, admin: HostClient) -> None:
    put(admin, "C-1", level="national", kind="fixed", value=800, coupon="WELCOME", limit_per_card=1)
    body = {"terminal_id": TERMINAL, "asn": ASN, "grade": 0x0092, "amount": 10_000}
    first = admin.request("POST", "/v1/promotions/coupons/WELCOME/redeem", payload=body)
    assert (first["rule_id"], first["discount"], first["pay"]) == ("C-1", 800, 9_200)
    with pytest.raises(HostError) as used:
        admin.request("POST", "/v1/promotions/coupons/WELCOME/redeem", payload=body)
    assert (used.value.status, used.value.code) == (409, "E_COUPON_UNAVAILABLE")
    other = {**body, "asn": "01000114400000000002"}
    assert admin.request("POST", "/v1/promotions/coupons/WELCOME/redeem", payload=other)["pay"] == (
        9_200
    )
    with pytest.raises(HostError) as unknown:
        admin.request("POST", "/v1/promotions/coupons/NOPE/redeem", payload=body)
    assert unknown.value.code == "E_COUPON_UNAVAILABLE"
    assert quote(host)["rule_id"] is None  # a coupon is not given to whoever does not show it


def test_a_wallet_payment_is_refunded_never_beyond_what_it_moved(
    host: Host, admin: HostClient
) -> None:
    with host.db.connect() as conn, transaction(conn):
        payment = post(
            conn,
            kind="payment.wallet",
            memo="app pays a sale",
            legs=[Leg(f"card:{ASN}", 10_000), Leg("station:ST-0001", -10_000)],
            now=host.clock.now(),
        )
        sale = post(
            conn,
            kind="sale.fuelling",
            memo="a card purse sale",
            legs=[Leg(f"card:{ASN}", 500), Leg("station:ST-0001", -500)],
            now=host.clock.now(),
        )
    path = f"/v1/payments/{payment}/refunds"
    first = admin.request("POST", path, payload={"amount": 6_000, "reason": "pump fault"})
    assert (first["refunded_total"], first["refundable_left"]) == (6_000, 4_000)
    with pytest.raises(HostError) as over:
        admin.request("POST", path, payload={"amount": 4_001})
    assert over.value.code == "E_REFUND_EXCEEDS_PAYMENT"
    assert over.value.details == {"paid": 10_000, "refunded": 6_000, "refundable": 4_000}
    admin.request("POST", path, payload={"amount": 4_000})
    with host.db.connect() as conn:
        assert balance(conn, f"card:{ASN}") == -500  # the payment is wholly returned
        assert balance(conn, "station:ST-0001") == 500
    for target, code in ((sale, "E_NOT_REFUNDABLE"), (9_999, "E_UNKNOWN_PAYMENT")):
        with pytest.raises(HostError) as refused:
            admin.request("POST", f"/v1/payments/{target}/refunds", payload={"amount": 1})
        assert refused.value.code == code
    assert host.scalar("SELECT SUM(amount) FROM refunds") == 10_000
