"""The driver's phone with a virtual fleet card, on the TUI's embedded host.

`PhoneDesk.open` makes what a fleet needs on the embedded host, with no set-up: the development
fleet (`host_sim.fleet.bootstrap_dev_fleet`: company `dev-fleet`, admin `dev-admin`, driver
`dev-driver`), a top-up of the fleet account through the simulated acquirer, and one virtual
card issued to the driver through the admin API. The driver's phone syncs its trusted time with
the host and installs the card with its limited-use keys over the driver's signed API, as the
phone app does. Each pump of the station can take the card: an NFC tap through the phone's HCE
applet (in process), the QR code or the numeric code, authorised (prepaid) by the host.

Nothing here imports textual. The Phone screen calls these methods from thread workers; its
countdown reads `peek()` on the UI thread, which never waits for a call in progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from card_profiles.hce_applet import HceApplet
from cardcore.clockrng import ManualClock, SeededRng
from host_sim import fleet
from host_sim.access import load_access_key
from host_sim.db import Database
from host_sim.signing import as_utc
from terminal_sim.events import APDU, Event
from terminal_sim.host_client import HostClient
from terminal_sim.phone import Face, Phone, PhoneError
from terminal_sim.phone_clock import PhoneClock, SyncSample
from terminal_sim.phone_http import HttpPhoneHost
from terminal_sim.phone_state import PHONE_SUFFIX, CardGrant, PhoneStore
from terminal_sim.readers import InProcReader
from terminal_sim.vfc_pump import Presented, VfcPump, presented_text
from terminal_sim.vfc_rig import DEFAULT_PIN

COMPANY, ADMIN, DRIVER = "dev-fleet", "dev-admin", "dev-driver"
TOPUP_FEN = 500_000  # the fleet account starts with 5,000.00
BANK_CARD = "4111111111111111"  # the acquirer's approving test card
PRODUCT = "92"
PHONE_PIN = DEFAULT_PIN
MAX_DRIFT_PPM = 1_000_000  # a clock may gain or lose up to a second per second, no more


@dataclass(frozen=True)
class PhoneView:
    """What the phone shows, and what its clocks say."""

    card: CardGrant | None
    face: Face
    qr_text: str | None  # only while the code is live
    numeric: str | None
    remaining_s: float
    ttl: int
    clock_warning: str | None
    wall: float  # Unix seconds: what the phone's clock shows
    trusted: float  # the phone's trusted time (its wall clock when never synced)
    synced: bool
    sync_age_s: float | None
    skew_s: float  # wall − trusted
    drift_ppm: float
    uses_left: int  # token uses of the usable keys


@dataclass(frozen=True)
class PumpAnswer:
    """A pump's authorisation or settlement, as the host answered it."""

    pump: str
    method: str
    status: str
    amount: int
    held_amount: int
    released_amount: int
    hold_id: int | None
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class FleetAccount:
    balance: int
    held: int


class NfcReader:
    """A pump's contactless reader with the phone held to it; every exchange is published as
    the pump's APDU event (reader `nfc`), timed by `timer`, as the card slots' are."""

    def __init__(
        self,
        applet: HceApplet,
        pump: str,
        publish: Callable[[Event], None],
        timer: Callable[[], float],
    ) -> None:
        self.inner = InProcReader(applet, f"{pump} NFC")
        self.name = self.inner.name
        self.pump, self.publish, self.timer = pump, publish, timer

    def connect(self) -> bytes:
        return self.inner.connect()

    def disconnect(self) -> None:
        self.inner.disconnect()

    def transmit(self, command: bytes) -> bytes:
        began = self.timer()
        response: bytes | None = None
        try:
            response = self.inner.transmit(command)
            return response
        finally:
            seconds = self.timer() - began
            data = {"reader": "nfc", "command": command, "response": response, "seconds": seconds}
            self.publish(Event(APDU, self.pump, data))


