"""Every status word the spec names, provoked on the user card and (where it applies) the PSAM.

Each refusal is checked with `Device.refuses`: the answer is the status word alone, and neither
the card's RAM mirror of its memory nor what the backend stored changed (a wrong PIN changes
the try counter and nothing else). Where a failure cancels the transaction, the follow-up shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from card_profiles.image import load_image
from card_profiles.nvm import WritePoint
from cardcore import commands as cmd
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import encode_pin
from cardcore.layout import LockStatus, TxType
from cardcore.records import LockRecord
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard

TERM = bytes.fromhex("440101000001")
DT = bytes.fromhex("20261122120000")
ZERO4 = bytes(4)
PIN = "999999"


def flip(mac: bytes) -> bytes:
    return bytes((mac[0] ^ 0x01,)) + mac[1:]


def with_p(apdu: CommandApdu, p1: int | None = None, p2: int | None = None) -> CommandApdu:
    return replace(apdu, p1=apdu.p1 if p1 is None else p1, p2=apdu.p2 if p2 is None else p2)


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


# The value commands of the ET purse, each well-formed so that only its state can refuse it.
VALUE_COMMANDS = {
    "INITIALIZE FOR LOAD": cmd.initialize_for_load(100, TERM),
    "CREDIT FOR LOAD": cmd.credit_for_load(DT, ZERO4),
    "INITIALIZE FOR PURCHASE": cmd.initialize_for_purchase(100, TERM),
    "DEBIT FOR PURCHASE": cmd.debit_for_purchase(1, DT, ZERO4),
    "INITIALIZE FOR GREY LOCK": cmd.initialize_for_grey_lock(TERM),
    "GREY LOCK": cmd.grey_lock(1, ZERO4, DT, ZERO4),
    "DEBIT FOR UNLOCK": cmd.debit_for_unlock(100, 1, TERM, 1, DT, ZERO4),
    "INITIALIZE FOR ONLINE UNLOCK": cmd.initialize_for_online_unlock(TERM),
    "ONLINE UNLOCK": cmd.online_unlock(100, DT, ZERO4),
}


# 6700 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param("00A404", id="3 bytes"),
        pytest.param("00B095", id="3 bytes READ BINARY"),
        pytest.param("00A404000EA000", id="Lc 0E with 2 data bytes"),
        pytest.param("00200000029999999999", id="Lc 02 with 5 data bytes"),
        pytest.param("00B095000001", id="truncated extended Le"),
        pytest.param("002000000799999999999999", id="VERIFY with a 7-byte PIN"),
        pytest.param("0084000005", id="GET CHALLENGE Le 5"),
        pytest.param("805001010A" + "00" * 10 + "0F", id="INITIALIZE FOR PURCHASE Lc 0A"),
        pytest.param("805000010C" + "00" * 12 + "10", id="INITIALIZE FOR LOAD Lc 0C"),
        pytest.param(CommandApdu(0x80, 0x54, 0x01, 0x00, bytes(15), ne=4), id="DEBIT Le 04"),
        pytest.param("E07A080106" + "01" * 6 + "0F", id="INITIALIZE FOR GREY LOCK Lc 06"),
        pytest.param("E0CA00000100", id="GET LOCK PROOF with data"),
    ],
)
def test_card_wrong_length_6700(card_device: Callable[..., Any], apdu: Any) -> None:
    card_device().refuses(apdu, 0x6700)


@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param("807000", id="3 bytes"),
        pytest.param("8070000020" + "00" * 32 + "08", id="80 70 Lc 20"),
        pytest.param("E040000014" + "00" * 20 + "0C", id="E0 40 Lc 14"),
        pytest.param("E04400000E" + "93" + "00" * 13 + "08", id="E0 44 Lc 0E"),
        pytest.param("E04600000300000008", id="E0 46 Lc 03"),
        pytest.param("807200000500000000", id="80 72 Lc 05"),
        pytest.param("8072000004A348", id="80 72 Lc 04 with 2 data bytes"),
    ],
)
def test_psam_wrong_length_6700(psam_device: Callable[..., Any], apdu: Any) -> None:
    psam_device().refuses(apdu, 0x6700)


# 6982 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["normal", "grey-locked"])
# DEBIT FOR UNLOCK needs no PIN: the lock it completes was authorised (docs/spec-decisions.md).
@pytest.mark.parametrize("name", [n for n in VALUE_COMMANDS if n != "DEBIT FOR UNLOCK"])
def test_value_command_without_verify_6982(
    card_device: Callable[..., Any], profile: str, name: str
) -> None:
    card_device(profile, pin=None).refuses(VALUE_COMMANDS[name], 0x6982)


@pytest.mark.parametrize("lost_by", ["wrong PIN", "SELECT again", "power cycle"])
def test_pin_state_is_per_session_6982(card_device: Callable[..., Any], lost_by: str) -> None:
    card = card_device("normal")
    card.ok(cmd.initialize_for_purchase(100, TERM))  # verified: allowed
    if lost_by == "wrong PIN":
        card.refuses(cmd.verify("123456"), 0x63C2, {"pin.tries": b"\x02"})
    elif lost_by == "SELECT again":
        card.ok(cmd.select(layout.ET_AID))
    else:
        card.power_cycle()
        card.ok(cmd.select(layout.ET_AID))
    card.refuses(cmd.initialize_for_purchase(100, TERM), 0x6982)


# 63C2 / 63C1 / 6983, RELOAD PIN ------------------------------------------------------------------
def test_wrong_pins_count_down_then_block_and_reload_pin_resets(
    card_device: Callable[..., Any], hsm: MockHsm
) -> None:
    card = card_device("normal", pin=None)
    card.refuses(cmd.verify("111111"), 0x63C2, {"pin.tries": b"\x02"})
    card.refuses(cmd.verify("1234"), 0x63C1, {"pin.tries": b"\x01"})
    card.refuses(cmd.verify("111111"), 0x6983, {"pin.tries": b"\x00"})
    # Blocked: the right PIN no longer opens it, and nothing else changes.
    card.refuses(cmd.verify(PIN), 0x6983)
    card.refuses(cmd.initialize_for_purchase(100, TERM), 0x6982)
    card.power_cycle()
    card.ok(cmd.select(layout.ET_AID))
    card.refuses(cmd.verify(PIN), 0x6983)
    # RELOAD PIN with a wrong MAC changes nothing; with the HSM's MAC it resets the tries.
    mac = hsm.reload_pin_mac(card.asn8, pin=encode_pin(PIN))
    card.refuses(cmd.reload_pin(PIN, flip(mac)), 0x9302)
    card.ok(cmd.reload_pin(PIN, mac))
    assert card.cells()["pin.tries"] == b"\x03"
    card.ok(cmd.verify(PIN))
    card.ok(cmd.initialize_for_purchase(100, TERM))


def test_right_pin_restores_the_tries(card_device: Callable[..., Any]) -> None:
    card = card_device("normal", pin=None)
    card.refuses(cmd.verify("111111"), 0x63C2, {"pin.tries": b"\x02"})
    card.ok(cmd.verify(PIN))
    assert card.cells()["pin.tries"] == b"\x03"
    card.refuses(cmd.verify("111111"), 0x63C2, {"pin.tries": b"\x02"})


def test_pin_blocked_profile_reloaded_with_a_new_pin(
    card_device: Callable[..., Any], hsm: MockHsm
) -> None:
    card = card_device("pin-blocked", pin=None)
    card.refuses(cmd.verify(PIN), 0x6983)
    card.refuses(cmd.change_pin(PIN, "123456"), 0x6983)
    card.ok(cmd.reload_pin("123456", hsm.reload_pin_mac(card.asn8, pin=encode_pin("123456"))))
    card.refuses(cmd.verify(PIN), 0x63C2, {"pin.tries": b"\x02"})
    card.ok(cmd.verify("123456"))


def test_change_pin_with_a_wrong_old_pin(card_device: Callable[..., Any]) -> None:
    card = card_device("new", pin=None)
    card.refuses(cmd.change_pin("111111", "123456"), 0x63C2, {"pin.tries": b"\x02"})
    card.ok(cmd.verify(PIN))


# 9408 and the grey-lock statuses -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["INITIALIZE FOR PURCHASE", "INITIALIZE FOR LOAD", "INITIALIZE FOR GREY LOCK"]
)
def test_initialize_while_grey_9408(card_device: Callable[..., Any], name: str) -> None:
    card_device("grey-locked").refuses(VALUE_COMMANDS[name], 0x9408)


def test_grey_lock_while_tac_unread_6985_until_cleared(card_device: Callable[..., Any]) -> None:
    card = card_device("tac-unread")
    card.refuses(cmd.initialize_for_grey_lock(TERM), 0x6985)
    card.refuses(cmd.initialize_for_grey_lock(TERM), 0x6985)
    card.ok(cmd.clear_tac_unread())
    assert card.ok(cmd.get_lock_proof())[0] == LockStatus.FREE
    answer = card.ok(cmd.initialize_for_grey_lock(TERM))
    assert answer[:6] == card.cells()["et.balance"] + card.cells()["et.offline_ctc"]


# 6985: the value command needs its INITIALIZE just before it -------------------------------------
@pytest.mark.parametrize(
    "name",
    ["CREDIT FOR LOAD", "DEBIT FOR PURCHASE", "GREY LOCK", "ONLINE UNLOCK", "DEBIT FOR UNLOCK"],
)
def test_value_command_without_initialize_6985(card_device: Callable[..., Any], name: str) -> None:
    card_device("normal").refuses(VALUE_COMMANDS[name], 0x6985)


@pytest.mark.parametrize("name", ["CREDIT FOR LOAD", "DEBIT FOR PURCHASE", "GREY LOCK"])
def test_value_command_after_the_wrong_initialize_6985(
    card_device: Callable[..., Any], name: str
) -> None:
    card = card_device("normal")
    opener = {
        "CREDIT FOR LOAD": cmd.initialize_for_purchase(100, TERM),
        "DEBIT FOR PURCHASE": cmd.initialize_for_load(100, TERM),
        "GREY LOCK": cmd.initialize_for_purchase(100, TERM),
    }[name]
    card.ok(opener)
    card.refuses(VALUE_COMMANDS[name], 0x6985)


@pytest.mark.parametrize(
    ("between", "expected"),
    [
        pytest.param(None, 0x9000, id="nothing"),
        pytest.param(cmd.get_balance(), 0x9000, id="GET BALANCE"),
        pytest.param(cmd.get_lock_proof(), 0x9000, id="GET LOCK PROOF"),
        pytest.param(cmd.read_binary(layout.SFI_EF15), 0x9000, id="READ BINARY"),
        pytest.param(cmd.verify(PIN), 0x9000, id="VERIFY"),
        pytest.param(cmd.initialize_for_load(1, TERM), 0x6985, id="INITIALIZE FOR LOAD"),
        pytest.param(cmd.initialize_for_grey_lock(TERM), 0x6985, id="INITIALIZE FOR GREY LOCK"),
        pytest.param(VALUE_COMMANDS["DEBIT FOR UNLOCK"], 0x6985, id="refused DEBIT FOR UNLOCK"),
        pytest.param(cmd.select(layout.ET_AID), 0x6982, id="SELECT (new session)"),
    ],
)
def test_debit_only_right_after_its_initialize(
    card_device: Callable[..., Any],
    psam_device: Callable[..., Any],
    between: CommandApdu | None,
    expected: int,
) -> None:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_purchase(500, TERM))
    ctc, rand = int.from_bytes(init[4:6], "big"), init[11:15]
    public = card.public
    sam = psam.ok(cmd.init_sam_for_purchase(rand, ctc, 500, DT, public.asn8, public.issuer_id))
    if between is not None:
        card.exchange(between)
    debit = cmd.debit_for_purchase(int.from_bytes(sam[:4], "big"), DT, sam[4:8])
    if expected == 0x9000:
        card.ok(debit)
        assert card.int("et.balance") == 100000 - 500
    else:
        card.refuses(debit, expected)


# 9302: a bad MAC changes nothing and cancels the transaction -------------------------------------
@dataclass
class BadMacCase:
    card: Any
    bad: CommandApdu
    good: CommandApdu


def _bad_debit(card_device: Any, psam_device: Any, hsm: MockHsm) -> BadMacCase:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_purchase(500, TERM))
    public = card.public
    sam = psam.ok(
        cmd.init_sam_for_purchase(
            init[11:15], int.from_bytes(init[4:6], "big"), 500, DT, public.asn8, public.issuer_id
        )
    )
    ttc, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8]
    return BadMacCase(
        card, cmd.debit_for_purchase(ttc, DT, flip(mac1)), cmd.debit_for_purchase(ttc, DT, mac1)
    )


def _bad_credit(card_device: Any, psam_device: Any, hsm: MockHsm) -> BadMacCase:
    card = card_device("normal")
    init = card.ok(cmd.initialize_for_load(700, TERM))
    mac2 = hsm.load_mac2(
        card.asn8,
        rand=init[8:12],
        online_ctc=int.from_bytes(init[4:6], "big"),
        amount=700,
        tx_type=TxType.ED_LOAD,
        term=TERM,
        dt=DT,
    )
    return BadMacCase(card, cmd.credit_for_load(DT, flip(mac2)), cmd.credit_for_load(DT, mac2))


def _bad_grey_lock(card_device: Any, psam_device: Any, hsm: MockHsm) -> BadMacCase:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_grey_lock(TERM))
    public = card.public
    sam = psam.ok(
        cmd.init_sam_for_grey_lock(
            init[11:15],
            int.from_bytes(init[4:6], "big"),
            int.from_bytes(init[:4], "big"),
            DT,
            public.asn8,
            public.issuer_id,
        )
    )
    ttc, psam_rand, mac1 = int.from_bytes(sam[:4], "big"), sam[4:8], sam[8:12]
    return BadMacCase(
        card,
        cmd.grey_lock(ttc, psam_rand, DT, flip(mac1)),
        cmd.grey_lock(ttc, psam_rand, DT, mac1),
    )


def _bad_online_unlock(card_device: Any, psam_device: Any, hsm: MockHsm) -> BadMacCase:
    card = card_device("grey-locked")
    init = card.ok(cmd.initialize_for_online_unlock(TERM))
    mac2 = hsm.online_unlock_mac2(
        card.asn8,
        rand=init[10:14],
        online_ctc=int.from_bytes(init[6:8], "big"),
        amount=300,
        term=TERM,
        dt=DT,
    )
    return BadMacCase(
        card, cmd.online_unlock(300, DT, flip(mac2)), cmd.online_unlock(300, DT, mac2)
    )


BAD_MAC_CASES = {
    "DEBIT FOR PURCHASE": _bad_debit,
    "CREDIT FOR LOAD": _bad_credit,
    "GREY LOCK": _bad_grey_lock,
    "ONLINE UNLOCK": _bad_online_unlock,
}


@pytest.mark.parametrize("name", list(BAD_MAC_CASES))
def test_bad_mac_9302_then_the_transaction_is_gone_6985(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], hsm: MockHsm, name: str
) -> None:
    case = BAD_MAC_CASES[name](card_device, psam_device, hsm)
    case.card.refuses(case.bad, 0x9302)
    case.card.refuses(case.good, 0x6985)


@pytest.mark.parametrize("name", list(BAD_MAC_CASES))
def test_good_mac_control(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], hsm: MockHsm, name: str
) -> None:
    """Without the bad MAC first, the same good command goes through (so the 6985 above is due
    to the cancelled transaction, not to a wrong good command)."""
    case = BAD_MAC_CASES[name](card_device, psam_device, hsm)
    case.card.ok(case.good)


# Grey-locked card: DEBIT FOR UNLOCK with the escape bill -----------------------------------------
@pytest.fixture
def escape(issued: Callable[[str], IssuedCard]) -> Any:
    bill = issued("grey-locked").escape_bill
    assert bill is not None
    return bill


def _unlock(bill: Any, ctc: int, amount: int | None = None, gmac: bytes | None = None) -> Any:
    return cmd.debit_for_unlock(
        bill.amount if amount is None else amount,
        ctc,
        bill.term,
        bill.psam_ttc,
        DT,
        bill.gmac if gmac is None else gmac,
    )


def test_debit_for_unlock_bad_gmac_9302_keeps_the_card_grey(
    card_device: Callable[..., Any], escape: Any
) -> None:
    card = card_device("grey-locked")
    card.refuses(_unlock(escape, escape.ctc + 1, gmac=flip(escape.gmac)), 0x9302)
    # The lock lives in the card's memory, not in the session: the right GMAC still works.
    card.ok(_unlock(escape, escape.ctc + 1))
    assert card.int("et.balance") == 100000 - escape.amount


@pytest.mark.parametrize("offset", [0, 2, -1])
def test_debit_for_unlock_with_the_wrong_ctc_6985(
    card_device: Callable[..., Any], escape: Any, offset: int
) -> None:
    card = card_device("grey-locked")
    card.refuses(_unlock(escape, (escape.ctc + offset) % 0x10000), 0x6985)
    card.ok(_unlock(escape, escape.ctc + 1))


def _grey_locked_sesgk(hsm: MockHsm, card: Any, bill: Any) -> bytes:
    """SESGK of the grey-locked profile, from its history's inputs (not from the card)."""
    setup = load_image("grey-locked").grey_lock
    assert setup is not None
    public = card.public
    dpk = hsm.personalise_card(public.asn8, public.issuer_id).dpk
    lock = LockRecord.from_bytes(card.ok(cmd.get_lock_proof()))
    lock_ttc = bill.psam_ttc - 1  # the unlock TTC follows the lock TTC in the normal flow
    return crypto.session_key_grey_lock(
        dpk, setup.card_rand, u16(lock.ctc), u32(lock_ttc), setup.psam_rand
    )


