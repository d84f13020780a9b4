"""The host's online operations over a real SQLite file, without HTTP: loads booked once in the
ledger, online unlocks against uploaded escape bills, authorisations that survive a restart, and
refusals that change nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from card_profiles.fuel_card import FuelCard
from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt
from cardcore.records import Bill, PublicAppData
from host_sim import blacklist, ledger
from host_sim.bills import upload_bills
from host_sim.db import Database
from host_sim.online_ops import (
    E_ALREADY_UNLOCKED,
    E_BAD_MAC1,
    E_CARD_BLOCKED,
    E_CTC_REUSED,
    E_FORMAT,
    E_NO_ESCAPE_BILL,
    E_NOT_AUTHORIZED,
    E_TOO_EARLY,
    OnlineOps,
    OnlineRefused,
)
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.fuelling import BillType
from terminal_sim.issuing import IssuedCard
from terminal_sim.readers import InProcReader

PIN = "999999"
OFFICE = bytes.fromhex("440202000901")  # another station than the grey-locked profile's
SAME_STATION = bytes.fromhex("440101000901")
NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)
TABLES = ("load_authorizations", "online_unlocks", "ledger_transactions", "postings", "bills")


@dataclass
class Host:
    path: Path
    hsm: MockHsm

    def ops(self, **kw: Any) -> OnlineOps:
        """A fresh OnlineOps over the file: a restarted host process."""
        return OnlineOps(Database(self.path), self.hsm, **kw)

    def rows(self, query: str, *args: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def counts(self) -> dict[str, int]:
        return {t: self.rows(f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


@pytest.fixture
def host(tmp_path: Path, hsm: MockHsm) -> Host:
    return Host(tmp_path / "host.sqlite", hsm)


def open_card(card: FuelCard) -> tuple[Channel, bytes]:
    channel = Channel(InProcReader(card, "card"))
    channel.send(cmd.select(layout.ET_AID))
    channel.send(cmd.verify(PIN))
    return channel, PublicAppData.from_bytes(card.nvm.cells["ef15"]).asn


def load_request(channel: Channel, asn: bytes, amount: int, term: bytes) -> dict[str, Any]:
    init = channel.send(cmd.initialize_for_load(amount, term))
    return dict(
        rand=init[8:12],
        online_ctc=int.from_bytes(init[4:6], "big"),
        old_balance=int.from_bytes(init[:4], "big"),
        amount=amount,
        term=term,
        mac1=init[12:16],
    )


def test_load_is_authorised_confirmed_after_a_restart_and_booked_once(
    host: Host, make_card: Callable[..., FuelCard]
) -> None:
    channel, asn = open_card(make_card("normal"))
    request = load_request(channel, asn, 5_000, OFFICE)
    auth = host.ops().authorize_load(asn, **request, now=NOW, ak="desk")
    tac = channel.send(cmd.credit_for_load(auth.dt, auth.mac2))
    assert auth.dt == bcd_dt(NOW.replace(tzinfo=None))
    confirm = dict(
        new_balance=request["old_balance"] + 5_000,
        online_ctc=request["online_ctc"],
        amount=5_000,
        term=OFFICE,
        dt=auth.dt,
        tac=tac,
    )
    booked, now = host.ops().confirm_load(asn, **confirm, now=NOW)  # another process
    assert now and (booked.asn, booked.amount, booked.tac) == (asn, 5_000, tac)
    again, now = host.ops().confirm_load(asn, **confirm, now=NOW + timedelta(minutes=1))
    assert not now and again == booked
    db = Database(host.path)
    with db.connect() as conn:
        card = ledger.card_account(asn.hex())
        assert ledger.balance(conn, card) == 5_000  # what the host owes the cardholder
        assert ledger.balance(conn, f"cash:{OFFICE.hex().upper()}") == 5_000
        assert [e.kind for e in ledger.entries(conn, card)] == ["load"]
        assert ledger.unbalanced_transactions(conn) == []
    (row,) = host.rows("SELECT * FROM load_authorizations")
    assert (row["status"], row["txn_id"], row["ak"]) == ("booked", booked.transaction_id, "desk")
    assert host.ops().loads() == [booked]
    with pytest.raises(OnlineRefused) as refused:  # the same online CTC again: a copied card
        host.ops().authorize_load(asn, **request, now=NOW)
    assert refused.value.code == E_CTC_REUSED


def test_load_refusals_change_nothing(host: Host, make_card: Callable[..., FuelCard]) -> None:
    channel, asn = open_card(make_card("normal"))
    request = load_request(channel, asn, 1_000, OFFICE)
    ops = host.ops()
    before = host.counts()
    bad_mac = {**request, "mac1": bytes(4)}
    cases: list[tuple[str, Callable[[], object]]] = [
        (E_BAD_MAC1, lambda: ops.authorize_load(asn, **bad_mac, now=NOW)),
        (E_FORMAT, lambda: ops.authorize_load(asn[1:], **request, now=NOW)),
        (E_FORMAT, lambda: ops.authorize_load(asn, **{**request, "amount": 0}, now=NOW)),
        (
            E_NOT_AUTHORIZED,
            lambda: ops.confirm_load(
                asn,
                new_balance=101_000,
                online_ctc=0,
                amount=1_000,
                term=OFFICE,
                dt=bcd_dt(NOW),
                tac=bytes(4),
                now=NOW,
            ),
        ),
    ]
    for code, call in cases:
        with pytest.raises(OnlineRefused) as refused:
            call()
        assert refused.value.code == code
    with Database(host.path).connect() as conn:
        blacklist.report_loss(conn, asn.hex(), "stolen", "ops", NOW)
    with pytest.raises(OnlineRefused) as refused:
        ops.authorize_load(asn, **request, now=NOW)
    assert refused.value.code == E_CARD_BLOCKED
    assert host.counts() == before


# Online unlock ----------------------------------------------------------------------------------
def upload(host: Host, bill: Bill) -> None:
    (outcome,) = upload_bills(
        Database(host.path),
        host.hsm,
        [bill.to_bytes()],
        uploader=bill.term.hex().upper(),
        ak="t",
        now=NOW,
    )
    assert outcome.status == "accepted", outcome


def unlock_request(channel: Channel, term: bytes) -> dict[str, Any]:
    init = channel.send(cmd.initialize_for_online_unlock(term))
    return dict(
        rand=init[10:14],
        online_ctc=int.from_bytes(init[6:8], "big"),
        balance=int.from_bytes(init[:4], "big"),
        offline_ctc=int.from_bytes(init[4:6], "big"),
        term=term,
        mac1=init[14:18],
    )


@pytest.fixture
def escape(issued: Callable[[str], IssuedCard]) -> Bill:
    bill = issued("grey-locked").escape_bill
    assert bill is not None and bill.tx_type == BillType.ESCAPE
    return bill


def test_online_unlock_survives_a_restart_and_books_nothing_twice(
    host: Host, make_card: Callable[..., FuelCard], escape: Bill
) -> None:
    channel, asn = open_card(make_card("grey-locked"))
    with pytest.raises(OnlineRefused) as refused:
        host.ops().authorize_unlock(asn, **unlock_request(channel, SAME_STATION), now=NOW)
    assert refused.value.code == E_NO_ESCAPE_BILL
    upload(host, escape)  # the real bill path: the grey record's sale is booked here
    (grey,) = host.rows("SELECT * FROM grey_records")
    transactions = host.counts()["ledger_transactions"]
    request = unlock_request(channel, SAME_STATION)
    auth = host.ops().authorize_unlock(asn, **request, now=NOW, ak="desk")
    assert (auth.amount, auth.lock_ctc) == (escape.amount, escape.ctc)
    mac3 = channel.send(cmd.online_unlock(auth.amount, auth.dt, auth.mac2))
    confirm = dict(
        rand=request["rand"],
        online_ctc=request["online_ctc"],
        balance_after=request["balance"] - auth.amount,
        amount=auth.amount,
        term=SAME_STATION,
        dt=auth.dt,
    )
    unlock, now = host.ops().confirm_unlock(asn, **confirm, mac3=mac3, now=NOW)
    assert now and unlock.transaction_id == grey["txn_id"] is not None
    assert host.ops().confirm_unlock(asn, **confirm, mac3=mac3, now=NOW) == (unlock, False)
    assert host.counts()["ledger_transactions"] == transactions  # booked once, at the upload
    (grey,) = host.rows("SELECT * FROM grey_records")
    assert grey["unlocked_at"] == "2026-11-25T09:00:00Z"
    records = host.ops().escape_records()
    assert records[(escape.asn, escape.ctc)].unlocked
    copy = make_card("grey-locked")  # the card's memory as it was: still grey
    channel, _ = open_card(copy)
    with pytest.raises(OnlineRefused) as refused:
        host.ops().authorize_unlock(asn, **unlock_request(channel, SAME_STATION), now=NOW)
    assert refused.value.code == E_ALREADY_UNLOCKED


def test_waiting_time_and_settlement(
    host: Host, make_card: Callable[..., FuelCard], escape: Bill
) -> None:
    upload(host, escape)
    channel, asn = open_card(make_card("grey-locked"))
    early = datetime(2026, 11, 22, 11, 0, 0)
    with pytest.raises(OnlineRefused) as refused:
        host.ops().authorize_unlock(asn, **unlock_request(channel, OFFICE), now=early)
    assert refused.value.code == E_TOO_EARLY
    assert refused.value.figures == {"allowed_from": "2026-11-24T10:00:00"}
    shorter = host.ops(escape_wait=timedelta(minutes=60))
    assert shorter.authorize_unlock(asn, **unlock_request(channel, OFFICE), now=early).amount
    host.ops().settle_escape_bill(asn, escape.ctc)  # clearing has settled it: anywhere, now
    assert host.ops().authorize_unlock(asn, **unlock_request(channel, OFFICE), now=early)
    with pytest.raises(OnlineRefused) as refused:
        host.ops().settle_escape_bill(asn, escape.ctc + 5)
    assert refused.value.code == E_NO_ESCAPE_BILL


def test_a_grey_record_settled_at_a_pump_is_not_unlocked_online(
    host: Host, make_card: Callable[..., FuelCard], escape: Bill, hsm: MockHsm
) -> None:
    upload(host, escape)
    card = make_card("grey-locked")
    copy = make_card("grey-locked")  # the card's memory before the re-debit: still grey
    channel, asn = open_card(card)
    dt = bcd_dt(datetime(2026, 11, 22, 12, 0, 0))
    tac = channel.send(
        cmd.debit_for_unlock(
            escape.amount, escape.ctc + 1, escape.term, escape.psam_ttc, dt, escape.gmac
        )
    )
    redebit = replace(
        escape, bill_ttc=9, tx_type=BillType.REDEBIT, dt=dt, ctc=escape.ctc + 1, tac=tac
    )
    upload(host, replace(redebit, tmac=hsm.bill_tmac(redebit.body())))
    channel, _ = open_card(copy)
    with pytest.raises(OnlineRefused, match="settled at a pump") as refused:
        host.ops().authorize_unlock(asn, **unlock_request(channel, SAME_STATION), now=NOW)
    assert refused.value.code == E_ALREADY_UNLOCKED
    assert not host.rows("SELECT * FROM online_unlocks")
