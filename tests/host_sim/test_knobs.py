"""Test knobs over the real server: decline, delay, hang, drop — and the terminal loses nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from host_sim.access import add_access_key
from host_sim.knobs import KnobIn, Knobs, enable, knobs_from_document
from host_sim.server import BackgroundServer
from terminal_sim.events import EventBus
from terminal_sim.host_client import HostError, HostUnavailable
from terminal_sim.station import Station

from .conftest import TERMINAL, Flows, Host, Switch

QA_AK, QA_SK = "qa-1", "quality-assurance-secret-012345"
ASN = "01000114400000000001"


@pytest.fixture
def knobs(host: Host, served: tuple[BackgroundServer, Switch]) -> Knobs:
    """The test's host, served with knobs on (empty to start with)."""
    knobs = Knobs()
    served[1].target = enable(host.app, knobs)
    add_access_key(host.db, QA_AK, QA_SK, "app", ["test.knobs", "cards.loss"], "qa")
    return knobs


def knob(**fields: object) -> KnobIn:
    return KnobIn.model_validate(fields)


def bills(host: Host) -> int:
    return int(host.scalar("SELECT COUNT(*) FROM bills"))


def test_decline_answers_with_the_code_and_stores_nothing(
    host: Host, knobs: Knobs, flows: Flows
) -> None:
    knobs.set(
        [
            knob(
                id="no-bills",
                path="/v1/bills",
                terminal=TERMINAL,
                action="decline",
                status=503,
                code="E_HOST_BUSY",
                times=1,
            )
        ]
    )
    with host.client() as client:
        with pytest.raises(HostError) as declined:
            client.upload_bills(flows.fuellings[:1])
        assert (declined.value.status, declined.value.code) == (503, "E_HOST_BUSY")
        assert declined.value.details == {"knob": "no-bills"}
        assert bills(host) == 0
        (result,) = client.upload_bills(flows.fuellings[:1])  # used up: served normally
    assert result.status == "accepted" and knobs.fired == ["no-bills"]


def test_knobs_match_card_and_amount(host: Host, knobs: Knobs) -> None:
    knobs.set(
        [
            knob(card=ASN, action="decline", code="E_CARD_KNOB"),
            knob(amount=4_200, action="decline", code="E_AMOUNT_KNOB"),
        ]
    )
    with host.client(QA_AK, QA_SK) as client:
        with pytest.raises(HostError) as by_card:
            client.report_loss(ASN)
        assert by_card.value.code == "E_CARD_KNOB"
        assert client.report_loss("01000114400000000002").blacklisted
        with pytest.raises(HostError) as by_amount:
            client.request("POST", "/v1/cards/01000114400000000003/loss", payload={"amount": 4_200})
        assert by_amount.value.code == "E_AMOUNT_KNOB"


def test_a_drop_or_a_hang_is_host_unavailable_and_the_outbox_keeps_the_bills(
    host: Host, knobs: Knobs, flows: Flows, tmp_path: Path
) -> None:
    knobs.set(
        [
            knob(id="drop", path="/v1/bills", action="drop", times=1),
            knob(id="hang", path="/v1/bills", action="hang", ms=3_000, times=1),
        ]
    )
    client = host.client(timeout=0.5)
    station = Station("s", "ST", [], [], client, EventBus(), host.clock, tmp_path / "outbox.sqlite")
    try:
        for bill in flows.fuellings:
            station.record_bill(bill, "pump1")
        for expected in ("drop", "hang"):
            report = station.upload(force=True)
            assert not report.ok and "E_UNREACHABLE" in str(report.error)
            assert knobs.fired[-1] == expected
            assert station.outbox_state().pending == 3 and bills(host) == 0
        assert station.upload(force=True).ok
        assert station.outbox_state().pending == 0 and bills(host) == 3
    finally:
        station.close()
        client.close()


def test_an_answer_lost_to_a_timeout_is_a_duplicate_on_retry(
    host: Host, knobs: Knobs, flows: Flows
) -> None:
    """The server stores the bill but answers after the client gave up: nothing is lost and
    nothing is booked twice."""
    knobs.set([knob(id="slow", path="/v1/bills", action="delay", ms=1_500, times=1)])
    with host.client(timeout=0.3) as client, pytest.raises(HostUnavailable):
        client.upload_bills(flows.fuellings[:1])
    with host.client() as client:
        (result,) = client.upload_bills(flows.fuellings[:1])  # the delayed call was stored
    assert result.status in ("accepted", "duplicate")
    assert bills(host) == 1
    assert host.scalar("SELECT COUNT(*) FROM ledger_transactions") == 1


def test_the_admin_route_is_signed_and_scoped(host: Host, knobs: Knobs) -> None:
    body = {"knobs": [{"id": "d", "action": "decline", "path": "/v1/blacklist"}]}
    assert httpx.put(f"{host.base_url}/v1/test/knobs", json=body).status_code == 401
    with host.client() as pump, pytest.raises(HostError) as scope:
        pump.request("PUT", "/v1/test/knobs", payload=body)
    assert scope.value.code == "E_SCOPE"
    with host.client(QA_AK, QA_SK) as qa:
        state = qa.request("PUT", "/v1/test/knobs", payload=body)
        assert [k["id"] for k in state["knobs"]] == ["d"]
        with pytest.raises(HostError) as bad:
            qa.request("PUT", "/v1/test/knobs", payload={"knobs": [{"action": "explode"}]})
        assert bad.value.code == "E_VALIDATION"
        assert [k.id for k in knobs.current()] == ["d"]  # a bad set changes nothing
        # Even a drop-everything knob leaves the admin route reachable.
        qa.request("PUT", "/v1/test/knobs", payload={"knobs": [{"action": "drop"}]})
        with pytest.raises(HostUnavailable):
            qa.report_loss(ASN)
        assert qa.request("PUT", "/v1/test/knobs", payload={"knobs": []})["knobs"] == []
        assert qa.report_loss(ASN).blacklisted


def test_a_knobs_file() -> None:
    listed = knobs_from_document(
        {"format": "fuelsim.knobs/1", "knobs": [{"action": "delay", "ms": 10, "times": 2}]}
    )
    assert (listed[0].action, listed[0].ms, listed[0].times) == ("delay", 10, 2)
    for bad in ({"format": "x", "knobs": []}, {"format": "fuelsim.knobs/1"}, [{"ms": 1}]):
        with pytest.raises(ValueError):
            knobs_from_document(bad)
