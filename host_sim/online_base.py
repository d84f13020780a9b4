"""What the host's online operations share: their refusal codes, the refusal, field checks, and
the base of `host_sim.online_ops.OnlineOps` (database, HSM, key set, waiting time)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cardcore.bcd import from_bcd
from cardcore.errors import DecodeError, FuelsimError
from cardcore.ports import Hsm
from host_sim import blacklist
from host_sim.db import Database

E_FORMAT = "E_FORMAT"  # a request the host does not accept as it is
E_CARD_BLOCKED = "E_CARD_BLOCKED"  # the card is on the blacklist
E_BAD_MAC1 = "E_BAD_MAC1"
E_BAD_TAC = "E_BAD_TAC"
E_BAD_MAC3 = "E_BAD_MAC3"
E_NOT_AUTHORIZED = "E_NOT_AUTHORIZED"  # a confirmation the host gave no authorisation for
E_CTC_REUSED = "E_CTC_REUSED"  # a load for an online CTC whose load is already booked
E_BAD_BILL = "E_BAD_BILL"  # an escape bill that is not one, or that the bill checks refuse
E_NO_ESCAPE_BILL = "E_NO_ESCAPE_BILL"
E_BILL_MISMATCH = "E_BILL_MISMATCH"  # the card's balance is not the one the bill locked
E_TOO_EARLY = "E_TOO_EARLY"  # another station, before the waiting time, bill not settled
E_ALREADY_UNLOCKED = "E_ALREADY_UNLOCKED"

ESCAPE_WAIT = timedelta(hours=48)
T = TypeVar("T")


class OnlineRefused(FuelsimError):
    """The host refuses an online operation: `code` is one of the E_… codes of this module."""

    title = "host refused"

    def __init__(self, code: str, message: str, **figures: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message
        self.figures = figures


def station_prefix(term: bytes) -> bytes:
    """The station part of a terminal id (its first 4 bytes), for the unlock waiting rule."""
    return term[:4]


def sized(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise OnlineRefused(E_FORMAT, f"{name} is {size} bytes, got {len(value)}")
    return value


def asn_text(asn: bytes) -> str:
    """The 20-digit ASN of a 10-byte BCD ASN (E_FORMAT otherwise)."""
    try:
        return from_bcd(sized("ASN", asn, 10), "ASN")
    except DecodeError as exc:
        raise OnlineRefused(E_FORMAT, str(exc)) from None


def wall(now: datetime) -> datetime:
    return now if now.tzinfo is None else now.astimezone(UTC).replace(tzinfo=None)


def hex_upper(value: bytes) -> str:
    return value.hex().upper()


class OpsBase:
    """The database, HSM, key set and escape-bill waiting time the operations work over."""

    def __init__(
        self,
        db: Database,
        hsm: Hsm,
        *,
        key_set: str = "DEV",
        escape_wait: timedelta = ESCAPE_WAIT,
    ) -> None:
        self.db = db
        self.hsm = hsm
        self.key_set = key_set
        self.escape_wait = escape_wait

    def _hsm(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except OnlineRefused:
            raise
        except FuelsimError as exc:  # the HSM refused the inputs (a value past its field)
            raise OnlineRefused(E_FORMAT, f"the HSM refused the fields: {exc}") from None

    @staticmethod
    def _not_blacklisted(conn: sqlite3.Connection, asn: str) -> None:
        if blacklist.is_listed(conn, asn):
            raise OnlineRefused(E_CARD_BLOCKED, "the card is reported lost")
