"""Readers that pcscd knows (real hardware or our virtual one), through pyscard.

This is the one module that imports `smartcard`. It uses pyscard's thin `scard` layer: the
high-level CardConnection converts every APDU to and from lists of ints, which costs more than
the whole virtual-reader round trip we aim for.

T=0 is handled here so flows never see it: `61xx` → GET RESPONSE until the data is complete,
`6Cxx` → the same command again with Le = xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartcard import scard

from cardcore.errors import FuelsimError
from terminal_sim.readers import CardLost

GET_RESPONSE = bytes.fromhex("00C00000")
_REMOVED = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_E_NOT_TRANSACTED,
    scard.SCARD_E_READER_UNAVAILABLE,
}


class PcscError(FuelsimError):
    title = "PC/SC"


def _check(result: int, doing: str) -> None:
    if result != scard.SCARD_S_SUCCESS:
        message = f"{doing}: {scard.SCardGetErrorMessage(result)} ({result & 0xFFFFFFFF:08X})"
        if result in _REMOVED:
            raise CardLost(message)
        raise PcscError(message)


class PcscContext:
    """One PC/SC context (a connection to pcscd)."""

    def __init__(self) -> None:
        try:
            result, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        except Exception as exc:  # pyscard raises its own error types here
            raise PcscError(f"cannot reach pcscd: {exc}") from None
        _check(result, "connecting to pcscd (is it running?)")

    def readers(self) -> list[str]:
        result, names = scard.SCardListReaders(self.handle, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(result, "listing readers")
        return list(names)

    def close(self) -> None:
        scard.SCardReleaseContext(self.handle)

    def resolve(self, selector: str) -> str:
        """`#N` is the N-th reader; otherwise an exact name, else a unique name prefix."""
        names = self.readers()
        if selector.startswith("#"):
            try:
                return names[int(selector[1:])]
            except (ValueError, IndexError):
                raise PcscError(f"no reader {selector}; readers: {names}") from None
        if selector in names:
            return selector
        matches = [name for name in names if name.startswith(selector)]
        if len(matches) != 1:
            raise PcscError(f"no single reader named {selector!r}; readers: {names}")
        return matches[0]

    def card_present(self, reader: str) -> bool:
        return bool(self.state(reader, 0)[0] & scard.SCARD_STATE_PRESENT)

    def state(self, reader: str, timeout_ms: int, known: int = 0) -> tuple[int, bytes]:
        """The reader's event state after it differs from `known` (or the timeout), and ATR."""
        result, states = scard.SCardGetStatusChange(self.handle, timeout_ms, [(reader, known)])
        if result == scard.SCARD_E_TIMEOUT:
            return known, b""
        _check(result, f"watching {reader}")
        _, event, atr = states[0]
        return int(event), bytes(atr)

    def wait_for(self, reader: str, present: bool, timeout: float) -> None:
        """Block until a card is in (or out of) `reader`."""
        deadline = time.monotonic() + timeout
        while self.card_present(reader) != present:
            if time.monotonic() >= deadline:
                raise PcscError(f"{reader}: no card {'inserted' if present else 'removed'}")
            time.sleep(0.01)


class PcscReader:
    """A card in a PC/SC reader, as a `cardcore.ports.Reader`."""

    def __init__(self, selector: str, context: PcscContext | None = None) -> None:
        self.context = context or PcscContext()
        self.name = self.context.resolve(selector)
        self._card: Any = None
        self._pci: Any = None

    def connect(self) -> bytes:
        if self._card is not None:
            self.disconnect()
        try:
            result, card, protocol = scard.SCardConnect(
                self.context.handle,
                self.name,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
        except Exception as exc:
            raise PcscError(f"{self.name}: {exc}") from None
        if result in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD):
            raise CardLost(f"{self.name}: no card in the reader")
        _check(result, f"{self.name}: connecting to the card")
        self._card = card
        self._pci = (
            scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        )
        result, _, _, _, atr = scard.SCardStatus(card)
        _check(result, f"{self.name}: reading the ATR")
        return bytes(atr)

    def disconnect(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None

    def reconnect(self) -> bytes:
        """Reset the card (cold), keeping the connection."""
        if self._card is None:
            return self.connect()
        result, _ = scard.SCardReconnect(
            self._card,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_UNPOWER_CARD,
        )
        _check(result, f"{self.name}: resetting the card")
        result, _, _, _, atr = scard.SCardStatus(self._card)
        _check(result, f"{self.name}: reading the ATR")
        return bytes(atr)

    def _raw(self, command: bytes) -> bytes:
        if self._card is None:
            raise CardLost(f"{self.name}: not connected to a card")
        result, response = scard.SCardTransmit(self._card, self._pci, list(command))
        if result != scard.SCARD_S_SUCCESS:
            self._card = None
            _check(result, f"{self.name}: transmit")
        if len(response) < 2:  # vpcd reports a card that vanished mid-command this way
            self._card = None
            raise CardLost(f"{self.name}: the card gave no answer")
        return bytes(response)

    def transmit(self, command: bytes) -> bytes:
        response = self._raw(command)
        if len(response) == 2 and response[0] == 0x6C:
            response = self._raw(with_le(command, response[1]))
        data = b""
        while len(response) >= 2 and response[-2] == 0x61:
            data += response[:-2]
            response = self._raw(GET_RESPONSE + response[-1:])
        return data + response


def with_le(command: bytes, le: int) -> bytes:
    """The same short command with its Le set to `le` (6Cxx: "resend with Le = xx")."""
    if len(command) in (4, 5):
        return command[:4] + bytes((le,))
    if len(command) == 5 + command[4]:  # case 3: add an Le
        return command + bytes((le,))
    return command[:-1] + bytes((le,))


@dataclass(frozen=True)
class ReaderEvent:
    reader: str
    present: bool
    atr: bytes


def watch(
    context: PcscContext,
    reader: str,
    on_event: Callable[[ReaderEvent], None],
    stop: Callable[[], bool],
    poll_ms: int = 200,
) -> None:
    """Call `on_event` for every insertion and removal in `reader` until `stop()`."""
    known = scard.SCARD_STATE_UNAWARE
    while not stop():
        event, atr = context.state(reader, poll_ms, known)
        if event == known:
            continue
        was_present = bool(known & scard.SCARD_STATE_PRESENT)
        now_present = bool(event & scard.SCARD_STATE_PRESENT)
        if known == scard.SCARD_STATE_UNAWARE or was_present != now_present:
            on_event(ReaderEvent(reader, now_present, atr))
        known = event & ~scard.SCARD_STATE_CHANGED