def _gmac(sesgk: bytes, amount: int, asn8: bytes, lock_ctc: int) -> bytes:
    return crypto.mac_session(
        sesgk, u32(amount) + bytes((TxType.DEBIT_FOR_UNLOCK,)) + asn8 + u16(lock_ctc)
    )


@pytest.mark.parametrize(("extra", "expected"), [(1, 0x9401), (1000, 0x9401), (0, 0x9000)])
def test_debit_for_unlock_above_the_locked_balance_9401(
    card_device: Callable[..., Any], escape: Any, hsm: MockHsm, extra: int, expected: int
) -> None:
    card = card_device("grey-locked")
    sesgk = _grey_locked_sesgk(hsm, card, escape)
    assert _gmac(sesgk, escape.amount, card.asn8, escape.ctc) == escape.gmac  # inputs are right
    locked = LockRecord.from_bytes(card.ok(cmd.get_lock_proof())).balance
    amount = locked + extra
    apdu = _unlock(escape, escape.ctc + 1, amount, _gmac(sesgk, amount, card.asn8, escape.ctc))
    if expected == 0x9000:
        card.ok(apdu)
        assert card.int("et.balance") == 0
    else:
        card.refuses(apdu, expected)


def test_online_unlock_above_the_balance_9401_cancels(
    card_device: Callable[..., Any], hsm: MockHsm
) -> None:
    card = card_device("grey-locked")
    init = card.ok(cmd.initialize_for_online_unlock(TERM))
    balance, rand, online = int.from_bytes(init[:4], "big"), init[10:14], int.from_bytes(init[6:8])

    def mac2(amount: int) -> bytes:
        return hsm.online_unlock_mac2(
            card.asn8, rand=rand, online_ctc=online, amount=amount, term=TERM, dt=DT
        )

    card.refuses(cmd.online_unlock(balance + 1, DT, mac2(balance + 1)), 0x9401)
    card.refuses(cmd.online_unlock(balance, DT, mac2(balance)), 0x6985)


