"""The phone simulator: trusted time against wrong, drifting and jumping clocks, the countdown,
ATC persistence, key replenishment, PIN, and the QR renderings (decoded with zxing-cpp)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from card_profiles.hce_applet import HceApplet
from cardcore import vfc
from cardcore.clockrng import ManualClock, SeededRng
from hsm_mock.hsm import MockHsm
from terminal_sim import qr
from terminal_sim.host_client import HostUnavailable
from terminal_sim.phone import CLOCK_WARNING, Face, Phone, PhoneError
from terminal_sim.phone_clock import PhoneClock
from terminal_sim.phone_state import CardGrant, LukGrant, PhoneStateError, PhoneStore
from terminal_sim.serve import Server, parse_specs

START = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
T0 = int(START.timestamp())
IMK = bytes(range(32))
CARD = CardGrant("VC-000001", "8100000000000017", date(2029, 12, 31), "12345678", 1)


class FakeHost:
    """The host's phone API in process: its clock is the true clock; `delays` scripts the
    network (seconds out, seconds back) of each time request."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: Iterator[tuple[float, float]] = iter(())
        self.offline = False
        self.next_index = 0
        self.fetches = 0

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _up(self) -> None:
        if self.offline:
            raise HostUnavailable("E_UNREACHABLE", "no network", status=None, details={})

    def server_time(self) -> float:
        self._up()
        out, back = next(self.delays, (0.0, 0.0))
        self.clock.advance(out)
        stamp = self._now()
        self.clock.advance(back)
        return stamp

    def provision(self, card_id: str, device_id: str) -> CardGrant:
        self._up()
        assert card_id == CARD.card_id
        return CARD

    def luk_key(self, index: int) -> bytes:
        return vfc.luk(vfc.card_key(IMK, CARD.card_id, CARD.kv), index)

    def fetch_luks(self, card_id: str, device_id: str, count: int) -> list[LukGrant]:
        self._up()
        self.fetches += 1
        grants = []
        for _ in range(count):
            index, self.next_index = self.next_index, self.next_index + 1
            expires = int(self._now()) + vfc.LUK_TTL_S
            grants.append(LukGrant(index, self.luk_key(index), expires, vfc.LUK_BUDGET))
        return grants


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def host(clock: ManualClock) -> FakeHost:
    return FakeHost(clock)


def new_phone(
    host: FakeHost, clock: ManualClock, store: PhoneStore | None = None, **clock_args: float
) -> Phone:
    return Phone(host, PhoneClock(clock, **clock_args), SeededRng(3), store)


@pytest.fixture
def phone(host: FakeHost, clock: ManualClock) -> Phone:
    phone = new_phone(host, clock)
    phone.provision(CARD.card_id, "1234")
    return phone


def check_token(host: FakeHost, token: vfc.Token) -> None:
    assert vfc.verify_cryptogram(host.luk_key(token.iad.luk_index), token)


# Trusted time ------------------------------------------------------------------------------------


def test_arming_gives_a_valid_qr_token_and_numeric_code(phone: Phone, host: FakeHost) -> None:
    phone.sync_time()
    code = phone.arm("1234")
    token = vfc.from_qr_text(code.qr_text)
    assert token == code.token and token.card_number == CARD.card_number
    check_token(host, token)
    assert token.atc == 1 and token.iad.t_gen == T0 and token.iad.ttl == vfc.DEFAULT_TTL_S
    assert token.iad.synced and token.iad.sync_age_bucket == 0 and token.iad.skew_s == 0
    numeric = vfc.parse_numeric_code(code.numeric)
    step = vfc.recover_step(numeric.step_mod_100, vfc.time_step(T0))
    assert numeric.alias == CARD.alias and numeric.atc_mod_10 == 1
    assert numeric.otp == vfc.numeric_otp(host.luk_key(0), step, 1)


