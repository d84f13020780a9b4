"""Fuzzing the emulated card and PSAM with arbitrary, malformed and mutated APDUs (spec §2).

In every session state, any byte string sent to `process`: never an exception, always an
answer ending in a status word (with no data unless it is 9000), and the persistent memory
unchanged, except for the writes a command is allowed to make. Those are listed per command
below and checked precisely: a 9000 may change only the command's own cells (counters by +1,
PIN tries back to 3); a wrong PIN (63Cx / 6983 on VERIFY or CHANGE PIN) decrements the tries
and nothing else. The store behind the memory must always equal the RAM mirror, no journal left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card_profiles.applet import Applet
from card_profiles.emulator import in_memory
from card_profiles.nvm import Cells
from cardcore import commands as cmd
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import encode_pin
from cardcore.clockrng import SeededRng
from cardcore.errors import DecodeError
from cardcore.records import PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard

DT = bytes.fromhex("20261122103000")
PIN = "999999"
OK = 0x9000
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class World:
    hsm: MockHsm
    issued: Callable[[str], IssuedCard]

    def cells(self, profile: str) -> Cells:
        return dict(self.issued(profile).cells)


@pytest.fixture(scope="module")
def world(hsm: MockHsm, issued: Callable[[str], IssuedCard]) -> World:
    return World(hsm, issued)


def num(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def ok(applet: Applet, apdu: CommandApdu) -> bytes:
    answer = applet.process(bytes(apdu))
    assert answer[-2:] == b"\x90\x00", f"{cmd.command_name(apdu)} answered {answer[-2:].hex()}"
    return answer[:-2]


# Allowed writes ----------------------------------------------------------------------------------
# (CLA, INS, P1 or None) → cells a 9000 may change.
CARD_WRITES: dict[tuple[int, int, int | None], frozenset[str]] = {
    (0x00, 0x20, None): frozenset({"pin.tries"}),
    (0x80, 0x52, None): frozenset({"et.balance", "et.online_ctc", "ef18", "proof"}),
    (0x80, 0x54, None): frozenset({"et.balance", "et.offline_ctc", "ef18", "proof"}),
    (0xE0, 0x7C, None): frozenset({"lock", "lock.sesgk", "et.offline_ctc", "proof"}),
    (0xE0, 0x7E, 0x08): frozenset(
        {"et.balance", "et.offline_ctc", "lock", "lock.sesgk", "ef18", "proof"}
    ),
    (0xE0, 0x7E, 0x09): frozenset(
        {"et.balance", "et.online_ctc", "lock", "lock.sesgk", "ef18", "proof"}
    ),
    (0xE0, 0xCA, 0x01): frozenset({"lock"}),
    (0x04, 0xD6, None): frozenset({"ef15", "ef16", "ef1b", "ef1c"}),
    (0x84, 0x1E, None): frozenset({"et.block"}),
    (0x84, 0x18, None): frozenset({"et.block"}),
    (0x80, 0x5E, 0x01): frozenset({"pin", "pin.tries", "ef1b"}),
    (0x80, 0x5E, 0x00): frozenset({"pin", "pin.tries"}),
}
PSAM_WRITES: dict[tuple[int, int, int | None], frozenset[str]] = {
    (0x80, 0x70, None): frozenset({"ttc"}),
    (0xE0, 0x40, None): frozenset({"ttc", "grey"}),
    (0xE0, 0x42, None): frozenset({"grey"}),
    (0xE0, 0x44, None): frozenset({"ttc", "grey"}),
}
PIN_CHECKING = {(0x00, 0x20), (0x80, 0x5E)}  # VERIFY, and CHANGE PIN (P1 01) proving the old PIN


def allowed(
    table: dict[tuple[int, int, int | None], frozenset[str]], c: CommandApdu
) -> frozenset[str]:
    return table.get((c.cla, c.ins, c.p1), table.get((c.cla, c.ins, None), frozenset()))


def check_card_writes(command: CommandApdu | None, sw: int, before: Cells, after: Cells) -> None:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if not changed:
        return
    assert command is not None, f"an undecodable APDU changed {changed}"
    name = cmd.command_name(command)
    pin_checked = (command.cla, command.ins) in PIN_CHECKING and (
        command.ins == 0x20 or command.p1 == 0x01
    )
    if sw != OK:
        # The one failure that writes: a wrong PIN counts down the tries, and only them.
        assert pin_checked, f"{name} answered {sw:04X} and changed {changed}"
        assert changed == {"pin.tries"}
        tries_before, tries_after = num(before["pin.tries"]), num(after["pin.tries"])
        assert tries_after == tries_before - 1
        expected_sw = 0x6983 if tries_after == 0 else 0x63C0 | tries_after
        assert sw == expected_sw
        return
    assert changed <= allowed(CARD_WRITES, command), f"{name} (9000) changed {changed}"
    if "pin.tries" in changed:
        assert after["pin.tries"] == bytes((layout.PIN_TRIES,))
    if command.ins == 0x20:
        return
    counters = {"et.offline_ctc", "et.online_ctc"} & changed
    for counter in counters:
        assert num(after[counter]) == num(before[counter]) + 1, f"{name} moved {counter}"
    if {"ef18", "et.balance"} & changed or command.ins in (0x52, 0x54, 0x7C, 0x7E):
        assert len(counters) == 1, f"{name} moved {counters}"
    if "ef18" in changed:  # one record added on top, the rest shifted down
        size = layout.EF18_RECORD_SIZE
        assert after["ef18"][size:] == before["ef18"][: len(after["ef18"]) - size]
        (counter,) = counters
        assert num(after["ef18"][:2]) == num(before[counter])
    if command.ins == 0x52:
        assert num(after["et.balance"]) >= num(before["et.balance"])
    elif "et.balance" in changed:
        assert num(after["et.balance"]) < num(before["et.balance"])
    if command.ins == 0xD6:
        assert len(changed) == 1
        (cell,) = changed
        assert len(after[cell]) == len(before[cell])
    if (command.ins, command.p1) == (0xCA, 0x01):
        assert (before["lock"][0], after["lock"][0]) == (layout.LockStatus.TAC_UNREAD, 0)
        assert before["lock"][1:] == after["lock"][1:]


def check_psam_writes(command: CommandApdu | None, sw: int, before: Cells, after: Cells) -> None:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if not changed:
        return
    assert command is not None and sw == OK, f"a failed or undecodable APDU changed {changed}"
    name = cmd.command_name(command)
    assert changed <= allowed(PSAM_WRITES, command), f"{name} changed {changed}"
    if "ttc" in changed:
        assert num(after["ttc"]) == num(before["ttc"]) + 1
    if "grey" in changed:
        assert len(after["grey"]) in (len(before["grey"]), len(before["grey"]) + 56)
        assert len(after["grey"]) <= 56 * layout.PSAM_GREY_SESSIONS


def send_and_check(
    applet: Applet, raw: bytes, check: Callable[[CommandApdu | None, int, Cells, Cells], None]
) -> int:
    before = dict(applet.nvm.cells)
    answer = applet.process(raw)  # must not raise, whatever the bytes
    assert isinstance(answer, bytes)
    assert len(answer) >= 2
    sw1, sw = answer[-2], num(answer[-2:])
    assert sw1 in range(0x61, 0x70) or sw1 in range(0x90, 0xA0), f"{sw:04X} is no status word"
    if sw != OK:
        assert len(answer) == 2, f"{sw:04X} with data"
    after = dict(applet.nvm.cells)
    try:
        command: CommandApdu | None = CommandApdu.from_bytes(raw)
    except DecodeError:
        command = None
    check(command, sw, before, after)
    stored, journal = applet.nvm.backend.load()
    assert journal is None
    assert stored == after
    return sw


# Strategies ---------------------------------------------------------------------------------------
byte = st.integers(0, 255)
KNOWN_CLA = [0x00, 0x04, 0x80, 0x84, 0xE0]
KNOWN_INS = sorted({ins for (_, ins, _) in cmd._NAMES})
KNOWN_CLA_INS = sorted({(cla, ins) for (cla, ins, _) in cmd._NAMES})
# P1/P2 values the commands give meaning to (purse ids, SFIs, key usages), and the edges.
PARAMS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x09, 0x0C, 0x7F, 0x80, 0x95, 0x9B, 0xC4, 0xFF]
param = st.sampled_from(PARAMS) | byte


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A header with any of the ISO body forms, well-formed or not."""
    cla, ins = draw(
        st.sampled_from(KNOWN_CLA_INS)
        | st.tuples(st.sampled_from(KNOWN_CLA) | byte, st.sampled_from(KNOWN_INS) | byte)
    )
    header = bytes((cla, ins, draw(param), draw(param)))
    data = draw(st.binary(min_size=1, max_size=40) | st.binary(min_size=250, max_size=300))
    short = data[:255]
    le = draw(byte)
    le2 = draw(st.binary(min_size=2, max_size=2))
    form = draw(
        st.sampled_from(
            ["case1", "case2", "case3", "case4", "ext2", "ext3", "ext4", "bad-lc", "truncated"]
        )
    )
    bodies = {
        "case1": b"",
        "case2": bytes((le,)),
        "case3": bytes((len(short),)) + short,
        "case4": bytes((len(short),)) + short + bytes((le,)),
        "ext2": b"\x00" + le2,
        "ext3": b"\x00" + len(data).to_bytes(2, "big") + data,
        "ext4": b"\x00" + len(data).to_bytes(2, "big") + data + le2,
        "bad-lc": bytes((draw(byte),)) + short,
        "truncated": b"\x00" + len(data).to_bytes(2, "big") + data + le2,
    }
    raw = header + bodies[form]
    if form == "truncated":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return raw


