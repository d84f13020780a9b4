"""The card registry over real HTTP: issuing single, master and sub cards, refusals that change
nothing, master→sub allocations booked once, and a sub card's online load drawing on its reserve
(real MAC1/TAC from the emulated card)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from card_profiles.fuel_card import FuelCard
from cardcore import commands as cmd
from host_sim.access import ISSUING_SCOPES, OFFICE_SCOPES, add_access_key
from host_sim.cards import HOST_ASN_PREFIX
from terminal_sim.cli import main
from terminal_sim.host_client import HostClient, HostError

from .conftest import OPS_AK, OPS_SK, Host
from .test_online_routes import card_channel

OFFICE = "440202000901"
OFFICE_STATION = OFFICE  # an unregistered terminal is its own station
DESK_AK, DESK_SK = "desk-1", "issuing-desk-secret-0123456789ab"


@pytest.fixture
def desk(host: Host) -> HostClient:
    """An issuing office's counter: online loads, issuing, allocations."""
    add_access_key(host.db, DESK_AK, DESK_SK, "terminal", (*OFFICE_SCOPES, *ISSUING_SCOPES), OFFICE)
    return host.client(DESK_AK, DESK_SK)


def refusal(call: Callable[[], Any]) -> tuple[int | None, str, dict[str, Any]]:
    with pytest.raises(HostError) as refused:
        call()
    return refused.value.status, refused.value.code, refused.value.details


def counts(host: Host) -> tuple[int, int, int, int]:
    return (
        host.scalar("SELECT COUNT(*) FROM cards"),
        host.scalar("SELECT COUNT(*) FROM accounts"),
        host.scalar("SELECT COUNT(*) FROM ledger_transactions"),
        host.scalar("SELECT COUNT(*) FROM card_allocations"),
    )


def assert_balanced(host: Host) -> None:
    assert host.scalar("SELECT COALESCE(SUM(amount), 0) FROM postings") == 0
    unbalanced = host.sql(
        "SELECT t.id FROM ledger_transactions t JOIN postings p ON p.txn_id = t.id"
        " GROUP BY t.id HAVING SUM(p.amount) <> 0 OR COUNT(p.id) < 2"
    )
    assert unbalanced == []


def load(desk: HostClient, card: FuelCard, amount: int) -> dict[str, Any]:
    """A real online load at the office: MAC1 from the card, MAC2 from the host, TAC back."""
    channel, asn = card_channel(card)
    init = channel.send(cmd.initialize_for_load(amount, bytes.fromhex(OFFICE)))
    old_balance = int.from_bytes(init[0:4], "big")
    online_ctc = int.from_bytes(init[4:6], "big")
    path = f"/v1/cards/{asn}/load"
    auth = desk.request(
        "POST",
        f"{path}/authorize",
        payload={
            "term": OFFICE,
            "rand": init[8:12].hex(),
            "online_ctc": online_ctc,
            "old_balance": old_balance,
            "amount": amount,
            "mac1": init[12:16].hex(),
        },
    )
    tac = channel.send(cmd.credit_for_load(bytes.fromhex(auth["dt"]), bytes.fromhex(auth["mac2"])))
    booked: dict[str, Any] = desk.request(
        "POST",
        f"{path}/confirm",
        payload={
            "term": OFFICE,
            "online_ctc": online_ctc,
            "new_balance": old_balance + amount,
            "amount": amount,
            "dt": auth["dt"],
            "tac": tac.hex(),
        },
    )
    return booked


def debited_account(host: Host, transaction_id: int) -> str:
    rows = host.sql(
        "SELECT a.code FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE p.txn_id = ? AND p.amount > 0",
        transaction_id,
    )
    assert len(rows) == 1
    return str(rows[0][0])


