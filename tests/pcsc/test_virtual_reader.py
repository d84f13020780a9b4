"""Flows through the real stack: pyscard → pcscd → vsmartcard-vpcd → emulated card and PSAM."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cardcore import commands as cmd
from cardcore import layout
from cardcore.layout import LockStatus
from cardcore.records import LockRecord
from hsm_mock.hsm import MockHsm
from terminal_sim.channel import Channel
from terminal_sim.fuelling import (
    BillType,
    Sale,
    debit,
    fuel,
    lock,
    lock_bill,
    read_card,
    read_psam,
    unlock_answer,
)
from terminal_sim.pcsc_reader import PcscContext, PcscReader, ReaderEvent, watch
from terminal_sim.purchase import purchase
from terminal_sim.readers import CardLost

from .conftest import SLOT_READERS, served

WHEN = datetime(2026, 11, 22, 10, 0, 0)
LATER = datetime(2026, 11, 22, 10, 3, 0)
SALE = Sale(nozzle=2, grade=0x0092, price=750, volume=2000)
ET_SELECT = "00A404000CA00000000353494E4F504543"


def balance(card: Channel) -> int:
    return int.from_bytes(card.send(cmd.get_balance()), "big")


def test_full_purchase(station: Callable[..., Any], hsm: MockHsm) -> None:
    card_slot, psam_slot, card_reader, psam_reader = station("store-enabled", "psam-store")
    card_reader.connect()
    psam_reader.connect()
    card, psam = Channel(card_reader), Channel(psam_reader)
    psam_data = read_psam(psam)
    data = read_card(card)
    card.send(cmd.verify("999999"))
    result = purchase(card, psam, data.public, psam_data.term, 2_350, WHEN)
    assert balance(card) == 100_000 - 2_350
    assert hsm.verify_purchase_tac(
        data.public.asn8,
        amount=2_350,
        tx_type=layout.TxType.ED_PURCHASE,
        term=psam_data.term,
        ttc=result.ttc,
        dt=result.dt,
        tac=result.tac,
    )
    assert card_slot.stats.apdus >= 8 and psam_slot.stats.apdus >= 5  # it went through vpcd


def test_full_grey_lock_fuelling(station: Callable[..., Any], hsm: MockHsm) -> None:
    card_slot, _, card_reader, psam_reader = station()
    card_reader.connect()
    psam_reader.connect()
    card, psam = Channel(card_reader), Channel(psam_reader)
    result = fuel(
        card, psam, read_psam(psam), pin="999999", sale=SALE, clock_now=WHEN, unlock_at=LATER
    )
    assert result.balance_after == 100_000 - SALE.amount == balance(card)
    assert hsm.bill_tmac(result.bill.body()) == result.bill.tmac
    assert hsm.verify_unlock_tac(
        result.card.public.asn8,
        amount=SALE.amount,
        term=result.bill.term,
        ttc=result.unlock.unlock_ttc,
        dt=result.bill.dt,
        tac=result.tac,
    )
    assert LockRecord.from_bytes(card.send(cmd.get_lock_proof())).status == LockStatus.FREE
    assert card_slot.stats.apdus >= 15


def test_card_removed_mid_fuelling_then_re_debited(
    station: Callable[..., Any], pcscd: PcscContext, hsm: MockHsm
) -> None:
    card_slot, _, card_reader, psam_reader = station()
    card_reader.connect()
    psam_reader.connect()
    card, psam = Channel(card_reader), Channel(psam_reader)
    psam_data = read_psam(psam)
    data = read_card(card)
    card.send(cmd.verify("999999"))
    locked = lock(card, psam, data, psam_data.term, WHEN)

    card_slot.remove()  # pulled while the nozzle is open
    pcscd.wait_for(SLOT_READERS[0], False, timeout=10)
    with pytest.raises(CardLost):
        card.send(cmd.get_balance())
    unlock = unlock_answer(psam, data.public.asn8, locked, SALE.amount)
    escape = lock_bill(psam, BillType.ESCAPE, data, psam_data, locked, unlock)
    assert hsm.verify_psam_tac(
        data.public.asn8,
        amount=SALE.amount,
        lock_term=locked.term,
        lock_ttc=locked.lock_ttc,
        lock_dt=locked.dt,
        tac=escape.psam_tac,
    )

    card_slot.insert()  # back at the pump: re-debit with the escape bill
    pcscd.wait_for(SLOT_READERS[0], True, timeout=10)
    card_reader.connect()
    read_card(card)
    card.send(cmd.verify("999999"))
    grey = LockRecord.from_bytes(card.send(cmd.get_lock_proof()))
    assert (grey.status, grey.ctc, grey.balance) == (LockStatus.GREY, escape.ctc, 100_000)
    tac, dt = debit(card, locked, unlock, LATER)
    card.send(cmd.clear_tac_unread())
    assert hsm.verify_unlock_tac(
        data.public.asn8,
        amount=SALE.amount,
        term=locked.term,
        ttc=unlock.unlock_ttc,
        dt=dt,
        tac=tac,
    )
    assert balance(card) == 100_000 - SALE.amount


@pytest.mark.parametrize(("point", "committed"), [(0, False), (None, True)])
def test_card_pulled_between_grey_lock_and_its_answer(
    station: Callable[..., Any], pcscd: PcscContext, point: int | None, committed: bool
) -> None:
    card_slot, _, card_reader, psam_reader = station()
    card_reader.connect()
    psam_reader.connect()
    card, psam = Channel(card_reader), Channel(psam_reader)
    psam_data = read_psam(psam)
    data = read_card(card)
    card.send(cmd.verify("999999"))
    card_slot.tear_next(lambda apdu: apdu[:2] == b"\xe0\x7c", point=point)
    with pytest.raises(CardLost):
        lock(card, psam, data, psam_data.term, WHEN)  # GREY LOCK gets no answer
    pcscd.wait_for(SLOT_READERS[0], False, timeout=10)  # the card vanished from the slot

    card_slot.insert()
    pcscd.wait_for(SLOT_READERS[0], True, timeout=10)
    card_reader.connect()
    read_card(card)
    record = LockRecord.from_bytes(card.send(cmd.get_lock_proof()))
    # Power lost before the commit: nothing happened. After it: the lock is there, whole.
    assert record.status == (LockStatus.GREY if committed else LockStatus.FREE)
    if committed:
        psam.send(cmd.verify_grey_lock_mac2(record.word22))  # the MAC2 the answer would have had


def test_wrong_le_is_resent_by_the_reader(station: Callable[..., Any]) -> None:
    _, _, card_reader, _ = station()
    card_reader.connect()
    card_reader.transmit(bytes.fromhex(ET_SELECT))
    # Le 0x40 for a 30-byte file: the card answers 6C1E, the reader resends with Le = 1E.
    answer = card_reader.transmit(bytes.fromhex("00B0950040"))
    assert len(answer) == 32 and answer[-2:] == b"\x90\x00"


class T0Card:
    """A card that answers like a T=0 card: 61xx, then the data on GET RESPONSE."""

    atr = bytes.fromhex("3B02147F")

    def __init__(self) -> None:
        self.pending = b""

    def power_on(self) -> bytes:
        return self.atr

    def power_off(self) -> None:
        self.pending = b""

    def reset(self) -> bytes:
        return self.power_on()

    def process(self, apdu: bytes) -> bytes:
        if apdu[:4] == bytes.fromhex("00C00000"):
            chunk, self.pending = self.pending[: apdu[4]], self.pending[apdu[4] :]
            return chunk + (bytes((0x61, len(self.pending))) if self.pending else b"\x90\x00")
        self.pending = bytes(range(20))
        return b"\x61\x08"


def test_get_response_collects_t0_answers(pcscd: PcscContext) -> None:
    with served(pcscd, T0Card(), 0):  # type: ignore[arg-type]
        reader = PcscReader("#0", pcscd)
        reader.connect()
        try:
            assert reader.transmit(bytes.fromhex("80CA000000")) == bytes(range(20)) + b"\x90\x00"
        finally:
            reader.disconnect()


def test_reader_events_report_insert_and_remove(
    station: Callable[..., Any], pcscd: PcscContext
) -> None:
    card_slot, _, _, _ = station()
    events: list[ReaderEvent] = []
    done = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(PcscContext(), SLOT_READERS[0], events.append, done.is_set, 50)
    )
    watcher.start()
    try:
        time.sleep(0.3)
        card_slot.remove()
        pcscd.wait_for(SLOT_READERS[0], False, timeout=10)
        card_slot.insert()
        pcscd.wait_for(SLOT_READERS[0], True, timeout=10)
        time.sleep(0.3)
    finally:
        done.set()
        watcher.join(timeout=5)
    assert [e.present for e in events][:3] == [True, False, True]
    assert events[-1].atr == layout.ATR_USER_CARD


def run_tool(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_served_card_answers_opensc_tool_and_scriptor_and_keeps_state(
    pcscd: PcscContext, tmp_path: Path
) -> None:
    fuelsim = Path(sys.executable).with_name("fuelsim")
    env = {**os.environ, "FUELSIM_DATA_DIR": str(tmp_path)}

    def serve() -> subprocess.Popen[str]:
        server = subprocess.Popen(
            [str(fuelsim), "card", "serve", "normal@0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pcscd.wait_for(SLOT_READERS[0], True, timeout=15)
        return server

    def stop(server: subprocess.Popen[str]) -> str:
        server.terminate()
        output, _ = server.communicate(timeout=15)
        assert server.returncode == 0, output
        pcscd.wait_for(SLOT_READERS[0], False, timeout=10)
        return output

    server = serve()
    try:
        opensc = run_tool("opensc-tool", "-r", SLOT_READERS[0], "-s", ET_SELECT, "-s", "805C000104")
        assert "00 01 86 A0" in opensc and "SW1=0x90, SW2=0x00" in opensc
        script = tmp_path / "balance.scriptor"
        script.write_text(
            "# select the ET application and read the balance\n"
            "00 A4 04 00 0C A0 00 00 00 03 53 49 4E 4F 50 45 43\n80 5C 00 01 04\n"
        )
        scriptor = run_tool("scriptor", "-r", SLOT_READERS[0], str(script))
        assert "< 00 01 86 A0 90 00" in scriptor
        wrong_pin = run_tool(
            "opensc-tool", "-r", SLOT_READERS[0], "-s", ET_SELECT, "-s", "0020000003123456"
        )
        assert "SW1=0x63, SW2=0xC2" in wrong_pin
    finally:
        output = stop(server)
    assert "slot 0:" in output and "stopped: every card removed" in output

    server = serve()  # the card kept its memory across the restart
    try:
        again = run_tool(
            "opensc-tool", "-r", SLOT_READERS[0], "-s", ET_SELECT, "-s", "0020000003123456"
        )
        assert "SW1=0x63, SW2=0xC1" in again
    finally:
        stop(server)
