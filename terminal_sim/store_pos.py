"""The convenience-store POS (spec §5): a normal ED purchase with the store's PSAM, no grey lock.

`pay` checks the card before any value command and refuses with these exact texts (`Reason`):
1. the ET application is blocked (SELECT answers 6A81 or 9303). A blocked card cannot be read,
   so its ASN, and with it the blacklist, is unknown: the block answers first;
2. the blacklist (the station's synced list, else the host's): "card blacklisted: keep the card
   and call the office";
3. grey (lock status 01): "unlock at a pump or an issuing office first" (the spec's words);
4. the purse is unusable: expired, not yet valid, or a balance below the sale;
5. the store flag (EF15 byte 29) is not 01: "store purchases not enabled for this card" (the
   spec's words).
Then VERIFY PIN (a wrong PIN says how many tries are left) and `purchase` (INITIALIZE FOR
PURCHASE, PSAM 80 70 type 05, DEBIT FOR PURCHASE, PSAM 80 72). None of the checks writes to the
card; a wrong PIN writes only the try counter.

Store sales carry `STORE_PRODUCT` (9999), the one product code the centre reserves for store
consumption, so settlement can tell oil from non-oil (grades are codes like 0092).

A card lost before DEBIT FOR PURCHASE was sent took no money: `CardLost` says so. From the
moment it is sent the sale is in doubt; the POS then refuses new sales until `recover()` asks
the re-inserted card for its proof of that debit (GET TRANSACTION PROVE, type 05). With a
`journal` the doubt is durable: it is journaled before DEBIT FOR PURCHASE goes out, so a POS
restarted after a crash or power loss picks it up again (`in_doubt`), and a sale whose debit
was never sent is closed as aborted. The receipt number is then the journal's transaction id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import asn_to_card_number, parse_bcd_dt
from cardcore.errors import FuelsimError
from cardcore.layout import LockStatus, TxType
from cardcore.ports import Clock, Reader
from cardcore.records import StoreSale
from cardcore.sw import SW
from terminal_sim.channel import CardRefused, Channel
from terminal_sim.events import MESSAGE, RECEIPT, Event, EventBus
from terminal_sim.fuelling import (
    CardData,
    FuellingRefused,
    check_card,
    lock_status,
    pin_refusal,
    read_card,
)
from terminal_sim.fuelling import read_psam as read_psam_files
from terminal_sim.journal import Journal, JournalEntry
from terminal_sim.online import OnlineHost
from terminal_sim.purchase import DebitIntent, purchase
from terminal_sim.readers import CardLost

STORE_PRODUCT = 0x9999  # [decision] the product code reserved for store (non-oil) sales


class Reason(Enum):
    BLOCKED = "blocked"
    BLACKLISTED = "blacklisted"
    GREY = "grey"
    VALIDITY = "validity"
    BALANCE = "balance"
    STORE_FLAG = "store flag"
    PIN_BLOCKED = "pin blocked"
    WRONG_PIN = "wrong pin"
    IN_DOUBT = "in doubt"


BLOCKED = "card blocked: take it to an issuing office"
BLOCKED_FOR_GOOD = "card permanently blocked: take it to an issuing office for a new card"
BLACKLISTED = "card blacklisted: keep the card and call the office"
GREY = "unlock at a pump or an issuing office first"
STORE_OFF = "store purchases not enabled for this card"
IN_DOUBT = "an earlier sale is unfinished: insert that card again and recover the sale"


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def too_low(balance: int, amount: int) -> str:
    return f"balance {yuan(balance)} is below the sale of {yuan(amount)}"


class StoreRefused(FuelsimError):
    title = "refused at the store"

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class Item:
    name: str
    price: int  # fen per unit
    quantity: int = 1

    @property
    def total(self) -> int:
        return self.price * self.quantity


@dataclass(frozen=True)
class Receipt:
    number: int
    store: str
    term: bytes
    asn: bytes
    amount: int
    balance_after: int
    tac: bytes
    psam_ttc: int
    product: int
    items: tuple[Item, ...]
    dt: bytes

    def sale(self) -> StoreSale:
        """The record the station uploads to the host for this receipt."""
        return StoreSale(
            self.term,
            self.psam_ttc,
            self.asn,
            self.amount,
            self.balance_after,
            self.dt,
            self.tac,
            self.product,
            self.number,
        )

    def text(self) -> str:
        number = asn_to_card_number(self.asn)
        lines = [
            f"{self.store}  receipt {self.number:06d}",
            f"{parse_bcd_dt(self.dt):%Y-%m-%d %H:%M:%S}  terminal {self.term.hex().upper()}",
            f"card {number[:6]}{'*' * 9}{number[-4:]}  product {self.product:04X}",
        ]
        lines += [f"  {i.name} x{i.quantity}  {yuan(i.total):>10}" for i in self.items]
        lines += [
            f"paid {yuan(self.amount)}  balance {yuan(self.balance_after)}",
            f"TAC {self.tac.hex().upper()}  PSAM TTC {self.psam_ttc}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class InDoubt:
    """A DEBIT FOR PURCHASE that left without an answer: what its proof and receipt need."""

    asn: bytes
    ctc: int
    balance_before: int
    amount: int
    ttc: int
    dt: bytes
    items: tuple[Item, ...]
    txn: int | None = None  # its journal transaction

    @classmethod
    def from_journal(cls, entry: JournalEntry) -> InDoubt | None:
        begin, debit = entry.data("begin") or {}, entry.data("debiting")
        if debit is None:
            return None
        items = tuple(Item(name, price, quantity) for name, price, quantity in begin["items"])
        return cls(
            begin["asn"],
            debit["ctc"],
            debit["balance_before"],
            begin["amount"],
            debit["ttc"],
            debit["dt"],
            items,
            entry.txn,
        )


class StorePos:
    def __init__(
        self,
        name: str,
        card: Reader,
        psam: Reader,
        host: OnlineHost,
        bus: EventBus,
        clock: Clock,
        store_product: int = STORE_PRODUCT,
        blacklisted: Callable[[bytes], bool] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.name = name
        self.card_reader = card
        self.card = Channel(card)
        self.psam_reader = psam
        self.psam = Channel(psam)
        self.host = host
        self.bus = bus
        self.clock = clock
        self.store_product = store_product
        # The station's synced blacklist when it is given, else the host's.
        self.blacklisted = blacklisted or host.blacklisted
        self.term: bytes | None = None
        self.receipts = 0
        self.journal = journal
        self.in_doubt: InDoubt | None = None
        for entry in journal.unfinished(name) if journal else ():
            self.in_doubt = InDoubt.from_journal(entry)
            if self.in_doubt is None:  # DEBIT FOR PURCHASE never went out: nothing was paid
                self._finish(entry.txn, aborted=True)

    def journaled_sales(self) -> list[bytes]:
        """The `StoreSale` records of the paid sales in the journal (none without one)."""
        if self.journal is None:
            return []
        done = (entry.data("done") or {} for entry in self.journal.finished(self.name))
        return [data["sale"] for data in done if "sale" in data]

    def show(self, text: str) -> None:
        self.bus.publish(Event(MESSAGE, self.name, {"text": text}))

    def refuse(self, reason: Reason, text: str) -> StoreRefused:
        self.show(text)
        return StoreRefused(reason, text)

    def start(self) -> bytes:
        """Power the PSAM and read its terminal id; `pay` does it on first use."""
        if self.term is None:
            self.psam_reader.connect()
            self.term = read_psam_files(self.psam).term
        return self.term

    # The sale -----------------------------------------------------------------------------------
    def pay(self, pin: str, amount: int, items: Sequence[Item] = ()) -> Receipt:
        verify = cmd.verify(pin)  # a malformed PIN is a ValueError before the card is touched
        if amount <= 0 or (items and sum(i.total for i in items) != amount):
            raise ValueError(f"a sale of {amount} fen must be positive and match its items")
        if self.in_doubt is not None:
            raise self.refuse(Reason.IN_DOUBT, IN_DOUBT)
        term = self.start()
        now = self.clock.now()
        try:
            self.card_reader.connect()
            data = self.check(amount)
            self.verify(verify)
        except CardLost as lost:
            raise self.nothing_paid(lost) from lost
        asn, sold = data.public.asn, tuple(items)
        txn = self._begin(asn, amount, sold)

        def before_debit(intent: DebitIntent) -> None:
            if self.journal is not None and txn is not None:
                self.journal.step(
                    txn,
                    "debiting",
                    ctc=intent.ctc,
                    balance_before=intent.balance_before,
                    ttc=intent.ttc,
                    dt=intent.dt,
                )
            self.in_doubt = InDoubt(
                asn, intent.ctc, intent.balance_before, amount, intent.ttc, intent.dt, sold, txn
            )

        try:
            result = purchase(self.card, self.psam, data.public, term, amount, now, before_debit)
        except CardLost as lost:
            raise self.lost(lost) from lost
        except Exception:
            if self.in_doubt is None:  # DEBIT FOR PURCHASE never went out
                self._finish(txn, aborted=True)
            raise
        self.in_doubt = None
        after = result.balance_before - amount
        self.show(f"paid {yuan(amount)}; balance {yuan(after)}")
        return self.receipt(asn, amount, after, result.tac, result.ttc, result.dt, sold, txn)

    def _begin(self, asn: bytes, amount: int, items: tuple[Item, ...]) -> int | None:
        if self.journal is None:
            return None
        return self.journal.begin(
            "store sale",
            self.name,
            self.clock.now().isoformat(),
            asn=asn,
            amount=amount,
            items=[[i.name, i.price, i.quantity] for i in items],
        )

    def _finish(self, txn: int | None, **data: object) -> None:
        if self.journal is not None and txn is not None:
            self.journal.step(txn, "done", **data)

    def check(self, amount: int) -> CardData:
        """The store's checks, in their order; returns the card's files."""
        try:
            data = read_card(self.card)
        except CardRefused as refused:
            if refused.sw == SW.FUNCTION_NOT_SUPPORTED_BLOCKED:
                raise self.refuse(Reason.BLOCKED, BLOCKED) from None
            if refused.sw == SW.APP_PERMANENTLY_BLOCKED:
                raise self.refuse(Reason.BLOCKED, BLOCKED_FOR_GOOD) from None
            raise
        if self.blacklisted(data.public.asn):
            raise self.refuse(Reason.BLACKLISTED, BLACKLISTED)
        if lock_status(self.card).status == LockStatus.GREY:
            raise self.refuse(Reason.GREY, GREY)
        try:
            check_card(data, self.clock.now())
        except FuellingRefused as exc:
            raise self.refuse(Reason.VALIDITY, str(exc)) from None
        balance = int.from_bytes(self.card.send(cmd.get_balance()), "big")
        if amount > balance:
            raise self.refuse(Reason.BALANCE, too_low(balance, amount))
        if data.public.store_flag != layout.STORE_FLAG_ON:
            raise self.refuse(Reason.STORE_FLAG, STORE_OFF)
        return data

    def verify(self, verify: CommandApdu) -> None:
        answer = self.card.exchange(verify)
        refusal = pin_refusal(answer.sw)
        if refusal is not None:
            blocked = answer.sw == SW.PIN_BLOCKED
            raise self.refuse(Reason.PIN_BLOCKED if blocked else Reason.WRONG_PIN, refusal)
        if not answer.ok:
            raise CardRefused(self.card.name, "VERIFY", answer.sw)

    def receipt(
        self,
        asn: bytes,
        amount: int,
        after: int,
        tac: bytes,
        ttc: int,
        dt: bytes,
        items: Sequence[Item],
        txn: int | None = None,
    ) -> Receipt:
        self.receipts += 1
        receipt = Receipt(
            txn or self.receipts,
            self.name,
            self.start(),
            asn,
            amount,
            after,
            tac,
            ttc,
            self.store_product,
            tuple(items),
            dt,
        )
        self._finish(txn, sale=receipt.sale().to_bytes())
        self.bus.publish(Event(RECEIPT, self.name, {"receipt": receipt}))
        return receipt

    # A card lost mid-sale -----------------------------------------------------------------------
    def nothing_paid(self, lost: CardLost) -> CardLost:
        text = f"{lost}: nothing was paid; insert the card and pay again"
        self.show(text)
        return CardLost(text)

    def lost(self, lost: CardLost) -> CardLost:
        """A card or PSAM lost mid-sale: in doubt once DEBIT FOR PURCHASE went out."""
        if self.in_doubt is None:
            return self.nothing_paid(lost)
        text = (
            f"{lost}: the debit of {yuan(self.in_doubt.amount)} was sent without an answer; "
            "insert the card again and recover the sale"
        )
        self.show(text)
        return CardLost(text)

    def recover(self) -> Receipt | None:
        """Settle the sale in doubt with its card: its receipt if the card paid, else None."""
        doubt = self.in_doubt
        if doubt is None:
            raise FuelsimError(f"{self.name}: no sale to recover")
        self.card_reader.connect()
        data = read_card(self.card)
        if data.public.asn != doubt.asn:
            number = asn_to_card_number(doubt.asn)
            raise self.refuse(Reason.IN_DOUBT, f"insert card {number}: its sale is unfinished")
        proof = self.card.exchange(cmd.get_transaction_prove(TxType.ED_PURCHASE, doubt.ctc))
        if proof.sw not in (SW.OK, SW.PROOF_NOT_FOUND):
            raise CardRefused(self.card.name, "GET TRANSACTION PROVE", proof.sw)
        self.in_doubt = None
        if proof.sw == SW.PROOF_NOT_FOUND:
            self._finish(doubt.txn, aborted=True)
            self.show(f"the card was not debited: {yuan(doubt.amount)} is still to pay")
            return None
        after = doubt.balance_before - doubt.amount
        self.show(f"paid {yuan(doubt.amount)}; balance {yuan(after)}")
        tac = proof.data[4:8]
        return self.receipt(
            doubt.asn, doubt.amount, after, tac, doubt.ttc, doubt.dt, doubt.items, doubt.txn
        )
