"""The driver's phone: virtual fleet card, limited-use keys, trusted time, arming and paying.

The driver arms the card with the PIN; for `ttl` seconds the phone shows a QR token and a
numeric code with a countdown (`t_gen + ttl − trusted_now`) and answers one NFC tap. At zero the
code is replaced by "expired — refresh" and is never shown again: a new code needs a new arming.
Every token takes a new ATC, written to the phone's state file before the token leaves the phone.
The phone asks the host for new limited-use keys when 2 uses or 1 hour remain.

Time in tokens is trusted time (`terminal_sim.phone_clock`), never the wall clock; the wall
clock's offset travels in the IAD, and the screen warns when it is more than 30 s off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from card_profiles.hce_applet import HceApplet
from cardcore import vfc
from cardcore.clockrng import SeededRng, SystemClock
from cardcore.errors import FuelsimError
from cardcore.ports import Rng
from terminal_sim.phone_clock import ClockStatus, PhoneClock, SyncSample, TrustedTime
from terminal_sim.phone_state import (
    PHONE_SUFFIX,
    PIN_TRIES,
    CardGrant,
    HeldLuk,
    LukGrant,
    PhoneState,
    PhoneStore,
)

TICK_S = 0.25  # the countdown bar redraws at least 4 times a second
CLOCK_WARNING = "phone time is wrong, turn on automatic time"
RESYNC_AFTER_S = 3_600


class PhoneError(FuelsimError):
    title = "phone"


class PhoneHost(Protocol):
    """What the phone needs from the host (over the signed HTTP API in real use)."""

    def server_time(self) -> float:
        """The host's clock, Unix seconds, read as late as possible before answering."""
        ...

    def provision(self, card_id: str, device_id: str) -> CardGrant: ...

    def fetch_luks(self, card_id: str, device_id: str, count: int) -> list[LukGrant]: ...


class Face(Enum):
    """What the screen shows."""

    NO_CARD = "no card"
    IDLE = "idle"
    ARMED = "armed"
    EXPIRED = "expired — refresh"
    TAPPED = "sent by NFC"


@dataclass(frozen=True)
class PaymentCode:
    token: vfc.Token
    qr_text: str
    numeric: str


@dataclass(frozen=True)
class PhoneScreen:
    face: Face
    code: PaymentCode | None  # only while armed
    remaining_s: float
    progress: float  # 1.0 at arming, 0.0 at expiry
    clock_warning: str | None
    uses_left: int


@dataclass
class _Armed:
    code: PaymentCode
    trusted_at_gen: float  # exact trusted time of t_gen (t_gen itself is whole seconds)
    mono_at_gen: float

    def remaining(self, mono_now: float) -> float:
        ttl = self.code.token.iad.ttl
        return self.code.token.iad.t_gen + ttl - (self.trusted_at_gen + mono_now - self.mono_at_gen)


