"""The host switch of a simulated station: an in-process host that is down refuses every call and
changes nothing, and escape bills kept meanwhile go once, in order, when it is back (in process
and over HTTP alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from cardcore.clockrng import ManualClock
from cardcore.errors import FuelsimError
from cardcore.records import Bill
from hsm_mock.hsm import MockHsm
from terminal_sim.events import MESSAGE, EventBus, Recorder
from terminal_sim.host_client import HostUnavailable
from terminal_sim.host_link import HostLink, open_host
from terminal_sim.issuing import IssuedCard
from terminal_sim.online import E_BAD_BILL, HostRefused, InProcessHost


@pytest.fixture
def escape(issued: Callable[[str], IssuedCard]) -> Bill:
    bill = issued("grey-locked").escape_bill
    assert bill is not None
    return bill


def test_a_host_that_is_down_refuses_everything_but_the_blacklist(
    hsm: MockHsm, escape: Bill
) -> None:
    host = InProcessHost(hsm, ManualClock(datetime(2026, 11, 22, 12, 0, 0)))
    host.report_loss(escape.asn)
    host.available = False
    calls: list[Callable[[], object]] = [
        lambda: host.report_loss(escape.asn),
        lambda: host.unblock(escape.asn),
        lambda: host.record_escape_bill(escape),
        lambda: host.block_mac(escape.asn, challenge=bytes(4)),
        lambda: host.settle_escape_bill(escape.asn, escape.ctc),
    ]
    for call in calls:
        with pytest.raises(HostUnavailable) as down:
            call()
        assert down.value.code == "E_UNREACHABLE"
    assert host.blacklisted(escape.asn) and host.escape_bills == {}
    host.available = True
    host.record_escape_bill(escape)
    assert list(host.escape_bills) == [(escape.asn, escape.ctc)]
    host.close()
    assert not host.db.path.exists()


@pytest.mark.parametrize("kind", ["inproc", "http"])
def test_escape_bills_kept_while_down_go_once_when_it_is_back(
    kind: str, hsm: MockHsm, escape: Bill, tmp_path: Path
) -> None:
    bus, events = EventBus(), Recorder()
    bus.subscribe(events)
    link: HostLink = open_host(kind, hsm, ManualClock(datetime(2026, 11, 22, 12)), bus, tmp_path)
    try:
        link.down()
        with pytest.raises(FuelsimError, match="down already"):
            link.down()
        forged = replace(escape, amount=1)
        assert not link.send_escape_bill(escape)
        assert not link.send_escape_bill(forged)
        assert link.pending == [escape, forged]
        assert link.up() == 2 and link.pending == []
        texts = [str(e.data["text"]) for e in events.of(MESSAGE)]
        assert "uploaded 2 kept escape bills" in texts
        assert any("refused: E_BAD_BILL: E_BILL_TMAC" in text for text in texts)
        assert link.send_escape_bill(escape)  # the same bill again: a duplicate, no harm
        with pytest.raises(HostRefused) as refused:
            link.record_escape_bill(replace(escape, tx_type=0))
        assert refused.value.code == E_BAD_BILL
    finally:
        link.close()
