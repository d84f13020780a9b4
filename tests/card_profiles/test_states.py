"""The state tables of the user card and the PSAM, tested directly.

`precheck` and `psam_precheck` are compared, over every combination of their inputs, with
expectation functions written here from the spec's rules (they do not read RULES). Then every
handler of both applets is driven once to show it consults the table with the right command,
so no command escapes it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from card_profiles.applet import StatusError
from card_profiles.fuel_card_states import App, Cmd, Pending, Session, SessionView, precheck
from card_profiles.psam_states import Df, PsamCmd, PsamPending, psam_precheck
from cardcore import commands as cmd
from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.layout import AppBlock, LockStatus

TERM = bytes.fromhex("440101000001")
DT = bytes.fromhex("20261122120000")
Z4 = bytes(4)

OK = None
NOT_SATISFIED = 0x6985
NEED_PIN = 0x6982
GREY = 0x9408

# From spec §1-§2 ---------------------------------------------------------------------------------
# Commands that make sense with no application or with the PSE selected: SELECT itself, GET
# CHALLENGE, and READ RECORD (the PSE directory is a record file).
RUN_ANYWHERE = {Cmd.SELECT, Cmd.GET_CHALLENGE, Cmd.READ_RECORD}
# Reading the files and the balance works in both purses (the loyalty purse is EP, no PIN).
RUN_IN_EITHER_PURSE = {Cmd.READ_BINARY, Cmd.GET_BALANCE}
# What a blocked ET still answers: selection (to say it is blocked) and the issuer's unblock,
# which needs a fresh challenge for its MAC.
RUN_WHILE_BLOCKED = {Cmd.SELECT, Cmd.GET_CHALLENGE, Cmd.APPLICATION_UNBLOCK}
# "Value commands on the ET purse need a successful VERIFY in the current session", except DEBIT
# FOR UNLOCK: it completes a lock the PIN already authorised (docs/spec-decisions.md).
NEEDS_PIN = {
    Cmd.INITIALIZE_FOR_LOAD,
    Cmd.CREDIT_FOR_LOAD,
    Cmd.INITIALIZE_FOR_PURCHASE,
    Cmd.DEBIT_FOR_PURCHASE,
    Cmd.INITIALIZE_FOR_GREY_LOCK,
    Cmd.GREY_LOCK,
    Cmd.INITIALIZE_FOR_ONLINE_UNLOCK,
    Cmd.ONLINE_UNLOCK,
}
# Value commands use up any open INITIALIZE, even when refused.
VALUE = NEEDS_PIN | {Cmd.DEBIT_FOR_UNLOCK}
# "A DEBIT/CREDIT/GREY LOCK/UNLOCK without its INITIALIZE just before it → 6985."
FOLLOWS = {
    Cmd.CREDIT_FOR_LOAD: Pending.LOAD,
    Cmd.DEBIT_FOR_PURCHASE: Pending.PURCHASE,
    Cmd.GREY_LOCK: Pending.GREY_LOCK,
    Cmd.ONLINE_UNLOCK: Pending.ONLINE_UNLOCK,
}


def expected_card(
    command: Cmd, app: App, block: AppBlock, pin_ok: bool, pending: Pending, lock: LockStatus
) -> int | None:
    """The status word the spec's rules give, in the documented order of checks."""
    if command in RUN_ANYWHERE:
        app_ok = True
    elif command in RUN_IN_EITHER_PURSE:
        app_ok = app in (App.ET, App.LOYALTY)
    else:
        app_ok = app is App.ET
    if not app_ok:
        return NOT_SATISFIED
    if app is App.ET and block is not AppBlock.ACTIVE and command not in RUN_WHILE_BLOCKED:
        return 0x6A81 if block is AppBlock.TEMPORARY else 0x9303
    if command in NEEDS_PIN and not pin_ok:
        return NEED_PIN
    if command in FOLLOWS and pending is not FOLLOWS[command]:
        return NOT_SATISFIED
    # Grey-lock status (spec §2 card behaviour).
    starts_a_transaction = {
        Cmd.INITIALIZE_FOR_LOAD,
        Cmd.INITIALIZE_FOR_PURCHASE,
        Cmd.INITIALIZE_FOR_GREY_LOCK,
    }
    if command in starts_a_transaction and lock is LockStatus.GREY:
        return GREY
    if command is Cmd.INITIALIZE_FOR_GREY_LOCK and lock is LockStatus.TAC_UNREAD:
        return NOT_SATISFIED  # "→ 6985 until CLEAR TAC-UNREAD"
    # Both unlocks need a grey purse; CLEAR TAC-UNREAD must not wipe an open lock.
    if command in (Cmd.DEBIT_FOR_UNLOCK, Cmd.INITIALIZE_FOR_ONLINE_UNLOCK):
        return OK if lock is LockStatus.GREY else NOT_SATISFIED
    if command is Cmd.CLEAR_TAC_UNREAD and lock is LockStatus.GREY:
        return NOT_SATISFIED
    return OK