@pytest.mark.parametrize(("profile", "extra"), [("normal", 1), ("low-balance", 1), ("new", 1)])
def test_purchase_above_the_balance_9401(
    card_device: Callable[..., Any], profile: str, extra: int
) -> None:
    card = card_device(profile)
    balance = card.int("et.balance")
    card.refuses(cmd.initialize_for_purchase(balance + extra, TERM), 0x9401)
    if balance:
        card.ok(cmd.initialize_for_purchase(balance, TERM))


def test_psam_gmac_above_the_locked_balance_9401(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], flows: Any
) -> None:
    card, psam = card_device("low-balance"), psam_device()
    lock = flows.grey_lock(card, psam, DT)
    psam.refuses(cmd.gmac_for_unlock(card.asn8, lock.ctc, lock.balance + 1), 0x9401)
    psam.ok(cmd.gmac_for_unlock(card.asn8, lock.ctc, lock.balance))


# 9403: unknown key index -------------------------------------------------------------------------
INITIALIZE_BUILDERS = {
    "INITIALIZE FOR LOAD": ("normal", lambda kidx: cmd.initialize_for_load(100, TERM, kidx)),
    "INITIALIZE FOR PURCHASE": (
        "normal",
        lambda kidx: cmd.initialize_for_purchase(100, TERM, kidx),
    ),
    "INITIALIZE FOR GREY LOCK": ("normal", lambda kidx: cmd.initialize_for_grey_lock(TERM, kidx)),
    "INITIALIZE FOR ONLINE UNLOCK": (
        "grey-locked",
        lambda kidx: cmd.initialize_for_online_unlock(TERM, kidx),
    ),
}