class PhoneDesk:
    """One driver's phone and the station's pumps that take its virtual card."""

    def __init__(
        self,
        phone: Phone,
        pumps: dict[str, VfcPump],
        admin: HostClient,
        clients: list[HostClient],
        publish: Callable[[Event], None] = lambda _: None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.phone = phone
        self.applet = HceApplet(phone, SeededRng(7))
        self.pumps = pumps
        self.admin = admin
        self.clients = clients
        self.publish, self.timer = publish, timer
        self.drift_ppm = 0.0
        self.last_hold: tuple[str, int] | None = None  # (pump, hold id) still open
        self.account = FleetAccount(0, 0)
        self._lock = threading.Lock()  # the phone is used by one thread at a time

    @staticmethod
    def phone_file(data: Path) -> Path:
        return data / "phones" / f"{DRIVER}{PHONE_SUFFIX}"

    @classmethod
    def forget(cls, data: Path) -> None:
        """The phone is provisioned afresh with the host's books at every start."""
        cls.phone_file(data).unlink(missing_ok=True)

    @classmethod
    def open(
        cls,
        db: Database,
        base_url: str,
        clock: ManualClock,
        data: Path,
        seed: int,
        pumps: dict[str, tuple[int, str]],
        station_key: tuple[str, str],
        station_id: str,
        publish: Callable[[Event], None] = lambda _: None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> PhoneDesk:
        """The dev fleet, a card on the driver's phone and the pumps (name → number, terminal)."""
        fleet.bootstrap_dev_fleet(db, as_utc(clock.now()), lambda _: None)
        with db.connect() as conn:
            keys = {user: load_access_key(conn, user) for user in (ADMIN, DRIVER)}
        clients: list[HostClient] = []

        def client(ak: str, sk: str, terminal_id: str | None = None) -> HostClient:
            made = HostClient(base_url, ak, sk, clock, terminal_id=terminal_id, timeout=5.0)
            clients.append(made)
            return made

        try:
            signed = {user: client(key.ak, key.sk) for user, key in keys.items() if key}
            admin, driver = signed[ADMIN], signed[DRIVER]
            admin.request(
                "POST", "/v1/fleet/topups", payload={"amount": TOPUP_FEN, "card_number": BANK_CARD}
            )
            card = admin.request("POST", "/v1/fleet/cards", payload={"driver_id": DRIVER})
            phone = Phone(
                HttpPhoneHost(driver),
                PhoneClock(clock),
                SeededRng(seed + 300),
                PhoneStore(cls.phone_file(data)),
                device_id=DRIVER,
            )
            phone.sync_time()
            phone.provision(str(card["card_id"]), PHONE_PIN)
            station_ak, station_sk = station_key
            vfc_pumps = {
                name: VfcPump(
                    client(station_ak, station_sk, terminal),
                    station_id,
                    number,
                    SeededRng(seed + 200 + number),
                )
                for name, (number, terminal) in pumps.items()
            }
        except BaseException:
            for made in clients:
                made.close()
            raise
        desk = cls(phone, vfc_pumps, admin, clients, publish, timer)
        desk.account = desk.read_account()
        return desk

    def close(self) -> None:
        for made in self.clients:
            made.close()

    # The phone -----------------------------------------------------------------------------------
    def view(self) -> PhoneView:
        with self._lock:
            return self._view()

    def peek(self) -> PhoneView | None:
        """The view unless a call holds the phone (the countdown then waits for its next tick)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._view()
        finally:
            self._lock.release()

    def _view(self) -> PhoneView:
        phone = self.phone
        screen = phone.screen()
        status = phone.clock_status()
        code = screen.code
        return PhoneView(
            card=phone.state.card,
            face=screen.face,
            qr_text=None if code is None else code.qr_text,
            numeric=None if code is None else code.numeric,
            remaining_s=screen.remaining_s,
            ttl=phone.ttl if code is None else code.token.iad.ttl,
            clock_warning=screen.clock_warning,
            wall=phone.clock.wall(),
            trusted=status.trusted_now,
            synced=status.synced,
            sync_age_s=status.sync_age_s,
            skew_s=status.skew_s,
            drift_ppm=self.drift_ppm,
            uses_left=screen.uses_left,
        )

    def arm(self, pin: str) -> PhoneView:
        """The driver arms the card with the PIN: a fresh code for `ttl` seconds."""
        with self._lock:
            self.phone.arm(pin)
            return self._view()

    def sync(self) -> SyncSample:
        with self._lock:
            return self.phone.sync_time()

    def shift_wall(self, seconds: float) -> PhoneView:
        """The phone's wall clock jumps (the user sets it wrong); trusted time does not move."""
        with self._lock:
            self.phone.clock.jump(seconds)
            return self._view()

    def set_drift(self, ppm: float) -> PhoneView:
        if not -MAX_DRIFT_PPM <= ppm <= MAX_DRIFT_PPM:
            raise ValueError(f"a drift of {ppm:g} ppm is outside ±{MAX_DRIFT_PPM:,} ppm")
        with self._lock:
            self.phone.clock.set_drift(ppm)
            self.drift_ppm = ppm
            return self._view()

    # Paying at a pump ---------------------------------------------------------------------------
    def pump(self, name: str) -> VfcPump:
        if name not in self.pumps:
            raise ValueError(f"no pump {name!r}; pumps: {', '.join(self.pumps)}")
        return self.pumps[name]

    def tap(self, pump: str, amount: int) -> PumpAnswer:
        """NFC: the pump reads a token bound to itself and the amount, the host holds it."""
        vfc_pump = self.pump(pump)
        with self._lock:
            code = vfc_pump.tap(NfcReader(self.applet, pump, self.publish, self.timer), amount)
        return self._authorize(pump, code, amount)

    def pay_code(self, pump: str, amount: int, method: str, text: str | None = None) -> PumpAnswer:
        """The pump scans the QR (`qr`) or takes the typed code (`numeric`) the phone shows now,
        or `text` (a code read earlier: a photo of the screen)."""
        if text is None:
            with self._lock:
                code = self.phone.screen().code
            if code is None:
                raise PhoneError("the phone shows no code: arm it with the PIN first")
            text = code.qr_text if method == "qr" else code.numeric
        return self._authorize(pump, presented_text(method, text), amount)

    def _authorize(self, pump: str, code: Presented, amount: int) -> PumpAnswer:
        try:
            answer = self.pump(pump).authorize(code, PRODUCT, amount)
        finally:
            self.account = self.read_account()
        if answer.get("hold_id") is not None:
            self.last_hold = (pump, int(answer["hold_id"]))
        return pump_answer(pump, answer)

    def settle(self, delivered: int) -> PumpAnswer:
        """The nozzle is hung up: the pump completes the open hold with what it delivered (all
        of it returns to the fleet when nothing was)."""
        if self.last_hold is None:
            raise ValueError("no open authorisation: pay at a pump first")
        pump, hold_id = self.last_hold
        try:
            answer = self.pump(pump).settle(hold_id, delivered)
        finally:
            self.account = self.read_account()
        self.last_hold = None
        return pump_answer(pump, answer)

    def read_account(self) -> FleetAccount:
        answer = self.admin.request("GET", "/v1/fleet/account")
        return FleetAccount(int(answer["balance"]), int(answer["held"]))


def pump_answer(pump: str, answer: dict[str, Any]) -> PumpAnswer:
    return PumpAnswer(
        pump,
        str(answer["method"]),
        str(answer["status"]),
        int(answer["amount"]),
        int(answer["held_amount"]),
        int(answer.get("released_amount", 0)),
        None if answer.get("hold_id") is None else int(answer["hold_id"]),
        tuple(str(w["code"]) for w in answer.get("warnings", [])),
    )


def clock_text(unix: float) -> str:
    """Unix seconds as the phone shows them: 10:00:05 (the simulation's wall time)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%H:%M:%S")
