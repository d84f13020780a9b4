"""Card images: every shipped profile issues as its name promises, and bad images fail clearly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from card_profiles.image import ImageError, load_image, parse_image, shipped_profiles
from cardcore.bcd import decode_pin
from cardcore.layout import AppBlock, CardType, LockStatus
from cardcore.records import Cardholder, EtGeneralInfo, LockRecord, PublicAppData, Restrictions
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard, issue

USER_CARDS = [n for n in shipped_profiles() if not n.startswith("psam-")]
NORMAL = (Path(__file__).parents[2] / "card_profiles" / "profiles" / "normal.yaml").read_text()
KEY_NAMES = ("dpk", "dlk", "dtk", "dugk", "dulk", "damk", "dpuk", "drpk", "diak")


def balance(card: IssuedCard) -> int:
    return int.from_bytes(card.cells["et.balance"], "big")


def test_the_required_profiles_are_shipped() -> None:
    assert set(shipped_profiles()) >= {
        "normal",
        "new",
        "store-enabled",
        "grey-locked",
        "tac-unread",
        "pin-blocked",
        "blacklisted",
        "expired",
        "restricted",
        "low-balance",
        "staff",
        "psam-dispenser",
        "psam-store",
    }


@pytest.mark.parametrize("name", USER_CARDS)
def test_user_cards_are_issued_from_dev_with_pin_999999(
    name: str, issued: Callable[[str], IssuedCard], hsm: MockHsm
) -> None:
    card = issued(name)
    public = PublicAppData.from_bytes(card.cells["ef15"])
    expected = hsm.personalise_card(public.asn8, public.issuer_id, "DEV")
    for key in KEY_NAMES:
        assert card.cells["key." + key] == getattr(expected, key)
    assert decode_pin(card.cells["pin"]) == "999999"
    assert card.cells["profile"] == name.encode()


def test_asns_are_unique(issued: Callable[[str], IssuedCard]) -> None:
    asns = [issued(name).cells["ef15"][10:20] for name in USER_CARDS]
    assert len(set(asns)) == len(asns)


def test_profile_contents(issued: Callable[[str], IssuedCard]) -> None:
    assert balance(issued("normal")) == 100_000
    assert not PublicAppData.from_bytes(issued("normal").cells["ef15"]).store_enabled
    new = issued("new")
    assert balance(new) == 0
    assert EtGeneralInfo.from_bytes(new.cells["ef1b"]).default_pin_flag == 0x00
    assert PublicAppData.from_bytes(new.cells["ef15"]).asn.hex() == "01000114400000000001"
    assert PublicAppData.from_bytes(issued("store-enabled").cells["ef15"]).store_enabled
    assert issued("pin-blocked").cells["pin.tries"] == b"\x00"
    assert issued("blacklisted").cells["et.block"] == bytes((AppBlock.TEMPORARY,))
    assert PublicAppData.from_bytes(issued("expired").cells["ef15"]).expiry < date(2026, 1, 1)
    limits = Restrictions.from_bytes(issued("restricted").cells["ef1c"])
    assert (limits.product, limits.max_litres_per_fill, limits.plate) == (0x0092, 60, "京A12345")
    assert (limits.max_fills_per_day, limits.max_amount_per_day) == (3, 80_000)
    assert balance(issued("low-balance")) == 1_000
    staff = Cardholder.from_bytes(issued("staff").cells["ef16"])
    assert staff.card_type == CardType.STAFF and staff.staff_flag == 1
    assert issued("psam-dispenser").cells["ef16"].hex() == "440101000001"
    assert issued("psam-store").cells["ef16"] != issued("psam-dispenser").cells["ef16"]


def test_grey_locked_card_matches_its_escape_bill(
    issued: Callable[[str], IssuedCard], hsm: MockHsm
) -> None:
    card = issued("grey-locked")
    bill = card.escape_bill
    assert bill is not None
    lock = LockRecord.from_bytes(card.cells["lock"])
    public = PublicAppData.from_bytes(card.cells["ef15"])
    assert lock.status == LockStatus.GREY and lock.balance == 100_000
    assert (bill.asn, bill.ctc, bill.amount, bill.term) == (public.asn, lock.ctc, 20_000, lock.term)
    lock_ttc = bill.psam_ttc - 1
    assert hsm.verify_gtac(
        public.asn8, balance=lock.balance, term=lock.term, ttc=lock_ttc, dt=lock.dt, gtac=lock.tac
    )
    assert hsm.verify_psam_tac(
        public.asn8,
        amount=bill.amount,
        lock_term=lock.term,
        lock_ttc=lock_ttc,
        lock_dt=lock.dt,
        tac=bill.psam_tac,
    )
    assert hsm.bill_tmac(bill.body()) == bill.tmac


def test_tac_unread_card_holds_a_valid_unlock_record(
    issued: Callable[[str], IssuedCard], hsm: MockHsm
) -> None:
    card = issued("tac-unread")
    lock = LockRecord.from_bytes(card.cells["lock"])
    public = PublicAppData.from_bytes(card.cells["ef15"])
    assert lock.status == LockStatus.TAC_UNREAD and lock.amount == 20_000
    assert balance(card) == 80_000 and lock.balance == 80_000
    assert card.escape_bill is None
    assert int.from_bytes(card.cells["et.offline_ctc"], "big") == lock.ctc + 1
    assert hsm.verify_unlock_tac(
        public.asn8, amount=lock.amount, term=lock.term, ttc=0x11, dt=lock.dt, tac=lock.tac
    )


def test_one_level_purchase_key(hsm: MockHsm) -> None:
    one_level = NORMAL.replace("issued_by: DEV", "issued_by: DEV\n  purchase_key_levels: 1")
    card = issue(parse_image(one_level, "one-level"), hsm)
    asn8 = card.cells["ef15"][12:20]
    assert card.cells["key.dpk"] == hsm.personalise_card(asn8, None).dpk
    assert card.cells["key.dpk"] != hsm.personalise_card(asn8, bytes.fromhex("10" + "FF" * 7)).dpk


def test_explicit_keys(hsm: MockHsm) -> None:
    keys = "\n".join(f'    {name}: "{f"{i:02X}" * 16}"' for i, name in enumerate(KEY_NAMES, 1))
    explicit = NORMAL.replace("  issued_by: DEV", "  explicit:\n" + keys)
    card = issue(parse_image(explicit, "explicit"), hsm)
    assert card.cells["key.dpk"] == bytes([1] * 16)
    assert card.cells["key.dlk"] == bytes([2] * 16)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("format: fuelsim.card-image/1", "format: fuelsim.card-image/9"), "format"),
        (("kind: user-card", "kind: phone"), "kind: 'phone' is not one of"),
        (('card_number: "1000114400000000002"', 'card_number: "12"'), "card_number"),
        (("issuer_id: 10FFFFFFFFFFFFFF", "issuer_id: 10FF"), "expected 8 bytes"),
        (("issuer_id: 10FFFFFFFFFFFFFF", "issuer_id: ZZ"), "not hex"),
        (("balance: 100000", "balance: -5"), "purse.balance"),
        (("balance: 100000", "balance: lots"), "expected a whole number"),
        (("  store_flag: false", "  store_flag: false\n  colour: red"), "unknown field"),
        (("issued_by: DEV", "issued_by: PROD"), "PROD"),
        (('digits: "999999"', 'digits: "9"'), "pin.digits"),
        (("expiry: 2034-12-31", "expiry: soon"), "expected a date"),
        (("issuer_id: 10FFFFFFFFFFFFFF", "issuer_id: 1000000000000000"), "quote hex values"),
        (("name: 张三", "name: [unclosed"), "not valid YAML"),
    ],
)
def test_bad_images_fail_with_the_field_named(
    change: tuple[str, str], message: str, hsm: MockHsm
) -> None:
    old, new = change
    assert old in NORMAL
    with pytest.raises(ImageError) as raised:
        issue(parse_image(NORMAL.replace(old, new), "bad.yaml"), hsm)
    assert "bad.yaml" in str(raised.value) and message in str(raised.value)


def test_load_image_from_a_file_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(NORMAL.replace("name: normal", "name: mine"))
    assert load_image(str(path)).name == "mine"
    with pytest.raises(ImageError, match=r"missing\.yaml"):
        load_image(str(tmp_path / "missing.yaml"))