@pytest.mark.parametrize("command", list(Cmd), ids=lambda c: c.name)
def test_card_precheck_matches_the_spec_rules(command: Cmd) -> None:
    mismatches = []
    for app, block, pin_ok, pending, lock in itertools.product(
        App, AppBlock, (False, True), Pending, LockStatus
    ):
        want = expected_card(command, app, block, pin_ok, pending, lock)
        got = precheck(command, SessionView(app, block, pin_ok, pending, lock))
        if got != want:
            state = f"{app.name} {block.name} pin_ok={pin_ok} {pending.name} {lock.name}"
            mismatches.append(f"{state}: table {got!r}, spec {want!r}")
    assert mismatches == []


def test_the_expectation_is_not_trivial() -> None:
    """Every outcome the spec names appears somewhere in the expectation."""
    outcomes = {
        expected_card(*combo)
        for combo in itertools.product(Cmd, App, AppBlock, (False, True), Pending, LockStatus)
    }
    assert outcomes == {OK, NOT_SATISFIED, NEED_PIN, GREY, 0x6A81, 0x9303}


def expected_psam(command: PsamCmd, df: Df, pending: PsamPending, tmac_key: bool) -> int | None:
    """Only SELECT and READ BINARY run in the MF (EF15/EF16 live there); the rest need the
    SINOPEC1 ADF. 80 72 follows 80 70, DES CRYPT needs INIT FOR DESCRYPT. E0 42 is not tied to
    an open E0 40 by the table: after a power loss it checks the open locks (see psam.py)."""
    if df is Df.MF and command not in (PsamCmd.SELECT, PsamCmd.READ_BINARY):
        return NOT_SATISFIED
    if command is PsamCmd.CREDIT_SAM_FOR_PURCHASE and pending is not PsamPending.PURCHASE:
        return NOT_SATISFIED
    if command is PsamCmd.DES_CRYPT and not tmac_key:
        return NOT_SATISFIED
    return OK


@pytest.mark.parametrize("command", list(PsamCmd), ids=lambda c: c.name)
def test_psam_precheck_matches_the_spec_rules(command: PsamCmd) -> None:
    mismatches = []
    for df, pending, tmac_key in itertools.product(Df, PsamPending, (False, True)):
        want = expected_psam(command, df, pending, tmac_key)
        got = psam_precheck(command, df, pending, tmac_key)
        if got != want:
            mismatches.append(f"{df.name} {pending.name} tmac={tmac_key}: {got!r} != {want!r}")
    assert mismatches == []


@pytest.mark.parametrize("command", list(Cmd), ids=lambda c: c.name)
def test_card_enter_matches_the_spec_rules(card_device: Callable[..., Any], command: Cmd) -> None:
    """The same comparison through `FuelCard.enter`, with the state set in the session and in
    the card's memory, so the table the card really applies is the one tested."""
    card = card_device("normal", select=False).applet
    cells = card.nvm.cells
    lock_rest = cells["lock"][1:]
    mismatches = []
    for app, block, pin_ok, pending, lock in itertools.product(
        App, AppBlock, (False, True), Pending, LockStatus
    ):
        card.session = Session(app=app, pin_ok=pin_ok, pending=pending)
        cells["et.block"], cells["lock"] = bytes((block,)), bytes((lock,)) + lock_rest
        try:
            card.enter(command)
            got = None
        except StatusError as refusal:
            got = refusal.sw
        want = expected_card(command, app, block, pin_ok, pending, lock)
        if got != want:
            state = f"{app.name} {block.name} pin_ok={pin_ok} {pending.name} {lock.name}"
            mismatches.append(f"{state}: card {got!r}, spec {want!r}")
    assert mismatches == []


