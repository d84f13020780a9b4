"""A real station system (outbox, shifts) uploads to the real host; its day file is then
reconciled against the host's SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cardcore.clockrng import ManualClock
from cardcore.records import Bill
from host_sim.access import add_access_key, add_terminal
from host_sim.billgen import FUELLING, BillFactory, asn_for, term_for
from host_sim.reconcile import reconcile
from host_sim.reconcile_db import host_records, station_day_from_json
from hsm_mock.hsm import MockHsm
from terminal_sim.events import EventBus
from terminal_sim.station import Station
from terminal_sim.station_day import export_station_day

from .conftest import Host

DAY = date(2026, 11, 22)
STATION = "ST-7"
AK, SK = "station-7", "station-seven-secret-0123456789"
PUMP = term_for(7, 1)


def make_bills(hsm: MockHsm, count: int) -> list[Bill]:
    factory = BillFactory(hsm)
    return [
        factory.paid(
            bill_type=FUELLING,
            term=PUMP,
            psam_ttc=n,
            asn=asn_for(70 + n % 4),
            ctc=2 * n,
            amount=2000 + n,
            when=datetime(2026, 11, 22, 9, 0) + timedelta(minutes=n),
        )
        for n in range(1, count + 1)
    ]


def test_a_station_day_from_its_outbox_and_shifts_reconciles(
    host: Host, hsm: MockHsm, tmp_path: Path
) -> None:
    add_access_key(host.db, AK, SK, "station", ["bills.write"], STATION)
    add_terminal(host.db, PUMP.hex(), STATION)
    clock = ManualClock(datetime(2026, 11, 22, 8, 0, tzinfo=UTC))
    bills = make_bills(hsm, 7)
    forged = BillFactory(hsm).forge_tac(bills[3])
    with host.client(AK, SK) as client:
        station = Station(
            "Forecourt 7", STATION, [], [], client, EventBus(), clock, tmp_path / "out.sqlite"
        )
        try:
            station.record_bill(bills[0], "pump-1")  # before any shift: in no report
            station.open_shift("li")
            for bill in [*bills[1:3], forged, *bills[4:6]]:
                station.record_bill(bill, "pump-1")
            assert station.upload().rejected == 1  # the host's HSM refuses the forged TAC
            station.record_bill(bills[6], "pump-1")  # the link went down: never uploaded
            report = station.close_shift()
            document = export_station_day(station, DAY)
        finally:
            station.close()

    assert document["shifts"] == [report.shift]
    assert document["report_amount"] == report.fuelling.amount == sum(b.amount for b in bills[1:])
    assert len(document["bills"]) == 7
    day = station_day_from_json(json.loads(json.dumps(document)), DAY)
    result = reconcile(host_records(host.db, DAY, [day]))
    found = {(f.kind, f.psam_ttc, f.check) for f in result.findings}
    assert found == {
        ("bad_tac", forged.psam_ttc, ""),
        ("missing_upload", bills[6].psam_ttc, ""),
        # The bill booked outside any shift: the report is short of the station's own bills.
        ("shortfall", 0, "fuel_report"),
    }
    shortfall = next(f for f in result.findings if f.kind == "shortfall")
    assert shortfall.host_amount is not None and shortfall.station_amount is not None
    assert shortfall.host_amount - shortfall.station_amount == bills[0].amount
