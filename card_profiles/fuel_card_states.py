"""The user card's session states and which command each state allows: one table, tested directly.

A command first passes its syntax checks (P1-P2, lengths), then `precheck` against this table,
then its own semantic checks (key index, balance, counters, MACs). The table decides, in this
order: the application it runs in (6985 elsewhere), the application block (6A81/9303), the PIN
(6982), the INITIALIZE that must come just before it (6985), and the grey-lock status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, auto
from typing import NamedTuple

from cardcore.layout import AppBlock, LockStatus
from cardcore.sw import SW


class App(IntEnum):
    NONE = auto()
    PSE = auto()
    ET = auto()
    LOYALTY = auto()


class Pending(IntEnum):
    """The INITIALIZE a session has open; the matching value command must come next."""

    NONE = auto()
    LOAD = auto()
    PURCHASE = auto()
    GREY_LOCK = auto()
    ONLINE_UNLOCK = auto()


class Cmd(IntEnum):
    SELECT = auto()
    READ_BINARY = auto()
    READ_RECORD = auto()
    VERIFY = auto()
    GET_CHALLENGE = auto()
    GET_BALANCE = auto()
    INITIALIZE_FOR_LOAD = auto()
    CREDIT_FOR_LOAD = auto()
    INITIALIZE_FOR_PURCHASE = auto()
    DEBIT_FOR_PURCHASE = auto()
    INITIALIZE_FOR_GREY_LOCK = auto()
    GREY_LOCK = auto()
    DEBIT_FOR_UNLOCK = auto()
    INITIALIZE_FOR_ONLINE_UNLOCK = auto()
    ONLINE_UNLOCK = auto()
    GET_LOCK_PROOF = auto()
    CLEAR_TAC_UNREAD = auto()
    GET_TRANSACTION_PROVE = auto()
    UPDATE_BINARY_MAC = auto()
    APPLICATION_BLOCK = auto()
    APPLICATION_UNBLOCK = auto()
    CHANGE_PIN = auto()
    RELOAD_PIN = auto()


ANY_APP = frozenset(App)
APPS = frozenset({App.ET, App.LOYALTY})
ET = frozenset({App.ET})
GREY_REFUSED: dict[int, SW] = {LockStatus.GREY: SW.GREY_LOCKED}


@dataclass(frozen=True)
class Rule:
    apps: frozenset[App]
    pin: bool = False
    value: bool = False  # a value command: it consumes any open INITIALIZE
    needs: Pending | None = None  # the INITIALIZE that must be open
    opens: Pending = Pending.NONE  # what a success leaves open
    lock: dict[int, SW] = field(default_factory=dict)  # LockStatus values that refuse it
    while_blocked: bool = False  # allowed while the application is blocked


RULES: dict[Cmd, Rule] = {
    Cmd.SELECT: Rule(ANY_APP, while_blocked=True),
    Cmd.READ_BINARY: Rule(APPS),
    Cmd.READ_RECORD: Rule(ANY_APP),
    Cmd.VERIFY: Rule(ET),
    Cmd.GET_CHALLENGE: Rule(ANY_APP, while_blocked=True),
    Cmd.GET_BALANCE: Rule(APPS),
    Cmd.INITIALIZE_FOR_LOAD: Rule(ET, pin=True, value=True, opens=Pending.LOAD, lock=GREY_REFUSED),
    Cmd.CREDIT_FOR_LOAD: Rule(ET, pin=True, value=True, needs=Pending.LOAD),
    Cmd.INITIALIZE_FOR_PURCHASE: Rule(
        ET, pin=True, value=True, opens=Pending.PURCHASE, lock=GREY_REFUSED
    ),
    Cmd.DEBIT_FOR_PURCHASE: Rule(ET, pin=True, value=True, needs=Pending.PURCHASE),
    Cmd.INITIALIZE_FOR_GREY_LOCK: Rule(
        ET,
        pin=True,
        value=True,
        opens=Pending.GREY_LOCK,
        lock={LockStatus.GREY: SW.GREY_LOCKED, LockStatus.TAC_UNREAD: SW.CONDITIONS_NOT_SATISFIED},
    ),
    Cmd.GREY_LOCK: Rule(ET, pin=True, value=True, needs=Pending.GREY_LOCK),
    Cmd.DEBIT_FOR_UNLOCK: Rule(
        ET,
        pin=False,  # the lock was authorised by the PIN; GMAC authorises this
        value=True,
        lock={
            LockStatus.FREE: SW.CONDITIONS_NOT_SATISFIED,
            LockStatus.TAC_UNREAD: SW.CONDITIONS_NOT_SATISFIED,
        },
    ),
    Cmd.INITIALIZE_FOR_ONLINE_UNLOCK: Rule(
        ET,
        pin=True,
        value=True,
        opens=Pending.ONLINE_UNLOCK,
        lock={
            LockStatus.FREE: SW.CONDITIONS_NOT_SATISFIED,
            LockStatus.TAC_UNREAD: SW.CONDITIONS_NOT_SATISFIED,
        },
    ),
    Cmd.ONLINE_UNLOCK: Rule(ET, pin=True, value=True, needs=Pending.ONLINE_UNLOCK),
    Cmd.GET_LOCK_PROOF: Rule(ET),
    Cmd.CLEAR_TAC_UNREAD: Rule(ET, lock={LockStatus.GREY: SW.CONDITIONS_NOT_SATISFIED}),
    Cmd.GET_TRANSACTION_PROVE: Rule(ET),
    Cmd.UPDATE_BINARY_MAC: Rule(ET),
    Cmd.APPLICATION_BLOCK: Rule(ET),
    Cmd.APPLICATION_UNBLOCK: Rule(ET, while_blocked=True),
    Cmd.CHANGE_PIN: Rule(ET),
    Cmd.RELOAD_PIN: Rule(ET),
}

BLOCK_SW: dict[int, SW] = {
    AppBlock.TEMPORARY: SW.FUNCTION_NOT_SUPPORTED_BLOCKED,
    AppBlock.PERMANENT: SW.APP_PERMANENTLY_BLOCKED,
}


@dataclass(slots=True)
class OpenInit:
    """What an INITIALIZE left for the value command that must follow it."""

    amount: int
    term: bytes
    rand: bytes
    balance: int
    ctc: int
    session_key: bytes = b""


@dataclass(slots=True)
class Session:
    """The volatile state of one card session (lost at reset and power-off)."""

    app: App = App.NONE
    pin_ok: bool = False
    pending: Pending = Pending.NONE
    init: OpenInit | None = None
    challenge: bytes | None = None


class SessionView(NamedTuple):
    """What `precheck` needs to know of a session and the card (block and lock as raw bytes:
    AppBlock and LockStatus are IntEnums, so they compare and hash as those ints)."""

    app: App
    block: int
    pin_ok: bool
    pending: Pending
    lock: int


def precheck(cmd: Cmd, state: SessionView) -> SW | None:
    """The status word the table answers for `cmd` in `state`, or None when it may run."""
    return check_rule(RULES[cmd], state)


def check_rule(rule: Rule, state: SessionView) -> SW | None:
    if state.app not in rule.apps:
        return SW.CONDITIONS_NOT_SATISFIED
    if state.block != AppBlock.ACTIVE and state.app is App.ET and not rule.while_blocked:
        return BLOCK_SW[state.block]
    if rule.pin and not state.pin_ok:
        return SW.SECURITY_NOT_SATISFIED
    if rule.needs is not None and state.pending is not rule.needs:
        return SW.CONDITIONS_NOT_SATISFIED
    return rule.lock.get(state.lock)