def mutations(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid command of the spec with up to three bytes flipped, changed, inserted or removed."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "append", "p1p2"]))
            # Half the time in the header and Lc, where one byte changes the command most.
            at = draw(st.integers(0, 4) | st.integers(0, max(len(raw) - 1, 0)))
            at = min(at, max(len(raw) - 1, 0))
            if op == "flip" and raw:
                raw[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "set" and raw:
                raw[at] = draw(byte)
            elif op == "insert":
                raw.insert(at, draw(byte))
            elif op == "delete" and raw:
                del raw[at]
            elif op == "cut":
                del raw[at:]
            elif op == "append":
                raw += draw(st.binary(min_size=1, max_size=4))
            elif op == "p1p2" and len(raw) >= 4:
                raw[draw(st.sampled_from([2, 3]))] = draw(param)
        return bytes(raw)

    return mutate()


def apdus(common: list[bytes], special: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """1–4 APDUs: random bytes, random structure, or spec commands (mutated or not); `special`
    are the ones valid right now in the state, so a good share of them reaches the writes."""
    one = st.binary(max_size=300) | structured() | mutations(common)
    if special:
        one = one | mutations(special) | st.sampled_from(special)
    return st.lists(one, min_size=1, max_size=4)


# Card states --------------------------------------------------------------------------------------
CARD_PROFILES = {
    "grey-locked": "grey-locked",
    "grey-init-online": "grey-locked",
    "tac-unread": "tac-unread",
}


@dataclass
class Scene:
    """An applet brought into a state, the spec's commands to mutate, and `special`: those of
    them that are valid right now (a MAC from the PSAM or the HSM, the right PIN)."""

    applet: Applet
    common: list[bytes]
    special: list[bytes]


def card_scene(world: World, state: str) -> Scene:
    profile = CARD_PROFILES.get(state, "normal")
    card = in_memory(world.cells(profile), SeededRng(5))
    card.power_on()
    psam = in_memory(world.cells("psam-dispenser"), SeededRng(6))
    psam.power_on()
    public = PublicAppData.from_bytes(card.nvm.cells["ef15"])
    asn8, issuer8, term = public.asn8, public.issuer_id, psam.nvm.cells["ef16"]
    hsm = world.hsm
    reload_pin = cmd.reload_pin(PIN, hsm.reload_pin_mac(asn8, pin=encode_pin(PIN)))
    common = [
        cmd.select(layout.PSE_NAME),
        cmd.select(layout.ET_AID),
        cmd.select(layout.LOYALTY_AID),
        cmd.read_binary(layout.SFI_EF15),
        cmd.read_binary(layout.SFI_EF1C, 10, 5),
        cmd.read_record(layout.SFI_EF18, 1),
        cmd.read_record(layout.SFI_PSE_DIR, 1),
        cmd.verify(PIN),
        cmd.verify("1234"),
        cmd.get_challenge(4),
        cmd.get_challenge(8),
        cmd.get_balance(),
        cmd.get_balance(layout.LOYALTY_PURSE),
        cmd.initialize_for_load(500, term),
        cmd.initialize_for_purchase(500, term),
        cmd.initialize_for_grey_lock(term),
        cmd.initialize_for_online_unlock(term),
        cmd.credit_for_load(DT, bytes(4)),
        cmd.debit_for_purchase(1, DT, bytes(4)),
        cmd.grey_lock(1, bytes(4), DT, bytes(4)),
        cmd.debit_for_unlock(100, 1, term, 1, DT, bytes(4)),
        cmd.online_unlock(100, DT, bytes(4)),
        cmd.get_lock_proof(),
        cmd.clear_tac_unread(),
        cmd.get_transaction_prove(layout.TxType.ED_PURCHASE, 0),
        cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, b"\x01", bytes(4)),
        cmd.application_block(bytes(4)),
        cmd.application_unblock(bytes(4)),
        cmd.change_pin(PIN, "1234"),
        reload_pin,
    ]
    special: list[CommandApdu] = []
    if state == "pse":
        ok(card, cmd.select(layout.PSE_NAME))
    elif state != "none":
        ok(card, cmd.select(layout.ET_AID))
    if state not in ("none", "pse", "et", "challenge"):
        ok(card, cmd.verify(PIN))
    if state in ("none", "pse"):
        special += [cmd.select(layout.ET_AID), cmd.read_record(layout.SFI_PSE_DIR, 2)]
    elif state in ("et", "et-pin"):
        special += [cmd.verify(PIN), cmd.verify("12345"), cmd.change_pin(PIN, "1234"), reload_pin]
    elif state == "challenge":
        challenge = ok(card, cmd.get_challenge(4))
        data = b"\x01"
        header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data)
        mac = hsm.secure_messaging_mac(asn8, command=header, challenge=challenge)
        special.append(cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data, mac))
        block = cmd.application_block_header()
        mac = hsm.secure_messaging_mac(asn8, command=block, challenge=challenge)
        special.append(cmd.application_block(mac))
    elif state == "init-purchase":
        init = ok(card, cmd.initialize_for_purchase(700, term))
        ok(psam, cmd.select(layout.PSAM_AID))
        sam = ok(
            psam,
            cmd.init_sam_for_purchase(init[11:15], num(init[4:6]), 700, DT, asn8, issuer8),
        )
        special.append(cmd.debit_for_purchase(num(sam[:4]), DT, sam[4:8]))
    elif state == "init-load":
        init = ok(card, cmd.initialize_for_load(700, term))
        mac2 = hsm.load_mac2(
            asn8,
            rand=init[8:12],
            online_ctc=num(init[4:6]),
            amount=700,
            tx_type=layout.TxType.ED_LOAD,
            term=term,
            dt=DT,
        )
        special.append(cmd.credit_for_load(DT, mac2))
    elif state == "init-grey-lock":
        init = ok(card, cmd.initialize_for_grey_lock(term))
        ok(psam, cmd.select(layout.PSAM_AID))
        sam = ok(
            psam,
            cmd.init_sam_for_grey_lock(
                init[11:15], num(init[4:6]), num(init[:4]), DT, asn8, issuer8
            ),
        )
        special.append(cmd.grey_lock(num(sam[:4]), sam[4:8], DT, sam[8:12]))
    elif state == "grey-locked":
        bill = world.issued(profile).escape_bill
        assert bill is not None
        special.append(
            cmd.debit_for_unlock(bill.amount, bill.ctc + 1, bill.term, bill.psam_ttc, DT, bill.gmac)
        )
    elif state == "grey-init-online":
        init = ok(card, cmd.initialize_for_online_unlock(term))
        mac2 = hsm.online_unlock_mac2(
            asn8, rand=init[10:14], online_ctc=num(init[6:8]), amount=300, term=term, dt=DT
        )
        special.append(cmd.online_unlock(300, DT, mac2))
    elif state == "tac-unread":
        special.append(cmd.clear_tac_unread())
    return Scene(card, [bytes(c) for c in common + special], [bytes(c) for c in special])


