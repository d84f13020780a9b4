"""MockHsm against the known-answer vectors of tests/data/fuelcard-kat.json (DEV key set)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cardcore import crypto
from cardcore.keys import MASTER_KEY_LABELS, PSAM_KEY_MASTERS
from cardcore.layout import TxType
from hsm_mock import MockHsm, key_report

KAT = dict[str, Any]
Verifier = Callable[[MockHsm, bytes], bool]


def x(text: str) -> bytes:
    return bytes.fromhex(text)


def n(text: str) -> int:
    return int(text, 16)


def flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


# Keys --------------------------------------------------------------------------------------------


def test_master_kcvs(hsm: MockHsm, kat: KAT) -> None:
    kcvs = hsm.key_check_values("DEV")
    assert list(kcvs) == list(MASTER_KEY_LABELS)
    assert {label: value.hex().upper() for label, value in kcvs.items()} == kat["master_kcv"]


def test_master_kcvs_match_master_keys(kat: KAT) -> None:
    for label, value in kat["master_keys"].items():
        assert crypto.kcv(x(value)).hex().upper() == kat["master_kcv"][label], label


def test_key_report(hsm: MockHsm, kat: KAT) -> None:
    assert key_report(hsm, "DEV") == [
        (label, kat["master_kcv"][label]) for label in MASTER_KEY_LABELS
    ]


@pytest.mark.parametrize("label", ["dpk", "dlk", "dtk", "dugk", "damk", "drpk"])
def test_card_key_and_kcv(hsm: MockHsm, kat: KAT, asn8: bytes, issuer8: bytes, label: str) -> None:
    keys = hsm.personalise_card(asn8, issuer8, "DEV")
    key: bytes = getattr(keys, label)
    assert key.hex().upper() == kat["card_keys"][label]
    assert crypto.kcv(key).hex().upper() == kat["card_kcv"][label]


def test_card_keys_without_vectors_are_single_diversified(
    hsm: MockHsm, kat: KAT, asn8: bytes, issuer8: bytes
) -> None:
    keys = hsm.personalise_card(asn8, issuer8)
    masters = {label: x(value) for label, value in kat["master_keys"].items()}
    assert keys.dulk == crypto.diversify(masters["MULK"], asn8)
    assert keys.dpuk == crypto.diversify(masters["MPUK"], asn8)
    assert keys.diak == crypto.diversify(masters["MIAK"], asn8)


def test_tac_key(hsm: MockHsm, kat: KAT, asn8: bytes, issuer8: bytes) -> None:
    assert hsm.personalise_card(asn8, issuer8).dtk_prime.hex().upper() == kat["tac_key"]


def test_one_level_purchase_key_without_issuer(hsm: MockHsm, kat: KAT, asn8: bytes) -> None:
    keys = hsm.personalise_card(asn8, None)
    assert keys.dpk == crypto.diversify(x(kat["master_keys"]["MPK"]), asn8)
    assert keys.dpk.hex().upper() != kat["card_keys"]["dpk"]
    assert keys.dlk.hex().upper() == kat["card_keys"]["dlk"]


def test_psam_keys(hsm: MockHsm, kat: KAT, asn8: bytes, issuer8: bytes) -> None:
    psam = hsm.personalise_psam("DEV")
    for name, master in PSAM_KEY_MASTERS.items():
        assert getattr(psam, name).hex().upper() == kat["master_keys"][master]
    # The PSAM diversifies per card to the very DPK the card got.
    card = hsm.personalise_card(asn8, issuer8)
    assert crypto.purchase_key(psam.mpk, asn8, issuer8) == card.dpk
    assert crypto.diversify(psam.mtk, asn8) == card.dtk


def test_issued_dpk_reproduces_purchase_and_grey_lock_vectors(
    hsm: MockHsm, kat: KAT, asn8: bytes, issuer8: bytes, term: bytes
) -> None:
    dpk = hsm.personalise_card(asn8, issuer8).dpk
    p = kat["purchase"]
    pin = p["inputs"]
    sespk = crypto.session_key_purchase(dpk, x(pin["rand"]), x(pin["offline_ctc"]), x(pin["ttc"]))
    assert sespk.hex().upper() == p["session_key"]
    mac1_input = x(pin["amount"]) + x(pin["type"]) + term + x(pin["dt"])
    assert crypto.mac_session(sespk, mac1_input).hex().upper() == p["mac1"]
    assert crypto.mac_session(sespk, x(pin["amount"])).hex().upper() == p["mac2"]

    g = kat["grey_lock_fuelling"]
    gin = g["inputs"]
    sesgk = crypto.session_key_grey_lock(
        dpk, x(gin["rand"]), x(gin["offline_ctc_at_lock"]), x(gin["lock_ttc"]), x(gin["psam_rand"])
    )
    assert sesgk.hex().upper() == g["sesgk"]
    assert crypto.mac_session(sesgk, b"\x91" + term + x(gin["dt_lock"])).hex().upper() == g["mac1"]
    assert crypto.mac_session(sesgk, x(gin["balance"])).hex().upper() == g["mac2"]
    gmac_input = x(gin["delivered"]) + b"\x93" + asn8 + x(gin["offline_ctc_at_lock"])
    assert crypto.mac_session(sesgk, gmac_input).hex().upper() == g["gmac"]


# Load --------------------------------------------------------------------------------------------


def _load_mac1(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes, mac1: bytes) -> bool:
    li = kat["load"]["inputs"]
    return hsm.verify_load_mac1(
        asn8,
        rand=x(li["rand"]),
        online_ctc=n(li["online_ctc"]),
        old_balance=n(li["old_balance"]),
        amount=n(li["amount"]),
        tx_type=TxType.ED_LOAD,
        term=term,
        mac1=mac1,
        key_set="DEV",
    )


def test_load_mac1_verifies(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    assert _load_mac1(hsm, kat, asn8, term, x(kat["load"]["mac1"]))


@pytest.mark.parametrize("bit", range(8))
def test_load_mac1_flipped_bit_rejected(
    hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes, bit: int
) -> None:
    assert not _load_mac1(hsm, kat, asn8, term, flip(x(kat["load"]["mac1"]), bit))


def test_load_mac1_matches_card_apdu(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    response = x(kat["load"]["apdus"][0][1])
    assert _load_mac1(hsm, kat, asn8, term, response[12:16])


def test_load_mac1_other_amount_rejected(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    li = kat["load"]["inputs"]
    assert not hsm.verify_load_mac1(
        asn8,
        rand=x(li["rand"]),
        online_ctc=n(li["online_ctc"]),
        old_balance=n(li["old_balance"]),
        amount=n(li["amount"]) + 1,
        tx_type=TxType.ED_LOAD,
        term=term,
        mac1=x(kat["load"]["mac1"]),
    )


def test_load_mac2(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    li = kat["load"]["inputs"]
    mac2 = hsm.load_mac2(
        asn8,
        rand=x(li["rand"]),
        online_ctc=n(li["online_ctc"]),
        amount=n(li["amount"]),
        tx_type=TxType.ED_LOAD,
        term=term,
        dt=x(li["dt"]),
        key_set="DEV",
    )
    assert mac2.hex().upper() == kat["load"]["mac2"]
    assert x(kat["load"]["apdus"][1][0])[12:16] == mac2


def _load_tac(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes, tac: bytes) -> bool:
    li = kat["load"]["inputs"]
    return hsm.verify_load_tac(
        asn8,
        new_balance=0x186A0,
        online_ctc=0,
        amount=n(li["amount"]),
        tx_type=TxType.ED_LOAD,
        term=term,
        dt=x(li["dt"]),
        tac=tac,
    )


def test_load_tac_verifies(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    assert _load_tac(hsm, kat, asn8, term, x(kat["load"]["tac"]))
    assert not _load_tac(hsm, kat, asn8, term, flip(x(kat["load"]["tac"])))


# Purchase, grey lock, unlock ----------------------------------------------------------------------


def test_purchase_tac(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    pin = kat["purchase"]["inputs"]

    def check(tac: bytes, ttc: int = n(pin["ttc"])) -> bool:
        return hsm.verify_purchase_tac(
            asn8,
            amount=n(pin["amount"]),
            tx_type=n(pin["type"]),
            term=term,
            ttc=ttc,
            dt=x(pin["dt"]),
            tac=tac,
            key_set="DEV",
        )

    tac = x(kat["purchase"]["tac"])
    assert check(tac)
    assert not check(flip(tac))
    assert not check(tac, ttc=n(pin["ttc"]) + 1)


def test_gtac(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    gin = kat["grey_lock_fuelling"]["inputs"]

    def check(gtac: bytes) -> bool:
        return hsm.verify_gtac(
            asn8,
            balance=n(gin["balance"]),
            term=term,
            ttc=n(gin["lock_ttc"]),
            dt=x(gin["dt_lock"]),
            gtac=gtac,
        )

    gtac = x(kat["grey_lock_fuelling"]["gtac"])
    assert check(gtac)
    assert not check(flip(gtac, 7))


def test_psam_tac(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    gin = kat["grey_lock_fuelling"]["inputs"]

    def check(tac: bytes) -> bool:
        return hsm.verify_psam_tac(
            asn8,
            amount=n(gin["delivered"]),
            lock_term=term,
            lock_ttc=n(gin["lock_ttc"]),
            lock_dt=x(gin["dt_lock"]),
            tac=tac,
        )

    tac = x(kat["grey_lock_fuelling"]["psam_tac"])
    assert check(tac)
    assert not check(flip(tac, 3))


def test_unlock_tac(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    gin = kat["grey_lock_fuelling"]["inputs"]

    def check(tac: bytes, dt: bytes = x(gin["dt_unlock"])) -> bool:
        return hsm.verify_unlock_tac(
            asn8, amount=n(gin["delivered"]), term=term, ttc=n(gin["unlock_ttc"]), dt=dt, tac=tac
        )

    tac = x(kat["grey_lock_fuelling"]["unlock_tac"])
    assert check(tac)
    assert not check(flip(tac))
    assert not check(tac, dt=x(gin["dt_lock"]))


# Online unlock ------------------------------------------------------------------------------------


def test_online_unlock_mac1(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    oi = kat["online_unlock"]["inputs"]

    def check(mac1: bytes) -> bool:
        return hsm.verify_online_unlock_mac1(
            asn8,
            rand=x(oi["rand"]),
            online_ctc=n(oi["online_ctc"]),
            balance=n(oi["balance"]),
            offline_ctc=n(oi["offline_ctc"]),
            term=term,
            mac1=mac1,
        )

    mac1 = x(kat["online_unlock"]["mac1"])
    assert check(mac1)
    assert check(x(kat["online_unlock"]["apdus"][0][1])[14:18])
    assert not check(flip(mac1))


def test_online_unlock_mac2(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    oi = kat["online_unlock"]["inputs"]
    mac2 = hsm.online_unlock_mac2(
        asn8,
        rand=x(oi["rand"]),
        online_ctc=n(oi["online_ctc"]),
        amount=n(oi["amount"]),
        term=term,
        dt=x(oi["dt"]),
    )
    assert mac2.hex().upper() == kat["online_unlock"]["mac2"]


def test_online_unlock_mac3(hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes) -> None:
    oi = kat["online_unlock"]["inputs"]

    def check(mac3: bytes, balance_after: int) -> bool:
        return hsm.verify_online_unlock_mac3(
            asn8,
            rand=x(oi["rand"]),
            online_ctc=n(oi["online_ctc"]),
            balance_after=balance_after,
            amount=n(oi["amount"]),
            term=term,
            dt=x(oi["dt"]),
            mac3=mac3,
        )

    mac3 = x(kat["online_unlock"]["mac3"])
    after = 0x17318 - 0x4E20
    assert after == n(oi["balance"]) - n(oi["amount"])
    assert check(mac3, after)
    assert not check(mac3, n(oi["balance"]))
    assert not check(flip(mac3), after)


# Maintenance MACs ---------------------------------------------------------------------------------


def test_secure_messaging_mac_store_flag_on(hsm: MockHsm, kat: KAT, asn8: bytes) -> None:
    vector = kat["store_flag_on"]
    apdu = x(vector["apdus"][1][0])
    command, mac = apdu[:-4], apdu[-4:]
    assert command == x("04D6951D05") + b"\x01"
    challenge = x(vector["challenge"])
    assert challenge == x("A1B2C3D4")
    result = hsm.secure_messaging_mac(asn8, command=command, challenge=challenge, key_set="DEV")
    assert result == mac == x("DEAB2474")


def test_secure_messaging_mac_eight_byte_challenge_is_the_iv(
    hsm: MockHsm, kat: KAT, asn8: bytes
) -> None:
    command = x("04D6951D0501")
    challenge = x("A1B2C3D4A1B2C3D4")
    expected = crypto.mac_retail(x(kat["card_keys"]["damk"]), command, challenge)
    assert hsm.secure_messaging_mac(asn8, command=command, challenge=challenge) == expected
    short = hsm.secure_messaging_mac(asn8, command=command, challenge=challenge[:4])
    assert short != expected


def test_reload_pin_mac(hsm: MockHsm, kat: KAT, asn8: bytes) -> None:
    pin = x(kat["card"]["pin"])
    expected = crypto.mac_session(crypto.fold_key(x(kat["card_keys"]["drpk"])), pin)
    assert hsm.reload_pin_mac(asn8, pin=pin, key_set="DEV") == expected
    assert hsm.reload_pin_mac(asn8, pin=x("123456")) != expected


def test_bill_tmac(hsm: MockHsm, kat: KAT) -> None:
    bill = bytes(range(91))
    expected = crypto.mac_retail(x(kat["master_keys"]["MTMAC"]), bill)
    assert hsm.bill_tmac(bill, "DEV") == expected
    assert hsm.bill_tmac(bytes(91)) != expected


# Every verification turns False for every single flipped MAC bit --------------------------------


def _verifiers(kat: KAT, asn8: bytes, term: bytes) -> list[tuple[str, Verifier]]:
    li, pi = kat["load"]["inputs"], kat["purchase"]["inputs"]
    gi, oi = kat["grey_lock_fuelling"]["inputs"], kat["online_unlock"]["inputs"]
    return [
        (kat["load"]["tac"], lambda h, m: h.verify_load_tac(
            asn8, new_balance=0x186A0, online_ctc=0, amount=n(li["amount"]),
            tx_type=1, term=term, dt=x(li["dt"]), tac=m,
        )),
        (kat["purchase"]["tac"], lambda h, m: h.verify_purchase_tac(
            asn8, amount=n(pi["amount"]), tx_type=5, term=term, ttc=n(pi["ttc"]),
            dt=x(pi["dt"]), tac=m,
        )),
        (kat["grey_lock_fuelling"]["gtac"], lambda h, m: h.verify_gtac(
            asn8, balance=n(gi["balance"]), term=term, ttc=n(gi["lock_ttc"]),
            dt=x(gi["dt_lock"]), gtac=m,
        )),
        (kat["online_unlock"]["mac1"], lambda h, m: h.verify_online_unlock_mac1(
            asn8, rand=x(oi["rand"]), online_ctc=1, balance=n(oi["balance"]), offline_ctc=2,
            term=term, mac1=m,
        )),
        (kat["load"]["mac1"], lambda h, m: h.verify_load_mac1(
            asn8, rand=x(li["rand"]), online_ctc=0, old_balance=0, amount=n(li["amount"]),
            tx_type=1, term=term, mac1=m,
        )),
        (kat["grey_lock_fuelling"]["psam_tac"], lambda h, m: h.verify_psam_tac(
            asn8, amount=n(gi["delivered"]), lock_term=term, lock_ttc=n(gi["lock_ttc"]),
            lock_dt=x(gi["dt_lock"]), tac=m,
        )),
        (kat["grey_lock_fuelling"]["unlock_tac"], lambda h, m: h.verify_unlock_tac(
            asn8, amount=n(gi["delivered"]), term=term, ttc=n(gi["unlock_ttc"]),
            dt=x(gi["dt_unlock"]), tac=m,
        )),
        (kat["online_unlock"]["mac3"], lambda h, m: h.verify_online_unlock_mac3(
            asn8, rand=x(oi["rand"]), online_ctc=1, balance_after=0x17318 - 0x4E20,
            amount=n(oi["amount"]), term=term, dt=x(oi["dt"]), mac3=m,
        )),
    ]  # fmt: skip


@pytest.mark.parametrize("bit", range(32))
def test_every_bit_of_a_mac_matters(
    hsm: MockHsm, kat: KAT, asn8: bytes, term: bytes, bit: int
) -> None:
    for mac_hex, verify in _verifiers(kat, asn8, term):
        mac = x(mac_hex)
        assert verify(hsm, mac), mac_hex
        damaged = (int.from_bytes(mac, "big") ^ (1 << bit)).to_bytes(4, "big")
        assert not verify(hsm, damaged), (mac_hex, bit)