@pytest.mark.parametrize("kidx", [0x00, 0x02, 0xFF])
@pytest.mark.parametrize("name", list(INITIALIZE_BUILDERS))
def test_unknown_key_index_9403(card_device: Callable[..., Any], name: str, kidx: int) -> None:
    profile, build = INITIALIZE_BUILDERS[name]
    card = card_device(profile)
    card.refuses(build(kidx), 0x9403)
    card.ok(build(layout.KEY_INDEX))


@pytest.mark.parametrize("version", [0x00, 0x02])
def test_psam_unknown_key_version_9403(psam_device: Callable[..., Any], version: int) -> None:
    good = cmd.init_sam_for_purchase(ZERO4, 0, 100, DT, bytes(8), bytes(8))
    data = bytearray(good.data)
    data[18] = version
    psam = psam_device()
    psam.refuses(replace(good, data=bytes(data)), 0x9403)
    psam.ok(good)


# 9402: counters at their maximum -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("profile", "cell", "value", "name", "expected"),
    [
        ("normal", "et.offline_ctc", 0xFFFF, "INITIALIZE FOR PURCHASE", 0x9402),
        ("normal", "et.offline_ctc", 0xFFFE, "INITIALIZE FOR PURCHASE", 0x9000),
        ("normal", "et.offline_ctc", 0xFFFF, "INITIALIZE FOR GREY LOCK", 0x9402),
        ("normal", "et.offline_ctc", 0xFFFE, "INITIALIZE FOR GREY LOCK", 0x9402),
        ("normal", "et.offline_ctc", 0xFFFD, "INITIALIZE FOR GREY LOCK", 0x9000),
        ("normal", "et.online_ctc", 0xFFFF, "INITIALIZE FOR LOAD", 0x9402),
        ("normal", "et.online_ctc", 0xFFFE, "INITIALIZE FOR LOAD", 0x9000),
        ("grey-locked", "et.online_ctc", 0xFFFF, "INITIALIZE FOR ONLINE UNLOCK", 0x9402),
        ("grey-locked", "et.online_ctc", 0xFFFE, "INITIALIZE FOR ONLINE UNLOCK", 0x9000),
    ],
)
def test_counter_at_maximum_9402(
    card_device: Callable[..., Any],
    issued: Callable[[str], IssuedCard],
    profile: str,
    cell: str,
    value: int,
    name: str,
    expected: int,
) -> None:
    cells = {**issued(profile).cells, cell: u16(value)}
    card = card_device(profile, cells=cells)
    if expected == 0x9000:
        card.ok(VALUE_COMMANDS[name])
    else:
        card.refuses(VALUE_COMMANDS[name], expected)


def test_debit_for_unlock_with_the_counter_at_maximum_9402(
    card_device: Callable[..., Any], issued: Callable[[str], IssuedCard], escape: Any
) -> None:
    cells = {**issued("grey-locked").cells, "et.offline_ctc": b"\xff\xff"}
    card = card_device("grey-locked", cells=cells)
    card.refuses(_unlock(escape, 0xFFFF), 0x9402)


@pytest.mark.parametrize("ins", [0x70, 0x40])
def test_psam_ttc_at_maximum_9402(
    psam_device: Callable[..., Any], issued: Callable[[str], IssuedCard], ins: int
) -> None:
    cells = {**issued("psam-dispenser").cells, "ttc": b"\xff\xff\xff\xff"}
    psam = psam_device(cells=cells)
    if ins == 0x70:
        apdu = cmd.init_sam_for_purchase(ZERO4, 0, 100, DT, bytes(8), bytes(8))
    else:
        apdu = cmd.init_sam_for_grey_lock(ZERO4, 0, 100, DT, bytes(8), bytes(8))
    psam.refuses(apdu, 0x9402)


# 6A81 / 9303: blocked application ----------------------------------------------------------------
BLOCKED_FOLLOW_UPS = {
    "VERIFY": cmd.verify(PIN),
    "GET BALANCE": cmd.get_balance(),
    "READ BINARY": cmd.read_binary(layout.SFI_EF15),
    "INITIALIZE FOR PURCHASE": cmd.initialize_for_purchase(100, TERM),
    "GET LOCK PROOF": cmd.get_lock_proof(),
}


@pytest.mark.parametrize("name", list(BLOCKED_FOLLOW_UPS))
def test_temporarily_blocked_application_6a81(card_device: Callable[..., Any], name: str) -> None:
    card = card_device("blacklisted", select=False)
    card.refuses(cmd.select(layout.ET_AID), 0x6A81)
    card.refuses(BLOCKED_FOLLOW_UPS[name], 0x6A81)
    card.power_cycle()
    card.refuses(cmd.select(layout.ET_AID), 0x6A81)


@pytest.mark.parametrize("name", list(BLOCKED_FOLLOW_UPS))
def test_permanent_block_9303(card_device: Callable[..., Any], flows: Any, name: str) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    mac = flows.sm_mac(card, cmd.application_block_header(permanent=True), challenge)
    card.ok(cmd.application_block(mac, permanent=True))
    assert card.cells()["et.block"] == bytes((layout.AppBlock.PERMANENT,))
    card.refuses(BLOCKED_FOLLOW_UPS[name], 0x9303)
    card.refuses(cmd.select(layout.ET_AID), 0x9303)
    # APPLICATION UNBLOCK with a valid MAC cannot lift a permanent block.
    challenge = card.ok(cmd.get_challenge())
    unblock = flows.sm_mac(card, cmd.application_unblock_header(), challenge)
    card.refuses(cmd.application_unblock(unblock), 0x9303)
    card.power_cycle()
    card.refuses(cmd.select(layout.ET_AID), 0x9303)