PSAM_STATES = ["mf", "adf", "purchase-open", "tmac", "grey-open", "grey-locked", "answered"]
CARD_STATES = [
    "none",
    "pse",
    "et",
    "et-pin",
    "challenge",
    "init-purchase",
    "init-load",
    "init-grey-lock",
    "grey-locked",
    "grey-init-online",
    "tac-unread",
]
WRITING_STATES = [  # the state's special commands that write when sent as they are
    ("et-pin", 2),  # CHANGE PIN
    ("challenge", 0),  # UPDATE BINARY with MAC
    ("challenge", 1),  # APPLICATION BLOCK
    ("init-purchase", 0),
    ("init-load", 0),
    ("init-grey-lock", 0),
    ("grey-locked", 0),
    ("grey-init-online", 0),
    ("tac-unread", 0),
]


@pytest.mark.parametrize("state", CARD_STATES)
@FUZZ
@given(data=st.data())
def test_card_survives_any_apdu(world: World, state: str, data: st.DataObject) -> None:
    scene = card_scene(world, state)
    for raw in data.draw(apdus(scene.common, scene.special)):
        send_and_check(scene.applet, raw, check_card_writes)


@pytest.mark.parametrize(("state", "index"), WRITING_STATES)
def test_the_special_commands_really_write(world: World, state: str, index: int) -> None:
    """The state's valid commands commit (so the fuzz reaches the allowed writes)."""
    scene = card_scene(world, state)
    before = dict(scene.applet.nvm.cells)
    assert send_and_check(scene.applet, scene.special[index], check_card_writes) == OK
    assert scene.applet.nvm.cells != before


