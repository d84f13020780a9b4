"""What the phone keeps across restarts: its card, limited-use keys, ATC and PIN.

The ATC must be on disk before a code is shown, so every change is written at once, atomically
(temporary file, fsync, rename). A phone without a path keeps its state in memory (tests).
The simulator stores the limited-use keys in clear; a real phone keeps them in its keystore.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from cardcore.errors import FuelsimError

FORMAT = "fuelsim.phone/1"
PHONE_SUFFIX = ".phone.json"
PIN_TRIES = 5


class PhoneStateError(FuelsimError):
    title = "phone state"


@dataclass(frozen=True)
class CardGrant:
    """The virtual card as the host hands it to the driver's phone."""

    card_id: str
    card_number: str
    expiry: date
    alias: str
    kv: int


@dataclass(frozen=True)
class LukGrant:
    """One limited-use key: usable until `expires_at` (host Unix seconds), `budget` times."""

    index: int
    key: bytes
    expires_at: int
    budget: int


@dataclass(frozen=True)
class HeldLuk:
    grant: LukGrant
    used: int = 0

    @property
    def uses_left(self) -> int:
        return self.grant.budget - self.used


@dataclass
class PhoneState:
    device_id: str
    card: CardGrant | None = None
    luks: list[HeldLuk] = field(default_factory=list)
    atc: int = 0
    pin_salt: bytes = b""
    pin_hash: bytes = b""
    pin_tries_left: int = PIN_TRIES

    def set_pin(self, pin: str, salt: bytes) -> None:
        if not pin.isdigit() or not 4 <= len(pin) <= 12:
            raise PhoneStateError("a PIN is 4 to 12 digits")
        self.pin_salt, self.pin_hash = salt, _pin_hash(salt, pin)
        self.pin_tries_left = PIN_TRIES

    def pin_matches(self, pin: str) -> bool:
        return bool(self.pin_hash) and _pin_hash(self.pin_salt, pin) == self.pin_hash

    def use_luk(self, index: int) -> None:
        self.luks = [
            replace(h, used=h.used + 1) if h.grant.index == index else h for h in self.luks
        ]

    def to_json(self) -> dict[str, Any]:
        card = None if self.card is None else {**asdict(self.card), "expiry": str(self.card.expiry)}
        return {
            "format": FORMAT,
            "device_id": self.device_id,
            "card": card,
            "luks": [
                {**asdict(h.grant), "key": h.grant.key.hex(), "used": h.used} for h in self.luks
            ],
            "atc": self.atc,
            "pin": {
                "salt": self.pin_salt.hex(),
                "hash": self.pin_hash.hex(),
                "tries_left": self.pin_tries_left,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhoneState:
        if data.get("format") != FORMAT:
            raise PhoneStateError(f"not a {FORMAT} file")
        try:
            card = data["card"]
            return cls(
                device_id=str(data["device_id"]),
                card=None
                if card is None
                else CardGrant(**{**card, "expiry": date.fromisoformat(card["expiry"])}),
                luks=[
                    HeldLuk(
                        LukGrant(
                            int(h["index"]),
                            bytes.fromhex(h["key"]),
                            int(h["expires_at"]),
                            int(h["budget"]),
                        ),
                        int(h["used"]),
                    )
                    for h in data["luks"]
                ],
                atc=int(data["atc"]),
                pin_salt=bytes.fromhex(data["pin"]["salt"]),
                pin_hash=bytes.fromhex(data["pin"]["hash"]),
                pin_tries_left=int(data["pin"]["tries_left"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PhoneStateError(f"damaged phone state: {exc!r}") from None


def _pin_hash(salt: bytes, pin: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, 1_000)


class PhoneStore:
    """Loads and saves one phone's state; `path=None` keeps it in memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def load(self, device_id: str) -> PhoneState:
        if self.path is None or not self.path.exists():
            return PhoneState(device_id)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise PhoneStateError(f"{self.path}: {exc}") from None
        return PhoneState.from_json(data)

    def save(self, state: PhoneState) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(state.to_json(), indent=1).encode()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