# 6A82 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param(cmd.select(bytes.fromhex("A000000003") + b"UNKNOWN"), id="SELECT unknown AID"),
        pytest.param(cmd.select(layout.PSAM_AID), id="SELECT the PSAM AID"),
        pytest.param(cmd.read_binary(0x17), id="READ BINARY SFI 17"),
        pytest.param(cmd.read_binary(layout.SFI_EF18), id="READ BINARY the log"),
        pytest.param(cmd.read_record(layout.SFI_EF15, 1), id="READ RECORD EF15"),
        pytest.param(cmd.read_record(layout.SFI_PSE_DIR, 1), id="READ RECORD PSE dir in ET"),
    ],
)
def test_card_file_not_found_6a82(card_device: Callable[..., Any], apdu: CommandApdu) -> None:
    card_device("normal").refuses(apdu, 0x6A82)


def test_read_binary_in_loyalty_6a82(card_device: Callable[..., Any]) -> None:
    card = card_device("normal", select=False)
    card.ok(cmd.select(layout.LOYALTY_AID))
    card.refuses(cmd.read_binary(layout.SFI_EF15), 0x6A82)
    card.refuses(cmd.read_record(layout.SFI_EF18, 1), 0x6A82)


def test_update_binary_of_an_unknown_file_6a82(card_device: Callable[..., Any], flows: Any) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    header = cmd.update_binary_mac_header(0x17, 0, b"\x01")
    card.refuses(
        cmd.update_binary_mac(0x17, 0, b"\x01", flows.sm_mac(card, header, challenge)), 0x6A82
    )


@pytest.mark.parametrize(
    ("in_adf", "apdu"),
    [
        pytest.param(False, cmd.select(bytes.fromhex("A000000003") + b"SINOPEC2"), id="SELECT AID"),
        pytest.param(False, cmd.read_binary(layout.SFI_PSAM_EF17), id="EF17 in the MF"),
        pytest.param(True, cmd.read_binary(layout.SFI_PSAM_EF15), id="EF15 in the ADF"),
        pytest.param(True, cmd.read_binary(0x18), id="SFI 18"),
    ],
)
def test_psam_file_not_found_6a82(
    psam_device: Callable[..., Any], in_adf: bool, apdu: CommandApdu
) -> None:
    psam_device(select=in_adf).refuses(apdu, 0x6A82)


# 6A83 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("profile", "app", "sfi", "present", "number"),
    [
        pytest.param("new", layout.ET_AID, layout.SFI_EF18, 0, 1, id="empty log, record 1"),
        pytest.param("new", layout.ET_AID, layout.SFI_EF18, 0, 10, id="empty log, record 10"),
        pytest.param("tac-unread", layout.ET_AID, layout.SFI_EF18, 1, 2, id="log of 1, record 2"),
        pytest.param("normal", layout.PSE_NAME, layout.SFI_PSE_DIR, 2, 3, id="PSE dir, record 3"),
    ],
)
def test_record_not_found_6a83(
    card_device: Callable[..., Any], profile: str, app: bytes, sfi: int, present: int, number: int
) -> None:
    card = card_device(profile, select=False)
    card.ok(cmd.select(app))
    for existing in range(1, present + 1):
        card.ok(cmd.read_record(sfi, existing))
    card.refuses(cmd.read_record(sfi, number), 0x6A83)


# 6A86 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param(with_p(cmd.select(layout.ET_AID), p1=0x00), id="SELECT P1 00"),
        pytest.param(with_p(cmd.select(layout.ET_AID), p2=0x02), id="SELECT P2 02"),
        pytest.param(with_p(cmd.verify(PIN), p2=0x01), id="VERIFY P2 01"),
        pytest.param(with_p(cmd.get_challenge(), p1=0x01), id="GET CHALLENGE P1 01"),
        pytest.param(with_p(cmd.get_balance(), p2=0x03), id="GET BALANCE P2 03"),
        pytest.param(cmd.get_balance(layout.LOYALTY_PURSE), id="GET BALANCE loyalty in ET"),
        pytest.param(CommandApdu(0x00, 0xB0, 0x15, 0x00, ne=256), id="READ BINARY not by SFI"),
        pytest.param(CommandApdu(0x00, 0xB2, 0x00, 0xC4, ne=256), id="READ RECORD 0"),
        pytest.param(CommandApdu(0x00, 0xB2, 0x01, 0xC0, ne=256), id="READ RECORD P2 C0"),
        pytest.param(with_p(cmd.initialize_for_purchase(1, TERM), p1=0x02), id="80 50 P1 02"),
        pytest.param(with_p(cmd.initialize_for_purchase(1, TERM), p2=0x02), id="80 50 P2 02"),
        pytest.param(with_p(cmd.credit_for_load(DT, ZERO4), p1=0x01), id="80 52 P1 01"),
        pytest.param(with_p(cmd.debit_for_purchase(1, DT, ZERO4), p1=0x00), id="80 54 P1 00"),
        pytest.param(with_p(cmd.initialize_for_grey_lock(TERM), p1=0x0A), id="E0 7A P1 0A"),
        pytest.param(with_p(cmd.grey_lock(1, ZERO4, DT, ZERO4), p1=0x09), id="E0 7C P1 09"),
        pytest.param(
            with_p(cmd.debit_for_unlock(1, 1, TERM, 1, DT, ZERO4), p2=0x00), id="E0 7E 08 00"
        ),
        pytest.param(with_p(cmd.online_unlock(1, DT, ZERO4), p2=0x01), id="E0 7E 09 01"),
        pytest.param(with_p(cmd.get_lock_proof(), p1=0x02), id="E0 CA P1 02"),
        pytest.param(with_p(cmd.get_transaction_prove(5, 0), p1=0x01), id="80 5A P1 01"),
        pytest.param(with_p(cmd.change_pin(PIN, "123456"), p1=0x02), id="80 5E P1 02"),
        pytest.param(with_p(cmd.application_block(ZERO4), p2=0x02), id="84 1E P2 02"),
        pytest.param(with_p(cmd.application_unblock(ZERO4), p1=0x01), id="84 18 P1 01"),
        pytest.param(CommandApdu(0x04, 0xD6, 0x15, 0x1D, b"\x01" + ZERO4), id="04 D6 not by SFI"),
    ],
)
def test_card_wrong_p1p2_6a86(card_device: Callable[..., Any], apdu: CommandApdu) -> None:
    card_device("normal").refuses(apdu, 0x6A86)


