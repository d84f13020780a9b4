"""Power loss at every write point of every committing command (spec §2 atomicity, §5, §6).

For each operation the committing command is first run untorn with a counting tear hook: that
gives its write points, the memory before and after it, and its answer. Then, each time on a
fresh card and PSAM, the power is cut before the command, at every write point (the hook raises
PowerLost, which the applet lets through and the InProcReader turns into CardLost), and after
the commit with the answer lost. After power-on the memory must be exactly the old image (the
"stage" points) or exactly the new one (the "journal"/"apply" points), and the terminal must
recover the way spec §5 says. Each operation runs on the in-memory backend (power-on again) and
on the file backend (a process restart: a new FileBackend and applet on the same files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from card_profiles.emulator import make_applet
from card_profiles.fuel_card import FuelCard
from card_profiles.nvm import Cells, FileBackend, MemoryBackend, NvmBackend, PowerLost, WritePoint
from card_profiles.psam import Psam
from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.clockrng import SeededRng
from cardcore.layout import LockStatus, TxType
from cardcore.records import Bill, LockRecord, PublicAppData
from hsm_mock.hsm import MockHsm
from terminal_sim.issuing import IssuedCard
from terminal_sim.readers import CardLost, InProcReader

DT = bytes.fromhex("20261122103000")
AMOUNT = 1234
PIN = "999999"
SAM_RAND = bytes.fromhex("11223344")
OK, PROOF_NOT_FOUND = 0x9000, 0x9406


def num(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


@dataclass
class World:
    hsm: MockHsm
    issued: Callable[[str], IssuedCard]

    def cells(self, profile: str) -> Cells:
        return dict(self.issued(profile).cells)


@pytest.fixture(scope="module")
def world(hsm: MockHsm, issued: Callable[[str], IssuedCard]) -> World:
    return World(hsm, issued)


class Device:
    """A card or PSAM in a reader, on an in-memory or a file-backed memory."""

    def __init__(self, name: str, kind: str, cells: Cells, directory: Path, seed: int) -> None:
        self.name, self.kind, self.seed = name, kind, seed
        self.path = directory / f"{name}.json"
        backend: NvmBackend
        if kind == "memory":
            backend = MemoryBackend(cells)
        else:
            backend = FileBackend(self.path, initial=cells)
        self._plug(backend)

    def _plug(self, backend: NvmBackend) -> None:
        self.applet: FuelCard | Psam = make_applet(backend, SeededRng(self.seed))
        self.reader = InProcReader(self.applet, self.name)
        self.reader.connect()

    def restart(self) -> None:
        """Power on after the loss; with files, as a new process that reads them again."""
        if self.kind == "memory":
            self.reader.connect()
        else:
            self._plug(FileBackend(self.path))

    def cells(self) -> Cells:
        return dict(self.applet.nvm.cells)

    def stored(self) -> Cells:
        """The persistent image right now; no journal may be left over between commands."""
        cells, journal = self.applet.nvm.backend.load()
        assert journal is None, f"{self.name}: a journal was left behind"
        return cells

    def x(self, apdu: CommandApdu) -> tuple[bytes, int]:
        raw = self.reader.transmit(bytes(apdu))
        return raw[:-2], num(raw[-2:])

    def ok(self, apdu: CommandApdu) -> bytes:
        data, sw = self.x(apdu)
        assert sw == OK, f"{self.name}: {cmd.command_name(apdu)} answered {sw:04X}"
        return data


class Rig:
    """One card (of a profile) and the dispenser PSAM, with the host's HSM."""

    def __init__(self, world: World, profile: str, kind: str, directory: Path) -> None:
        self.hsm = world.hsm
        self.card = Device("card", kind, world.cells(profile), directory, seed=11)
        self.psam = Device("psam", kind, world.cells("psam-dispenser"), directory, seed=12)
        public = PublicAppData.from_bytes(self.card.applet.nvm.cells["ef15"])
        self.asn8, self.issuer8 = public.asn8, public.issuer_id
        self.term = self.psam.applet.nvm.cells["ef16"]
        self.escape: Bill | None = world.issued(profile).escape_bill
        self.notes: dict[str, Any] = {}

    def device(self, name: str) -> Device:
        return self.card if name == "card" else self.psam

    def open_et(self) -> None:
        self.card.ok(cmd.select(layout.ET_AID))
        self.card.ok(cmd.verify(PIN))

    def open_psam(self) -> None:
        self.psam.ok(cmd.select(layout.PSAM_AID))

    def lock_record(self) -> LockRecord:
        return LockRecord.from_bytes(self.card.ok(cmd.get_lock_proof()))

    def prove(self, tx_type: int, ctc: int) -> tuple[bytes, int]:
        return self.card.x(cmd.get_transaction_prove(tx_type, ctc))

    def bill(self) -> Bill:
        assert self.escape is not None
        return self.escape


