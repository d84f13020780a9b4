"""The Phone screen driven by keys against the embedded host: a code that scans, a QR payment
that expires when the countdown runs out (the phone drops the code, the host refuses it),
payments by NFC tap and by QR with their settlement, and the phone's clock controls."""

from __future__ import annotations

import pytest
import zxingcpp
from PIL import Image
from rich.color import Color
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, ProgressBar, Static

from host_sim import ledger
from terminal_sim import qr
from terminal_sim.host_client import HostError
from terminal_sim.phone import CLOCK_WARNING
from tui.app import FuelsimApp
from tui.errors import ErrorModal
from tui.phone_desk import COMPANY, PhoneDesk
from tui.screens.phone import PhoneScreen

pytestmark = pytest.mark.anyio

DARK, LIGHT = Color.from_ansi(16), Color.from_ansi(231)


async def press(pilot: Pilot[None], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def text(app: FuelsimApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def countdown(pilot: Pilot[None]) -> None:
    """One tick of the countdown's timer (the test moves the injected clock, not time)."""
    screen = pilot.app.screen
    assert isinstance(screen, PhoneScreen)
    screen.tick()
    await pilot.pause()


def desk(app: FuelsimApp) -> PhoneDesk:
    assert app.session.phone is not None
    return app.session.phone


def drawn_modules(app: FuelsimApp) -> list[list[bool]]:
    """The QR modules read back from the colours of the half blocks on the screen."""
    content = app.screen.query_one("#phone-qr", Static).content
    assert isinstance(content, Text)
    rows: list[list[bool]] = [[], []]
    for segment in content.render(Console()):
        for char in segment.text:
            if char == "\n":
                rows += [[], []]
                continue
            assert char == qr.UPPER_HALF and segment.style is not None
            top, bottom = segment.style.color, segment.style.bgcolor
            assert {top, bottom} <= {DARK, LIGHT}  # both colours set, to the fixed entries
            rows[-2].append(top == DARK)
            rows[-1].append(bottom == DARK)
    return rows


def decode(modules: list[list[bool]], scale: int = 6) -> list[str]:
    image = Image.new("L", (len(modules[0]), len(modules)), 255)
    image.putdata([0 if dark else 255 for row in modules for dark in row])
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return [result.text for result in zxingcpp.read_barcodes(image)]


def station_owed(app: FuelsimApp) -> int:
    assert app.session.host_db is not None
    with app.session.host_db.connect() as conn:
        return ledger.balance(conn, f"station:{app.session.station.station_id}")


def fleet_balance(app: FuelsimApp) -> tuple[int, int]:
    assert app.session.host_db is not None
    with app.session.host_db.connect() as conn:
        return (
            ledger.balance(conn, f"fleet:{COMPANY}"),
            ledger.balance(conn, f"fleet:{COMPANY}:hold"),
        )


async def test_armed_phone_shows_a_code_that_scans_and_counts_down(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f8")
        assert isinstance(app.screen, PhoneScreen)
        assert "idle" in text(app, "#phone-face")
        await press(pilot, "a")  # arm with the PIN
        view = desk(app).view()
        assert view.qr_text is not None and view.numeric is not None
        assert text(app, "#phone-face") == "armed"
        assert len(view.numeric) == 19 and view.numeric.startswith("81")
        assert view.numeric in text(app, "#phone-numeric")
        modules = drawn_modules(app)
        assert modules[: len(qr.matrix(view.qr_text))] == qr.matrix(view.qr_text)
        assert decode(modules) == [view.qr_text]
        bar = app.screen.query_one(ProgressBar)
        assert (bar.total, bar.progress) == (60, view.remaining_s) and view.remaining_s > 59
        app.session.forecourt.advance_clock(20)  # the injected clock: 20 s later
        await countdown(pilot)
        assert bar.progress == pytest.approx(view.remaining_s - 20)
        assert f"{view.remaining_s - 20:.1f} s left" in text(app, "#phone-clock")


async def test_qr_payment_expires_when_the_countdown_runs_out(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f8", "a")
        photographed = desk(app).view().qr_text  # a code read off the screen while it showed
        assert photographed is not None
        before = fleet_balance(app)
        app.session.forecourt.advance_clock(70)  # past the 60 s countdown and the host's grace
        await countdown(pilot)
        assert text(app, "#phone-face") == "expired — refresh"
        assert "expired — refresh" in text(app, "#phone-qr")
        assert text(app, "#phone-numeric") == "numeric code: -"
        assert app.screen.query_one(ProgressBar).progress == 0
        await press(pilot, "q")  # pay by QR at pump1: the phone has no code to show
        assert isinstance(app.screen, ErrorModal)
        assert "shows no code" in app.screen.message
        await press(pilot, "escape")
        await press(pilot, "minus", "minus")  # setting the clock back does not bring it back
        assert desk(app).view().qr_text is None
        assert text(app, "#phone-face") == "expired — refresh"
        with pytest.raises(HostError) as refused:  # the old code, scanned anyway
            desk(app).pay_code("pump1", 20_000, "qr", photographed)
        assert refused.value.code == "E_EXPIRED"
        assert refused.value.details["ttl_s"] == 60 and refused.value.details["age_s"] >= 70
        assert fleet_balance(app) == before  # nothing held, nothing paid
        await press(pilot, "a", "q")  # a new arming gives a new code, which pays
        assert text(app, "#phone-payment").startswith("pump1 (qr): held 200.00")


async def test_tap_to_pump_then_pay_by_qr_at_the_other_pump(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        owed = station_owed(app)
        await press(pilot, "f8", "a", "n")  # NFC tap at pump1: 200.00 held
        assert text(app, "#phone-payment") == "pump1 (nfc): held 200.00, hold 1: lift the nozzle"
        assert fleet_balance(app) == (480_000, 20_000)
        assert "balance 4,800.00, held 200.00" in text(app, "#phone-account")
        assert text(app, "#phone-face") == "sent by NFC"  # one arming, one tap
        tapped = [e for e in app.session.apdu_events() if e.data["reader"] == "nfc"]
        assert [(e.terminal, e.data["command"][:2], e.data["response"][-2:]) for e in tapped] == [
            ("pump1", bytes.fromhex("00A4"), bytes.fromhex("9000")),  # SELECT the card AID
            ("pump1", bytes.fromhex("80E2"), bytes.fromhex("9000")),  # GET TOKEN: the token
        ]
        await press(pilot, "h")  # hung up after 150.00
        assert text(app, "#phone-payment") == (
            "pump1 (nfc): completed 150.00 of 200.00, released 50.00"
        )
        assert fleet_balance(app) == (485_000, 0)
        await press(pilot, "right_square_bracket", "a", "q")  # pump2, by QR
        assert text(app, "#phone-payment").startswith("pump2 (qr): held 200.00")
        assert app.session.host_db is not None
        with app.session.host_db.connect() as conn:
            paid = conn.execute(
                "SELECT method, terminal_id, status, amount FROM vfc_payments ORDER BY payment_id"
            ).fetchall()
        assert [tuple(row) for row in paid] == [
            ("nfc", "440101000001", "completed", 15_000),
            ("qr", "440101000002", "held", 0),
        ]
        assert station_owed(app) - owed == 15_000  # the station is owed the delivered amount


async def test_phone_clock_offset_drift_and_sync(app: FuelsimApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f8")
        assert text(app, "#phone-warning") == ""
        await press(pilot, "plus")  # the wall clock a minute ahead: more than 30 s off
        assert text(app, "#phone-warning") == CLOCK_WARNING
        assert "wall − trusted +59.5 s" in text(app, "#phone-clock")
        await press(pilot, "minus")
        assert text(app, "#phone-warning") == ""
        app.screen.query_one("#phone-drift", Input).value = "500000"
        await press(pilot, "d")
        app.session.forecourt.advance_clock(100)  # drifting: the wall clock gains 50 s
        await countdown(pilot)
        assert "wall − trusted +49.5 s" in text(app, "#phone-clock")
        assert "drift 500000 ppm" in text(app, "#phone-clock")
        assert text(app, "#phone-warning") == CLOCK_WARNING
        assert "synced 100 s ago" in text(app, "#phone-clock")
        await press(pilot, "s")  # sync: trusted time is fresh, the wall clock stays wrong
        assert "synced 0 s ago" in text(app, "#phone-clock")
        assert text(app, "#phone-warning") == CLOCK_WARNING
        app.screen.query_one("#phone-drift", Input).value = "fast"
        await press(pilot, "d")
        assert isinstance(app.screen, ErrorModal)
        assert "'fast' is not a drift" in app.screen.message