@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param(
            with_p(cmd.init_sam_for_purchase(ZERO4, 0, 1, DT, bytes(8), bytes(8)), p1=0x01),
            id="80 70 P1 01",
        ),
        pytest.param(with_p(cmd.credit_sam_for_purchase(ZERO4), p2=0x01), id="80 72 P2 01"),
        pytest.param(
            with_p(cmd.init_sam_for_grey_lock(ZERO4, 0, 1, DT, bytes(8), bytes(8)), p2=0x01),
            id="E0 40 P2 01",
        ),
        pytest.param(with_p(cmd.verify_grey_lock_mac2(ZERO4), p1=0x01), id="E0 42 P1 01"),
        pytest.param(with_p(cmd.gmac_for_unlock(bytes(8), 0, 1), p2=0x01), id="E0 44 P2 01"),
        pytest.param(with_p(cmd.get_gmac_again(16), p1=0x01), id="E0 46 P1 01"),
        pytest.param(with_p(cmd.init_for_descrypt(), p2=0x02), id="80 1A P2 02"),
        pytest.param(with_p(cmd.des_crypt_mac(bytes(8)), p1=0x04), id="80 FA P1 04"),
        pytest.param(with_p(cmd.select(layout.PSAM_AID), p1=0x02), id="SELECT P1 02"),
        pytest.param(CommandApdu(0x00, 0xB0, 0x16, 0x00, ne=256), id="READ BINARY not by SFI"),
    ],
)
def test_psam_wrong_p1p2_6a86(psam_device: Callable[..., Any], apdu: CommandApdu) -> None:
    psam_device().refuses(apdu, 0x6A86)


# 6B00 / 6Cxx -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sfi", "offset"),
    [
        (layout.SFI_EF15, 30),
        (layout.SFI_EF16, 41),
        (layout.SFI_EF1B, 32),
        (layout.SFI_EF1C, 66),
        (layout.SFI_EF1C, 0xFF),
    ],
)
def test_read_binary_offset_past_the_end_6b00(
    card_device: Callable[..., Any], sfi: int, offset: int
) -> None:
    card_device("normal").refuses(cmd.read_binary(sfi, offset), 0x6B00)


def test_update_binary_offset_past_the_end_6b00(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    header = cmd.update_binary_mac_header(layout.SFI_EF15, 30, b"\x01")
    mac = flows.sm_mac(card, header, challenge)
    card.refuses(cmd.update_binary_mac(layout.SFI_EF15, 30, b"\x01", mac), 0x6B00)


@pytest.mark.parametrize(("sfi", "offset"), [(layout.SFI_PSAM_EF16, 6), (layout.SFI_PSAM_EF15, 14)])
def test_psam_read_binary_offset_past_the_end_6b00(
    psam_device: Callable[..., Any], sfi: int, offset: int
) -> None:
    psam_device(select=False).refuses(cmd.read_binary(sfi, offset), 0x6B00)


@pytest.mark.parametrize(
    ("sfi", "offset", "le", "sw"),
    [
        (layout.SFI_EF15, 0, 0x1F, 0x6C1E),
        (layout.SFI_EF15, 29, 2, 0x6C01),
        (layout.SFI_EF16, 40, 5, 0x6C01),
        (layout.SFI_EF1B, 16, 0x20, 0x6C10),
        (layout.SFI_EF1C, 0, 0x50, 0x6C42),
        (layout.SFI_EF1C, 0, 0xFF, 0x6C42),
    ],
)
def test_read_binary_le_past_the_end_6cxx(
    card_device: Callable[..., Any], sfi: int, offset: int, le: int, sw: int
) -> None:
    card = card_device("normal")
    card.refuses(cmd.read_binary(sfi, offset, le), sw)
    # Resent with Le = xx, it answers exactly the bytes that are there.
    assert len(card.ok(cmd.read_binary(sfi, offset, sw & 0xFF))) == sw & 0xFF


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        pytest.param(CommandApdu(0x80, 0x5C, 0, 1, ne=2), 0x6C04, id="GET BALANCE"),
        pytest.param(CommandApdu(0xE0, 0xCA, 0, 0, ne=0x10), 0x6C1E, id="GET LOCK PROOF"),
    ],
)
def test_fixed_answer_le_too_small_6cxx(
    card_device: Callable[..., Any], apdu: CommandApdu, sw: int
) -> None:
    card_device("normal").refuses(apdu, sw)


def test_psam_read_binary_le_past_the_end_6cxx(psam_device: Callable[..., Any]) -> None:
    psam = psam_device(select=False)
    psam.refuses(cmd.read_binary(layout.SFI_PSAM_EF16, 0, 7), 0x6C06)
    assert psam.ok(cmd.read_binary(layout.SFI_PSAM_EF16, 0, 6)) == TERM


# 6D00 / 6E00 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("apdu", ["0088000008", "80F0000000", "E0C0000000", "0000000000"])
def test_card_unknown_ins_6d00(card_device: Callable[..., Any], apdu: str) -> None:
    card_device("normal").refuses(apdu, 0x6D00)


@pytest.mark.parametrize(
    "apdu",
    [
        pytest.param("80A404000E315041592E5359532E444446303100", id="SELECT with CLA 80"),
        pytest.param("005C000104", id="GET BALANCE with CLA 00"),
        pytest.param("80B0950000", id="READ BINARY with CLA 80"),
        pytest.param("00CA00001E", id="GET LOCK PROOF with CLA 00"),
        pytest.param("807A080107" + "01" + "440101000001" + "0F", id="E0 7A with CLA 80"),
        pytest.param("00D6951D050100000000", id="UPDATE BINARY with CLA 00"),
        pytest.param("84D6951D050100000000", id="UPDATE BINARY with CLA 84"),
    ],
)
def test_card_known_ins_wrong_cla_6e00(card_device: Callable[..., Any], apdu: str) -> None:
    card_device("normal").refuses(apdu, 0x6E00)


@pytest.mark.parametrize("apdu", ["8050000000", "00B2010C00", "0020000000", "80C0000000"])
def test_psam_unknown_ins_6d00(psam_device: Callable[..., Any], apdu: str) -> None:
    psam_device().refuses(apdu, 0x6D00)


@pytest.mark.parametrize(
    "apdu", ["0070000000", "80A404000DA00000000353494E4F50454331", "00FA010000", "8044000000"]
)
def test_psam_known_ins_wrong_cla_6e00(psam_device: Callable[..., Any], apdu: str) -> None:
    psam_device().refuses(apdu, 0x6E00)


# 6985 / 6988: secure messaging -------------------------------------------------------------------
def _flag_update(card: Any, flows: Any, challenge: bytes, value: int = 1) -> CommandApdu:
    data = bytes((value,))
    header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data)
    mac = flows.sm_mac(card, header, challenge)
    return cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data, mac)