# Transitions of the card session -----------------------------------------------------------------
@pytest.mark.parametrize("command", list(Cmd), ids=lambda c: c.name)
def test_value_commands_consume_the_open_initialize(
    card_device: Callable[..., Any], command: Cmd
) -> None:
    """Any value command, even a refused one, closes the INITIALIZE that was open; no other
    command touches it."""
    card = card_device("normal")
    card.ok(cmd.initialize_for_purchase(100, TERM))
    session = card.applet.session
    assert session.pending is Pending.PURCHASE and session.init is not None
    with contextlib.suppress(StatusError):
        card.applet.enter(command)
    if command in VALUE:
        assert (session.pending, session.init) == (Pending.NONE, None)
    else:
        assert session.pending is Pending.PURCHASE and session.init is not None


@pytest.mark.parametrize(
    ("profile", "init", "opens"),
    [
        ("normal", cmd.initialize_for_load(100, TERM), Pending.LOAD),
        ("normal", cmd.initialize_for_purchase(100, TERM), Pending.PURCHASE),
        ("normal", cmd.initialize_for_grey_lock(TERM), Pending.GREY_LOCK),
        ("grey-locked", cmd.initialize_for_online_unlock(TERM), Pending.ONLINE_UNLOCK),
    ],
    ids=["load", "purchase", "grey lock", "online unlock"],
)
def test_initialize_opens_its_transaction(
    card_device: Callable[..., Any], profile: str, init: CommandApdu, opens: Pending
) -> None:
    card = card_device(profile)
    assert card.applet.session.pending is Pending.NONE
    card.ok(init)
    assert card.applet.session.pending is opens
    card.ok(cmd.select(layout.ET_AID))
    assert card.applet.session.pending is Pending.NONE


# No command escapes the table --------------------------------------------------------------------
CARD_COMMANDS: list[tuple[str, CommandApdu, Cmd]] = [
    ("SELECT", cmd.select(layout.ET_AID), Cmd.SELECT),
    ("READ BINARY", cmd.read_binary(layout.SFI_EF15), Cmd.READ_BINARY),
    ("READ RECORD", cmd.read_record(layout.SFI_EF18, 1), Cmd.READ_RECORD),
    ("VERIFY", cmd.verify("999999"), Cmd.VERIFY),
    ("GET CHALLENGE", cmd.get_challenge(), Cmd.GET_CHALLENGE),
    ("GET BALANCE", cmd.get_balance(), Cmd.GET_BALANCE),
    ("INITIALIZE FOR LOAD", cmd.initialize_for_load(1, TERM), Cmd.INITIALIZE_FOR_LOAD),
    ("CREDIT FOR LOAD", cmd.credit_for_load(DT, Z4), Cmd.CREDIT_FOR_LOAD),
    ("INITIALIZE FOR PURCHASE", cmd.initialize_for_purchase(1, TERM), Cmd.INITIALIZE_FOR_PURCHASE),
    ("DEBIT FOR PURCHASE", cmd.debit_for_purchase(1, DT, Z4), Cmd.DEBIT_FOR_PURCHASE),
    ("INITIALIZE FOR GREY LOCK", cmd.initialize_for_grey_lock(TERM), Cmd.INITIALIZE_FOR_GREY_LOCK),
    ("GREY LOCK", cmd.grey_lock(1, Z4, DT, Z4), Cmd.GREY_LOCK),
    ("DEBIT FOR UNLOCK", cmd.debit_for_unlock(1, 1, TERM, 1, DT, Z4), Cmd.DEBIT_FOR_UNLOCK),
    (
        "INITIALIZE FOR ONLINE UNLOCK",
        cmd.initialize_for_online_unlock(TERM),
        Cmd.INITIALIZE_FOR_ONLINE_UNLOCK,
    ),
    ("ONLINE UNLOCK", cmd.online_unlock(1, DT, Z4), Cmd.ONLINE_UNLOCK),
    ("GET LOCK PROOF", cmd.get_lock_proof(), Cmd.GET_LOCK_PROOF),
    ("CLEAR TAC-UNREAD", cmd.clear_tac_unread(), Cmd.CLEAR_TAC_UNREAD),
    ("GET TRANSACTION PROVE", cmd.get_transaction_prove(5, 0), Cmd.GET_TRANSACTION_PROVE),
    ("UPDATE BINARY (MAC)", cmd.update_binary_mac(0x15, 29, b"\x01", Z4), Cmd.UPDATE_BINARY_MAC),
    ("APPLICATION BLOCK", cmd.application_block(Z4), Cmd.APPLICATION_BLOCK),
    ("APPLICATION UNBLOCK", cmd.application_unblock(Z4), Cmd.APPLICATION_UNBLOCK),
    ("CHANGE PIN", cmd.change_pin("999999", "123456"), Cmd.CHANGE_PIN),
    ("RELOAD PIN", cmd.reload_pin("999999", Z4), Cmd.RELOAD_PIN),
]

