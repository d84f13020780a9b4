"""The known-answer vectors of tests/data/fuelcard-kat.json, reproduced byte for byte.

The card is the shipped `new` profile (the vector card's ASN, PIN 999999, keys issued by the HSM
from DEV), the PSAM is `psam-dispenser` (terminal 440101000001, TTC 0x10); both draw their
random numbers from a ScriptedRng holding the vector's rands in order. Every APDU of every
transcript is one test case, and so is every intermediate value (keys, KCVs, session keys, MACs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import in_memory
from card_profiles.fuel_card import FuelCard
from card_profiles.psam import Psam
from cardcore import commands as cmd
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import encode_pin
from cardcore.clockrng import ScriptedRng
from cardcore.records import PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard

VECTORS = Path(__file__).parent / "data" / "fuelcard-kat.json"
SHARED_VECTORS = Path("/work/shared/vectors/fuelcard-kat.json")
KAT: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
OK = "9000"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def num(text: str) -> int:
    return int(text, 16)


# The transcripts as (section, index, device, command, response) -------------------------------
def _steps(section: str) -> list[tuple[str, int, str, str, str]]:
    steps = []
    for index, row in enumerate(KAT[section]["apdus"]):
        device, command, response = row if len(row) == 3 else ("card", *row)
        steps.append((section, index, device, command, response))
    return steps


MAIN = ("load", "purchase", "grey_lock_fuelling")
BRANCHES = ("online_unlock", "store_flag_on")
STEPS = [step for section in MAIN + BRANCHES for step in _steps(section)]


def _step_id(step: tuple[str, int, str, str, str]) -> str:
    section, index, device, command, _ = step
    return f"{section}[{index}] {device} {cmd.command_name(CommandApdu.from_bytes(h(command)))}"


def test_vector_file_is_the_shared_one_byte_for_byte() -> None:
    if not SHARED_VECTORS.exists():
        pytest.skip(f"{SHARED_VECTORS} is not there")
    assert VECTORS.read_bytes() == SHARED_VECTORS.read_bytes()


def test_every_transcript_section_is_run() -> None:
    sections = {key for key, value in KAT.items() if isinstance(value, dict) and "apdus" in value}
    assert sections == set(MAIN + BRANCHES)
    assert len(STEPS) == sum(len(KAT[s]["apdus"]) for s in sections) == 19


# Emulators -------------------------------------------------------------------------------------
class Run:
    """A card and a PSAM, and what each vector command got back."""

    def __init__(self, card: FuelCard, psam: Psam) -> None:
        self.card, self.psam = card, psam
        self.answers: dict[tuple[str, int], str] = {}
        self.notes: dict[str, Any] = {}

    def send(self, device: str, command: str) -> str:
        applet = self.card if device == "card" else self.psam
        return applet.process(h(command)).hex().upper()

    def play(self, section: str, upto: int | None = None) -> None:
        for sec, index, device, command, _ in _steps(section)[:upto]:
            self.answers[(sec, index)] = self.send(device, command)

    def open_et(self) -> None:
        self.notes.setdefault("select", []).append(
            self.send("card", bytes(cmd.select(layout.ET_AID)).hex())
        )
        self.notes.setdefault("verify", []).append(
            self.send("card", bytes(cmd.verify(KAT["card"]["pin"])).hex())
        )


def _rand(section: str) -> bytes:
    return h(KAT[section]["inputs"]["rand"])


def _emulators(
    issued: Callable[[str], IssuedCard], card_rands: list[bytes], psam_rands: list[bytes]
) -> Run:
    card = in_memory(dict(issued("new").cells), ScriptedRng(card_rands))
    psam = in_memory(dict(issued("psam-dispenser").cells), ScriptedRng(psam_rands))
    assert isinstance(card, FuelCard) and isinstance(psam, Psam)
    card.power_on()
    psam.power_on()
    return Run(card, psam)


PSAM_RAND = h(KAT["grey_lock_fuelling"]["inputs"]["psam_rand"])


@pytest.fixture(scope="module")
def main_run(issued: Callable[[str], IssuedCard]) -> Run:
    """SELECT ET, VERIFY, then load, purchase (PSAM in SINOPEC1) and grey-lock fuelling."""
    run = _emulators(issued, [_rand(s) for s in MAIN], [PSAM_RAND])
    run.open_et()
    run.play("load")
    run.notes["psam select"] = run.send("psam", bytes(cmd.select(layout.PSAM_AID)).hex())
    run.play("purchase")
    run.play("grey_lock_fuelling")
    return run


@pytest.fixture(scope="module")
def unlock_run(issued: Callable[[str], IssuedCard]) -> Run:
    """Load and purchase as above, the vector's grey lock (INIT GREY LOCK, E0 40, GREY LOCK,
    E0 42), then a new card session for the online unlock with card rand 0A0B0C0D."""
    rands = [_rand("load"), _rand("purchase"), _rand("grey_lock_fuelling"), _rand("online_unlock")]
    run = _emulators(issued, rands, [PSAM_RAND])
    run.open_et()
    run.play("load")
    run.send("psam", bytes(cmd.select(layout.PSAM_AID)).hex())
    run.play("purchase")
    lock_steps = _steps("grey_lock_fuelling")[:4]
    for _, index, device, command, response in lock_steps:
        run.notes[f"lock {index}"] = (run.send(device, command), response)
    run.card.power_off()
    run.card.power_on()
    run.open_et()
    cells = run.card.nvm.cells
    run.notes["state"] = {
        "balance": cells["et.balance"],
        "offline_ctc": cells["et.offline_ctc"],
        "online_ctc": cells["et.online_ctc"],
        "lock": cells["lock"][0],
    }
    run.play("online_unlock")
    return run


@pytest.fixture(scope="module")
def store_run(issued: Callable[[str], IssuedCard]) -> Run:
    """A fresh `new` card with ET selected: GET CHALLENGE (A1B2C3D4), then the UPDATE BINARY."""
    run = _emulators(issued, [h(KAT["store_flag_on"]["challenge"])], [])
    run.notes["select"] = run.send("card", bytes(cmd.select(layout.ET_AID)).hex())
    run.play("store_flag_on")
    run.notes["ef15"] = run.send("card", bytes(cmd.read_binary(layout.SFI_EF15)).hex())
    return run


RUN_OF = {
    "load": "main_run",
    "purchase": "main_run",
    "grey_lock_fuelling": "main_run",
    "online_unlock": "unlock_run",
    "store_flag_on": "store_run",
}


@pytest.mark.parametrize("step", STEPS, ids=[_step_id(s) for s in STEPS])
def test_transcript(request: pytest.FixtureRequest, step: tuple[str, int, str, str, str]) -> None:
    section, index, _, _, response = step
    run: Run = request.getfixturevalue(RUN_OF[section])
    assert run.answers[(section, index)] == response


def test_the_vector_card_and_psam_are_the_shipped_profiles(
    issued: Callable[[str], IssuedCard],
) -> None:
    card, psam = issued("new").cells, issued("psam-dispenser").cells
    public = PublicAppData.from_bytes(card["ef15"])
    assert public.asn == h(KAT["card"]["asn"])
    assert public.asn8 == h(KAT["card"]["asn8"])
    assert public.issuer_id == h(KAT["card"]["issuer_id"])
    assert card["pin"] == encode_pin(KAT["card"]["pin"])
    for name, value in KAT["card_keys"].items():
        assert card["key." + name] == h(value), name
    assert psam["ef16"] == h(KAT["terminal_id"])
    assert psam["ttc"] == (0x10).to_bytes(4, "big")
    assert psam["ef17"][0] == num(KAT["card"]["kidx"])


def test_main_run_selects_and_verifies(main_run: Run) -> None:
    assert main_run.notes["select"][0].endswith(OK)
    assert main_run.notes["select"][0].startswith("6F")
    assert main_run.notes["verify"] == [OK]
    assert main_run.notes["psam select"].endswith(OK)


def test_online_unlock_starts_from_the_vector_state(unlock_run: Run) -> None:
    inputs = KAT["online_unlock"]["inputs"]
    for index in range(4):
        got, want = unlock_run.notes[f"lock {index}"]
        assert got == want, f"grey lock step {index}"
    assert unlock_run.notes["verify"] == [OK, OK]
    state = unlock_run.notes["state"]
    assert state["balance"] == h(inputs["balance"])
    assert state["offline_ctc"] == h(inputs["offline_ctc"])
    assert state["online_ctc"] == h(inputs["online_ctc"])
    assert state["lock"] == layout.LockStatus.GREY


def test_online_unlock_frees_the_card(unlock_run: Run) -> None:
    inputs = KAT["online_unlock"]["inputs"]
    cells = unlock_run.card.nvm.cells
    assert cells["lock"][0] == layout.LockStatus.FREE
    assert cells["lock"][1] == layout.TxType.ONLINE_UNLOCK
    after = num(inputs["balance"]) - num(inputs["amount"])
    assert cells["et.balance"] == after.to_bytes(4, "big")
    assert cells["et.online_ctc"] == (num(inputs["online_ctc"]) + 1).to_bytes(2, "big")


def test_store_flag_is_on_afterwards(store_run: Run) -> None:
    assert store_run.notes["select"].endswith(OK)
    ef15 = h(store_run.notes["ef15"])
    assert ef15[-2:] == b"\x90\x00" and len(ef15) == 32
    assert ef15[layout.STORE_FLAG_OFFSET] == 0x01


# The builders of cardcore.commands make the vector commands from the vector inputs --------------
def _builders() -> dict[tuple[str, int], CommandApdu]:
    card, term = KAT["card"], h(KAT["terminal_id"])
    asn8, issuer8, kidx = h(card["asn8"]), h(card["issuer_id"]), num(card["kidx"])
    ld, pu, gl = KAT["load"]["inputs"], KAT["purchase"]["inputs"], KAT["grey_lock_fuelling"]
    gi, ou = gl["inputs"], KAT["online_unlock"]
    sf = KAT["store_flag_on"]
    flag_mac = h(sf["apdus"][1][0])[-4:]
    return {
        ("load", 0): cmd.initialize_for_load(num(ld["amount"]), term, kidx),
        ("load", 1): cmd.credit_for_load(h(ld["dt"]), h(KAT["load"]["mac2"])),
        ("purchase", 0): cmd.initialize_for_purchase(num(pu["amount"]), term, kidx),
        ("purchase", 1): cmd.init_sam_for_purchase(
            h(pu["rand"]),
            num(pu["offline_ctc"]),
            num(pu["amount"]),
            h(pu["dt"]),
            asn8,
            issuer8,
            num(pu["type"]),
        ),
        ("purchase", 2): cmd.debit_for_purchase(
            num(pu["ttc"]), h(pu["dt"]), h(KAT["purchase"]["mac1"])
        ),
        ("purchase", 3): cmd.credit_sam_for_purchase(h(KAT["purchase"]["mac2"])),
        ("grey_lock_fuelling", 0): cmd.initialize_for_grey_lock(term, kidx),
        ("grey_lock_fuelling", 1): cmd.init_sam_for_grey_lock(
            h(gi["rand"]),
            num(gi["offline_ctc_at_lock"]),
            num(gi["balance"]),
            h(gi["dt_lock"]),
            asn8,
            issuer8,
        ),
        ("grey_lock_fuelling", 2): cmd.grey_lock(
            num(gi["lock_ttc"]), h(gi["psam_rand"]), h(gi["dt_lock"]), h(gl["mac1"])
        ),
        ("grey_lock_fuelling", 3): cmd.verify_grey_lock_mac2(h(gl["mac2"])),
        ("grey_lock_fuelling", 4): cmd.get_lock_proof(),
        ("grey_lock_fuelling", 5): cmd.gmac_for_unlock(
            asn8, num(gi["offline_ctc_at_lock"]), num(gi["delivered"])
        ),
        ("grey_lock_fuelling", 6): cmd.debit_for_unlock(
            num(gi["delivered"]),
            num(gi["unlock_ctc"]),
            term,
            num(gi["unlock_ttc"]),
            h(gi["dt_unlock"]),
            h(gl["gmac"]),
        ),
        ("grey_lock_fuelling", 7): cmd.get_lock_proof(),
        ("grey_lock_fuelling", 8): cmd.clear_tac_unread(),
        ("online_unlock", 0): cmd.initialize_for_online_unlock(term, kidx),
        ("online_unlock", 1): cmd.online_unlock(
            num(ou["inputs"]["amount"]), h(ou["inputs"]["dt"]), h(ou["mac2"])
        ),
        ("store_flag_on", 0): cmd.get_challenge(len(h(sf["challenge"]))),
        ("store_flag_on", 1): cmd.update_binary_mac(
            layout.SFI_EF15, layout.STORE_FLAG_OFFSET, b"\x01", flag_mac
        ),
    }


@pytest.mark.parametrize("step", STEPS, ids=[_step_id(s) for s in STEPS])
def test_builder_makes_the_vector_command(step: tuple[str, int, str, str, str]) -> None:
    section, index, _, command, _ = step
    assert _builders()[(section, index)].hex() == command


# Intermediate values --------------------------------------------------------------------------
MASTERS = list(KAT["master_keys"])


@pytest.mark.parametrize("label", MASTERS)
def test_master_key_check_value(hsm: MockHsm, label: str) -> None:
    assert crypto.kcv(h(KAT["master_keys"][label])).hex().upper() == KAT["master_kcv"][label]
    assert hsm.key_check_values("DEV")[label].hex().upper() == KAT["master_kcv"][label]


CARD_KEY_MASTERS = {
    "dpk": "MPK",
    "dlk": "MLK",
    "dtk": "MTK",
    "dugk": "MUGK",
    "damk": "MAMK",
    "drpk": "MRPK",
}


@pytest.mark.parametrize("name", list(KAT["card_keys"]))
def test_card_key_from_hsm_personalisation(hsm: MockHsm, name: str) -> None:
    asn8, issuer8 = h(KAT["card"]["asn8"]), h(KAT["card"]["issuer_id"])
    keys = hsm.personalise_card(asn8, issuer8)
    assert getattr(keys, name).hex().upper() == KAT["card_keys"][name]
    master = h(KAT["master_keys"][CARD_KEY_MASTERS[name]])
    if name == "dpk":  # Div(Div(MPK, issuer8), ASN8)
        derived = crypto.diversify(crypto.diversify(master, issuer8), asn8)
    else:
        derived = crypto.diversify(master, asn8)
    assert derived.hex().upper() == KAT["card_keys"][name]
    assert crypto.kcv(derived).hex().upper() == KAT["card_kcv"][name]


def test_tac_key() -> None:
    dtk = h(KAT["card_keys"]["dtk"])
    assert crypto.tac_key(dtk).hex().upper() == KAT["tac_key"]
    assert (
        bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:], strict=True)).hex().upper() == KAT["tac_key"]
    )


def _mac(key: bytes, *parts: bytes) -> str:
    return crypto.mac_session(key, b"".join(parts)).hex().upper()


TERM = h(KAT["terminal_id"])
TAC_KEY = h(KAT["tac_key"])


def test_load_intermediates(hsm: MockHsm) -> None:
    v, i = KAT["load"], KAT["load"]["inputs"]
    key = crypto.session_key_load(h(KAT["card_keys"]["dlk"]), h(i["rand"]), h(i["online_ctc"]))
    assert key.hex().upper() == v["session_key"]
    load = b"\x01"
    new_balance = (num(i["old_balance"]) + num(i["amount"])).to_bytes(4, "big")
    assert _mac(key, h(i["old_balance"]), h(i["amount"]), load, TERM) == v["mac1"]
    assert _mac(key, h(i["amount"]), load, TERM, h(i["dt"])) == v["mac2"]
    tac = _mac(TAC_KEY, new_balance, h(i["online_ctc"]), h(i["amount"]), load, TERM, h(i["dt"]))
    assert tac == v["tac"]
    asn8 = h(KAT["card"]["asn8"])
    assert (
        hsm.load_mac2(
            asn8,
            rand=h(i["rand"]),
            online_ctc=num(i["online_ctc"]),
            amount=num(i["amount"]),
            tx_type=1,
            term=TERM,
            dt=h(i["dt"]),
        )
        .hex()
        .upper()
        == v["mac2"]
    )
    # The values sit where the transcript says.
    assert (
        v["apdus"][0][1] == i["old_balance"] + i["online_ctc"] + "0100" + i["rand"] + v["mac1"] + OK
    )
    assert v["apdus"][1][0][10:32] == i["dt"] + v["mac2"]
    assert v["apdus"][1][1] == v["tac"] + OK


def test_purchase_intermediates() -> None:
    v, i = KAT["purchase"], KAT["purchase"]["inputs"]
    dpk = h(KAT["card_keys"]["dpk"])
    key = crypto.session_key_purchase(dpk, h(i["rand"]), h(i["offline_ctc"]), h(i["ttc"]))
    assert key.hex().upper() == v["session_key"]
    assert crypto.tdes_encrypt(dpk, h(i["rand"] + i["offline_ctc"] + i["ttc"][4:])) == key
    kind = h(i["type"])
    assert _mac(key, h(i["amount"]), kind, TERM, h(i["dt"])) == v["mac1"]
    assert _mac(key, h(i["amount"])) == v["mac2"]
    assert _mac(TAC_KEY, h(i["amount"]), kind, TERM, h(i["ttc"]), h(i["dt"])) == v["tac"]
    assert v["apdus"][0][2][:8] == i["balance_before"]
    assert v["apdus"][1][2] == i["ttc"] + v["mac1"] + OK
    assert v["apdus"][2][2] == v["tac"] + v["mac2"] + OK


def test_grey_lock_intermediates() -> None:
    v, i = KAT["grey_lock_fuelling"], KAT["grey_lock_fuelling"]["inputs"]
    dpk, asn8 = h(KAT["card_keys"]["dpk"]), h(KAT["card"]["asn8"])
    sesgk = crypto.session_key_grey_lock(
        dpk, h(i["rand"]), h(i["offline_ctc_at_lock"]), h(i["lock_ttc"]), h(i["psam_rand"])
    )
    assert sesgk.hex().upper() == v["sesgk"]
    inner = crypto.session_key_purchase(
        dpk, h(i["rand"]), h(i["offline_ctc_at_lock"]), h(i["lock_ttc"])
    )
    assert crypto.des_encrypt(inner, h(i["psam_rand"] + "80000000")) == sesgk
    lock, unlock = b"\x91", b"\x93"
    assert _mac(sesgk, lock, TERM, h(i["dt_lock"])) == v["mac1"]
    assert _mac(sesgk, h(i["balance"])) == v["mac2"]
    gtac = _mac(TAC_KEY, h(i["balance"]), lock, TERM, h(i["lock_ttc"]), h(i["dt_lock"]))
    assert gtac == v["gtac"]
    gmac = _mac(sesgk, h(i["delivered"]), unlock, asn8, h(i["offline_ctc_at_lock"]))
    assert gmac == v["gmac"]
    psam_tac = _mac(TAC_KEY, h(i["delivered"]), unlock, TERM, h(i["lock_ttc"]), h(i["dt_lock"]))
    assert psam_tac == v["psam_tac"]
    unlock_tac = _mac(
        TAC_KEY, h(i["delivered"]), unlock, TERM, h(i["unlock_ttc"]), h(i["dt_unlock"])
    )
    assert unlock_tac == v["unlock_tac"]
    # The counters of spec §2: the unlock carries lock CTC + 1, and its TTC is lock TTC + 1.
    assert num(i["unlock_ctc"]) == num(i["offline_ctc_at_lock"]) + 1
    assert num(i["unlock_ttc"]) == num(i["lock_ttc"]) + 1
    assert v["apdus"][5][2] == v["gmac"] + v["psam_tac"] + OK
    assert v["apdus"][6][2] == v["unlock_tac"] + OK


def test_online_unlock_intermediates(hsm: MockHsm) -> None:
    v, i = KAT["online_unlock"], KAT["online_unlock"]["inputs"]
    key = crypto.session_key_online_unlock(
        h(KAT["card_keys"]["dugk"]), h(i["rand"]), h(i["online_ctc"])
    )
    assert key.hex().upper() == v["session_key"]
    kind = b"\x95"
    assert _mac(key, h(i["balance"]), h(i["offline_ctc"]), kind, TERM) == v["mac1"]
    assert _mac(key, h(i["amount"]), kind, TERM, h(i["dt"])) == v["mac2"]
    after = (num(i["balance"]) - num(i["amount"])).to_bytes(4, "big")
    mac3 = _mac(key, after, h(i["online_ctc"]), h(i["amount"]), kind, TERM, h(i["dt"]))
    assert mac3 == v["mac3"]
    mac2 = hsm.online_unlock_mac2(
        h(KAT["card"]["asn8"]),
        rand=h(i["rand"]),
        online_ctc=num(i["online_ctc"]),
        amount=num(i["amount"]),
        term=TERM,
        dt=h(i["dt"]),
    )
    assert mac2.hex().upper() == v["mac2"]


def test_store_flag_intermediates(hsm: MockHsm) -> None:
    v = KAT["store_flag_on"]
    challenge, update = h(v["challenge"]), h(v["apdus"][1][0])
    header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, b"\x01")
    assert header == update[:-4]
    damk = h(KAT["card_keys"]["damk"])
    assert crypto.mac_retail(damk, header, challenge + bytes(4)) == update[-4:]
    asn8 = h(KAT["card"]["asn8"])
    assert hsm.secure_messaging_mac(asn8, command=header, challenge=challenge) == update[-4:]


def test_reload_pin_mac_uses_the_folded_drpk(hsm: MockHsm) -> None:
    drpk, pin = h(KAT["card_keys"]["drpk"]), encode_pin(KAT["card"]["pin"])
    expected = crypto.mac_session(crypto.fold_key(drpk), pin)
    assert hsm.reload_pin_mac(h(KAT["card"]["asn8"]), pin=pin) == expected
