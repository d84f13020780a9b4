"""MockHsm's contract: the cardcore Hsm Protocol exactly, clear errors, no stale or leaked keys."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cardcore import crypto
from cardcore.errors import FuelsimError
from cardcore.keys import MASTER_KEY_LABELS
from cardcore.ports import Hsm
from hsm_mock import HsmInputError, KeySet, KeyStore, MockHsm, UnknownKeySet

PROTOCOL_METHODS = sorted(
    name for name, member in vars(Hsm).items() if callable(member) and not name.startswith("_")
)


def test_protocol_has_the_expected_methods() -> None:
    assert len(PROTOCOL_METHODS) == 18
    assert "verify_online_unlock_mac3" in PROTOCOL_METHODS


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_signature_matches_the_protocol(name: str) -> None:
    expected = inspect.signature(getattr(Hsm, name))
    actual = inspect.signature(getattr(MockHsm, name))
    assert [(p.name, p.kind, p.default, p.annotation) for p in actual.parameters.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in expected.parameters.values()
    ]
    assert actual.return_annotation == expected.return_annotation


def _calls(asn8: bytes, term: bytes) -> dict[str, Callable[[MockHsm, str], object]]:
    dt, rand, mac = bytes(7), bytes(4), bytes(4)
    return {
        "key_check_values": lambda h, ks: h.key_check_values(ks),
        "personalise_card": lambda h, ks: h.personalise_card(asn8, None, ks),
        "personalise_psam": lambda h, ks: h.personalise_psam(ks),
        "verify_load_mac1": lambda h, ks: h.verify_load_mac1(
            asn8, rand=rand, online_ctc=0, old_balance=0, amount=1, tx_type=1, term=term,
            mac1=mac, key_set=ks,
        ),
        "load_mac2": lambda h, ks: h.load_mac2(
            asn8, rand=rand, online_ctc=0, amount=1, tx_type=1, term=term, dt=dt, key_set=ks
        ),
        "verify_load_tac": lambda h, ks: h.verify_load_tac(
            asn8, new_balance=1, online_ctc=0, amount=1, tx_type=1, term=term, dt=dt, tac=mac,
            key_set=ks,
        ),
        "verify_purchase_tac": lambda h, ks: h.verify_purchase_tac(
            asn8, amount=1, tx_type=5, term=term, ttc=1, dt=dt, tac=mac, key_set=ks
        ),
        "verify_gtac": lambda h, ks: h.verify_gtac(
            asn8, balance=1, term=term, ttc=1, dt=dt, gtac=mac, key_set=ks
        ),
        "verify_psam_tac": lambda h, ks: h.verify_psam_tac(
            asn8, amount=1, lock_term=term, lock_ttc=1, lock_dt=dt, tac=mac, key_set=ks
        ),
        "verify_unlock_tac": lambda h, ks: h.verify_unlock_tac(
            asn8, amount=1, term=term, ttc=1, dt=dt, tac=mac, key_set=ks
        ),
        "verify_online_unlock_mac1": lambda h, ks: h.verify_online_unlock_mac1(
            asn8, rand=rand, online_ctc=0, balance=1, offline_ctc=0, term=term, mac1=mac,
            key_set=ks,
        ),
        "online_unlock_mac2": lambda h, ks: h.online_unlock_mac2(
            asn8, rand=rand, online_ctc=0, amount=1, term=term, dt=dt, key_set=ks
        ),
        "verify_online_unlock_mac3": lambda h, ks: h.verify_online_unlock_mac3(
            asn8, rand=rand, online_ctc=0, balance_after=0, amount=1, term=term, dt=dt,
            mac3=mac, key_set=ks,
        ),
        "secure_messaging_mac": lambda h, ks: h.secure_messaging_mac(
            asn8, command=bytes.fromhex("04D6951D0501"), challenge=rand, key_set=ks
        ),
        "reload_pin_mac": lambda h, ks: h.reload_pin_mac(asn8, pin=b"\x99\x99\x99", key_set=ks),
        "bill_tmac": lambda h, ks: h.bill_tmac(bytes(91), ks),
        "bill_tmacs": lambda h, ks: h.bill_tmacs([bytes(91)], ks),
    }  # fmt: skip


def test_every_key_set_method_is_exercised(asn8: bytes, term: bytes) -> None:
    assert sorted(_calls(asn8, term)) == sorted(set(PROTOCOL_METHODS) - {"key_sets"})


@pytest.mark.parametrize("name", sorted(set(PROTOCOL_METHODS) - {"key_sets"}))
def test_unknown_key_set(hsm: MockHsm, asn8: bytes, term: bytes, name: str) -> None:
    call = _calls(asn8, term)[name]
    call(hsm, "DEV")  # the same call works on a loaded set
    with pytest.raises(UnknownKeySet, match="'PROD'") as caught:
        call(hsm, "PROD")
    assert isinstance(caught.value, FuelsimError)
    assert "DEV" in str(caught.value)


def test_default_hsm_holds_dev_only(hsm: MockHsm) -> None:
    assert hsm.key_sets() == ["DEV"]
    assert list(hsm.key_check_values()) == list(MASTER_KEY_LABELS)


def test_given_keystore_is_used_as_is() -> None:
    assert MockHsm(KeyStore()).key_sets() == []


def test_replaced_key_set_is_not_served_from_the_cache(asn8: bytes, issuer8: bytes) -> None:
    store = KeyStore()
    store.import_shipped_key_set("dev")
    hsm = MockHsm(store)
    before = hsm.personalise_card(asn8, issuer8)
    other = {label: bytes([16 * i + 1]) * 8 + bytes([16 * i + 5]) * 8 for i, label in enumerate(
        MASTER_KEY_LABELS
    )}  # fmt: skip
    store.import_key_set(KeySet(name="DEV", keys=other), replace=True)
    after = hsm.personalise_card(asn8, issuer8)
    assert after.dlk != before.dlk
    assert after.dlk == crypto.diversify(other["MLK"], asn8)


def test_cache_gives_same_keys_per_card(hsm: MockHsm, asn8: bytes, issuer8: bytes) -> None:
    first = hsm.personalise_card(asn8, issuer8)
    other_card = hsm.personalise_card(bytes(8), issuer8)
    again = hsm.personalise_card(asn8, issuer8)
    assert (first.dtk, first.damk) == (again.dtk, again.damk)
    assert other_card.dtk != first.dtk


def test_repr_shows_no_keys(hsm: MockHsm, kat: dict[str, Any], asn8: bytes) -> None:
    keys = hsm.personalise_card(asn8, None)
    text = repr(hsm) + repr(keys) + repr(hsm.personalise_psam())
    assert "DEV" in text
    for value in kat["master_keys"].values():
        assert value not in text.upper()
    assert keys.dtk.hex().upper() not in text.upper()


# Input checking ---------------------------------------------------------------------------------


BAD_INPUTS: dict[str, dict[str, Any]] = {
    "short term": {"term": bytes(5)},
    "long dt": {"dt": bytes(8)},
    "short rand": {"rand": bytes(3)},
    "negative amount": {"amount": -1},
    "amount too big": {"amount": 1 << 32},
    "ctc too big": {"online_ctc": 0x10000},
    "type too big": {"tx_type": 0x100},
    "bool amount": {"amount": True},
    "term as str": {"term": "440101000001"},
}


@pytest.mark.parametrize("change", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_malformed_request_is_refused(
    hsm: MockHsm, asn8: bytes, term: bytes, change: dict[str, Any]
) -> None:
    request: dict[str, Any] = {
        "rand": bytes(4), "online_ctc": 0, "amount": 1, "tx_type": 1, "term": term,
        "dt": bytes(7),
    }  # fmt: skip
    hsm.load_mac2(asn8, **request)
    with pytest.raises(HsmInputError):
        hsm.load_mac2(asn8, **{**request, **change})


def test_bad_asn8_and_issuer(hsm: MockHsm, asn8: bytes) -> None:
    with pytest.raises(HsmInputError, match="asn8"):
        hsm.personalise_card(asn8[:7], None)
    with pytest.raises(HsmInputError, match="issuer8"):
        hsm.personalise_card(asn8, bytes(9))


@pytest.mark.parametrize("challenge", [b"", bytes(3), bytes(5), bytes(16)])
def test_bad_challenge(hsm: MockHsm, asn8: bytes, challenge: bytes) -> None:
    with pytest.raises(HsmInputError, match="challenge"):
        hsm.secure_messaging_mac(asn8, command=bytes.fromhex("04D6951D0501"), challenge=challenge)


def test_short_command_and_empty_pin(hsm: MockHsm, asn8: bytes) -> None:
    with pytest.raises(HsmInputError):
        hsm.secure_messaging_mac(asn8, command=bytes(4), challenge=bytes(4))
    with pytest.raises(HsmInputError):
        hsm.reload_pin_mac(asn8, pin=b"")


def test_wrong_length_mac_does_not_match(
    hsm: MockHsm, kat: dict[str, Any], asn8: bytes, term: bytes
) -> None:
    pi = kat["purchase"]["inputs"]
    tac = bytes.fromhex(kat["purchase"]["tac"])

    def check(candidate: Any) -> bool:
        return hsm.verify_purchase_tac(
            asn8, amount=int(pi["amount"], 16), tx_type=5, term=term, ttc=int(pi["ttc"], 16),
            dt=bytes.fromhex(pi["dt"]), tac=candidate,
        )  # fmt: skip

    assert check(tac)
    assert check(bytearray(tac))
    assert not check(tac[:3])
    assert not check(tac + b"\x00")
    assert not check(tac.hex())


def test_key_set_files_order_and_error_paths(tmp_path: Path) -> None:
    with pytest.raises(FuelsimError, match="cannot read"):
        MockHsm.with_key_set_files([tmp_path / "absent.json"])


def test_bill_tmacs_is_bill_tmac_of_each(hsm: MockHsm) -> None:
    bodies = [bytes(91), bytes(range(91)), b"\xff" * 91]
    assert hsm.bill_tmacs(bodies) == [hsm.bill_tmac(body) for body in bodies]
    assert hsm.bill_tmacs([]) == []
    with pytest.raises(HsmInputError):
        hsm.bill_tmacs([bytes(91), "text"])  # type: ignore[list-item]
