"""The issuing office's counter: the card flows that need the host (spec §5) rather than a PSAM.

- `load`: VERIFY → INITIALIZE FOR LOAD → host checks MAC1, answers MAC2 → CREDIT FOR LOAD →
  host checks the TAC and books the load.
- `set_store_flag`: GET CHALLENGE → UPDATE BINARY with MAC (EF15 byte 29, MAC from the host).
- `report_loss`: the host blacklists the ASN; when that card is in the reader, GET CHALLENGE and
  APPLICATION BLOCK (temporary) with the host's MAC as well.
- `unblock`: APPLICATION UNBLOCK of the card in the reader, if it is blocked, then the host's
  blacklist. It takes the ASN, not a PIN: a blocked application refuses VERIFY and every read, so
  the office identifies the holder by their papers; the unblock MAC is diversified by that ASN,
  so the wrong card answers 6988.
- `reload_pin`: RELOAD PIN with the host's MAC; resets the try counter.
- `online_unlock`: GET LOCK PROOF must show 01 → VERIFY → INITIALIZE FOR ONLINE UNLOCK → host
  authorises the escape bill's amount → ONLINE UNLOCK → host checks MAC3.

Refusals publish a MESSAGE and raise `OfficeRefused`, carrying the host's `E_…` code when the host
refused. A host that cannot be reached is refused as "host unreachable" (`E_UNREACHABLE`): before
the value command, nothing moved; after it, the confirmation waits in `unconfirmed`. A card
lost after CREDIT FOR LOAD or ONLINE UNLOCK was sent leaves the operation in doubt: `recover()`
asks the re-inserted card for its proof and completes the host's side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import asn_to_card_number, encode_pin
from cardcore.errors import FuelsimError
from cardcore.layout import LockStatus, TxType
from cardcore.ports import Clock, Reader
from cardcore.sw import SW
from terminal_sim.channel import CardRefused, Channel
from terminal_sim.events import MESSAGE, Event, EventBus
from terminal_sim.fuelling import (
    CardData,
    FuellingRefused,
    check_card,
    lock_status,
    pin_refusal,
    read_card,
)
from terminal_sim.host_client import HostUnavailable
from terminal_sim.journal import Journal
from terminal_sim.online import HostRefused, OnlineHost
from terminal_sim.readers import CardLost

T = TypeVar("T")
BLOCK_SWS = (SW.FUNCTION_NOT_SUPPORTED_BLOCKED, SW.APP_PERMANENTLY_BLOCKED)
UNREACHABLE = "E_UNREACHABLE"  # HostUnavailable's code


class OfficeRefused(FuelsimError):
    title = "refused at the office"

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class LoadResult:
    asn: bytes
    amount: int
    balance_before: int
    balance_after: int
    online_ctc: int
    dt: bytes
    tac: bytes


@dataclass(frozen=True)
class StoreFlagResult:
    asn: bytes
    enabled: bool


@dataclass(frozen=True)
class LossReport:
    asn: bytes
    card_blocked: bool  # the card was in the reader and is now blocked


@dataclass(frozen=True)
class UnblockResult:
    asn: bytes
    card_unblocked: bool  # the card was in the reader, blocked, and is now active


@dataclass(frozen=True)
class PinReloaded:
    asn: bytes


@dataclass(frozen=True)
class OnlineUnlockResult:
    asn: bytes
    lock_ctc: int
    amount: int
    balance_before: int
    balance_after: int
    online_ctc: int
    dt: bytes
    mac3: bytes


@dataclass(frozen=True)
class InDoubt:
    """A CREDIT FOR LOAD or ONLINE UNLOCK sent without an answer, and what finishing it needs."""

    kind: str  # LOAD or UNLOCK
    asn: bytes
    online_ctc: int
    fields: dict[str, Any]  # what the host's confirmation needs besides the card's proof
    txn: int | None = None  # its journal transaction

    @property
    def tx_type(self) -> int:
        return TxType.ED_LOAD if self.kind == LOAD else TxType.ONLINE_UNLOCK


LOAD, UNLOCK = "load", "online unlock"


class IssuingOffice:
    def __init__(
        self,
        name: str,
        card: Reader,
        host: OnlineHost,
        bus: EventBus,
        clock: Clock,
        term: bytes,
        journal: Journal | None = None,
    ) -> None:
        self.name = name
        self.card_reader = card
        self.card = Channel(card)
        self.host = host
        self.bus = bus
        self.clock = clock
        self.term = term
        self.journal = journal
        self.in_doubt: InDoubt | None = None
        self.unconfirmed: list[InDoubt] = []  # done by the card, not yet confirmed to the host
        for entry in journal.unfinished(name) if journal else ():
            begin, proof = entry.data("begin") or {}, entry.data("proof")
            doubt = InDoubt(entry.kind, begin["asn"], begin["online_ctc"], begin, entry.txn)
            if proof is not None:
                self.unconfirmed.append(replace(doubt, fields={**begin, **proof}))
            else:
                self.in_doubt = doubt

    def show(self, text: str) -> None:
        self.bus.publish(Event(MESSAGE, self.name, {"text": text}))

    def refuse(self, text: str, code: str | None = None) -> OfficeRefused:
        self.show(text)
        return OfficeRefused(text, code)

    def ask(self, request: Callable[[], T]) -> T:
        """A host request; its refusal becomes the office's, with the host's code."""
        try:
            return request()
        except HostRefused as refused:
            text = f"host refused ({refused.code}): {refused.reason}"
            raise self.refuse(text, refused.code) from refused
        except HostUnavailable as down:  # nothing reached the host: nothing moved
            raise self.refuse("host unreachable: try again when it is back", down.code) from down

    def open_card(self) -> CardData:
        """Power the card and read it; a blocked application is refused."""
        if self.in_doubt is not None:
            number = asn_to_card_number(self.in_doubt.asn)
            raise self.refuse(f"card {number} has an unfinished operation: recover it first")
        self.card_reader.connect()
        try:
            return read_card(self.card)
        except CardRefused as refused:
            if refused.sw in BLOCK_SWS:
                raise self.refuse("card blocked: unblock it first") from None
            raise

    def verify(self, pin: str) -> None:
        answer = self.card.exchange(cmd.verify(pin))
        refusal = pin_refusal(answer.sw, blocked="PIN blocked: reload the PIN first")
        if refusal is not None:
            raise self.refuse(refusal)
        if not answer.ok:
            raise CardRefused(self.card.name, "VERIFY", answer.sw)

    # Load ---------------------------------------------------------------------------------------
    def load(self, pin: str, amount: int) -> LoadResult:
        if amount <= 0:
            raise ValueError("a load is a positive number of fen")
        data = self.open_card()
        public = data.public
        try:
            check_card(data, self.clock.now())
        except FuellingRefused as exc:
            raise self.refuse(str(exc)) from None
        if lock_status(self.card).status == LockStatus.GREY:
            raise self.refuse("card grey-locked: unlock it first")
        self.verify(pin)
        answer = self.card.exchange(cmd.initialize_for_load(amount, self.term))
        if answer.sw == SW.WRONG_DATA:
            raise self.refuse("the purse cannot hold that much")
        if not answer.ok:
            raise CardRefused(self.card.name, "INITIALIZE FOR LOAD", answer.sw)
        init = answer.data
        before, ctc = int.from_bytes(init[:4], "big"), int.from_bytes(init[4:6], "big")
        auth = self.ask(
            lambda: self.host.authorize_load(
                public.asn,
                rand=init[8:12],
                online_ctc=ctc,
                old_balance=before,
                amount=amount,
                term=self.term,
                mac1=init[12:16],
            )
        )

        doubt = self.begin(
            LOAD,
            public.asn,
            ctc,
            asn8=public.asn8,
            balance_before=before,
            amount=amount,
            dt=auth.dt,
        )
        tac = self.send_in_doubt(cmd.credit_for_load(auth.dt, auth.mac2), doubt)
        result = self.finish(doubt, bytes(4), tac)
        assert isinstance(result, LoadResult)
        return result

    def _confirm_load(self, doubt: InDoubt, tac: bytes) -> LoadResult:
        f = doubt.fields
        before, amount, after = f["balance_before"], f["amount"], f["balance_before"] + f["amount"]
        self.ask(
            lambda: self.host.confirm_load(
                doubt.asn,
                new_balance=after,
                online_ctc=doubt.online_ctc,
                amount=amount,
                term=self.term,
                dt=f["dt"],
                tac=tac,
            )
        )
        self.show(f"loaded {_yuan(amount)}; balance {_yuan(after)}")
        return LoadResult(doubt.asn, amount, before, after, doubt.online_ctc, f["dt"], tac)

    # Maintenance --------------------------------------------------------------------------------
    def set_store_flag(self, on: bool) -> StoreFlagResult:
        public = self.open_card().public
        value = bytes((layout.STORE_FLAG_ON if on else layout.STORE_FLAG_OFF,))
        challenge = self.card.send(cmd.get_challenge())
        header = cmd.update_binary_mac_header(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, value)
        mac = self.ask(
            lambda: self.host.store_flag_mac(public.asn, command=header, challenge=challenge)
        )
        self.card.send(cmd.update_binary_mac(layout.SFI_EF15, layout.STORE_FLAG_OFFSET, value, mac))
        self.show(f"store purchases {'enabled' if on else 'disabled'}")
        return StoreFlagResult(public.asn, on)

    def report_loss(self, asn: bytes) -> LossReport:
        self.ask(lambda: self.host.report_loss(asn))
        blocked = self.block_card(asn)
        where = "; the card is blocked" if blocked else ""
        self.show(f"card {asn_to_card_number(asn)} reported lost{where}")
        return LossReport(asn, blocked)

    def block_card(self, asn: bytes) -> bool:
        """APPLICATION BLOCK the card in the reader, if it is this one and active."""
        try:
            self.card_reader.connect()
            data = read_card(self.card)
        except CardLost:
            return False
        except CardRefused as refused:
            if refused.sw in BLOCK_SWS:
                return False
            raise
        if data.public.asn != asn:
            return False
        challenge = self.card.send(cmd.get_challenge())
        mac = self.ask(lambda: self.host.block_mac(asn, challenge=challenge))
        self.card.send(cmd.application_block(mac))
        return True

    def unblock(self, asn: bytes) -> UnblockResult:
        unblocked = self.unblock_card(asn)
        self.ask(lambda: self.host.unblock(asn))
        self.show(f"card {asn_to_card_number(asn)} unblocked")
        return UnblockResult(asn, unblocked)

    def unblock_card(self, asn: bytes) -> bool:
        """APPLICATION UNBLOCK the card in the reader when it is blocked."""
        try:
            self.card_reader.connect()
        except CardLost:
            return False
        self.card.send(cmd.select(layout.PSE_NAME))
        selected = self.card.exchange(cmd.select(layout.ET_AID))
        if selected.sw == SW.APP_PERMANENTLY_BLOCKED:
            raise self.refuse("card permanently blocked: issue a new card")
        if selected.sw != SW.FUNCTION_NOT_SUPPORTED_BLOCKED:
            return False
        challenge = self.card.send(cmd.get_challenge())
        mac = self.ask(lambda: self.host.unblock_mac(asn, challenge=challenge))
        answer = self.card.exchange(cmd.application_unblock(mac))
        if answer.sw == SW.SM_MAC_WRONG:
            raise self.refuse(f"the card in the reader is not card {asn_to_card_number(asn)}")
        if not answer.ok:
            raise CardRefused(self.card.name, "APPLICATION UNBLOCK", answer.sw)
        return True

    def reload_pin(self, new_pin: str) -> PinReloaded:
        pin_block = encode_pin(new_pin)
        public = self.open_card().public
        mac = self.ask(lambda: self.host.reload_pin_mac(public.asn, pin_block=pin_block))
        self.card.send(cmd.reload_pin(new_pin, mac))
        self.show("PIN reloaded")
        return PinReloaded(public.asn)

    # Online unlock ------------------------------------------------------------------------------
    def online_unlock(self, pin: str) -> OnlineUnlockResult:
        public = self.open_card().public
        status = lock_status(self.card).status
        if status != LockStatus.GREY:
            raise self.refuse(f"card not grey-locked (status {status:02X}): nothing to unlock")
        self.verify(pin)
        init = self.card.send(cmd.initialize_for_online_unlock(self.term))
        balance, offline = int.from_bytes(init[:4], "big"), int.from_bytes(init[4:6], "big")
        online, rand, mac1 = int.from_bytes(init[6:8], "big"), init[10:14], init[14:18]
        auth = self.ask(
            lambda: self.host.authorize_online_unlock(
                public.asn,
                rand=rand,
                online_ctc=online,
                balance=balance,
                offline_ctc=offline,
                term=self.term,
                mac1=mac1,
            )
        )
        doubt = self.begin(
            UNLOCK,
            public.asn,
            online,
            rand=rand,
            balance_before=balance,
            offline_ctc=offline,
            amount=auth.amount,
            dt=auth.dt,
        )
        mac3 = self.send_in_doubt(cmd.online_unlock(auth.amount, auth.dt, auth.mac2), doubt)
        result = self.finish(doubt, mac3, bytes(4))
        assert isinstance(result, OnlineUnlockResult)
        return result

    def _confirm_unlock(self, doubt: InDoubt, mac3: bytes) -> OnlineUnlockResult:
        f = doubt.fields
        amount, after = f["amount"], f["balance_before"] - f["amount"]
        self.ask(
            lambda: self.host.confirm_online_unlock(
                doubt.asn,
                rand=f["rand"],
                online_ctc=doubt.online_ctc,
                balance_after=after,
                amount=amount,
                term=self.term,
                dt=f["dt"],
                mac3=mac3,
            )
        )
        self.show(f"unlocked: {_yuan(amount)} debited; balance {_yuan(after)}")
        return OnlineUnlockResult(
            doubt.asn,
            f["offline_ctc"] - 1,
            amount,
            f["balance_before"],
            after,
            doubt.online_ctc,
            f["dt"],
            mac3,
        )

    # The value command and its doubt ------------------------------------------------------------
    def begin(self, kind: str, asn: bytes, online_ctc: int, **fields: Any) -> InDoubt:
        """Journal the authorised operation before its value command goes to the card."""
        txn = None
        if self.journal is not None:
            started = self.clock.now().isoformat()
            txn = self.journal.begin(
                kind, self.name, started, asn=asn, online_ctc=online_ctc, **fields
            )
        return InDoubt(kind, asn, online_ctc, fields, txn)

    def send_in_doubt(self, command: CommandApdu, doubt: InDoubt) -> bytes:
        try:
            return self.card.send(command)
        except CardLost:
            self.in_doubt = doubt
            text = "card removed before it answered: insert it again and recover the operation"
            raise self.refuse_lost(text) from None

    def finish(self, doubt: InDoubt, mac: bytes, tac: bytes) -> LoadResult | OnlineUnlockResult:
        """The card did it (its MAC/TAC are the proof): journal that, then confirm to the host.
        A host that refuses or cannot be reached leaves it in `unconfirmed` for `confirm()`."""
        if self.journal is not None and doubt.txn is not None:
            self.journal.step(doubt.txn, "proof", mac=mac, tac=tac)
        done = replace(doubt, fields={**doubt.fields, "mac": mac, "tac": tac})
        self.unconfirmed.append(done)
        try:
            if doubt.kind == LOAD:
                result: LoadResult | OnlineUnlockResult = self._confirm_load(done, tac)
            else:
                result = self._confirm_unlock(done, mac)
        except OfficeRefused as refused:
            if refused.code == UNREACHABLE:  # the card moved: say so, and that the host will know
                self.show(f"the card did the {doubt.kind}; it is confirmed when the host is back")
            raise
        self.unconfirmed.remove(done)
        self._close(doubt.txn)
        return result

    def confirm(self) -> list[LoadResult | OnlineUnlockResult]:
        """Confirm to the host what the card did but the host has not booked (after a restart or a
        host that was down); the host books each once."""
        results = []
        for done in list(self.unconfirmed):
            f = done.fields
            if done.kind == LOAD:
                result: LoadResult | OnlineUnlockResult = self._confirm_load(done, f["tac"])
            else:
                result = self._confirm_unlock(done, f["mac"])
            self.unconfirmed.remove(done)
            self._close(done.txn)
            results.append(result)
        return results

    def _close(self, txn: int | None, **data: Any) -> None:
        if self.journal is not None and txn is not None:
            self.journal.step(txn, "done", **data)

    def refuse_lost(self, text: str) -> CardLost:
        self.show(text)
        return CardLost(text)

    def recover(self) -> LoadResult | OnlineUnlockResult | None:
        """Finish the operation in doubt from the card's proof; None when the card did not do it."""
        doubt = self.in_doubt
        if doubt is None:
            raise FuelsimError(f"{self.name}: nothing to recover")
        self.card_reader.connect()
        data = read_card(self.card)
        if data.public.asn != doubt.asn:
            number = asn_to_card_number(doubt.asn)
            raise self.refuse(f"insert card {number}: its operation is unfinished")
        proof = self.card.exchange(cmd.get_transaction_prove(doubt.tx_type, doubt.online_ctc))
        if proof.sw not in (SW.OK, SW.PROOF_NOT_FOUND):
            raise CardRefused(self.card.name, "GET TRANSACTION PROVE", proof.sw)
        self.in_doubt = None
        if proof.sw == SW.PROOF_NOT_FOUND:
            self._close(doubt.txn, aborted=True)
            self.show("the card did not do it: nothing changed; start again")
            return None
        return self.finish(doubt, proof.data[:4], proof.data[4:8])


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"
