"""Valid dispenser bills made without a card or a PSAM: for generated days and benchmarks.

A real fuelling needs ~19 APDUs on the emulated card and PSAM. Reconciliation tests and the
ingest benchmark need thousands of bills that pass the host's checks, so `BillFactory` computes
what the card and the PSAM would have signed, with the keys a personalisation bureau gets from
the HSM (`personalise_card`, `personalise_psam`) and the spec functions of `cardcore.crypto`:

* the card's debit-for-unlock TAC: MAC over amount ‖ 93 ‖ term ‖ TTC ‖ dt with the TAC key;
* the PSAM's TMAC: retail MAC over bytes 0–90 with MTMAC.

`forge_tac` changes a TAC after the fact and signs the bill's TMAC again, as a dispenser whose
PSAM is genuine but whose card data is not would: the host's TAC check must catch it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cardcore import crypto
from cardcore.bcd import bcd_dt, to_bcd
from cardcore.layout import TxType
from cardcore.ports import Hsm
from cardcore.records import Bill

FUELLING, ESCAPE, REDEBIT = 0x00, 0x01, 0x02
BALANCE_START = 100_000_000  # 1,000,000 yuan: no generated card runs out


def asn_for(card: int) -> bytes:
    """A 10-byte BCD ASN for card number `card` (issuer 0100 0114, DEV cards)."""
    return to_bcd(f"01000114{card:012d}")


def term_for(station: int, pump: int) -> bytes:
    """The 6-byte terminal id of pump `pump` of station `station` (`4401SSSSSPPP` hex digits)."""
    return bytes.fromhex(f"4401{station:05d}{pump:03d}")


class BillFactory:
    """Signs bills with DEV keys (or another key set) as the card and the PSAM would."""

    def __init__(self, hsm: Hsm, key_set: str = "DEV") -> None:
        self._hsm = hsm
        self._key_set = key_set
        self._mtmac = hsm.personalise_psam(key_set).mtmac
        self._tac_keys: dict[bytes, bytes] = {}

    def _tac_key(self, asn8: bytes) -> bytes:
        key = self._tac_keys.get(asn8)
        if key is None:
            dtk = self._hsm.personalise_card(asn8, None, self._key_set).dtk
            key = self._tac_keys[asn8] = crypto.tac_key(dtk)
        return key

    def sign(self, bill: Bill) -> Bill:
        """Put the PSAM's TMAC on the bill (bytes 0–90)."""
        return replace(bill, tmac=crypto.mac_retail(self._mtmac, bill.body()))

    def unlock_tac(self, asn: bytes, amount: int, term: bytes, ttc: int, dt: bytes) -> bytes:
        data = (
            amount.to_bytes(4, "big")
            + bytes([TxType.DEBIT_FOR_UNLOCK])
            + term
            + ttc.to_bytes(4, "big")
            + dt
        )
        return crypto.mac_session(self._tac_key(asn[2:]), data)

    def paid(
        self,
        *,
        bill_type: int,
        term: bytes,
        psam_ttc: int,
        asn: bytes,
        ctc: int,
        amount: int,
        when: datetime,
        bill_ttc: int = 1,
        grade: int = 0x0092,
        volume: int = 0,
        price: int = 750,
        debit_source: int = 0,
        nozzle: int = 1,
        balance_after: int = BALANCE_START,
    ) -> Bill:
        """A fuelling (00) or re-debit (02) bill whose card TAC and TMAC verify.

        Its PSAM TAC covers the lock, which the bill does not carry; the host leaves it
        unverified, so it is any 4 bytes here.
        """
        if bill_type not in (FUELLING, REDEBIT):
            raise ValueError("paid bills are fuelling (00) or re-debit (02)")
        dt = bcd_dt(when)
        bill = Bill(
            bill_ttc=bill_ttc,
            tx_type=bill_type,
            dt=dt,
            asn=asn,
            balance_after=balance_after,
            amount=amount,
            ctc=ctc,
            tac=self.unlock_tac(asn, amount, term, psam_ttc, dt),
            gmac=bytes(4),
            psam_tac=psam_ttc.to_bytes(4, "big"),
            psam_asn=bytes(10),
            term=term,
            psam_ttc=psam_ttc,
            debit_source=debit_source,
            nozzle=nozzle,
            grade=grade,
            volume=volume,
            price=price,
        )
        return self.sign(bill)

    def forge_tac(self, bill: Bill) -> Bill:
        """The same bill with its card TAC changed and the TMAC signed again."""
        tac = bytes([bill.tac[0] ^ 0x5A]) + bill.tac[1:]
        return self.sign(replace(bill, tac=tac))