def test_issuing_allocates_the_next_asns_and_opens_accounts(host: Host, desk: HostClient) -> None:
    first = desk.issue_card("normal", "Li Lei")
    second = desk.issue_card("new", "Han Meimei")
    assert first["asn"] == HOST_ASN_PREFIX + "00000000001"
    assert second["asn"] == HOST_ASN_PREFIX + "00000000002"
    assert (first["kind"], first["master"], first["profile"]) == ("single", None, "normal")
    assert (first["status"], first["issued_by"], first["issued_at"]) == (
        "active",
        DESK_AK,
        "2026-11-22T02:00:00Z",
    )
    assert (first["balance"], first["reserve"], first["subs"]) == (0, None, [])
    codes = {row[0] for row in host.sql("SELECT code FROM accounts")}
    assert codes == {f"card:{first['asn']}", f"card:{second['asn']}"}
    given = desk.issue_card("normal", "Wei Hua", asn="01000114400000000002")
    assert given["asn"] == "01000114400000000002"
    assert desk.issue_card("normal", "Zhao Min")["asn"] == HOST_ASN_PREFIX + "00000000003"
    assert desk.card(first["asn"]) == first
    # The registry answers the ledger's account for the same card.
    assert desk.account(first["asn"]).balance == 0


def test_master_and_sub_cards(host: Host, desk: HostClient) -> None:
    master = desk.issue_card("normal", "Fleet Co", kind="master")
    subs = [desk.issue_card("new", f"Driver {n}", kind="sub", master=master["asn"]) for n in (1, 2)]
    for sub in subs:
        assert (sub["kind"], sub["master"], sub["reserve"]) == ("sub", master["asn"], 0)
    view = desk.card(master["asn"])
    assert view["kind"] == "master" and view["reserve"] is None
    assert [s["asn"] for s in view["subs"]] == [s["asn"] for s in subs]
    assert view["subs"][0] == {
        "asn": subs[0]["asn"],
        "holder": "Driver 1",
        "status": "active",
        "balance": 0,
        "reserve": 0,
    }
    codes = {row[0] for row in host.sql("SELECT code FROM accounts")}
    assert {f"reserve:{s['asn']}" for s in subs} <= codes
    assert desk.card(subs[1]["asn"])["subs"] == []


def test_bad_issue_requests_change_nothing(host: Host, desk: HostClient) -> None:
    master = desk.issue_card("normal", "Fleet Co", kind="master")
    single = desk.issue_card("normal", "Li Lei")
    sub = desk.issue_card("new", "Driver", kind="sub", master=master["asn"])
    lost = desk.issue_card("normal", "Lost Co", kind="master")
    host.client(OPS_AK, OPS_SK).report_loss(lost["asn"], "stolen")
    before = counts(host)
    good = {"kind": "single", "holder": "X", "profile": "normal"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "asn": "0100011450000000001"}, 422, "E_VALIDATION"),  # 19 digits
        ({**good, "asn": "0100011450000000000A"}, 422, "E_VALIDATION"),
        ({**good, "asn": 1000114500000000001}, 422, "E_VALIDATION"),  # strict: not a string
        ({**good, "kind": "fleet"}, 422, "E_VALIDATION"),
        ({**good, "holder": ""}, 422, "E_VALIDATION"),
        ({**good, "profile": "../normal"}, 422, "E_VALIDATION"),
        ({**good, "extra": 1}, 422, "E_VALIDATION"),
        ({**good, "kind": "sub"}, 400, "E_BAD_REQUEST"),  # a sub without its master
        ({**good, "master": master["asn"]}, 400, "E_BAD_REQUEST"),  # a single with a master
        ({**good, "kind": "sub", "master": "01000114599999999999"}, 404, "E_UNKNOWN_CARD"),
        ({**good, "kind": "sub", "master": sub["asn"]}, 409, "E_NOT_MASTER"),
        ({**good, "kind": "sub", "master": single["asn"]}, 409, "E_NOT_MASTER"),
        ({**good, "kind": "sub", "master": lost["asn"]}, 409, "E_CARD_NOT_ACTIVE"),
        ({**good, "asn": single["asn"]}, 409, "E_CARD_EXISTS"),
    ]
    for payload, status, code in cases:
        got = refusal(lambda p=payload: desk.request("POST", "/v1/cards", payload=p))
        assert got[:2] == (status, code), payload
    assert refusal(lambda: desk.card("01000114599999999999"))[:2] == (404, "E_UNKNOWN_CARD")
    bad_path = refusal(lambda: desk.request("GET", "/v1/cards/123"))
    assert bad_path[:2] == (400, "E_BAD_REQUEST") and bad_path[2]["field"] == "asn"
    no_scope = refusal(lambda: host.client(OPS_AK, OPS_SK).issue_card("normal", "X"))
    assert no_scope[:2] == (403, "E_SCOPE")
    assert counts(host) == before