@dataclass
class Reference:
    """The untorn run of an operation's committing command."""

    command: CommandApdu
    before: Cells
    after: Cells
    answer: bytes
    points: list[WritePoint]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return self.answer[:-2]


Prefix = Callable[[Rig], CommandApdu]
Recover = Callable[[Rig, Reference, bool], None]


@dataclass(frozen=True)
class TearOp:
    name: str
    device: str
    profile: str
    points: int  # write points of the committing command: one "stage" per cell, journal, apply
    prefix: Prefix  # runs the flow up to the committing command, which it returns
    recover: Recover  # the terminal's recovery after power-on; `happened` = new state expected


# Card: purchase ---------------------------------------------------------------------------------
def purchase_prefix(rig: Rig) -> CommandApdu:
    rig.open_et()
    rig.open_psam()
    init = rig.card.ok(cmd.initialize_for_purchase(AMOUNT, rig.term))
    balance, ctc, rand = num(init[:4]), num(init[4:6]), init[11:15]
    sam = rig.psam.ok(cmd.init_sam_for_purchase(rand, ctc, AMOUNT, DT, rig.asn8, rig.issuer8))
    rig.notes.update(balance=balance, ctc=ctc, ttc=num(sam[:4]))
    return cmd.debit_for_purchase(num(sam[:4]), DT, sam[4:8])


def purchase_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_et()
    init = rig.card.ok(cmd.initialize_for_purchase(1, rig.term))
    old = rig.notes["ctc"]
    assert num(init[4:6]) == old + happened
    assert num(init[:4]) == rig.notes["balance"] - AMOUNT * happened
    proof = rig.prove(TxType.ED_PURCHASE, old)
    if not happened:
        assert proof == (b"", PROOF_NOT_FOUND)
        return
    tac, mac2 = ref.data[:4], ref.data[4:8]
    assert proof == (mac2 + tac, OK)
    assert rig.hsm.verify_purchase_tac(
        rig.asn8,
        amount=AMOUNT,
        tx_type=TxType.ED_PURCHASE,
        term=rig.term,
        ttc=rig.notes["ttc"],
        dt=DT,
        tac=tac,
    )
    assert rig.psam.x(cmd.credit_sam_for_purchase(mac2)) == (b"", OK)


# Card: load -------------------------------------------------------------------------------------
def load_prefix(rig: Rig) -> CommandApdu:
    rig.open_et()
    init = rig.card.ok(cmd.initialize_for_load(AMOUNT, rig.term))
    balance, ctc, rand, mac1 = num(init[:4]), num(init[4:6]), init[8:12], init[12:16]
    assert rig.hsm.verify_load_mac1(
        rig.asn8,
        rand=rand,
        online_ctc=ctc,
        old_balance=balance,
        amount=AMOUNT,
        tx_type=TxType.ED_LOAD,
        term=rig.term,
        mac1=mac1,
    )
    mac2 = rig.hsm.load_mac2(
        rig.asn8,
        rand=rand,
        online_ctc=ctc,
        amount=AMOUNT,
        tx_type=TxType.ED_LOAD,
        term=rig.term,
        dt=DT,
    )
    rig.notes.update(balance=balance, ctc=ctc, mac2=mac2)
    return cmd.credit_for_load(DT, mac2)


