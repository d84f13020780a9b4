"""A typed channel to a card: send a CommandApdu, get data back, or a clear error naming the
command and its status word."""

from __future__ import annotations

from cardcore.apdu import CommandApdu, ResponseApdu
from cardcore.commands import command_name
from cardcore.errors import FuelsimError
from cardcore.ports import Reader
from cardcore.sw import SW


class CardRefused(FuelsimError):
    """The card or PSAM answered a status word the flow cannot go on with."""

    title = "card refused"

    def __init__(self, device: str, command: str, sw: int) -> None:
        super().__init__(f"{device}: {command} answered {sw:04X} ({SW.describe(sw)})")
        self.device, self.command, self.sw = device, command, sw


class Channel:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    @property
    def name(self) -> str:
        return self.reader.name

    def exchange(self, command: CommandApdu) -> ResponseApdu:
        return ResponseApdu.from_bytes(self.reader.transmit(bytes(command)))

    def send(self, command: CommandApdu) -> bytes:
        """The response data of a command that must succeed."""
        raw = self.reader.transmit(bytes(command))
        if raw[-2:] != b"\x90\x00":
            sw = int.from_bytes(raw[-2:], "big") if len(raw) >= 2 else SW.UNKNOWN
            raise CardRefused(self.reader.name, command_name(command), sw)
        return raw[:-2]