SWEEP_BODIES = [
    b"",
    b"\x00",
    b"\x04",
    b"\x02\x00\x01",
    b"\x04\x01\x02\x03\x04\x08",
    b"\x00\x00\x00",
]


def sweep(scene: Scene, check: Callable[[CommandApdu | None, int, Cells, Cells], None]) -> int:
    """Every known CLA/INS with every meaningful P1/P2 and a few bodies, in one session."""
    sent = 0
    # SELECT and VERIFY last: they would change the session (or block the PIN) for the rest.
    for cla, ins in sorted(KNOWN_CLA_INS, key=lambda pair: pair[1] in (0xA4, 0x20)):
        for p1 in PARAMS:
            for p2 in PARAMS:
                for body in SWEEP_BODIES:
                    send_and_check(scene.applet, bytes((cla, ins, p1, p2)) + body, check)
                    sent += 1
    return sent


@pytest.mark.parametrize("state", ["et-pin", "init-purchase", "grey-locked", "tac-unread"])
def test_card_header_sweep(world: World, state: str) -> None:
    assert sweep(card_scene(world, state), check_card_writes) == len(KNOWN_CLA_INS) * len(
        PARAMS
    ) ** 2 * len(SWEEP_BODIES)


def oversized() -> list[bytes]:
    """The largest APDUs there are: extended Lc 65535 (with and without extended Le), Le 65536,
    and 70,000 bytes that are no APDU at all."""
    out = [bytes(70_000), b"\xff" * 70_000]
    for cla, ins in KNOWN_CLA_INS:
        header = bytes((cla, ins, 0x01, 0x01))
        out += [
            header + b"\x00\xff\xff" + bytes(65535),
            header + b"\x00\xff\xff" + b"\x99" * 65535 + b"\x00\x00",
            header + b"\x00\x00\x00",
            header + b"\xff" + bytes(255) + b"\x00",
        ]
    return out