def test_update_binary_without_a_challenge_6985(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("normal")
    card.refuses(_flag_update(card, flows, bytes(4)), 0x6985)


def test_update_binary_replayed_6985(card_device: Callable[..., Any], flows: Any) -> None:
    card = card_device("normal")
    update = _flag_update(card, flows, card.ok(cmd.get_challenge()))
    card.ok(update)
    assert card.cells()["ef15"][layout.STORE_FLAG_OFFSET] == 1
    card.refuses(update, 0x6985)


def test_update_binary_challenge_lost_with_the_session_6985(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("normal")
    update = _flag_update(card, flows, card.ok(cmd.get_challenge()))
    card.ok(cmd.select(layout.ET_AID))
    card.refuses(update, 0x6985)


@pytest.mark.parametrize("how", ["MAC bit flipped", "other data", "stale challenge", "other IV"])
def test_update_binary_with_a_wrong_mac_6988(
    card_device: Callable[..., Any], flows: Any, how: str
) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    update = _flag_update(card, flows, challenge)
    if how == "MAC bit flipped":
        update = replace(update, data=update.data[:-4] + flip(update.data[-4:]))
    elif how == "other data":
        update = replace(update, data=b"\x02" + update.data[1:])
    elif how == "stale challenge":
        card.ok(cmd.get_challenge())
    else:  # the IV is challenge ‖ 00000000, nothing else
        update = _flag_update(card, flows, challenge + b"\x00\x00\x00\x01")
    card.refuses(update, 0x6988)
    # The challenge served that one command: the right MAC for it is now too late.
    card.refuses(_flag_update(card, flows, challenge), 0x6985)


@pytest.mark.parametrize("permanent", [False, True])
def test_application_block_with_a_wrong_mac_6988(
    card_device: Callable[..., Any], flows: Any, permanent: bool
) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    mac = flows.sm_mac(card, cmd.application_block_header(permanent), challenge)
    card.refuses(cmd.application_block(flip(mac), permanent), 0x6988)
    card.ok(cmd.get_balance())


def test_application_unblock_with_a_wrong_mac_6988(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("blacklisted", select=False)
    card.refuses(cmd.select(layout.ET_AID), 0x6A81)
    challenge = card.ok(cmd.get_challenge())
    mac = flows.sm_mac(card, cmd.application_unblock_header(), challenge)
    card.refuses(cmd.application_unblock(flip(mac)), 0x6988)
    card.refuses(cmd.select(layout.ET_AID), 0x6A81)


# 9406 --------------------------------------------------------------------------------------------
def test_transaction_prove_only_for_the_latest_9406(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], flows: Any
) -> None:
    card, psam = card_device("normal"), psam_device()
    card.refuses(cmd.get_transaction_prove(TxType.ED_PURCHASE, 0), 0x9406)
    first = flows.purchase(card, psam, 100, DT)
    assert (
        card.ok(cmd.get_transaction_prove(TxType.ED_PURCHASE, first.ctc)) == first.mac2 + first.tac
    )
    card.refuses(cmd.get_transaction_prove(TxType.ED_PURCHASE, first.ctc + 1), 0x9406)
    card.refuses(cmd.get_transaction_prove(TxType.ED_LOAD, first.ctc), 0x9406)
    card.refuses(cmd.get_transaction_prove(TxType.GREY_LOCK, first.ctc), 0x9406)
    second = flows.purchase(card, psam, 200, DT)
    card.refuses(cmd.get_transaction_prove(TxType.ED_PURCHASE, first.ctc), 0x9406)
    assert (
        card.ok(cmd.get_transaction_prove(TxType.ED_PURCHASE, second.ctc))
        == second.mac2 + second.tac
    )


# 6985 on the PSAM --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("in_adf", "apdu"),
    [
        pytest.param(
            False, cmd.init_sam_for_purchase(ZERO4, 0, 1, DT, bytes(8), bytes(8)), id="80 70 in MF"
        ),
        pytest.param(
            False, cmd.init_sam_for_grey_lock(ZERO4, 0, 1, DT, bytes(8), bytes(8)), id="E0 40 in MF"
        ),
        pytest.param(False, cmd.gmac_for_unlock(bytes(8), 0, 1), id="E0 44 in MF"),
        pytest.param(True, cmd.credit_sam_for_purchase(ZERO4), id="80 72 without 80 70"),
        pytest.param(True, cmd.verify_grey_lock_mac2(ZERO4), id="E0 42 without E0 40"),
        pytest.param(True, cmd.des_crypt_mac(bytes(8)), id="80 FA without 80 1A"),
    ],
)
def test_psam_conditions_not_satisfied_6985(
    psam_device: Callable[..., Any], in_adf: bool, apdu: CommandApdu
) -> None:
    psam_device(select=in_adf).refuses(apdu, 0x6985)


def test_psam_purchase_bad_mac2_9302_then_6985(
    card_device: Callable[..., Any], psam_device: Callable[..., Any]
) -> None:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_purchase(300, TERM))
    public = card.public
    sam = psam.ok(
        cmd.init_sam_for_purchase(
            init[11:15], int.from_bytes(init[4:6], "big"), 300, DT, public.asn8, public.issuer_id
        )
    )
    mac2 = card.ok(cmd.debit_for_purchase(int.from_bytes(sam[:4], "big"), DT, sam[4:8]))[4:8]
    psam.refuses(cmd.credit_sam_for_purchase(flip(mac2)), 0x9302)
    psam.refuses(cmd.credit_sam_for_purchase(mac2), 0x6985)


def test_psam_grey_lock_bad_mac2_9302_leaves_the_lock_open(
    card_device: Callable[..., Any], psam_device: Callable[..., Any]
) -> None:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_grey_lock(TERM))
    public = card.public
    sam = psam.ok(
        cmd.init_sam_for_grey_lock(
            init[11:15],
            int.from_bytes(init[4:6], "big"),
            int.from_bytes(init[:4], "big"),
            DT,
            public.asn8,
            public.issuer_id,
        )
    )
    mac2 = card.ok(cmd.grey_lock(int.from_bytes(sam[:4], "big"), sam[4:8], DT, sam[8:12]))[4:8]
    psam.refuses(cmd.verify_grey_lock_mac2(flip(mac2)), 0x9302)
    # The lock stays open: the card's true MAC2 still confirms it, once; then nothing is open.
    psam.ok(cmd.verify_grey_lock_mac2(mac2))
    psam.refuses(cmd.verify_grey_lock_mac2(flip(mac2)), 0x6985)


def test_psam_gmac_before_the_lock_was_verified_6985(
    card_device: Callable[..., Any], psam_device: Callable[..., Any]
) -> None:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_grey_lock(TERM))
    public = card.public
    ctc = int.from_bytes(init[4:6], "big")
    psam.ok(
        cmd.init_sam_for_grey_lock(
            init[11:15], ctc, int.from_bytes(init[:4], "big"), DT, public.asn8, public.issuer_id
        )
    )
    psam.refuses(cmd.gmac_for_unlock(public.asn8, ctc, 100), 0x6985)


