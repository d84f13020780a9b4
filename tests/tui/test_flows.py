"""The TUI drives real flows with keys: a grey-lock fuelling from insert to bill, a card pulled
mid-fuelling and re-debited, a store purchase that the office makes possible, a loss report and
an unblock through the embedded host, and the day's reconciliation on the Host screen."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from cardcore.layout import LockStatus
from terminal_sim.dispenser import Preset
from terminal_sim.fuelling import BillType
from tui.app import FuelsimApp
from tui.errors import ErrorModal

pytestmark = pytest.mark.anyio


async def press(pilot: Pilot[None], *keys: str) -> None:
    """Press keys one by one, letting each service call finish before the next key."""
    app = pilot.app
    for key in keys:
        await pilot.press(key)
        await app.workers.wait_for_complete()
        await pilot.pause()


def text(app: FuelsimApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_grey_lock_fuelling_from_insert_to_bill(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "i")  # alice into pump1 with the default PIN
        assert "card slot: alice  balance 1,000.00" in text(app, "#pump-pump1 .pump-slot")
        await press(pilot, "l")  # preset 50.00 on nozzle 1: grey lock
        assert app.session.forecourt.card_status("alice").lock == LockStatus.GREY
        await press(pilot, *"ttt")
        assert "1.50 L  11.25" in text(app, "#pump-pump1 .pump-delivery")
        await press(pilot, "h")
        bill = app.session.bills["pump1"]
        assert (bill.tx_type, bill.amount) == (BillType.FUELLING, 1_125)
        assert "fuelling 11.25, balance after 988.75" in text(app, "#pump-pump1 .pump-bill")
        status = app.session.forecourt.card_status("alice")
        assert (status.lock, status.balance) == (LockStatus.FREE, 98_875)
        outbox = app.session.station.outbox_state()  # carol's escape bill is in it too
        assert (outbox.pending, outbox.sent) == (0, 2)
        assert app.session.host_db is not None
        with app.session.host_db.connect() as conn:  # booked by the embedded host
            booked = conn.execute(
                "SELECT amount FROM bills WHERE bill_type = 0 AND txn_id IS NOT NULL"
            ).fetchall()
        assert [row[0] for row in booked] == [1_125]
        assert not isinstance(app.screen, ErrorModal)


async def test_card_pulled_mid_fuelling_is_re_debited(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "i", "l", "t", "t", "r")  # pulled after 1.00 L
        assert "card pulled" in text(app, "#pump-pump1 .pump-delivery")
        await press(pilot, "t", "t", "h")  # the pump goes on to 2.00 L, then an escape bill
        escape = app.session.bills["pump1"]
        assert (escape.tx_type, escape.amount) == (BillType.ESCAPE, 1_500)
        assert app.session.forecourt.card_status("alice").lock == LockStatus.GREY
        await press(pilot, "right_square_bracket", "i")  # alice back, at pump2: re-debit
        redebit = app.session.bills["pump2"]
        assert (redebit.tx_type, redebit.amount) == (BillType.REDEBIT, 1_500)
        status = app.session.forecourt.card_status("alice")
        assert (status.lock, status.balance, status.slot) == (LockStatus.FREE, 98_500, "pump2")
        assert "re-debited 15.00" in text(app, "#pump-pump2 .pump-display")


async def test_store_refuses_until_the_office_enables_the_store_flag(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f2", "y")  # alice pays 12.50 at pos1
        assert isinstance(app.screen, ErrorModal)
        assert "store purchases not enabled for this card" in app.screen.message
        assert "office" in app.screen.advice
        await press(pilot, "escape")
        assert app.session.forecourt.card_status("alice").balance == 100_000
        await press(pilot, "f3", "s")  # the office turns the store flag on
        assert app.session.forecourt.card_status("alice").store_enabled
        await press(pilot, "f2", "y")
        assert not isinstance(app.screen, ErrorModal)
        assert app.session.forecourt.card_status("alice").balance == 98_750
        assert "12.50" in text(app, "#receipt")


def blacklisted_at_host(app: FuelsimApp) -> set[str]:
    listed: set[str] = set()
    for change in app.session.host.blacklist(0).changes:
        (listed.add if change.action == "add" else listed.discard)(change.asn)
    return listed


async def test_office_loss_report_and_unblock_go_through_the_host(app: FuelsimApp) -> None:
    asn = app.session.forecourt.asn("alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f3", "x")  # alice reported lost at office1
        assert asn.hex() in blacklisted_at_host(app)  # one call, to the embedded host
        assert app.session.station.blacklisted(asn)  # the station synced the list
        await press(pilot, "f1", "i")  # the pumps refuse the card
        assert isinstance(app.screen, ErrorModal)
        await press(pilot, "escape", "f3", "b")  # unblocked at the office
        assert asn.hex() not in blacklisted_at_host(app)
        assert not app.session.station.blacklisted(asn)
        await press(pilot, "f1", "i")
        assert not isinstance(app.screen, ErrorModal)
        assert "card slot: alice  balance 1,000.00" in text(app, "#pump-pump1 .pump-slot")


async def test_host_screen_reconciles_the_day_and_exports_the_findings(app: FuelsimApp) -> None:
    forecourt = app.session.forecourt
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "i", "l", "t", "t", "h")  # alice at pump1: 7.50, uploaded
        bill = forecourt.fuel("pump2", Preset(1, amount=1_500), card="bob")  # not uploaded
        await press(pilot, "f6", "r")
        summary = text(app, "#host-reconciliation")
        assert "reconciled 2026-11-22" in summary and "1 finding" in summary
        table = app.screen.query_one("#host-findings", DataTable)
        assert table.row_count == 1
        row = table.get_row_at(0)
        assert row[:6] == [
            "missing_upload",
            "ST-SIM",
            "440101000002",
            str(bill.psam_ttc),
            "fuelling",
            "15.00",
        ]
        await press(pilot, "e")
        exported = (app.session.config.data_dir / "reconciliation-2026-11-22.csv").read_text()
        assert exported.splitlines()[1].startswith("missing_upload,ST-SIM,440101000002,")
        await press(pilot, "u", "r")  # the station uploads it: the day is clean
        assert "0 findings" in text(app, "#host-reconciliation")
        assert table.row_count == 0