class Phone:
    """One phone holding one virtual card; also the token source of its HCE applet."""

    def __init__(
        self,
        host: PhoneHost | None,
        clock: PhoneClock,
        rng: Rng,
        store: PhoneStore | None = None,
        *,
        device_id: str = "phone-1",
        ttl: int = vfc.DEFAULT_TTL_S,
    ) -> None:
        if not 1 <= ttl <= 0xFF:
            raise ValueError("ttl is 1..255 seconds")
        self.host = host
        self.clock = clock
        self.time = TrustedTime(clock)
        self.rng = rng
        self.store = store or PhoneStore()
        self.state = self.store.load(device_id)
        self.ttl = ttl
        self._armed: _Armed | None = None
        self._face = Face.IDLE
        self.last_host_error: FuelsimError | None = None

    # Host --------------------------------------------------------------------------------------
    def _host(self) -> PhoneHost:
        if self.host is None:
            raise PhoneError("this phone has no host connection")
        return self.host

    def sync_time(self, samples: int = 4) -> SyncSample:
        return self.time.sync(self._host().server_time, samples)

    def provision(self, card_id: str, pin: str) -> CardGrant:
        """Install the card the admin bound to this driver, set the PIN, fetch keys."""
        host = self._host()
        card = host.provision(card_id, self.state.device_id)
        state = PhoneState(self.state.device_id, card=card)
        state.set_pin(pin, self.rng.random(16))
        state.luks = [HeldLuk(g) for g in host.fetch_luks(card_id, state.device_id, 1)]
        self.state, self._armed, self._face = state, None, Face.IDLE
        self.store.save(state)
        return card

    def maintain(self) -> None:
        """The app's background job: resync when stale, replenish keys when low."""
        age = self.time.age()
        try:
            if age is None or age > RESYNC_AFTER_S:
                self.sync_time()
        except FuelsimError as exc:
            self.last_host_error = exc
        self.replenish_if_needed()

    # Keys --------------------------------------------------------------------------------------
    def usable_luks(self) -> list[HeldLuk]:
        now = self.clock_status().trusted_now
        return [h for h in self.state.luks if h.uses_left > 0 and h.grant.expires_at > now]

    def needs_keys(self) -> bool:
        usable = self.usable_luks()
        if not usable:
            return True
        time_left = max(h.grant.expires_at for h in usable) - self.clock_status().trusted_now
        uses_left = sum(h.uses_left for h in usable)
        return uses_left <= vfc.REPLENISH_USES_LEFT or time_left <= vfc.REPLENISH_TIME_LEFT_S

    def replenish_if_needed(self) -> int:
        """Fetch a new key when needed; returns how many arrived (0 when the host is away)."""
        card = self.state.card
        if card is None or not self.needs_keys():
            return 0
        try:
            grants = self._host().fetch_luks(card.card_id, self.state.device_id, 1)
        except FuelsimError as exc:
            self.last_host_error = exc
            return 0
        held = {h.grant.index for h in self.state.luks}
        usable = self.usable_luks()
        self.state.luks = usable + [HeldLuk(g) for g in grants if g.index not in held]
        self.store.save(self.state)
        return len(grants)

    # Time --------------------------------------------------------------------------------------
    def clock_status(self) -> ClockStatus:
        return self.time.status()

    def clock_warning(self) -> str | None:
        return CLOCK_WARNING if self.clock_status().wall_off else None

    # Paying ------------------------------------------------------------------------------------
    def arm(self, pin: str) -> PaymentCode:
        """Check the PIN, then show a fresh code for `ttl` seconds."""
        card = self._card()
        self._check_pin(pin)
        self.replenish_if_needed()
        token, status = self._new_token(card, self.rng.random(vfc.UN_LEN), b"")
        luk_key = self._luk(token.iad.luk_index).grant.key
        step = vfc.time_step(token.iad.t_gen)
        code = PaymentCode(
            token, vfc.to_qr_text(token), vfc.numeric_code(card.alias, luk_key, step, token.atc)
        )
        self._armed = _Armed(code, status.trusted_now, self.clock.monotonic())
        self._face = Face.ARMED
        return code

    def screen(self) -> PhoneScreen:
        armed = self._live()
        face = Face.NO_CARD if self.state.card is None else self._face
        remaining = 0.0 if armed is None else armed.remaining(self.clock.monotonic())
        ttl = self.ttl if armed is None else armed.code.token.iad.ttl
        return PhoneScreen(
            face=face,
            code=None if armed is None else armed.code,
            remaining_s=remaining,
            progress=max(0.0, remaining / ttl),
            clock_warning=self.clock_warning(),
            uses_left=sum(h.uses_left for h in self.usable_luks()),
        )

    def nfc_token(self, un: bytes, context: vfc.NfcContext) -> bytes | None:
        """The HCE answer: a token bound to the terminal's UN and context, once per arming."""
        card = self.state.card
        if card is None or self._live() is None:
            return None
        token, _ = self._new_token(card, un, context.encode())
        self._armed, self._face = None, Face.TAPPED
        return token.encode()

    # Internals ---------------------------------------------------------------------------------
    def _card(self) -> CardGrant:
        if self.state.card is None:
            raise PhoneError("no card on this phone: provision one first")
        return self.state.card

    def _check_pin(self, pin: str) -> None:
        state = self.state
        if state.pin_tries_left <= 0:
            raise PhoneError("PIN blocked: the card must be provisioned again")
        if state.pin_matches(pin):
            if state.pin_tries_left != PIN_TRIES:
                state.pin_tries_left = PIN_TRIES
                self.store.save(state)
            return
        state.pin_tries_left -= 1
        self.store.save(state)
        raise PhoneError(f"wrong PIN, {state.pin_tries_left} tries left")

    def _luk(self, index: int) -> HeldLuk:
        return next(h for h in self.state.luks if h.grant.index == index)

    def _live(self) -> _Armed | None:
        """The armed code while its countdown runs; at zero it is dropped for good."""
        armed = self._armed
        if armed is not None and armed.remaining(self.clock.monotonic()) <= 0:
            self._armed, self._face = None, Face.EXPIRED
            return None
        return armed

    def _new_token(
        self, card: CardGrant, un: bytes, nfc_context: bytes
    ) -> tuple[vfc.Token, ClockStatus]:
        usable = self.usable_luks()
        if not usable:
            raise PhoneError("no usable keys: connect to the host to replenish")
        if self.state.atc >= 0xFFFF:
            raise PhoneError("ATC exhausted: the card must be issued again")
        held = min(usable, key=lambda h: h.grant.index)
        status = self.clock_status()
        self.state.atc += 1
        self.state.use_luk(held.grant.index)
        self.store.save(self.state)  # the ATC is on disk before the token leaves the phone
        iad = vfc.Iad(
            kv=card.kv,
            luk_index=held.grant.index,
            t_gen=int(status.trusted_now),
            ttl=self.ttl,
            synced=status.synced,
            sync_age_bucket=status.sync_age_bucket,
            wall_off=status.wall_off,
            skew_s=status.skew_field,
        )
        token = vfc.make_token(
            held.grant.key, card.card_number, card.expiry, self.state.atc, un, iad, nfc_context
        )
        return token, status


# Serving the phone's NFC card in a virtual reader (`fuelsim card serve phone@N`) ----------------

PHONE_TARGET = re.compile(r"^phone(?:-(?P<name>[A-Za-z0-9_-]+))?$")


def phone_file(target: str, data_dir: Path) -> Path | None:
    """`phone` or `phone-NAME` → `<data>/phones/NAME.phone.json`; a `*.phone.json` path as it
    is; None for anything else (a card profile)."""
    if target.endswith(PHONE_SUFFIX):
        return Path(target)
    match = PHONE_TARGET.match(target)
    if match is None:
        return None
    return data_dir / "phones" / f"{match['name'] or 'phone'}{PHONE_SUFFIX}"


def served_phone(path: Path, seed: int) -> tuple[Phone, HceApplet]:
    """A phone kept in `path` (offline: it pays with the keys it holds) and its NFC card."""
    device = path.name.removesuffix(PHONE_SUFFIX)
    phone = Phone(
        None, PhoneClock(SystemClock()), SeededRng(seed), PhoneStore(path), device_id=device
    )
    return phone, HceApplet(phone, SeededRng(seed))


def arm_message(phone: Phone, pin: str) -> str:
    """Arm from a control line; the answer is one line for the operator."""
    try:
        code = phone.arm(pin)
    except FuelsimError as exc:
        return f"not armed: {exc}"
    return f"armed for {code.token.iad.ttl} s (ATC {code.token.atc}, code {code.numeric})"