PSAM_COMMANDS: list[tuple[str, CommandApdu, PsamCmd]] = [
    ("SELECT", cmd.select(layout.PSAM_AID), PsamCmd.SELECT),
    ("READ BINARY", cmd.read_binary(layout.SFI_PSAM_EF17), PsamCmd.READ_BINARY),
    (
        "INIT SAM FOR PURCHASE",
        cmd.init_sam_for_purchase(Z4, 0, 1, DT, bytes(8), bytes(8)),
        PsamCmd.INIT_SAM_FOR_PURCHASE,
    ),
    ("CREDIT SAM FOR PURCHASE", cmd.credit_sam_for_purchase(Z4), PsamCmd.CREDIT_SAM_FOR_PURCHASE),
    (
        "INIT SAM FOR GREY LOCK",
        cmd.init_sam_for_grey_lock(Z4, 0, 1, DT, bytes(8), bytes(8)),
        PsamCmd.INIT_SAM_FOR_GREY_LOCK,
    ),
    ("VERIFY GREY-LOCK MAC2", cmd.verify_grey_lock_mac2(Z4), PsamCmd.VERIFY_GREY_LOCK_MAC2),
    ("GMAC FOR UNLOCK", cmd.gmac_for_unlock(bytes(8), 0, 1), PsamCmd.GMAC_FOR_UNLOCK),
    ("GET GMAC AGAIN", cmd.get_gmac_again(16), PsamCmd.GET_GMAC_AGAIN),
    ("INIT FOR DESCRYPT", cmd.init_for_descrypt(), PsamCmd.INIT_FOR_DESCRYPT),
    ("DES CRYPT", cmd.des_crypt_mac(bytes(8)), PsamCmd.DES_CRYPT),
]


def _spy(monkeypatch: pytest.MonkeyPatch, applet: Any) -> list[Any]:
    """Record the commands an applet hands to `enter`, its gateway to the state table."""
    seen: list[Any] = []
    real = applet.enter

    def spy(command: Any) -> Any:
        seen.append(command)
        return real(command)

    monkeypatch.setattr(applet, "enter", spy)
    return seen


@pytest.mark.parametrize(
    ("apdu", "expected"), [pytest.param(a, c, id=n) for n, a, c in CARD_COMMANDS]
)
def test_card_command_consults_the_table(
    card_device: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    apdu: CommandApdu,
    expected: Cmd,
) -> None:
    card = card_device("normal")
    seen = _spy(monkeypatch, card.applet)
    card.exchange(apdu)
    assert seen == [expected]


@pytest.mark.parametrize(
    ("apdu", "expected"), [pytest.param(a, c, id=n) for n, a, c in PSAM_COMMANDS]
)
def test_psam_command_consults_the_table(
    psam_device: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    apdu: CommandApdu,
    expected: PsamCmd,
) -> None:
    psam = psam_device()
    seen = _spy(monkeypatch, psam.applet)
    psam.exchange(apdu)
    assert seen == [expected]


def test_every_card_handler_and_table_entry_is_covered(card_device: Callable[..., Any]) -> None:
    handlers = set(card_device("normal").applet.handlers)
    assert handlers == {(apdu.cla, apdu.ins) for _, apdu, _ in CARD_COMMANDS}
    assert [c for _, _, c in CARD_COMMANDS] == list(Cmd)


def test_every_psam_handler_and_table_entry_is_covered(psam_device: Callable[..., Any]) -> None:
    handlers = set(psam_device().applet.handlers)
    assert handlers == {(apdu.cla, apdu.ins) for _, apdu, _ in PSAM_COMMANDS}
    assert [c for _, _, c in PSAM_COMMANDS] == list(PsamCmd)
