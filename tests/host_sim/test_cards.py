"""Blacklist versions, loss reports and unblocking, and a card's account from the ledger."""

from __future__ import annotations

import pytest

from terminal_sim.host_client import HostAuthError, HostError

from .conftest import OPS_AK, OPS_SK, Flows, Host

CARD_A = "01000114400000000001"
CARD_B = "01000114400000000002"


def test_blacklist_versions_and_incremental_changes(host: Host) -> None:
    with host.client(OPS_AK, OPS_SK) as ops:
        assert ops.blacklist().version == 0
        first = ops.report_loss(CARD_A, "stolen at the pump")
        assert (first.blacklisted, first.changed, first.version) == (True, True, 1)
        assert ops.report_loss(bytes.fromhex(CARD_B)).version == 2
        again = ops.report_loss(CARD_A)
        assert (again.changed, again.version) == (False, 2)  # already listed: no new version
        removed = ops.unblock(CARD_A, "found")
        assert (removed.blacklisted, removed.changed, removed.version) == (False, True, 3)
        assert ops.unblock(CARD_A).changed is False

        everything = ops.blacklist(since=0)
        assert everything.version == 3
        assert [(c.version, c.asn, c.action) for c in everything.changes] == [
            (1, CARD_A, "add"),
            (2, CARD_B, "add"),
            (3, CARD_A, "remove"),
        ]
        assert everything.changes[0].reason == "stolen at the pump"
        assert (everything.more, everything.next_since) == (False, 3)

        later = ops.blacklist(since=2)
        assert [(c.version, c.action) for c in later.changes] == [(3, "remove")]
        current = ops.blacklist(since=3)
        assert (current.changes, current.next_since, current.more) == ([], 3, False)

        paged = ops.blacklist(since=0, limit=2)
        assert ([c.version for c in paged.changes], paged.more, paged.next_since) == (
            [1, 2],
            True,
            2,
        )

        with pytest.raises(HostError) as ahead:
            ops.blacklist(since=4)
    assert (ahead.value.code, ahead.value.status) == ("E_VERSION_AHEAD", 409)
    assert ahead.value.details["version"] == 3
    rows = host.sql("SELECT asn, version FROM blacklist")
    assert [(r["asn"], r["version"]) for r in rows] == [(CARD_B, 2)]
    assert host.scalar("SELECT MAX(version) FROM blacklist_changes") == 3


def test_terminal_reads_the_blacklist_but_cannot_change_it(host: Host) -> None:
    with host.client(OPS_AK, OPS_SK) as ops:
        ops.report_loss(CARD_A)
    with host.client() as terminal:
        assert [c.asn for c in terminal.blacklist().changes] == [CARD_A]
        for call in (terminal.report_loss, terminal.unblock):
            with pytest.raises(HostAuthError) as refused:
                call(CARD_A)
            assert (refused.value.code, refused.value.status) == ("E_SCOPE", 403)
    assert host.scalar("SELECT COUNT(*) FROM blacklist_changes") == 1


@pytest.mark.parametrize("path", ["/v1/cards/0100011440000000000X/loss", "/v1/cards/123/account"])
def test_bad_asn_is_400_naming_asn(host: Host, path: str) -> None:
    method = "POST" if path.endswith("loss") else "GET"
    response = host.call(method, path, ak=OPS_AK, sk=OPS_SK)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("E_BAD_REQUEST", "asn")


def test_scope_is_checked_before_the_asn(host: Host) -> None:
    response = host.call("POST", "/v1/cards/123/loss")
    assert response.json()["error"]["code"] == "E_SCOPE"


def test_card_account_from_the_ledger(host: Host, flows: Flows) -> None:
    with host.client() as terminal:
        terminal.upload_bills([*flows.fuellings, flows.escape, flows.redebit])
    asn = flows.escape.asn.hex()
    with host.client(OPS_AK, OPS_SK) as ops:
        account = ops.account(asn)
        assert account.account == f"card:{asn}"
        assert account.balance == -(7500 + 15000 + 22500 + 10000)
        assert [e.amount for e in account.entries] == [-10000, -22500, -15000, -7500]
        assert [e.kind for e in account.entries] == ["sale.escape"] + ["sale.fuelling"] * 3
        assert account.blacklisted is False
        assert len(ops.account(asn, limit=2).entries) == 2
        ops.report_loss(asn)
        assert ops.account(asn).blacklisted is True
        with pytest.raises(HostError) as unknown:
            ops.account(CARD_A)
    assert (unknown.value.code, unknown.value.status) == ("E_UNKNOWN_CARD", 404)