def load_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_et()
    init = rig.card.ok(cmd.initialize_for_load(1, rig.term))
    old, balance = rig.notes["ctc"], rig.notes["balance"] + AMOUNT * happened
    assert (num(init[:4]), num(init[4:6])) == (balance, old + happened)
    proof = rig.prove(TxType.ED_LOAD, old)
    if not happened:
        assert proof == (b"", PROOF_NOT_FOUND)
        return
    assert proof == (rig.notes["mac2"] + ref.data, OK)
    assert rig.hsm.verify_load_tac(
        rig.asn8,
        new_balance=balance,
        online_ctc=old,
        amount=AMOUNT,
        tx_type=TxType.ED_LOAD,
        term=rig.term,
        dt=DT,
        tac=ref.data,
    )


# Card: grey lock --------------------------------------------------------------------------------
def grey_lock_prefix(rig: Rig) -> CommandApdu:
    rig.open_et()
    rig.open_psam()
    init = rig.card.ok(cmd.initialize_for_grey_lock(rig.term))
    balance, ctc, rand = num(init[:4]), num(init[4:6]), init[11:15]
    sam = rig.psam.ok(cmd.init_sam_for_grey_lock(rand, ctc, balance, DT, rig.asn8, rig.issuer8))
    ttc, psam_rand, mac1 = num(sam[:4]), sam[4:8], sam[8:12]
    rig.notes.update(balance=balance, ctc=ctc, ttc=ttc)
    return cmd.grey_lock(ttc, psam_rand, DT, mac1)


def grey_lock_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_et()
    record, old = rig.lock_record(), rig.notes["ctc"]
    if not happened:
        assert record == LockRecord.from_bytes(ref.before["lock"])
        assert record.status == LockStatus.FREE
        assert num(rig.card.ok(cmd.initialize_for_grey_lock(rig.term))[4:6]) == old
        assert rig.prove(TxType.GREY_LOCK, old) == (b"", PROOF_NOT_FOUND)
        return
    gtac, mac2 = ref.data[:4], ref.data[4:8]
    balance = rig.notes["balance"]
    assert record == LockRecord(
        LockStatus.GREY, TxType.GREY_LOCK, balance, old, rig.term, DT, mac2, gtac
    )
    assert rig.card.x(cmd.initialize_for_grey_lock(rig.term)) == (b"", 0x9408)
    assert rig.prove(TxType.GREY_LOCK, old) == (mac2 + gtac, OK)
    assert rig.hsm.verify_gtac(
        rig.asn8, balance=balance, term=rig.term, ttc=rig.notes["ttc"], dt=DT, gtac=gtac
    )
    # The PSAM still waits for the lock's MAC2: the terminal completes the lock with it.
    assert rig.psam.x(cmd.verify_grey_lock_mac2(mac2)) == (b"", OK)


# Card: debit for unlock (re-debit of the grey-locked profile's escape bill) -------------------
def debit_for_unlock_prefix(rig: Rig) -> CommandApdu:
    bill = rig.bill()
    rig.open_et()
    record = rig.lock_record()
    assert (record.status, record.ctc) == (LockStatus.GREY, bill.ctc)
    rig.notes.update(balance=record.balance)
    return cmd.debit_for_unlock(bill.amount, bill.ctc + 1, bill.term, bill.psam_ttc, DT, bill.gmac)