def test_allocation_is_booked_once_and_never_beyond_the_master(
    host: Host, desk: HostClient, make_card: Callable[..., FuelCard]
) -> None:
    master_card = make_card("normal")
    master = desk.issue_card("normal", "Fleet Co", kind="master", asn="01000114400000000002")
    sub = desk.issue_card("new", "Driver", kind="sub", master=master["asn"])
    other = desk.issue_card("normal", "Other Co", kind="master")
    stranger = desk.issue_card("new", "Other driver", kind="sub", master=other["asn"])
    single = desk.issue_card("normal", "Li Lei")
    load(desk, master_card, 50_000)
    assert desk.card(master["asn"])["balance"] == 50_000

    first = desk.allocate(master["asn"], sub["asn"], 30_000, "r-1")
    again = desk.allocate(master["asn"], sub["asn"], 30_000, "r-1")
    assert first["booked_now"] and not again["booked_now"]
    assert first["transaction_id"] == again["transaction_id"]
    assert (again["master_balance"], again["sub_reserve"]) == (20_000, 30_000)
    assert host.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'allocation'") == 1
    view = desk.card(sub["asn"])
    assert (view["balance"], view["reserve"]) == (0, 30_000)

    before = counts(host)
    m, s = master["asn"], sub["asn"]
    cases: list[tuple[str, str, int, str, int, str]] = [
        (m, s, 25_000, "r-1", 409, "E_REQUEST_ID_REUSED"),
        (m, s, 20_001, "r-2", 402, "E_INSUFFICIENT_FUNDS"),
        (m, stranger["asn"], 1, "r-3", 409, "E_NOT_SUB_OF"),
        (m, single["asn"], 1, "r-4", 409, "E_NOT_SUB_OF"),
        (s, s, 1, "r-5", 409, "E_NOT_MASTER"),
        (single["asn"], s, 1, "r-6", 409, "E_NOT_MASTER"),
        ("01000114599999999999", s, 1, "r-7", 404, "E_UNKNOWN_CARD"),
        (m, "01000114599999999999", 1, "r-8", 404, "E_UNKNOWN_CARD"),
    ]
    for master_asn, sub_asn, amount, rid, status, code in cases:
        got = refusal(lambda a=master_asn, b=sub_asn, n=amount, r=rid: desk.allocate(a, b, n, r))
        assert got[:2] == (status, code), (master_asn, sub_asn, amount, rid)
    shortfall = refusal(lambda: desk.allocate(m, s, 20_001, "r-2"))[2]
    assert (shortfall["balance"], shortfall["amount"]) == (20_000, 20_001)
    for broken in (
        {"sub": s, "amount": 0, "request_id": "r-9"},
        {"sub": s, "amount": "5", "request_id": "r-9"},
        {"sub": s, "amount": 5, "request_id": "has space"},
        {"sub": s, "amount": 5},
        {"sub": s, "amount": 5, "request_id": "r-9", "extra": True},
    ):
        got = refusal(lambda b=broken: desk.request("POST", f"/v1/cards/{m}/allocate", payload=b))
        assert got[:2] == (422, "E_VALIDATION"), broken
    no_scope = refusal(lambda: host.client(OPS_AK, OPS_SK).allocate(m, s, 1, "r-10"))
    assert no_scope[:2] == (403, "E_SCOPE")
    assert counts(host) == before
    # The whole balance may go; a cent more may not.
    assert desk.allocate(m, s, 20_000, "r-2")["master_balance"] == 0
    assert refusal(lambda: desk.allocate(m, s, 1, "r-11"))[:2] == (402, "E_INSUFFICIENT_FUNDS")
    assert_balanced(host)


