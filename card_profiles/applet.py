"""What every emulated card shares: power, dispatch by CLA/INS, and the never-raise guard.

A handler returns the response data; to answer with a status word it raises StatusError (via
`fail`). Anything unexpected becomes 6F00, so no exception ever leaves `process` — except
PowerLost, which is the simulation of the power vanishing and must reach the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from card_profiles.nvm import Nvm, PowerLost
from cardcore.apdu import CommandApdu
from cardcore.errors import DecodeError
from cardcore.ports import Rng
from cardcore.sw import SW

Handler = Callable[[CommandApdu], bytes]

_OK = b"\x90\x00"


class StatusError(Exception):
    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def fail(sw: int) -> NoReturn:
    raise StatusError(sw)


def require(condition: bool, sw: int) -> None:
    if not condition:
        raise StatusError(sw)


def expect_lc(apdu: CommandApdu, *sizes: int) -> bytes:
    """The data field, which must have one of the given lengths (6700 otherwise)."""
    if len(apdu.data) not in sizes:
        fail(SW.WRONG_LENGTH)
    return apdu.data


def fixed_answer(apdu: CommandApdu, size: int) -> None:
    """Check Le before doing anything for a command whose answer has a fixed size.

    A too-small Le on a case-2 command gets 6Cxx (resend with Le = xx); on a case-4 command, 6700.
    """
    if apdu.ne is not None and apdu.ne < size:
        fail(0x6C00 | size if not apdu.data else SW.WRONG_LENGTH)


class Applet:
    """Base of the emulated user card and PSAM: subclasses fill `handlers` and `atr`."""

    atr: bytes = b""

    def __init__(self, nvm: Nvm, rng: Rng) -> None:
        self.nvm = nvm
        self.rng = rng
        self.powered = False
        self.handlers: dict[tuple[int, int], Handler] = {}

    # Power -------------------------------------------------------------------------------------
    def power_on(self) -> bytes:
        self.nvm.power_on()
        self.powered = True
        self.reset_session()
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self.reset_session()

    def reset(self) -> bytes:
        if not self.powered:
            return self.power_on()
        self.reset_session()
        return self.atr

    def reset_session(self) -> None:
        """Forget everything volatile (selection, PIN state, pending transactions)."""

    # Commands ----------------------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes:
        if not self.powered:
            self.power_on()  # a reader powers the card before the first command
        try:
            command = CommandApdu.from_bytes(apdu)
        except DecodeError:
            return SW.WRONG_LENGTH.to_bytes(2, "big")
        handler = self.handlers.get((command.cla, command.ins))
        try:
            if handler is None:
                fail(self._unknown(command))
            return handler(command) + _OK
        except StatusError as status:
            return status.sw.to_bytes(2, "big")
        except PowerLost:
            self.power_off()
            raise
        except Exception:
            return SW.UNKNOWN.to_bytes(2, "big")

    def _unknown(self, command: CommandApdu) -> int:
        known_ins = {ins for _, ins in self.handlers}
        return SW.CLA_NOT_SUPPORTED if command.ins in known_ins else SW.INS_NOT_SUPPORTED

    def random(self, n: int) -> bytes:
        return self.rng.random(n)