def debit_for_unlock_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    bill = rig.bill()
    rig.open_et()
    record, ctc = rig.lock_record(), bill.ctc + 1
    if not happened:
        assert record.status == LockStatus.GREY
        assert rig.prove(TxType.DEBIT_FOR_UNLOCK, ctc) == (b"", PROOF_NOT_FOUND)
        # Re-debit again with the escape bill: the same TAC, the same memory as untorn.
        assert rig.card.x(ref.command) == (ref.data, OK)
        assert rig.card.cells() == ref.after
        return
    tac, balance = ref.data, rig.notes["balance"] - bill.amount
    assert record == LockRecord(
        LockStatus.TAC_UNREAD,
        TxType.DEBIT_FOR_UNLOCK,
        balance,
        ctc,
        bill.term,
        DT,
        bill.amount.to_bytes(4, "big"),
        tac,
    )
    assert rig.prove(TxType.DEBIT_FOR_UNLOCK, ctc) == (bill.gmac + tac, OK)
    assert rig.hsm.verify_unlock_tac(
        rig.asn8, amount=bill.amount, term=bill.term, ttc=bill.psam_ttc, dt=DT, tac=tac
    )
    # Re-debiting the same escape bill twice is refused: no fen is counted twice.
    assert rig.card.x(ref.command) == (b"", 0x6985)
    assert rig.card.x(cmd.clear_tac_unread()) == (b"", OK)
    assert rig.lock_record().status == LockStatus.FREE


# Card: online unlock ----------------------------------------------------------------------------
def online_unlock_prefix(rig: Rig) -> CommandApdu:
    amount = rig.bill().amount
    rig.open_et()
    init = rig.card.ok(cmd.initialize_for_online_unlock(rig.term))
    balance, offline, online = num(init[:4]), num(init[4:6]), num(init[6:8])
    rand, mac1 = init[10:14], init[14:18]
    assert rig.hsm.verify_online_unlock_mac1(
        rig.asn8,
        rand=rand,
        online_ctc=online,
        balance=balance,
        offline_ctc=offline,
        term=rig.term,
        mac1=mac1,
    )
    mac2 = rig.hsm.online_unlock_mac2(
        rig.asn8, rand=rand, online_ctc=online, amount=amount, term=rig.term, dt=DT
    )
    rig.notes.update(balance=balance, online=online, rand=rand)
    return cmd.online_unlock(amount, DT, mac2)


def online_unlock_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    amount, online, balance = rig.bill().amount, rig.notes["online"], rig.notes["balance"]
    rig.open_et()
    record = rig.lock_record()
    if not happened:
        assert record.status == LockStatus.GREY
        init = rig.card.ok(cmd.initialize_for_online_unlock(rig.term))
        assert (num(init[:4]), num(init[6:8])) == (balance, online)
        assert rig.prove(TxType.ONLINE_UNLOCK, online) == (b"", PROOF_NOT_FOUND)
        return
    mac3 = ref.data
    after = balance - amount
    assert record == LockRecord(
        LockStatus.FREE,
        TxType.ONLINE_UNLOCK,
        after,
        online,
        rig.term,
        DT,
        amount.to_bytes(4, "big"),
        mac3,
    )
    assert rig.hsm.verify_online_unlock_mac3(
        rig.asn8,
        rand=rig.notes["rand"],
        online_ctc=online,
        balance_after=after,
        amount=amount,
        term=rig.term,
        dt=DT,
        mac3=mac3,
    )
    init = rig.card.ok(cmd.initialize_for_load(1, rig.term))  # shows the online CTC
    assert (num(init[:4]), num(init[4:6])) == (after, online + 1)
    assert rig.prove(TxType.ONLINE_UNLOCK, online) == (mac3 + bytes(4), OK)


# Card: CHANGE PIN (after one wrong PIN, so the tries counter is reset too) --------------------
NEW_PIN = "123456"


def change_pin_prefix(rig: Rig) -> CommandApdu:
    rig.card.ok(cmd.select(layout.ET_AID))
    assert rig.card.x(cmd.verify("111111")) == (b"", 0x63C2)
    return cmd.change_pin(PIN, NEW_PIN)


def change_pin_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.card.ok(cmd.select(layout.ET_AID))
    ef1b = rig.card.ok(cmd.read_binary(layout.SFI_EF1B))
    changed = layout.DEFAULT_PIN_FLAG_CHANGED
    assert ef1b[0] == (changed if happened else layout.DEFAULT_PIN_FLAG_DEFAULT)
    assert rig.card.x(cmd.verify(NEW_PIN if happened else PIN)) == (b"", OK)
    assert rig.card.applet.nvm.cells["pin.tries"] == bytes((layout.PIN_TRIES,))


