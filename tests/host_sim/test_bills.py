"""Bill upload over real HTTP, checked in the SQLite file: booking, idempotency, exceptions,
grey records (escape and re-debit booked once), and the TACs verified per bill type."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cardcore.records import Bill
from host_sim.access import add_access_key, add_terminal
from hsm_mock.hsm import MockHsm
from terminal_sim.host_client import HostAuthError, HostError

from .conftest import TERMINAL, Flows, Host, retmac

ASN = "01000114400000000002"  # the "normal" profile's card


def ledger_state(host: Host) -> tuple[int, int, list[tuple[int, int]]]:
    """(transactions, postings, per-transaction sums): the ledger, read straight from SQLite."""
    sums = host.sql("SELECT txn_id, SUM(amount) AS total FROM postings GROUP BY txn_id")
    return (
        host.scalar("SELECT COUNT(*) FROM ledger_transactions"),
        host.scalar("SELECT COUNT(*) FROM postings"),
        [(r["txn_id"], r["total"]) for r in sums],
    )


def assert_balanced(host: Host) -> None:
    assert host.scalar("SELECT COALESCE(SUM(amount), 0) FROM postings") == 0
    assert all(total == 0 for _, total in ledger_state(host)[2])
    assert (
        host.scalar(
            "SELECT COUNT(*) FROM ledger_transactions t"
            " WHERE (SELECT COUNT(*) FROM postings p WHERE p.txn_id = t.id) < 2"
        )
        == 0
    )


def card_balance(host: Host, asn: str = ASN) -> int:
    return int(
        -host.scalar(
            "SELECT COALESCE(SUM(p.amount), 0) FROM postings p"
            " JOIN accounts a ON a.id = p.account_id WHERE a.code = ?",
            f"card:{asn}",
        )
    )


def test_fuelling_bills_are_booked_double_entry(host: Host, flows: Flows) -> None:
    with host.client() as client:
        results = client.upload_bills(flows.fuellings)
    assert [r.status for r in results] == ["accepted"] * 3
    assert all(r.booked and r.transaction_id for r in results)
    rows = host.sql("SELECT * FROM bills ORDER BY id")
    assert [r["id"] for r in rows] == [r.bill_id for r in results]
    assert [bytes(r["raw"]) for r in rows] == [b.to_bytes() for b in flows.fuellings]
    assert [r["amount"] for r in rows] == [7500, 15000, 22500]
    assert {(r["term"], r["asn"], r["bill_type"], r["uploaded_by"]) for r in rows} == {
        (TERMINAL, ASN, 0, TERMINAL)
    }
    assert [r["lock_ctc"] for r in rows] == [r["ctc"] - 1 for r in rows]
    assert all(r["psam_tac_verified"] == 0 for r in rows)  # no lock dt in a fuelling bill
    assert ledger_state(host)[:2] == (3, 6)
    assert_balanced(host)
    assert card_balance(host) == -45000
    assert (
        host.scalar(
            "SELECT -SUM(p.amount) FROM postings p JOIN accounts a ON a.id = p.account_id"
            " WHERE a.code = ?",
            f"station:{TERMINAL}",
        )
        == 45000
    )
    assert host.scalar("SELECT COUNT(*) FROM exceptions") == 0


def test_same_batch_twice_is_answered_duplicate_and_booked_once(host: Host, flows: Flows) -> None:
    with host.client() as client:
        first = client.upload_bills(flows.fuellings)
        before = ledger_state(host)
        again = client.upload_bills(flows.fuellings)
    assert [r.status for r in again] == ["duplicate"] * 3
    assert [r.bill_id for r in again] == [r.bill_id for r in first]
    assert [r.transaction_id for r in again] == [r.transaction_id for r in first]
    assert not any(r.booked for r in again)
    assert ledger_state(host) == before
    assert host.scalar("SELECT COUNT(*) FROM bills") == 3


def test_duplicates_inside_one_batch(host: Host, flows: Flows) -> None:
    bill = flows.fuellings[0]
    with host.client() as client:
        results = client.upload_bills([bill, bill])
    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert results[1].bill_id == results[0].bill_id
    assert ledger_state(host)[:2] == (1, 2)


def _tampered(hsm: MockHsm, flows: Flows) -> dict[str, Bill]:
    good = flows.fuellings[0]
    return {
        "E_BILL_TAC": retmac(hsm, replace(good, tac=bytes(4))),
        "E_BILL_TMAC": replace(good, volume=good.volume + 1),  # changed after the PSAM signed
        "E_BILL_TYPE": retmac(hsm, replace(good, tx_type=0x07)),
        "E_BILL_FIELD": retmac(hsm, replace(good, dt=bytes.fromhex("20261322100000"))),
    }


@pytest.mark.parametrize("reason", ["E_BILL_TAC", "E_BILL_TMAC", "E_BILL_TYPE", "E_BILL_FIELD"])
def test_bad_bills_go_to_exceptions_not_the_ledger(
    host: Host, flows: Flows, hsm: MockHsm, reason: str
) -> None:
    bad = _tampered(hsm, flows)[reason]
    with host.client() as client:
        [result] = client.upload_bills([bad])
        assert result.status == "rejected"
        assert result.reason == reason
        [again] = client.upload_bills([bad])  # a re-upload is one exceptions row, seen twice
    assert again.exception_id == result.exception_id
    rows = host.sql("SELECT * FROM exceptions")
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["reason"], row["seen"]) == (result.exception_id, reason, 2)
    assert bytes(row["raw"]) == bad.to_bytes()
    assert (row["asn"], row["term"], row["psam_ttc"]) == (ASN, TERMINAL, bad.psam_ttc)
    assert host.scalar("SELECT COUNT(*) FROM bills") == 0
    assert ledger_state(host)[:2] == (0, 0)


def test_bad_xor_check_byte(host: Host, flows: Flows) -> None:
    raw = bytearray(flows.fuellings[0].to_bytes())
    raw[127] ^= 0xFF
    response = host.call(
        "POST",
        "/v1/bills",
        body=json.dumps({"terminal_id": TERMINAL, "bills": [raw.hex()]}).encode(),
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert (result["status"], result["reason"]) == ("rejected", "E_BILL_CHECK")
    assert host.scalar("SELECT reason FROM exceptions") == "E_BILL_CHECK"


def test_a_bad_bill_does_not_stop_the_batch(host: Host, flows: Flows, hsm: MockHsm) -> None:
    bad = _tampered(hsm, flows)["E_BILL_TAC"]
    batch = [flows.fuellings[1], bad, flows.fuellings[2]]
    with host.client() as client:
        results = client.upload_bills(batch)
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert [r.index for r in results] == [0, 1, 2]
    assert host.scalar("SELECT COUNT(*) FROM bills") == 2
    assert card_balance(host) == -(15000 + 22500)
    assert_balanced(host)


def test_escape_then_redebit_books_the_grey_record_once(host: Host, flows: Flows) -> None:
    with host.client() as client:
        [escape] = client.upload_bills([flows.escape])
        [redebit] = client.upload_bills([flows.redebit])
    assert (escape.status, escape.booked) == ("accepted", True)
    assert (redebit.status, redebit.booked) == ("accepted", False)
    assert redebit.transaction_id == escape.transaction_id
    assert card_balance(host) == -flows.escape.amount == -10000
    grey = host.sql("SELECT * FROM grey_records")
    assert len(grey) == 1
    assert (grey[0]["status"], grey[0]["lock_ctc"], grey[0]["psam_tac_verified"]) == (
        "settled",
        flows.escape.ctc,
        1,
    )
    assert (grey[0]["escape_bill_id"], grey[0]["settle_bill_id"]) == (
        escape.bill_id,
        redebit.bill_id,
    )
    # The escape's PSAM TAC verified through the HSM; the re-debit carries the same one.
    assert [r["psam_tac_verified"] for r in host.sql("SELECT * FROM bills ORDER BY id")] == [1, 1]
    assert_balanced(host)


def test_redebit_before_its_escape_bill(host: Host, flows: Flows) -> None:
    with host.client() as client:
        [redebit] = client.upload_bills([flows.redebit])
        assert host.scalar("SELECT psam_tac_verified FROM bills") == 0
        assert host.scalar("SELECT status FROM grey_records") == "settled"
        [escape] = client.upload_bills([flows.escape])
    assert (redebit.booked, escape.status, escape.booked) == (True, "accepted", False)
    assert [r["psam_tac_verified"] for r in host.sql("SELECT * FROM bills ORDER BY id")] == [1, 1]
    assert card_balance(host) == -10000
    assert ledger_state(host)[:2] == (1, 2)


def test_escape_bill_alone_leaves_the_grey_record_open(host: Host, flows: Flows) -> None:
    with host.client() as client:
        client.upload_bills([flows.escape])
    assert host.scalar("SELECT status FROM grey_records") == "open"


def test_escape_bill_with_a_bad_psam_tac(host: Host, flows: Flows, hsm: MockHsm) -> None:
    bad = retmac(hsm, replace(flows.escape, psam_tac=bytes(4)))
    with host.client() as client:
        [result] = client.upload_bills([bad])
    assert (result.status, result.reason) == ("rejected", "E_BILL_PSAM_TAC")


def test_escape_bill_with_a_bad_gtac(host: Host, flows: Flows, hsm: MockHsm) -> None:
    # The GTAC covers the balance at the lock: a bill claiming another balance fails it.
    bad = retmac(hsm, replace(flows.escape, balance_after=flows.escape.balance_after + 1))
    with host.client() as client:
        [result] = client.upload_bills([bad])
    assert (result.status, result.reason) == ("rejected", "E_BILL_TAC")


def test_redebit_whose_psam_tac_differs_from_the_escape(
    host: Host, flows: Flows, hsm: MockHsm
) -> None:
    bad = retmac(hsm, replace(flows.redebit, psam_tac=bytes(4)))
    with host.client() as client:
        client.upload_bills([flows.escape])
        [result] = client.upload_bills([bad])
    assert (result.status, result.reason) == ("rejected", "E_BILL_PSAM_TAC")
    assert host.scalar("SELECT status FROM grey_records") == "open"


def test_same_key_different_bytes_is_a_conflict(host: Host, flows: Flows, hsm: MockHsm) -> None:
    other = retmac(hsm, replace(flows.fuellings[0], bill_ttc=99))
    with host.client() as client:
        [first] = client.upload_bills([flows.fuellings[0]])
        [result] = client.upload_bills([other])
    assert (result.status, result.reason) == ("rejected", "E_BILL_CONFLICT")
    assert f"#{first.bill_id}" in result.message
    assert ledger_state(host)[:2] == (1, 2)


def test_bill_of_a_terminal_of_another_station(host: Host, flows: Flows) -> None:
    add_access_key(
        host.db,
        "pump-2",
        "pump-two-secret-0123456789",
        "terminal",
        ["bills.write"],
        "440101000002",
    )
    with host.client("pump-2", "pump-two-secret-0123456789") as client:
        [result] = client.upload_bills([flows.escape], terminal_id="440101000002")
        assert (result.status, result.reason) == ("rejected", "E_BILL_TERMINAL")
        # Both pumps of one station: pump 2 may upload what pump 1's PSAM signed.
        add_terminal(host.db, TERMINAL, "ST-0001")
        add_terminal(host.db, "440101000002", "ST-0001")
        [result] = client.upload_bills([flows.escape], terminal_id="440101000002")
    assert result.status == "accepted"
    assert host.scalar("SELECT station_id FROM bills") == "ST-0001"
    assert host.scalar("SELECT COUNT(*) FROM accounts WHERE code = 'station:ST-0001'") == 1


def test_station_key_uploads_for_its_terminals(host: Host, flows: Flows) -> None:
    add_access_key(
        host.db, "st-1", "station-secret-0123456789", "station", ["bills.write"], "ST-0001"
    )
    with host.client("st-1", "station-secret-0123456789") as client:
        with pytest.raises(HostAuthError) as refused:
            client.upload_bills([flows.fuellings[0]], terminal_id=TERMINAL)
        assert refused.value.code == "E_TERMINAL_MISMATCH"
        add_terminal(host.db, TERMINAL, "ST-0001")
        [result] = client.upload_bills([flows.fuellings[0]], terminal_id=TERMINAL)
    assert result.status == "accepted"


def test_terminal_key_uploads_only_for_its_terminal(host: Host, flows: Flows) -> None:
    with host.client() as client, pytest.raises(HostAuthError) as refused:
        client.upload_bills([flows.fuellings[0]], terminal_id="440101000002")
    assert (refused.value.code, refused.value.status) == ("E_TERMINAL_MISMATCH", 403)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"terminal_id": "4401010000", "bills": []}, "terminal_id"),
        ({"terminal_id": "44010100000G", "bills": []}, "terminal_id"),
        ({"terminal_id": TERMINAL, "bills": ["00" * 128, "zz" * 128]}, "bills[1]"),
        ({"terminal_id": TERMINAL, "bills": ["00" * 127]}, "bills[0]"),
        ({"terminal_id": TERMINAL, "bills": ["00"] * 501}, "bills"),
    ],
)
def test_bad_hex_and_lengths_are_400_naming_the_field(
    host: Host, payload: dict[str, object], field: str
) -> None:
    response = host.call("POST", "/v1/bills", body=json.dumps(payload).encode())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("E_BAD_REQUEST", field)
    assert str(error["message"]).startswith(f"{field}: ")
    assert host.scalar("SELECT COUNT(*) FROM bills") == 0


def test_schema_mismatch_is_422(host: Host) -> None:
    response = host.call("POST", "/v1/bills", body=b'{"terminal_id": "440101000001"}')
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "E_VALIDATION"
    assert "body.bills" in error["message"]


def test_client_splits_large_uploads_into_batches(host: Host, flows: Flows) -> None:
    bills = flows.fuellings * 200  # 600 bills: two batches, 597 duplicates
    with host.client() as client:
        results = client.upload_bills(bills)
    assert [r.index for r in results] == list(range(600))
    assert [r.status for r in results[:3]] == ["accepted"] * 3
    assert {r.status for r in results[3:]} == {"duplicate"}
    assert ledger_state(host)[:2] == (3, 6)


def test_host_errors_carry_the_code(host: Host) -> None:
    with host.client(sk="wrong-secret-0123456789") as client, pytest.raises(HostError) as refused:
        client.blacklist()
    assert isinstance(refused.value, HostAuthError)
    assert (refused.value.code, refused.value.status) == ("E_SIGNATURE", 401)
    assert "string_to_sign" in refused.value.details