def test_wrong_wall_clock_never_reaches_the_token(host: FakeHost, clock: ManualClock) -> None:
    phone = new_phone(host, clock, offset_s=3_600)  # the phone shows an hour too late
    phone.provision(CARD.card_id, "1234")
    unsynced = phone.arm("1234").token
    assert unsynced.iad.t_gen == T0 + 3_600 and not unsynced.iad.synced
    assert unsynced.iad.sync_age_bucket == 7 and phone.clock_warning() is None  # nothing to compare
    phone.sync_time()
    token = phone.arm("1234").token
    assert token.iad.t_gen == T0 and token.iad.synced
    assert token.iad.wall_off and token.iad.skew_s == 3_600
    assert phone.clock_warning() == CLOCK_WARNING == phone.screen().clock_warning


def test_drifting_wall_clock_warns_past_30_seconds(host: FakeHost, clock: ManualClock) -> None:
    phone = new_phone(host, clock, drift_ppm=250)  # gains 21.6 s a day
    phone.provision(CARD.card_id, "1234")
    phone.sync_time()
    clock.advance(86_400)
    assert phone.clock_warning() is None
    assert phone.clock_status().skew_s == pytest.approx(21.6)
    clock.advance(86_400)
    assert phone.clock_warning() == CLOCK_WARNING
    status = phone.clock_status()
    assert status.trusted_now == pytest.approx(T0 + 2 * 86_400)  # trusted time did not drift
    assert status.sync_age_bucket == 7 - 1  # synced two days ago: under a week
    phone.maintain()  # resync (stale) and new keys (the first ones expired)
    token = phone.arm("1234").token
    assert token.iad.skew_s == 43 and token.iad.sync_age_bucket == 0
    check_token(host, token)


def test_wall_clock_jump_moves_neither_trusted_time_nor_countdown(
    phone: Phone, clock: ManualClock
) -> None:
    phone.sync_time()
    phone.arm("1234")
    clock.advance(10)
    phone.clock.jump(-7_200)
    screen = phone.screen()
    assert screen.face is Face.ARMED and screen.remaining_s == 50
    assert phone.clock_status().trusted_now == T0 + 10
    assert phone.clock_status().skew_s == -7_200 and screen.clock_warning == CLOCK_WARNING
    phone.clock.set_wall(T0 + 10)
    assert phone.clock_warning() is None


def test_sync_keeps_the_lowest_delay_sample(phone: Phone, host: FakeHost) -> None:
    # asymmetric paths skew a sample by half the asymmetry; the fastest sample is the best bound
    host.delays = iter([(0.8, 0.1), (0.02, 0.01), (0.4, 0.0), (0.3, 0.3)])
    sample = phone.sync_time(samples=4)
    assert sample.delay_s == pytest.approx(0.03)
    true_now = host.clock.now().timestamp()
    assert phone.clock_status().trusted_now - true_now == pytest.approx(0.005, abs=1e-4)


def test_a_failed_sync_keeps_the_anchor(phone: Phone, host: FakeHost, clock: ManualClock) -> None:
    anchor = phone.sync_time()
    clock.advance(2 * 3_600)  # stale: maintain() tries to resync
    host.offline = True
    phone.maintain()
    assert isinstance(phone.last_host_error, HostUnavailable)
    assert phone.time.anchor == anchor and phone.clock_status().trusted_now == T0 + 7_200


# Countdown and codes -----------------------------------------------------------------------------


def test_countdown_then_expired_and_never_shown_again(phone: Phone, clock: ManualClock) -> None:
    phone.sync_time()
    first = phone.arm("1234")
    clock.advance(15)
    screen = phone.screen()
    assert screen.face is Face.ARMED and screen.code == first
    assert screen.remaining_s == 45 and screen.progress == 0.75
    clock.advance(44.75)
    assert phone.screen().remaining_s == 0.25  # one tick left
    clock.advance(0.25)
    screen = phone.screen()
    assert screen.face is Face.EXPIRED and screen.code is None and screen.progress == 0
    phone.clock.jump(-3_600)  # turning the wall clock back does not revive the code
    assert phone.screen().code is None
    second = phone.arm("1234")
    assert second.token.atc == first.token.atc + 1 and second.qr_text != first.qr_text