# Card: UPDATE BINARY with MAC (store flag on) ---------------------------------------------------
def update_binary_prefix(rig: Rig) -> CommandApdu:
    rig.card.ok(cmd.select(layout.ET_AID))
    challenge = rig.card.ok(cmd.get_challenge(4))
    data = bytes((layout.STORE_FLAG_ON,))
    header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data)
    mac = rig.hsm.secure_messaging_mac(rig.asn8, command=header, challenge=challenge)
    return cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, data, mac)


def update_binary_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.card.ok(cmd.select(layout.ET_AID))
    ef15 = PublicAppData.from_bytes(rig.card.ok(cmd.read_binary(layout.SFI_EF15)))
    assert ef15.store_enabled is happened


# PSAM: INIT SAM FOR PURCHASE --------------------------------------------------------------------
def sam_purchase_prefix(rig: Rig) -> CommandApdu:
    rig.open_psam()
    return cmd.init_sam_for_purchase(SAM_RAND, 7, AMOUNT, DT, rig.asn8, rig.issuer8)


def sam_purchase_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_psam()
    again = rig.psam.ok(ref.command)  # the terminal starts the purchase over
    assert num(again[:4]) == num(ref.data[:4]) + happened
    if not happened:
        assert again == ref.data


# PSAM: INIT SAM FOR GREY LOCK -------------------------------------------------------------------
def sam_grey_prefix(rig: Rig) -> CommandApdu:
    rig.open_psam()
    return cmd.init_sam_for_grey_lock(SAM_RAND, 7, 50000, DT, rig.asn8, rig.issuer8)


def sam_grey_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_psam()
    # The session is remembered (still open: 6985) or unknown (6A88).
    answer = rig.psam.x(cmd.gmac_for_unlock(rig.asn8, 7, 100))
    assert answer == (b"", 0x6985 if happened else 0x6A88)
    again = rig.psam.ok(ref.command)
    assert num(again[:4]) == num(ref.data[:4]) + happened


# PSAM: VERIFY GREY-LOCK MAC2 and GMAC FOR UNLOCK (after a real lock of the card) --------------
def lock_card(rig: Rig) -> bytes:
    """The card locked at the PSAM; returns the card's MAC2."""
    prefix = grey_lock_prefix(rig)
    answer = rig.card.ok(prefix)
    return answer[4:8]


def debit_card(rig: Rig, gmac: bytes, psam_tac: bytes) -> None:
    """The nozzle went back: DEBIT FOR UNLOCK with the PSAM's GMAC (the card stayed powered)."""
    ctc, ttc = rig.notes["ctc"], rig.notes["ttc"]
    tac = rig.card.ok(cmd.debit_for_unlock(AMOUNT, ctc + 1, rig.term, ttc + 1, DT, gmac))
    assert rig.hsm.verify_unlock_tac(
        rig.asn8, amount=AMOUNT, term=rig.term, ttc=ttc + 1, dt=DT, tac=tac
    )
    assert rig.hsm.verify_psam_tac(
        rig.asn8, amount=AMOUNT, lock_term=rig.term, lock_ttc=ttc, lock_dt=DT, tac=psam_tac
    )


def sam_verify_prefix(rig: Rig) -> CommandApdu:
    return cmd.verify_grey_lock_mac2(lock_card(rig))


def sam_verify_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_psam()
    answer = rig.psam.x(cmd.gmac_for_unlock(rig.asn8, rig.notes["ctc"], AMOUNT))
    if not happened:
        # The lock was never confirmed: E0 44 refuses until the terminal re-sends E0 42, which
        # the PSAM checks against its open locks although the power took the session with it.
        assert answer == (b"", 0x6985)
        assert rig.psam.x(ref.command) == (b"", OK)
        assert rig.psam.cells() == ref.after
        answer = rig.psam.x(cmd.gmac_for_unlock(rig.asn8, rig.notes["ctc"], AMOUNT))
    assert answer[1] == OK
    debit_card(rig, answer[0][:4], answer[0][4:8])