# 6A88 and E0 46 on the PSAM ----------------------------------------------------------------------
@pytest.fixture
def locked_pair(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], flows: Any
) -> tuple[Any, Any, Any]:
    card, psam = card_device("normal"), psam_device()
    lock = flows.grey_lock(card, psam, DT)
    return card, psam, lock


@pytest.mark.parametrize("what", ["other card", "lock CTC", "lock CTC + 1"])
def test_psam_gmac_for_an_unknown_lock_6a88(locked_pair: Any, what: str) -> None:
    card, psam, lock = locked_pair
    asn8, ctc = card.asn8, lock.ctc
    if what == "other card":
        asn8 = bytes(8)
    elif what == "lock CTC":
        ctc = lock.ctc + 5
    else:
        ctc = lock.ctc + 1
    psam.refuses(cmd.gmac_for_unlock(asn8, ctc, 100), 0x6A88)
    psam.ok(cmd.gmac_for_unlock(card.asn8, lock.ctc, 100))


def test_psam_gmac_again_for_an_unknown_or_unanswered_lock_6a88(locked_pair: Any) -> None:
    _card, psam, lock = locked_pair
    psam.refuses(cmd.get_gmac_again(lock.ttc + 7), 0x6A88)
    psam.refuses(cmd.get_gmac_again(lock.ttc), 0x6A88)  # E0 44 not asked yet


def test_psam_gmac_again_replays_after_a_power_cycle(locked_pair: Any) -> None:
    card, psam, lock = locked_pair
    answer = psam.ok(cmd.gmac_for_unlock(card.asn8, lock.ctc, 2500))
    ttc_after = psam.int("ttc")
    psam.power_cycle()
    psam.ok(cmd.select(layout.PSAM_AID))
    before = psam.cells()
    assert psam.ok(cmd.get_gmac_again(lock.ttc)) == answer
    # Asked again for the same amount, E0 44 gives the same answer and allocates no TTC.
    assert psam.ok(cmd.gmac_for_unlock(card.asn8, lock.ctc, 2500)) == answer
    assert psam.cells() == before and psam.int("ttc") == ttc_after
    psam.refuses(cmd.gmac_for_unlock(card.asn8, lock.ctc, 2501), 0x6985)
    # The replayed GMAC unlocks the card.
    card.ok(cmd.debit_for_unlock(2500, lock.ctc + 1, TERM, lock.ttc + 1, DT, answer[:4]))
    assert card.int("et.balance") == lock.balance - 2500


# 80 70 with one or two diversification factors ---------------------------------------------------
@pytest.mark.parametrize(
    ("levels", "factors", "expected"),
    [(1, 1, 0x9000), (2, 2, 0x9000), (1, 2, 0x9302), (2, 1, 0x9302)],
)
def test_psam_purchase_mac1_per_key_levels(
    card_device: Callable[..., Any],
    psam_device: Callable[..., Any],
    image_file: Callable[..., Any],
    issue_image: Callable[..., Any],
    levels: int,
    factors: int,
    expected: int,
) -> None:
    path = image_file(
        "normal", f"normal-n{levels}", keys={"issued_by": "DEV", "purchase_key_levels": levels}
    )
    card = card_device(f"n{levels}", cells=issue_image(path).cells)
    psam = psam_device()
    init = card.ok(cmd.initialize_for_purchase(1234, TERM))
    public = card.public
    issuer8 = public.issuer_id if factors == 2 else None
    sam_init = cmd.init_sam_for_purchase(
        init[11:15], int.from_bytes(init[4:6], "big"), 1234, DT, public.asn8, issuer8
    )
    assert bytes(sam_init)[4] == (0x1C if factors == 1 else 0x24)
    sam = psam.ok(sam_init)
    debit = cmd.debit_for_purchase(int.from_bytes(sam[:4], "big"), DT, sam[4:8])
    if expected == 0x9000:
        mac2 = card.ok(debit)[4:8]
        psam.ok(cmd.credit_sam_for_purchase(mac2))
        assert card.int("et.balance") == 100000 - 1234
    else:
        card.refuses(debit, expected)


# 6F00: an unexpected error inside a handler ------------------------------------------------------
def _boom(_: CommandApdu) -> bytes:
    raise RuntimeError("handler bug")


def test_card_handler_error_answers_6f00(card_device: Callable[..., Any], monkeypatch: Any) -> None:
    card = card_device("normal")
    monkeypatch.setitem(card.applet.handlers, (0x80, 0x5C), _boom)
    card.refuses(cmd.get_balance(), 0x6F00)
    monkeypatch.undo()
    assert card.ok(cmd.get_balance()) == card.cells()["et.balance"]


def test_card_error_while_committing_answers_6f00_and_keeps_the_old_state(
    card_device: Callable[..., Any], psam_device: Callable[..., Any]
) -> None:
    card, psam = card_device("normal"), psam_device()
    init = card.ok(cmd.initialize_for_purchase(300, TERM))
    public = card.public
    sam = psam.ok(
        cmd.init_sam_for_purchase(
            init[11:15], int.from_bytes(init[4:6], "big"), 300, DT, public.asn8, public.issuer_id
        )
    )

    def hook(point: WritePoint) -> None:
        if point.step == "stage" and point.cell == "et.balance":
            raise RuntimeError("EEPROM fault")

    card.applet.nvm.tear_hook = hook
    debit = cmd.debit_for_purchase(int.from_bytes(sam[:4], "big"), DT, sam[4:8])
    card.refuses(debit, 0x6F00)
    card.applet.nvm.tear_hook = None
    card.power_cycle()
    assert card.int("et.balance") == 100000


def test_psam_handler_error_answers_6f00(psam_device: Callable[..., Any], monkeypatch: Any) -> None:
    psam = psam_device()
    monkeypatch.setitem(psam.applet.handlers, (0x80, 0x70), _boom)
    psam.refuses(cmd.init_sam_for_purchase(ZERO4, 0, 1, DT, bytes(8), bytes(8)), 0x6F00)


def test_psam_error_while_committing_answers_6f00(psam_device: Callable[..., Any]) -> None:
    psam = psam_device()

    def hook(point: WritePoint) -> None:
        if point.step == "stage":
            raise RuntimeError("EEPROM fault")

    psam.applet.nvm.tear_hook = hook
    psam.refuses(cmd.init_sam_for_grey_lock(ZERO4, 0, 1, DT, bytes(8), bytes(8)), 0x6F00)
    psam.applet.nvm.tear_hook = None
    psam.power_cycle()
    assert psam.int("ttc") == 0x10
