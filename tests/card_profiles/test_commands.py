"""Positive behaviour of the user card: selection, files against the shipped profiles, the log,
PIN change, transaction proofs, block/unblock, CLEAR TAC-UNREAD and the re-debit of a grey card.

Expected file contents are built here from the profile YAML and spec §1, not by the image code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardcore import commands as cmd
from cardcore import layout
from cardcore.bcd import bcd_dt
from cardcore.layout import LockStatus, TxType
from cardcore.records import (
    NO_LIMIT,
    Cardholder,
    EtGeneralInfo,
    LockRecord,
    PublicAppData,
    Restrictions,
    TxLogEntry,
)
from cardcore.tlv import decode_one
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard

TERM = bytes.fromhex("440101000001")
PROFILES = Path(__file__).parents[2] / "card_profiles" / "profiles"
PIN = "999999"


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def dt(minute: int) -> bytes:
    return bytes.fromhex(f"202611221{minute // 60:01d}{minute % 60:02d}00")


def profile_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    return doc


USER_CARDS = sorted(
    p.stem
    for p in PROFILES.glob("*.yaml")
    if profile_doc(p.stem)["kind"] == "user-card" and p.stem != "blacklisted"
)


# Selection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fci"),
    [
        ("PSE", "6F15840E315041592E5359532E4444463031A503880101"),
        ("ET", "6F14840CA00000000353494E4F504543A5049F080102"),
        ("LOYALTY", "6F14840CA0000000034C4F59414C5459A5049F080102"),
    ],
)
def test_select_answers_the_fci(card_device: Callable[..., Any], name: str, fci: str) -> None:
    aid = {"PSE": layout.PSE_NAME, "ET": layout.ET_AID, "LOYALTY": layout.LOYALTY_AID}[name]
    card = card_device("normal", select=False)
    assert card.ok(cmd.select(aid)).hex().upper() == fci


def test_pse_directory_lists_the_applications(card_device: Callable[..., Any]) -> None:
    card = card_device("normal", select=False)
    fci = decode_one(card.ok(cmd.select(layout.PSE_NAME)))
    sfi = fci.find(0x88)
    assert sfi is not None and sfi.value == bytes((layout.SFI_PSE_DIR,))
    aids = []
    for number in (1, 2):
        record = decode_one(card.ok(cmd.read_record(layout.SFI_PSE_DIR, number)))
        assert record.tag == 0x70
        entry = record.find(0x61)
        assert entry is not None
        aid, label = entry.find(0x4F), entry.find(0x50)
        assert aid is not None and label is not None
        assert label.value and label.value.isascii() and label.value.decode().isprintable()
        aids.append(aid.value)
    assert aids == [layout.ET_AID, layout.LOYALTY_AID]
    assert card.sw(cmd.read_record(layout.SFI_PSE_DIR, 3)) == 0x6A83


def test_loyalty_balance_needs_no_pin(
    card_device: Callable[..., Any],
    image_file: Callable[..., Path],
    issue_image: Callable[[Path], IssuedCard],
) -> None:
    path = image_file("normal", "loyal", loyalty={"balance": 1234})
    card = card_device("loyal", cells=issue_image(path).cells, select=False)
    card.ok(cmd.select(layout.LOYALTY_AID))
    assert bytes(cmd.get_balance(layout.LOYALTY_PURSE)).hex().upper() == "805C000204"
    assert card.ok(cmd.get_balance(layout.LOYALTY_PURSE)) == u32(1234)
    assert card.sw(cmd.get_balance(layout.ET_PURSE)) == 0x6A86
    assert card.sw(cmd.verify(PIN)) == 0x6985  # the loyalty purse has no PIN
    card.ok(cmd.select(layout.ET_AID))
    assert card.ok(cmd.get_balance()) == u32(100000)


# Files against the profile YAML ------------------------------------------------------------------
CARD_TYPES = {"user": 1, "management": 2, "staff": 4, "pump-test": 5, "service": 6}


def bcd_day(day: date) -> bytes:
    return bytes.fromhex(day.strftime("%Y%m%d"))


def expected_ef15(doc: dict[str, Any]) -> bytes:
    app = doc["application"]
    return (
        bytes.fromhex(app.get("issuer_id", "10FFFFFFFFFFFFFF"))
        + b"\x11\x01"
        + bytes.fromhex("0" + app["card_number"])
        + bcd_day(app.get("start", date(2024, 1, 1)))
        + bcd_day(app.get("expiry", date(2034, 12, 31)))
        + b"\x01"
        + (b"\x01" if app.get("store_flag", False) else b"\x00")
    )


def expected_ef16(doc: dict[str, Any]) -> bytes:
    holder = doc.get("holder", {})
    return (
        bytes((CARD_TYPES[holder.get("card_type", "user")], 1 if holder.get("staff") else 0))
        + holder.get("name", "").encode("gbk").ljust(20, b"\x00")
        + holder.get("id_number", "").encode("ascii").ljust(18, b"\x00")
        + bytes((holder.get("id_type", 0),))
    )


def expected_ef1b(doc: dict[str, Any]) -> bytes:
    pin, general = doc.get("pin", {}), doc.get("general", {})
    default = pin.get("default", pin.get("digits", PIN) == PIN)
    return (
        bytes((0x00 if default else 0x01, general.get("staff_no", 0)))
        + bytes.fromhex(general.get("staff_password", "0000"))
        + bytes((0, general.get("discount_card", 0), general.get("sub_type", 1)))
        + b"\xff" * 25
    )


def expected_ef1c(doc: dict[str, Any]) -> bytes:
    limits = doc.get("restrictions", {})

    def num(key: str, size: int) -> bytes:
        value = limits.get(key)
        return b"\xff" * size if value is None else value.to_bytes(size, "big")

    return (
        num("product", 2)
        + b"\xff"
        + b"\xff" * 40
        + num("max_litres_per_fill", 2)
        + num("max_fills_per_day", 1)
        + num("max_amount_per_day", 4)
        + limits.get("plate", "").encode("gbk").ljust(16, b"\x00")
    )


def check_decoded(sfi: int, raw: bytes, doc: dict[str, Any]) -> None:
    """The typed records of cardcore.records read the same values back."""
    if sfi == layout.SFI_EF15:
        public = PublicAppData.from_bytes(raw)
        app = doc["application"]
        assert (
            public.asn[1:].hex() == app["card_number"][1:]
            or public.asn.hex()[1:] == (app["card_number"])
        )
        assert public.store_enabled is app.get("store_flag", False)
        assert public.expiry == app.get("expiry", date(2034, 12, 31))
    elif sfi == layout.SFI_EF16:
        holder = Cardholder.from_bytes(raw)
        assert holder.name == doc.get("holder", {}).get("name", "")
        assert holder.id_number == doc.get("holder", {}).get("id_number", "")
    elif sfi == layout.SFI_EF1B:
        general = EtGeneralInfo.from_bytes(raw)
        assert general.staff_no == doc.get("general", {}).get("staff_no", 0)
        assert general.sub_type == doc.get("general", {}).get("sub_type", 1)
    else:
        limits = Restrictions.from_bytes(raw)
        wanted = doc.get("restrictions", {})
        assert limits.product == wanted.get("product", NO_LIMIT)
        assert limits.max_amount_per_day == wanted.get("max_amount_per_day", NO_LIMIT)
        assert limits.plate == wanted.get("plate", "")


EF_EXPECTED = {
    layout.SFI_EF15: expected_ef15,
    layout.SFI_EF16: expected_ef16,
    layout.SFI_EF1B: expected_ef1b,
    layout.SFI_EF1C: expected_ef1c,
}


@pytest.mark.parametrize("sfi", list(EF_EXPECTED), ids=lambda s: f"EF{s:02X}")
@pytest.mark.parametrize("profile", USER_CARDS)
def test_read_binary_matches_the_profile(
    card_device: Callable[..., Any], profile: str, sfi: int
) -> None:
    doc = profile_doc(profile)
    raw = card_device(profile, pin=None).ok(cmd.read_binary(sfi))
    assert raw == EF_EXPECTED[sfi](doc)
    assert len(raw) == layout.EF_SIZES[sfi]
    check_decoded(sfi, raw, doc)


@pytest.mark.parametrize("profile", USER_CARDS)
def test_balance_matches_the_profile(card_device: Callable[..., Any], profile: str) -> None:
    doc = profile_doc(profile)
    balance = doc.get("purse", {}).get("balance", 0)
    lock = doc.get("history", {}).get("grey_lock")
    if lock and lock.get("unlocked"):
        balance -= lock["delivered"]
    assert card_device(profile, pin=None).ok(cmd.get_balance()) == u32(balance)


def test_read_binary_partial_and_to_the_end(card_device: Callable[..., Any]) -> None:
    card = card_device("normal", pin=None)
    whole = card.ok(cmd.read_binary(layout.SFI_EF16))
    assert card.ok(cmd.read_binary(layout.SFI_EF16, 2, 20)) == whole[2:22]
    assert card.ok(bytes.fromhex("00B0960A00")) == whole[10:]  # Le 00: to the end
    assert card.ok(bytes.fromhex("00B09628")) == whole[40:]  # no Le


# EF18, the cyclic log ----------------------------------------------------------------------------
def test_log_keeps_the_ten_newest_purchases(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], flows: Any
) -> None:
    card, psam = card_device("normal"), psam_device()
    for i in range(11):
        purchase = flows.purchase(card, psam, 100 + i, dt(i))
        assert purchase.ctc == i
    for number in range(1, 11):
        i = 11 - number  # record 1 is the newest purchase, number 10
        raw = card.ok(cmd.read_record(layout.SFI_EF18, number))
        assert raw == u16(i) + bytes(3) + u32(100 + i) + b"\x05" + TERM + dt(i)
        assert TxLogEntry.from_bytes(raw) == TxLogEntry(i, 100 + i, TxType.ED_PURCHASE, TERM, dt(i))
    assert card.sw(cmd.read_record(layout.SFI_EF18, 11)) == 0x6A83
    assert len(card.cells()["ef18"]) == 10 * layout.EF18_RECORD_SIZE
    assert card.int("et.balance") == 100000 - sum(100 + i for i in range(11))


# Value transactions: log records and GET TRANSACTION PROVE ---------------------------------------
@dataclass(frozen=True)
class Done:
    name: str
    tx_type: int
    ctc: int
    mac: bytes
    tac: bytes
    log: TxLogEntry | None  # the newest EF18 record afterwards, None: no new record


def value_chain(card: Any, psam: Any, flows: Any, hsm: MockHsm) -> Iterator[Done]:
    """load → purchase → grey lock → debit for unlock → (clear, lock again) online unlock."""
    asn8 = card.asn8
    load = flows.load(card, 50000, dt(0), TERM)
    assert hsm.verify_load_tac(
        asn8,
        new_balance=50000,
        online_ctc=load.ctc,
        amount=50000,
        tx_type=TxType.ED_LOAD,
        term=TERM,
        dt=dt(0),
        tac=load.tac,
    )
    yield Done(
        "load",
        TxType.ED_LOAD,
        load.ctc,
        load.mac2,
        load.tac,
        TxLogEntry(0, 50000, 0x01, TERM, dt(0)),
    )

    buy = flows.purchase(card, psam, 1500, dt(1))
    assert hsm.verify_purchase_tac(
        asn8, amount=1500, tx_type=0x05, term=TERM, ttc=buy.ttc, dt=dt(1), tac=buy.tac
    )
    yield Done("purchase", 0x05, buy.ctc, buy.mac2, buy.tac, TxLogEntry(0, 1500, 0x05, TERM, dt(1)))

    lock = flows.grey_lock(card, psam, dt(2))
    assert lock.ctc == 1 and lock.balance == 48500
    assert hsm.verify_gtac(asn8, balance=48500, term=TERM, ttc=lock.ttc, dt=dt(2), gtac=lock.gtac)
    yield Done("grey lock", 0x91, lock.ctc, lock.mac2, lock.gtac, None)

    answer = psam.ok(cmd.gmac_for_unlock(asn8, lock.ctc, 700))
    gmac = answer[:4]
    tac = card.ok(cmd.debit_for_unlock(700, lock.ctc + 1, TERM, lock.ttc + 1, dt(3), gmac))
    assert hsm.verify_unlock_tac(asn8, amount=700, term=TERM, ttc=lock.ttc + 1, dt=dt(3), tac=tac)
    assert card.int("et.balance") == 48500 - 700
    yield Done(
        "debit for unlock", 0x93, lock.ctc + 1, gmac, tac, TxLogEntry(2, 700, 0x93, TERM, dt(3))
    )

    card.ok(cmd.clear_tac_unread())
    flows.grey_lock(card, psam, dt(4))
    init = card.ok(cmd.initialize_for_online_unlock(TERM))
    online, rand = int.from_bytes(init[6:8], "big"), init[10:14]
    assert init[:6] == u32(47800) + u16(4)
    assert hsm.verify_online_unlock_mac1(
        asn8,
        rand=rand,
        online_ctc=online,
        balance=47800,
        offline_ctc=4,
        term=TERM,
        mac1=init[14:18],
    )
    mac2 = hsm.online_unlock_mac2(
        asn8, rand=rand, online_ctc=online, amount=300, term=TERM, dt=dt(5)
    )
    mac3 = card.ok(cmd.online_unlock(300, dt(5), mac2))
    assert hsm.verify_online_unlock_mac3(
        asn8,
        rand=rand,
        online_ctc=online,
        balance_after=47500,
        amount=300,
        term=TERM,
        dt=dt(5),
        mac3=mac3,
    )
    yield Done("online unlock", 0x95, online, mac3, bytes(4), TxLogEntry(1, 300, 0x95, TERM, dt(5)))


CHAIN = ["load", "purchase", "grey lock", "debit for unlock", "online unlock"]


@pytest.mark.parametrize("step", CHAIN)
def test_transaction_prove_returns_mac_then_tac(
    card_device: Callable[..., Any],
    psam_device: Callable[..., Any],
    flows: Any,
    hsm: MockHsm,
    step: str,
) -> None:
    card, psam = card_device("new"), psam_device()
    for done in value_chain(card, psam, flows, hsm):
        if done.name == step:
            break
    assert done.name == step
    prove = card.ok(cmd.get_transaction_prove(done.tx_type, done.ctc))
    assert prove == done.mac + done.tac
    # A new session does not lose it: the proof is for tear recovery.
    card.power_cycle()
    card.ok(cmd.select(layout.ET_AID))
    assert card.ok(cmd.get_transaction_prove(done.tx_type, done.ctc)) == prove


def test_every_value_change_appends_one_log_record(
    card_device: Callable[..., Any], psam_device: Callable[..., Any], flows: Any, hsm: MockHsm
) -> None:
    card, psam = card_device("new"), psam_device()
    count = 0
    newest = None
    names = []
    for done in value_chain(card, psam, flows, hsm):
        names.append(done.name)
        if done.log is not None:
            count, newest = count + 1, done.log
        log = card.cells()["ef18"]
        assert len(log) == count * layout.EF18_RECORD_SIZE, done.name
        assert TxLogEntry.from_bytes(card.ok(cmd.read_record(layout.SFI_EF18, 1))) == newest
    assert names == CHAIN
    assert count == 4


# PIN ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("new_pin", ["123456", "12345", "1234567890", "42"])
def test_change_pin_then_verify_with_the_new_pin(
    card_device: Callable[..., Any], new_pin: str
) -> None:
    card = card_device("new", pin=None)
    assert card.ok(cmd.read_binary(layout.SFI_EF1B))[0] == 0x00
    change = cmd.change_pin(PIN, new_pin)
    assert change.data[3] == 0xFF and change.data[:3] == bytes.fromhex("999999")
    card.ok(change)
    assert card.ok(cmd.read_binary(layout.SFI_EF1B))[0] == 0x01
    card.power_cycle()
    card.ok(cmd.select(layout.ET_AID))
    assert card.sw(cmd.verify(PIN)) == 0x63C2
    card.ok(cmd.verify(new_pin))
    assert card.cells()["pin.tries"] == b"\x03"
    card.ok(cmd.initialize_for_purchase(0, TERM))


# Block / unblock, store flag ---------------------------------------------------------------------
def test_application_block_and_unblock_round_trip(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("normal")
    challenge = card.ok(cmd.get_challenge())
    card.ok(cmd.application_block(flows.sm_mac(card, cmd.application_block_header(), challenge)))
    assert card.cells()["et.block"] == bytes((layout.AppBlock.TEMPORARY,))
    assert card.sw(cmd.get_balance()) == 0x6A81
    card.power_cycle()
    assert card.sw(cmd.select(layout.ET_AID)) == 0x6A81
    challenge = card.ok(cmd.get_challenge(8))
    assert len(challenge) == 8
    card.ok(
        cmd.application_unblock(flows.sm_mac(card, cmd.application_unblock_header(), challenge))
    )
    assert card.cells()["et.block"] == bytes((layout.AppBlock.ACTIVE,))
    card.ok(cmd.select(layout.ET_AID))
    card.ok(cmd.verify(PIN))
    assert card.ok(cmd.get_balance()) == u32(100000)


def test_blacklisted_card_unblocked_by_the_issuer(
    card_device: Callable[..., Any], flows: Any
) -> None:
    card = card_device("blacklisted", select=False)
    assert card.sw(cmd.select(layout.ET_AID)) == 0x6A81
    challenge = card.ok(cmd.get_challenge())
    card.ok(
        cmd.application_unblock(flows.sm_mac(card, cmd.application_unblock_header(), challenge))
    )
    card.ok(cmd.select(layout.ET_AID))


@pytest.mark.parametrize(("profile", "flag"), [("normal", 1), ("store-enabled", 0)])
def test_store_flag_switched_by_the_issuer(
    card_device: Callable[..., Any], flows: Any, profile: str, flag: int
) -> None:
    card = card_device(profile, pin=None)
    before = card.ok(cmd.read_binary(layout.SFI_EF15))
    assert before[29] == 1 - flag
    data = bytes((flag,))
    challenge = card.ok(cmd.get_challenge())
    header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data)
    mac = flows.sm_mac(card, header, challenge)
    card.ok(cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data, mac))
    after = card.ok(cmd.read_binary(layout.SFI_EF15))
    assert after == before[:29] + data
    assert PublicAppData.from_bytes(after).store_enabled is (flag == 1)


# Grey lock statuses ------------------------------------------------------------------------------
def test_clear_tac_unread(card_device: Callable[..., Any]) -> None:
    card = card_device("tac-unread")
    record = card.ok(cmd.get_lock_proof())
    lock = LockRecord.from_bytes(record)
    assert (lock.status, lock.tx_type, lock.app_id) == (LockStatus.TAC_UNREAD, 0x93, 0x01)
    assert (lock.balance, lock.ctc, lock.amount) == (80000, 1, 20000)
    card.ok(cmd.clear_tac_unread())
    assert card.ok(cmd.get_lock_proof()) == b"\x00" + record[1:]
    card.ok(cmd.clear_tac_unread())  # nothing left to clear: still status 00
    assert card.ok(cmd.get_lock_proof()) == b"\x00" + record[1:]
    card.ok(cmd.initialize_for_grey_lock(TERM))


def test_never_locked_card_shows_status_00_and_zeros(card_device: Callable[..., Any]) -> None:
    assert card_device("new").ok(cmd.get_lock_proof()) == bytes(30)


def test_redebit_grey_locked_card_with_the_escape_bill(
    card_device: Callable[..., Any], issued: Callable[[str], IssuedCard], hsm: MockHsm
) -> None:
    bill = issued("grey-locked").escape_bill
    assert bill is not None
    card = card_device("grey-locked")
    lock = LockRecord.from_bytes(card.ok(cmd.get_lock_proof()))
    assert (lock.status, lock.tx_type) == (LockStatus.GREY, TxType.GREY_LOCK)
    assert (lock.ctc, lock.term, lock.balance) == (bill.ctc, bill.term, 100000)
    when = bcd_dt(datetime(2026, 11, 23, 8, 0, 17))
    tac = card.ok(
        cmd.debit_for_unlock(bill.amount, bill.ctc + 1, bill.term, bill.psam_ttc, when, bill.gmac)
    )
    assert hsm.verify_unlock_tac(
        card.asn8, amount=bill.amount, term=bill.term, ttc=bill.psam_ttc, dt=when, tac=tac
    )
    assert card.ok(cmd.get_balance()) == u32(100000 - bill.amount)
    assert card.int("et.offline_ctc") == bill.ctc + 2
    after = LockRecord.from_bytes(card.ok(cmd.get_lock_proof()))
    assert after == LockRecord(
        LockStatus.TAC_UNREAD,
        TxType.DEBIT_FOR_UNLOCK,
        100000 - bill.amount,
        bill.ctc + 1,
        bill.term,
        when,
        u32(bill.amount),
        tac,
    )
    newest = TxLogEntry.from_bytes(card.ok(cmd.read_record(layout.SFI_EF18, 1)))
    assert newest == TxLogEntry(bill.ctc + 1, bill.amount, 0x93, bill.term, when)
    card.ok(cmd.clear_tac_unread())
    assert card.ok(cmd.get_lock_proof())[0] == LockStatus.FREE
    card.ok(cmd.initialize_for_purchase(100, TERM))