def sam_gmac_prefix(rig: Rig) -> CommandApdu:
    rig.psam.ok(cmd.verify_grey_lock_mac2(lock_card(rig)))
    return cmd.gmac_for_unlock(rig.asn8, rig.notes["ctc"], AMOUNT)


def sam_gmac_recover(rig: Rig, ref: Reference, happened: bool) -> None:
    rig.open_psam()
    again = rig.psam.x(cmd.get_gmac_again(rig.notes["ttc"]))
    assert again == ((ref.data, OK) if happened else (b"", 0x6A88))
    # Asking E0 44 again gives the same answer and leaves the PSAM as the untorn run did.
    assert rig.psam.x(ref.command) == (ref.data, OK)
    assert rig.psam.cells() == ref.after
    debit_card(rig, ref.data[:4], ref.data[4:8])


OPS = [
    TearOp("purchase", "card", "normal", 6, purchase_prefix, purchase_recover),
    TearOp("load", "card", "normal", 6, load_prefix, load_recover),
    TearOp("grey-lock", "card", "normal", 6, grey_lock_prefix, grey_lock_recover),
    TearOp(
        "debit-for-unlock",
        "card",
        "grey-locked",
        8,
        debit_for_unlock_prefix,
        debit_for_unlock_recover,
    ),
    TearOp("online-unlock", "card", "grey-locked", 8, online_unlock_prefix, online_unlock_recover),
    TearOp("change-pin", "card", "new", 5, change_pin_prefix, change_pin_recover),
    TearOp("update-binary-mac", "card", "normal", 3, update_binary_prefix, update_binary_recover),
    TearOp("psam-80-70", "psam", "normal", 3, sam_purchase_prefix, sam_purchase_recover),
    TearOp("psam-E0-40", "psam", "normal", 4, sam_grey_prefix, sam_grey_recover),
    TearOp("psam-E0-42", "psam", "normal", 3, sam_verify_prefix, sam_verify_recover),
    TearOp("psam-E0-44", "psam", "normal", 4, sam_gmac_prefix, sam_gmac_recover),
]
KINDS = ["memory", "file"]
EXPECTED_TEAR_CASES = 156  # (points + before + answer lost) per operation, on both backends


def test_the_tear_table_covers_every_case() -> None:
    assert sum(op.points + 2 for op in OPS) * len(KINDS) == EXPECTED_TEAR_CASES


def reference_run(op: TearOp, world: World, kind: str, directory: Path) -> Reference:
    rig = Rig(world, op.profile, kind, directory)
    command = op.prefix(rig)
    device = rig.device(op.device)
    before = device.cells()
    points: list[WritePoint] = []
    device.applet.nvm.tear_hook = points.append
    answer = device.reader.transmit(bytes(command))
    device.applet.nvm.tear_hook = None
    assert answer[-2:] == b"\x90\x00", f"untorn {op.name} answered {answer.hex()}"
    after = device.cells()
    assert after != before
    assert device.stored() == after
    return Reference(command, before, after, answer, points, dict(rig.notes))


@dataclass(frozen=True)
class Case:
    label: str
    point: int | None  # index of the write point to cut at; None: before or after the command
    happened: bool  # the new memory image is expected after power-on


def cutter(index: int) -> tuple[Callable[[WritePoint], None], list[WritePoint]]:
    """A tear hook that cuts the power at the index-th write point."""
    seen: list[WritePoint] = []

    def hook(point: WritePoint) -> None:
        seen.append(point)
        if len(seen) == index + 1:
            raise PowerLost

    return hook, seen


