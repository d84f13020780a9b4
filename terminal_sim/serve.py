"""`fuelsim card serve`: emulated cards in virtual PC/SC slots, each kept in a memory file.

A SPEC is `PROFILE` (slot 0) or `PROFILE@N` (slot N, vpcd port 35963 + N). PROFILE is a shipped
profile or image file, whose card lives in `<data>/cards/<name>.nvm.json` (issued there on first
use, so the card keeps its state across restarts), or a memory file itself. PROFILE `phone` or
`phone-NAME` (or a `*.phone.json` file) serves the NFC card of a simulated phone kept in
`<data>/phones/NAME.phone.json`; `arm N PIN` arms it for one tap.

While serving, lines on standard input control the slots: `remove N`, `insert N`, `reset N`,
`tear N` (the next writing command of slot N loses power mid-write and the card vanishes),
`status`, `quit`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from card_profiles.emulator import make_applet
from card_profiles.nvm import FileBackend
from cardcore.clockrng import SeededRng
from cardcore.errors import FuelsimError
from cardcore.ports import CardOS, Hsm
from terminal_sim.issuing import issue_profile
from terminal_sim.phone import Phone, arm_message, phone_file, served_phone
from terminal_sim.reader_url import MEMORY_SUFFIX
from terminal_sim.vpcd import VPCD_BASE_PORT, VirtualSlot

SPEC = re.compile(r"^(?P<target>[^@]+?)(?:@(?P<slot>\d+))?$")


class ServeError(FuelsimError):
    title = "cannot serve"


@dataclass(frozen=True)
class SlotSpec:
    target: str
    slot: int


def parse_specs(specs: list[str]) -> list[SlotSpec]:
    parsed = []
    for text in specs:
        match = SPEC.match(text)
        if match is None:
            raise ServeError(f"{text!r}: expected PROFILE or PROFILE@SLOT")
        parsed.append(SlotSpec(match["target"], int(match["slot"] or 0)))
    slots = [spec.slot for spec in parsed]
    if len(set(slots)) != len(slots):
        raise ServeError(f"two cards for one slot: {', '.join(specs)}")
    return parsed


def memory_file(spec: SlotSpec, data_dir: Path, hsm: Hsm, fresh: bool) -> Path:
    """The card's memory file, issued from its profile when missing (or when `fresh`)."""
    phone = phone_file(spec.target, data_dir)
    if phone is not None:
        return phone
    if spec.target.endswith(MEMORY_SUFFIX):
        return Path(spec.target)
    issued = issue_profile(spec.target, hsm)
    path = data_dir / "cards" / f"{issued.image.name}{MEMORY_SUFFIX}"
    if fresh:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".journal").unlink(missing_ok=True)
    FileBackend(path, issued.cells)  # creates the file only if it is missing
    return path


class Server:
    """The served slots and the control commands."""

    def __init__(
        self,
        specs: list[SlotSpec],
        *,
        data_dir: Path,
        hsm: Hsm,
        seed: int = 1,
        host: str = "127.0.0.1",
        base_port: int = VPCD_BASE_PORT,
        fresh: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        targets = [memory_file(spec, data_dir, hsm, fresh) for spec in specs]
        if len(set(targets)) != len(targets):
            raise ServeError(
                "one card cannot sit in two slots; copy it first: fuelsim card new PROFILE --out "
                "OTHER.nvm.json"
            )
        self.say = say
        self.slots: dict[int, VirtualSlot] = {}
        self.files: dict[int, Path] = {}
        self.phones: dict[int, Phone] = {}
        for index, (spec, path) in enumerate(zip(specs, targets, strict=True)):
            applet: CardOS
            if phone_file(str(path), data_dir) is not None:
                self.phones[spec.slot], applet = served_phone(path, seed + index)
            else:
                applet = make_applet(FileBackend(path), SeededRng(seed + index))
            self.slots[spec.slot] = VirtualSlot(applet, spec.slot, host=host, base_port=base_port)
            self.files[spec.slot] = path

    def start(self) -> None:
        for number, slot in sorted(self.slots.items()):
            slot.insert()
            self.say(f"slot {number}: {self.files[number]} inserted (vpcd port {slot.address[1]})")

    def stop(self) -> None:
        for slot in self.slots.values():
            slot.remove()

    def command(self, line: str) -> bool:
        """Run one control line; False when serving should end."""
        words = line.split()
        if not words:
            return True
        verb, args = words[0], words[1:]
        if verb == "quit":
            return False
        if verb == "status":
            for number, slot in sorted(self.slots.items()):
                state = "inserted" if slot.inserted else "removed"
                self.say(f"slot {number}: {state}, {slot.stats.apdus} APDUs")
            return True
        if verb == "arm" and len(args) == 2 and args[0].isdigit() and int(args[0]) in self.phones:
            self.say(f"slot {args[0]}: {arm_message(self.phones[int(args[0])], args[1])}")
            return True
        if verb not in SLOT_ACTIONS or len(args) != 1 or not args[0].isdigit():
            self.say(
                f"unknown command {line.strip()!r}: "
                "remove|insert|reset|tear N, arm N PIN, status, quit"
            )
            return True
        target = self.slots.get(int(args[0]))
        if target is None:
            self.say(f"no card is served in slot {args[0]}")
            return True
        SLOT_ACTIONS[verb](target)
        self.say(f"slot {args[0]}: {verb} done")
        return True


SLOT_ACTIONS: dict[str, Callable[[VirtualSlot], None]] = {
    "remove": VirtualSlot.remove,
    "insert": lambda slot: slot.insert(),
    "reset": VirtualSlot.reset,
    "tear": lambda slot: slot.tear_next(),
}