def test_a_sub_cards_load_draws_on_its_reserve_then_on_cash(
    host: Host, desk: HostClient, make_card: Callable[..., FuelCard]
) -> None:
    master_card, sub_card = make_card("normal"), make_card("new")
    master = desk.issue_card("normal", "Fleet Co", kind="master", asn="01000114400000000002")
    sub = desk.issue_card(
        "new", "Driver", kind="sub", master=master["asn"], asn="01000114400000000001"
    )
    load(desk, master_card, 50_000)
    desk.allocate(master["asn"], sub["asn"], 20_000, "fund-1")

    from_reserve = load(desk, sub_card, 15_000)
    assert debited_account(host, from_reserve["transaction_id"]) == f"reserve:{sub['asn']}"
    view = desk.card(sub["asn"])
    assert (view["balance"], view["reserve"]) == (15_000, 5_000)
    # 10 000 is more than the 5 000 left: the whole load is paid in cash at the office.
    from_cash = load(desk, sub_card, 10_000)
    assert debited_account(host, from_cash["transaction_id"]) == f"cash:{OFFICE_STATION}"
    view = desk.card(sub["asn"])
    assert (view["balance"], view["reserve"]) == (25_000, 5_000)
    assert desk.card(master["asn"])["balance"] == 30_000
    cash = host.scalar(
        "SELECT SUM(p.amount) FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE a.code = ?",
        f"cash:{OFFICE_STATION}",
    )
    assert cash == 60_000  # the master's 50 000 and the sub's 10 000: the reserve took none
    assert_balanced(host)


def test_a_single_cards_load_stays_on_cash(
    host: Host, desk: HostClient, make_card: Callable[..., FuelCard]
) -> None:
    card = desk.issue_card("new", "Li Lei", asn="01000114400000000001")
    booked = load(desk, make_card("new"), 1_000)
    assert debited_account(host, booked["transaction_id"]) == f"cash:{OFFICE_STATION}"
    assert desk.card(card["asn"])["balance"] == 1_000


def test_card_new_registers_the_issued_card_with_the_host(
    host: Host, desk: HostClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUELSIM_DATA_DIR", str(tmp_path))
    host.clock.set(datetime.now(UTC))  # the command signs with the system clock
    keys = ["--host", host.base_url, "--ak", DESK_AK, "--sk", DESK_SK]
    out = tmp_path / "fleet.nvm.json"
    master = CliRunner().invoke(
        main, ["card", "new", "normal", "--out", str(out), "--kind", "master", *keys]
    )
    assert master.exit_code == 0, master.output
    assert "registered 01000114400000000002 (master)" in master.output and out.exists()
    driver = ["--out", str(tmp_path / "driver.nvm.json"), "--holder", "Driver"]
    as_sub = ["--kind", "sub", "--master", "01000114400000000002"]
    sub = CliRunner().invoke(main, ["card", "new", "new", *driver, *as_sub, *keys])
    assert sub.exit_code == 0, sub.output
    view = desk.card("01000114400000000002")
    assert [(s["asn"], s["holder"]) for s in view["subs"]] == [("01000114400000000001", "Driver")]
    # Refused by the host (issued already): no memory file is written.
    again = tmp_path / "again.nvm.json"
    refused = CliRunner().invoke(main, ["card", "new", "normal", "--out", str(again), *keys])
    assert refused.exit_code == 1 and "E_CARD_EXISTS" in refused.output
    assert not again.exists()