def tear(device: Device, command: CommandApdu, case: Case, ref: Reference) -> None:
    reader = device.reader
    if case.label == "before":
        reader.remove()
        with pytest.raises(CardLost):
            reader.transmit(bytes(command))
        reader.insert()
    elif case.point is not None:
        hook, seen = cutter(case.point)
        device.applet.nvm.tear_hook = hook
        with pytest.raises(CardLost):
            reader.transmit(bytes(command))
        device.applet.nvm.tear_hook = None
        assert seen == ref.points[: case.point + 1]
        assert not device.applet.powered
    else:
        assert reader.transmit(bytes(command)) == ref.answer  # ... and the answer is lost
        reader.remove()
        reader.insert()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_tear_at_every_point(
    op: TearOp, kind: str, world: World, tmp_path: Path, tear_tally: dict[str, int]
) -> None:
    ref = reference_run(op, world, kind, tmp_path / "reference")
    stages = op.points - 2
    assert [p.step for p in ref.points] == ["stage"] * stages + ["journal", "apply"]
    assert len(ref.points) == op.points
    cases = [
        Case("before", None, False),
        *(Case(f"{p.step}#{i}", i, p.step != "stage") for i, p in enumerate(ref.points)),
        Case("answer lost", None, True),
    ]
    for number, case in enumerate(cases):
        rig = Rig(world, op.profile, kind, tmp_path / f"case{number}")
        command = op.prefix(rig)
        assert bytes(command) == bytes(ref.command)
        device = rig.device(op.device)
        assert device.cells() == ref.before
        tear(device, command, case, ref)
        device.restart()
        expected = ref.after if case.happened else ref.before
        assert device.cells() == expected, f"{op.name} torn at {case.label}: a mixed memory"
        assert device.stored() == expected
        if kind == "file":
            assert not Path(f"{device.path}.journal").exists()
        op.recover(rig, ref, case.happened)
        for other in (rig.card, rig.psam):
            assert other.stored() == other.cells()
    tear_tally[f"{op.name}[{kind}]"] = len(cases)
    assert len(cases) == op.points + 2


# Leftovers of a process that died inside a file write ------------------------------------------
GARBAGE = b'{"format": "fuelsim.nvm/1", "cells": {"et.balance": "0001'


def test_half_written_temp_file_after_the_journal(world: World, tmp_path: Path) -> None:
    """Died while writing the cells file after the journal was stored: the journal wins."""
    ref = reference_run(OPS[0], world, "file", tmp_path / "reference")
    rig = Rig(world, "normal", "file", tmp_path / "torn")
    command = purchase_prefix(rig)
    journal_point = [p.step for p in ref.points].index("journal")
    tear(rig.card, command, Case("journal", journal_point, True), ref)
    temp = Path(f"{rig.card.path}.tmp")
    temp.write_bytes(GARBAGE)
    rig.card.restart()
    assert rig.card.cells() == ref.after
    assert not temp.exists()
    assert not Path(f"{rig.card.path}.journal").exists()
    purchase_recover(rig, ref, True)


def test_half_written_temp_journal_is_ignored(world: World, tmp_path: Path) -> None:
    """Died while writing the journal: the old image loads, and the next commit goes through."""
    ref = reference_run(OPS[0], world, "file", tmp_path / "reference")
    rig = Rig(world, "normal", "file", tmp_path / "torn")
    command = purchase_prefix(rig)
    tear(rig.card, command, Case("stage#0", 0, False), ref)
    temp_journal = Path(f"{rig.card.path}.journal.tmp")
    temp_journal.write_bytes(GARBAGE)
    Path(f"{rig.card.path}.tmp").write_bytes(GARBAGE[:10])
    rig.card.restart()
    assert rig.card.cells() == ref.before
    purchase_recover(rig, ref, False)
    # A whole purchase afterwards commits over the leftovers and survives another restart.
    rig.card.reader.connect()
    command = purchase_prefix(rig)
    tac_mac2 = rig.card.ok(command)
    rig.card.restart()
    rig.open_et()
    assert rig.card.cells()["et.balance"] == (rig.notes["balance"] - AMOUNT).to_bytes(4, "big")
    assert rig.prove(TxType.ED_PURCHASE, rig.notes["ctc"]) == (tac_mac2[4:8] + tac_mac2[:4], OK)