def test_nfc_tap_once_per_arming(phone: Phone, host: FakeHost) -> None:
    context = vfc.NfcContext(10_000, "ST-0001", 5)
    assert phone.nfc_token(b"\x00" * 4, context) is None and phone.state.atc == 0
    phone.arm("1234")
    raw = phone.nfc_token(bytes.fromhex("CAFEBABE"), context)
    assert raw is not None
    token = vfc.Token.parse(raw)
    assert token.atc == 2 and vfc.verify_cryptogram(host.luk_key(0), token, context.encode())
    assert phone.screen().face is Face.TAPPED and phone.screen().code is None
    assert phone.nfc_token(b"\x00" * 4, context) is None and phone.state.atc == 2


def test_wrong_pin(phone: Phone) -> None:
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(PhoneError, match=f"{left} tries left"):
            phone.arm("9999")
    with pytest.raises(PhoneError, match="blocked"):
        phone.arm("1234")
    assert phone.state.atc == 0 and phone.screen().code is None


def test_pin_tries_reset_after_a_good_pin(phone: Phone) -> None:
    with pytest.raises(PhoneError):
        phone.arm("0000")
    phone.arm("1234")
    assert phone.state.pin_tries_left == 5


# Persistence -------------------------------------------------------------------------------------


def test_atc_survives_a_restart(host: FakeHost, clock: ManualClock, tmp_path: Path) -> None:
    store = PhoneStore(tmp_path / "driver.phone.json")
    phone = new_phone(host, clock, store)
    phone.provision(CARD.card_id, "1234")
    for _ in range(3):
        phone.arm("1234")
    saved = json.loads(store.path.read_text())  # type: ignore[union-attr]
    assert saved["atc"] == 3 and saved["luks"][0]["used"] == 3
    again = new_phone(host, clock, PhoneStore(store.path))
    assert again.screen().code is None  # an old code is not shown after a restart
    token = again.arm("1234").token
    assert token.atc == 4 and token.iad.luk_index == 0
    check_token(host, token)


class FailingStore(PhoneStore):
    def __init__(self) -> None:
        super().__init__(None)
        self.fail = False

    def save(self, state: object) -> None:
        if self.fail:
            raise OSError("disk full")


def test_no_code_is_shown_unless_its_atc_was_saved(host: FakeHost, clock: ManualClock) -> None:
    store = FailingStore()
    phone = new_phone(host, clock, store)
    phone.provision(CARD.card_id, "1234")
    store.fail = True
    with pytest.raises(OSError):
        phone.arm("1234")
    assert phone.screen().code is None and phone.screen().face is Face.IDLE
    assert phone.nfc_token(b"\x00" * 4, vfc.NfcContext(1, "S", 1)) is None


def test_damaged_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.phone.json"
    path.write_text('{"format": "fuelsim.phone/1", "device_id": "p"}')
    with pytest.raises(PhoneStateError):
        PhoneStore(path).load("p")
    path.write_text("{")
    with pytest.raises(PhoneStateError):
        PhoneStore(path).load("p")


# Keys --------------------------------------------------------------------------------------------


def test_replenish_when_two_uses_remain(phone: Phone, host: FakeHost) -> None:
    assert host.fetches == 1
    for _ in range(vfc.LUK_BUDGET - 3):
        phone.arm("1234")
    assert host.fetches == 1 and phone.screen().uses_left == 3
    phone.arm("1234")  # 3 left at arming: no fetch yet; 2 left afterwards
    assert host.fetches == 1
    phone.arm("1234")  # 2 left: fetch first, then use key 0
    assert host.fetches == 2 and phone.screen().uses_left == 1 + vfc.LUK_BUDGET
    used = [phone.arm("1234").token.iad.luk_index for _ in range(2)]
    assert used == [0, 1]  # the old key is used up first


