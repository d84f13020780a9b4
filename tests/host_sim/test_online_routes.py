"""The online operations over real HTTP: signed and scoped routes, strict bodies, one status per
refusal code, and the rows they leave in the SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from card_profiles.fuel_card import FuelCard
from cardcore import commands as cmd
from cardcore import layout
from cardcore.records import Bill, PublicAppData
from host_sim.access import OFFICE_SCOPES, add_access_key
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.host_client import HostClient, HostError
from terminal_sim.issuing import IssuedCard
from terminal_sim.readers import InProcReader

from .conftest import Host

PIN = "999999"
OFFICE = "440202000901"  # another station than the grey-locked profile's (44010100)
OFFICE_AK, OFFICE_SK = "office-1", "office-secret-0123456789abcdef"
ONLINE_PATHS = {
    "/v1/cards/{asn}/load/authorize": ("cards.load", {403, 409, 422}),
    "/v1/cards/{asn}/load/confirm": ("cards.load", {403, 409, 422}),
    "/v1/cards/{asn}/unlock/authorize": ("cards.unlock", {403, 409, 422}),
    "/v1/cards/{asn}/unlock/confirm": ("cards.unlock", {403, 409, 422}),
    "/v1/cards/{asn}/store-flag/mac": ("cards.maintain", {422}),
    "/v1/cards/{asn}/block/mac": ("cards.maintain", {422}),
    "/v1/cards/{asn}/unblock/mac": ("cards.maintain", {422}),
    "/v1/cards/{asn}/pin/reload-mac": ("cards.maintain", {422}),
}


@pytest.fixture
def office(host: Host) -> HostClient:
    add_access_key(host.db, OFFICE_AK, OFFICE_SK, "terminal", OFFICE_SCOPES, OFFICE)
    return host.client(OFFICE_AK, OFFICE_SK)


def card_channel(card: FuelCard) -> tuple[Channel, str]:
    channel = Channel(InProcReader(card, "card"))
    channel.send(cmd.select(layout.ET_AID))
    channel.send(cmd.verify(PIN))
    return channel, PublicAppData.from_bytes(card.nvm.cells["ef15"]).asn.hex()


def refusal(call: Callable[[], Any]) -> tuple[int | None, str, dict[str, Any]]:
    with pytest.raises(HostError) as refused:
        call()
    return refused.value.status, refused.value.code, refused.value.details


def test_every_online_route_is_signed_scoped_and_documents_its_refusals(host: Host) -> None:
    paths = host.app.openapi()["paths"]
    for path, (scope, statuses) in ONLINE_PATHS.items():
        operation = paths[path]["post"]
        assert operation["x-fuel-scope"] == scope and "security" in operation
        assert {str(s) for s in statuses | {401, 429}} <= set(operation["responses"]), path


def test_load_over_http_books_once(
    host: Host, office: HostClient, make_card: Callable[..., FuelCard]
) -> None:
    channel, asn = card_channel(make_card("new"))
    init = channel.send(cmd.initialize_for_load(12_345, bytes.fromhex(OFFICE)))
    body = {
        "term": OFFICE,
        "rand": init[8:12].hex(),
        "online_ctc": 0,
        "old_balance": 0,
        "amount": 12_345,
        "mac1": init[12:16].hex(),
    }
    path = f"/v1/cards/{asn}/load"
    bad = {**body, "mac1": bytes(4).hex()}
    assert refusal(lambda: office.request("POST", f"{path}/authorize", payload=bad))[:2] == (
        422,
        "E_BAD_MAC1",
    )
    auth = office.request("POST", f"{path}/authorize", payload=body)
    assert auth["dt"] == "20261122020000"  # the host's clock, as BCD
    tac = channel.send(cmd.credit_for_load(bytes.fromhex(auth["dt"]), bytes.fromhex(auth["mac2"])))
    confirm = {
        "term": OFFICE,
        "online_ctc": 0,
        "new_balance": 12_345,
        "amount": 12_345,
        "dt": auth["dt"],
        "tac": tac.hex(),
    }
    booked = office.request("POST", f"{path}/confirm", payload=confirm)
    again = office.request("POST", f"{path}/confirm", payload=confirm)
    assert booked["booked_now"] and not again["booked_now"]
    assert booked["transaction_id"] == again["transaction_id"]
    assert host.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'load'") == 1
    credited = host.scalar(
        "SELECT -SUM(p.amount) FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE a.code = ?",
        f"card:{asn}",
    )
    assert credited == 12_345
    wrong = {**confirm, "tac": "00000000", "online_ctc": 1}
    assert refusal(lambda: office.request("POST", f"{path}/confirm", payload=wrong))[:2] == (
        409,
        "E_NOT_AUTHORIZED",
    )


def test_bodies_are_strict_and_the_key_must_fit(
    host: Host, office: HostClient, make_card: Callable[..., FuelCard]
) -> None:
    _, asn = card_channel(make_card("normal"))
    body = {
        "term": OFFICE,
        "rand": "00112233",
        "online_ctc": 0,
        "old_balance": 0,
        "amount": 100,
        "mac1": "00112233",
    }
    path = f"/v1/cards/{asn}/load/authorize"
    for broken in (
        {**body, "online_ctc": "0"},  # strict: a string is not a number
        {**body, "extra": 1},
        {**body, "mac1": "0011"},
        {**body, "amount": 0},
        {k: v for k, v in body.items() if k != "rand"},
    ):
        status, code, _ = refusal(lambda b=broken: office.request("POST", path, payload=b))
        assert (status, code) == (422, "E_VALIDATION"), broken
    other = {**body, "term": "440202000902"}
    status, code, details = refusal(lambda: office.request("POST", path, payload=other))
    assert (status, code, details["terminal_id"]) == (403, "E_TERMINAL_MISMATCH", "440202000902")
    status, code, details = refusal(lambda: host.client().request("POST", path, payload=body))
    assert (status, code, details["required"]) == (403, "E_SCOPE", "cards.load")
    status, code, _ = refusal(lambda: office.request("POST", "/v1/cards/12/load/authorize"))
    assert (status, code) == (400, "E_BAD_REQUEST")
    assert host.scalar("SELECT COUNT(*) FROM load_authorizations") == 0


def test_online_unlock_over_http_with_its_refusals(
    host: Host,
    office: HostClient,
    make_card: Callable[..., FuelCard],
    issued: Callable[[str], IssuedCard],
) -> None:
    escape = issued("grey-locked").escape_bill
    assert isinstance(escape, Bill)
    channel, asn = card_channel(make_card("grey-locked"))
    path = f"/v1/cards/{asn}/unlock"

    def authorize() -> dict[str, Any]:
        init = channel.send(cmd.initialize_for_online_unlock(bytes.fromhex(OFFICE)))
        body = {
            "term": OFFICE,
            "rand": init[10:14].hex(),
            "online_ctc": int.from_bytes(init[6:8], "big"),
            "balance": int.from_bytes(init[:4], "big"),
            "offline_ctc": int.from_bytes(init[4:6], "big"),
            "mac1": init[14:18].hex(),
        }
        answer: dict[str, Any] = office.request("POST", f"{path}/authorize", payload=body)
        return {**body, **answer}

    assert refusal(authorize)[:2] == (409, "E_NO_ESCAPE_BILL")
    (uploaded,) = host.client().upload_bills([escape])  # its own pump's key
    assert uploaded.status == "accepted"
    host.clock.set(datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC))
    status, code, details = refusal(authorize)
    assert (status, code, details) == (409, "E_TOO_EARLY", {"allowed_from": "2026-11-24T10:00:00"})
    ops = host.client("ops-1", "operations-secret-0123456789abcd")
    ops.report_loss(asn)
    assert refusal(authorize)[:2] == (403, "E_CARD_BLOCKED")
    ops.unblock(asn)
    host.clock.set(datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC))
    auth = authorize()
    assert (auth["amount"], auth["lock_ctc"]) == (escape.amount, escape.ctc)
    mac3 = channel.send(
        cmd.online_unlock(auth["amount"], bytes.fromhex(auth["dt"]), bytes.fromhex(auth["mac2"]))
    )
    confirm = {
        "term": OFFICE,
        "rand": auth["rand"],
        "online_ctc": auth["online_ctc"],
        "balance_after": auth["balance"] - auth["amount"],
        "amount": auth["amount"],
        "dt": auth["dt"],
    }
    bad = {**confirm, "mac3": "00000000"}
    assert refusal(lambda: office.request("POST", f"{path}/confirm", payload=bad))[:2] == (
        422,
        "E_BAD_MAC3",
    )
    done = office.request("POST", f"{path}/confirm", payload={**confirm, "mac3": mac3.hex()})
    assert done["confirmed_now"] and done["transaction_id"] == uploaded.transaction_id
    row = host.sql("SELECT status, mac3, ak FROM online_unlocks")[0]
    assert tuple(row) == ("confirmed", mac3.hex().upper(), OFFICE_AK)
    assert host.scalar("SELECT unlocked_at FROM grey_records") == "2026-11-24T10:00:00Z"


def test_maintenance_macs(
    host: Host, office: HostClient, make_card: Callable[..., FuelCard], hsm: MockHsm
) -> None:
    card = make_card("normal")
    asn8 = PublicAppData.from_bytes(card.nvm.cells["ef15"]).asn8
    asn = PublicAppData.from_bytes(card.nvm.cells["ef15"]).asn.hex()
    on = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, b"\x01")
    answer = office.request(
        "POST",
        f"/v1/cards/{asn}/store-flag/mac",
        payload={"command": on.hex(), "challenge": "0102030405060708"},
    )
    expected = hsm.secure_messaging_mac(
        asn8, command=on, challenge=bytes.fromhex("0102030405060708")
    )
    assert answer["mac"] == expected.hex().upper()
    issuer = cmd.update_binary_mac_header(layout.SFI_EF15, 0, b"\x99")
    status, code, _ = refusal(
        lambda: office.request(
            "POST",
            f"/v1/cards/{asn}/store-flag/mac",
            payload={"command": issuer.hex(), "challenge": "01020304"},
        )
    )
    assert (status, code) == (422, "E_FORMAT")
    block = office.request(
        "POST", f"/v1/cards/{asn}/block/mac", payload={"challenge": "01020304", "permanent": True}
    )
    header = cmd.application_block_header(True)
    want = hsm.secure_messaging_mac(asn8, command=header, challenge=bytes.fromhex("01020304"))
    assert block["mac"] == want.hex().upper()
    pin = office.request("POST", f"/v1/cards/{asn}/pin/reload-mac", payload={"pin_block": "123456"})
    assert pin["mac"] == hsm.reload_pin_mac(asn8, pin=bytes.fromhex("123456")).hex().upper()
    status, code, _ = refusal(
        lambda: office.request(
            "POST", f"/v1/cards/{asn}/pin/reload-mac", payload={"pin_block": "FF"}
        )
    )
    assert (status, code) == (422, "E_FORMAT")