@pytest.mark.parametrize("state", CARD_STATES)
def test_card_survives_oversized_apdus(world: World, state: str) -> None:
    scene = card_scene(world, state)
    for raw in oversized():
        send_and_check(scene.applet, raw, check_card_writes)


@pytest.mark.parametrize("state", PSAM_STATES)
def test_psam_survives_oversized_apdus(world: World, state: str) -> None:
    scene = psam_scene(world, state)
    for raw in oversized():
        send_and_check(scene.applet, raw, check_psam_writes)


def test_wrong_pins_are_the_only_failing_writes(world: World) -> None:
    card = card_scene(world, "et").applet
    sws = [send_and_check(card, bytes(cmd.verify("1111")), check_card_writes) for _ in range(4)]
    assert sws == [0x63C2, 0x63C1, 0x6983, 0x6983]
    assert card.nvm.cells["pin.tries"] == b"\x00"


# PSAM states --------------------------------------------------------------------------------------
def psam_scene(world: World, state: str) -> Scene:
    psam = in_memory(world.cells("psam-dispenser"), SeededRng(6))
    psam.power_on()
    card = in_memory(world.cells("normal"), SeededRng(5))
    card.power_on()
    public = PublicAppData.from_bytes(card.nvm.cells["ef15"])
    asn8, issuer8, term = public.asn8, public.issuer_id, psam.nvm.cells["ef16"]
    rand = bytes.fromhex("01020304")
    common = [
        cmd.select(layout.PSAM_AID),
        CommandApdu(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00"),
        cmd.read_binary(layout.SFI_PSAM_EF15),
        cmd.read_binary(layout.SFI_PSAM_EF16),
        cmd.read_binary(layout.SFI_PSAM_EF17),
        cmd.init_sam_for_purchase(rand, 3, 500, DT, asn8, issuer8),
        cmd.init_sam_for_purchase(rand, 3, 500, DT, asn8, None),
        cmd.credit_sam_for_purchase(bytes(4)),
        cmd.init_sam_for_grey_lock(rand, 3, 90000, DT, asn8, issuer8),
        cmd.verify_grey_lock_mac2(bytes(4)),
        cmd.gmac_for_unlock(asn8, 3, 100),
        cmd.get_gmac_again(16),
        cmd.init_for_descrypt(),
        cmd.des_crypt_mac(bytes(16), more=True),
        cmd.des_crypt_mac(bytes(91)),
    ]
    special: list[CommandApdu] = []
    if state == "mf":
        special.append(cmd.select(layout.PSAM_AID))
    else:
        ok(psam, cmd.select(layout.PSAM_AID))
    if state == "adf":
        special += [
            cmd.init_sam_for_purchase(rand, 3, 500, DT, asn8, issuer8),
            cmd.init_sam_for_grey_lock(rand, 3, 90000, DT, asn8, issuer8),
        ]
    elif state == "purchase-open":
        sam = ok(psam, cmd.init_sam_for_purchase(rand, 3, 500, DT, asn8, issuer8))
        key = crypto.session_key_purchase(
            crypto.purchase_key(psam.nvm.cells["key.mpk"], asn8, issuer8),
            rand,
            b"\x00\x03",
            sam[:4],
        )
        mac2 = crypto.mac_session(key, (500).to_bytes(4, "big"))  # what the card would answer
        special.append(cmd.credit_sam_for_purchase(mac2))
    elif state == "tmac":
        ok(psam, cmd.init_for_descrypt())
        special += [cmd.des_crypt_mac(bytes(16), more=True), cmd.des_crypt_mac(bytes(91))]
    elif state in ("grey-open", "grey-locked", "answered"):
        ok(card, cmd.select(layout.ET_AID))
        ok(card, cmd.verify(PIN))
        init = ok(card, cmd.initialize_for_grey_lock(term))
        ctc = num(init[4:6])
        sam = ok(
            psam,
            cmd.init_sam_for_grey_lock(init[11:15], ctc, num(init[:4]), DT, asn8, issuer8),
        )
        mac2 = ok(card, cmd.grey_lock(num(sam[:4]), sam[4:8], DT, sam[8:12]))[4:8]
        special += [
            cmd.verify_grey_lock_mac2(mac2),
            cmd.gmac_for_unlock(asn8, ctc, 2500),
            cmd.get_gmac_again(num(sam[:4])),
        ]
        if state != "grey-open":
            ok(psam, cmd.verify_grey_lock_mac2(mac2))
        if state == "answered":
            ok(psam, cmd.gmac_for_unlock(asn8, ctc, 2500))
    return Scene(psam, [bytes(c) for c in common + special], [bytes(c) for c in special])


@pytest.mark.parametrize("state", ["adf", "grey-locked"])
def test_psam_header_sweep(world: World, state: str) -> None:
    assert sweep(psam_scene(world, state), check_psam_writes) > 0


@pytest.mark.parametrize("state", PSAM_STATES)
@FUZZ
@given(data=st.data())
def test_psam_survives_any_apdu(world: World, state: str, data: st.DataObject) -> None:
    scene = psam_scene(world, state)
    for raw in data.draw(apdus(scene.common, scene.special)):
        send_and_check(scene.applet, raw, check_psam_writes)


def test_psam_writes_only_on_its_persistent_commands(world: World) -> None:
    scene = psam_scene(world, "grey-open")
    sws = [send_and_check(scene.applet, raw, check_psam_writes) for raw in scene.special]
    assert sws == [OK, OK, OK]  # E0 42, E0 44, E0 46 of a real lock
    assert num(scene.applet.nvm.cells["ttc"]) == 16 + 2  # the lock's TTC and the unlock's