def test_replenish_when_an_hour_remains(phone: Phone, host: FakeHost, clock: ManualClock) -> None:
    phone.sync_time()
    clock.advance(vfc.LUK_TTL_S - 3_601)
    assert not phone.needs_keys()
    clock.advance(1)
    assert phone.needs_keys()
    phone.maintain()
    assert host.fetches == 2 and not phone.needs_keys()


def test_offline_phone_pays_with_the_keys_it_has(phone: Phone, host: FakeHost) -> None:
    host.offline = True
    for _ in range(vfc.LUK_BUDGET):
        phone.arm("1234")
    assert isinstance(phone.last_host_error, HostUnavailable)
    with pytest.raises(PhoneError, match="no usable keys"):
        phone.arm("1234")
    assert phone.state.atc == vfc.LUK_BUDGET
    host.offline = False
    check_token(host, phone.arm("1234").token)


def test_expired_keys_are_not_used(phone: Phone, host: FakeHost, clock: ManualClock) -> None:
    host.offline = True
    clock.advance(vfc.LUK_TTL_S)
    with pytest.raises(PhoneError, match="no usable keys"):
        phone.arm("1234")


# QR ----------------------------------------------------------------------------------------------


def _decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def _image(modules: list[list[bool]], scale: int = 6) -> Image.Image:
    size = len(modules[0])
    image = Image.new("L", (size, len(modules)), 255)
    image.putdata([0 if dark else 255 for row in modules for dark in row])
    return image.resize((size * scale, len(modules) * scale), Image.Resampling.NEAREST)


def test_qr_renderings_decode_to_the_token(phone: Phone) -> None:
    text = phone.arm("1234").qr_text
    modules = qr.matrix(text)
    assert qr.version(text) == 7 and len(modules) == 17 + 4 * 7 + 2 * qr.QUIET_ZONE == 53
    assert not any(modules[0]) and not any(row[0] for row in modules)  # quiet zone
    rendered = qr.render_half_blocks(text)
    lines = rendered.split("\n")
    assert len(lines) == 27 and all(line.count(qr.UPPER_HALF) == 53 for line in lines)
    assert qr.parse_half_blocks(rendered)[:53] == modules
    assert _decode(_image(qr.parse_half_blocks(rendered))) == [text]
    assert _decode(Image.open(io.BytesIO(qr.png(text)))) == [text]
    assert 'viewBox="0 0 53 53"' in qr.svg(text)


def test_half_blocks_set_both_colours_in_every_cell(phone: Phone) -> None:
    rendered = qr.render_half_blocks(phone.arm("1234").qr_text)
    cells = [cell for line in rendered.split("\n") for cell in line.split(qr.UPPER_HALF)[:-1]]
    assert all(("38;5;16m" in c or "38;5;231m" in c) for c in cells)
    assert all(("48;5;16m" in c or "48;5;231m" in c) for c in cells)


# Serving -----------------------------------------------------------------------------------------


def test_card_serve_phone_target_and_arm_command(tmp_path: Path, hsm: MockHsm) -> None:
    path = tmp_path / "phones" / "dave.phone.json"
    today = ManualClock(datetime.now(UTC))  # the served phone runs on the system clock
    new_phone(FakeHost(today), today, PhoneStore(path)).provision(CARD.card_id, "1234")
    said: list[str] = []
    server = Server(
        parse_specs(["phone-dave@0", "phone-erin@1"]), data_dir=tmp_path, hsm=hsm, say=said.append
    )
    assert server.files == {0: path, 1: tmp_path / "phones" / "erin.phone.json"}
    assert isinstance(server.slots[0].applet, HceApplet)
    server.command("arm 0 1234")
    server.command("arm 1 1234")
    assert said[0].startswith("slot 0: armed for 60 s (ATC 1, code 8112345678")
    assert said[1] == "slot 1: not armed: no card on this phone: provision one first"
    assert json.loads(path.read_text())["atc"] == 1
