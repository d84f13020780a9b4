"""Scenarios: YAML files of actors, steps and expectations that QA runs headless (format
`fuelsim.scenario/1`, reference in docs/scenarios.md).

A step is one action (`insert`, `fuel`, `pay`, `load`, …) or an `expect`. Any action may say
`refused: TEXT`: it must then fail with a message containing TEXT. Amounts are yuan
(`12.50`), volumes litres (`20.00`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.commands import COMMAND_NAMES, command_name
from cardcore.errors import FuelsimError
from cardcore.layout import LockStatus
from cardcore.records import LockRecord, PublicAppData
from terminal_sim.dispenser import Preset
from terminal_sim.events import MESSAGE
from terminal_sim.host_link import HostLink
from terminal_sim.scenario_world import ScenarioError, build_world
from terminal_sim.service import DEFAULT_PIN, Forecourt
from terminal_sim.vpcd import Tear

FORMAT = "fuelsim.scenario/1"
DEFAULT_START = datetime(2026, 11, 22, 8, 0, 0)
LOCKS = {"free": LockStatus.FREE, "grey": LockStatus.GREY, "tac-unread": LockStatus.TAC_UNREAD}
BILL_TYPES = {"fuelling": 0, "escape": 1, "redebit": 2}


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    description: str
    start: datetime
    actors: dict[str, Any]
    steps: list[dict[str, Any]]


@dataclass
class StepResult:
    number: int
    action: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class ScenarioResult:
    scenario: Scenario
    transport: str
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    host: str = "inproc"  # the host the scenario ran against: inproc or http

    @property
    def passed(self) -> bool:
        return not self.error and all(step.ok for step in self.steps)

    @property
    def failure(self) -> str:
        failed = [s for s in self.steps if not s.ok]
        if failed:
            return f"step {failed[0].number} ({failed[0].action}): {failed[0].detail}"
        return self.error


def fen(value: Any, what: str, *, signed: bool = False) -> int:
    """Yuan (`12.50`, 12.5, 12) to fen, exactly; negative only when `signed`."""
    try:
        amount = Decimal(str(value)) * 100
    except InvalidOperation:
        raise ScenarioError(f"{what}: {value!r} is not an amount in yuan") from None
    if amount != amount.to_integral_value() or (amount < 0 and not signed):
        raise ScenarioError(f"{what}: {value!r} is not a whole number of fen")
    return int(amount)


@dataclass(frozen=True)
class Arguments:
    """The arguments an action takes: those it needs and those it may have."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()


def arguments(required: str = "", optional: str = "") -> Arguments:
    return Arguments(frozenset(required.split()), frozenset(optional.split()))


ARGUMENTS: dict[str, Arguments] = {
    "insert": arguments("card at", "pin"),
    "remove": arguments("card"),
    "lift": arguments("at", "nozzle amount litres"),
    "tick": arguments("at", "count"),
    "hang_up": arguments("at"),
    "fuel": arguments("at", "card nozzle amount litres pin ticks pull_at_tick"),
    "pay": arguments("at amount", "card pin"),
    "load": arguments("at amount", "card pin"),
    "store_flag": arguments("at", "card on"),
    "report_loss": arguments("card at", "present"),
    "unblock": arguments("card at", "present"),
    "reload_pin": arguments("at", "card pin"),
    "online_unlock": arguments("at", "card pin"),
    "advance_clock": arguments("", "hours minutes seconds"),
    "crash": arguments("at", "card_removed card"),
    "tear": arguments("card", "command point after"),
    "recover": arguments("at"),
    "host_down": arguments(),
    "host_up": arguments(),
    "expect": arguments(
        "",
        "card balance lock store_flag log_entries host_balance at message messages_exclude bill"
        " bills",
    ),
}


def check_arguments(action: str, args: Any) -> str:
    """What is wrong with an action's arguments ("" when nothing is)."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return f"arguments must be a mapping, not {args!r}"
    spec = ARGUMENTS[action]
    unknown = set(args) - spec.required - spec.optional
    if unknown:
        allowed = ", ".join(sorted(spec.required | spec.optional))
        return f"unknown argument {sorted(unknown)[0]!r} (allowed: {allowed})"
    missing = spec.required - set(args)
    if missing:
        return f"missing argument {sorted(missing)[0]!r}"
    return ""


def flag(args: dict[str, Any], key: str, default: bool = False) -> bool:
    """A yes/no argument: YAML true or false, nothing else."""
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(f"{key}: {value!r} is not true or false")
    return value


def count(args: dict[str, Any], key: str) -> int:
    """A count argument: a whole number, zero or more."""
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{key}: {value!r} is not a whole number of 0 or more")
    return value


def texts(args: dict[str, Any], key: str) -> list[str]:
    """A text argument, or a list of them."""
    value = args[key]
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str | int | float) for item in items):
        raise ScenarioError(f"{key}: a text or a list of texts expected, not {value!r}")
    return [str(item) for item in items]


CARD_TERMINALS = frozenset({"dispenser", "pos", "office"})
TAPS = frozenset({"vfc_pay", "vfc_race"})


def reads_cards(scenario: Scenario) -> bool:
    """Whether a card reader is ever used: a terminal with a card slot, or an NFC tap. Only
    such a scenario has something to run through the virtual PC/SC reader."""
    terminals = dict(scenario.actors.get("terminals") or {})
    if any(dict(spec or {}).get("kind") in CARD_TERMINALS for spec in terminals.values()):
        return True
    return any(
        dict(step.get(action) or {}).get("method") == "nfc"
        for step in scenario.steps
        for action in TAPS & step.keys()
    )


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ScenarioError(f"{path}: not a scenario (format: {FORMAT} expected)")
    unknown = set(data) - {"format", "name", "description", "start", "actors", "steps"}
    if unknown:
        raise ScenarioError(f"{path}: unknown field {sorted(unknown)[0]!r}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{path}: steps: a list of steps is required")
    for number, step in enumerate(steps, 1):
        actions = [key for key in step if key != "refused"] if isinstance(step, dict) else []
        if len(actions) != 1 or actions[0] not in ACTIONS:
            raise ScenarioError(
                f"{path}: step {number}: one action of {', '.join(sorted(ACTIONS))} expected"
            )
        if isinstance(step[actions[0]], dict) and True in step[actions[0]]:
            # YAML 1.1 reads the key `on` as true: `store_flag: {on: true}` means "on".
            step[actions[0]]["on"] = step[actions[0]].pop(True)
        problem = check_arguments(actions[0], step[actions[0]])
        if problem:
            raise ScenarioError(f"{path}: step {number} ({actions[0]}): {problem}")
    start = data.get("start", DEFAULT_START)
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    return Scenario(
        str(data.get("name") or path.stem),
        path,
        str(data.get("description", "")),
        start,
        dict(data.get("actors") or {}),
        steps,
    )


def discover(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.yaml"))
        elif path.exists():
            found.append(path)
        else:
            raise ScenarioError(f"{path}: no such file or folder")
    return found


def run_scenario(
    scenario: Scenario, transport: str = "inproc", host: str = "inproc"
) -> ScenarioResult:
    """Run the scenario's steps until one fails; `host`: in process, or the real HTTP host."""
    result = ScenarioResult(scenario, transport, host=host)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuelsim-scenario-") as workdir:
        try:
            world = build_world(
                scenario.actors,
                start=scenario.start,
                transport=transport,
                workdir=Path(workdir),
                host_kind=host,
            )
            forecourt = Forecourt(world)
        except FuelsimError as exc:
            result.error = f"actors: {exc}"
            return result
        try:
            for number, step in enumerate(scenario.steps, 1):
                outcome = run_step(forecourt, number, step)
                result.steps.append(outcome)
                if not outcome.ok:
                    break
        finally:
            forecourt.close()
    result.seconds = time.perf_counter() - began
    return result


def run_step(forecourt: Forecourt, number: int, step: dict[str, Any]) -> StepResult:
    action = next(key for key in step if key != "refused")
    args = dict(step[action] or {})
    refused = step.get("refused")
    began = time.perf_counter()
    try:
        detail = ACTIONS[action](forecourt, args) or "ok"
    except FuelsimError as exc:
        message = str(exc)
        ok = refused is not None and str(refused) in message
        detail = f"refused as expected: {message}" if ok else f"{type(exc).__name__}: {message}"
        return StepResult(number, action, ok, detail, time.perf_counter() - began)
    except AssertionError as exc:
        return StepResult(number, action, False, str(exc), time.perf_counter() - began)
    if refused is not None:
        return StepResult(
            number,
            action,
            False,
            f"expected a refusal with {refused!r}, but it succeeded ({detail})",
            time.perf_counter() - began,
        )
    return StepResult(number, action, True, detail, time.perf_counter() - began)


# Actions: scenario arguments → forecourt service calls ----------------------------------------
def pin_of(args: dict[str, Any]) -> str:
    return str(args.get("pin", DEFAULT_PIN))


def card_of(args: dict[str, Any]) -> str | None:
    return str(args["card"]) if "card" in args else None


def counter(args: dict[str, Any]) -> str | None:
    """The card handed over at a counter, unless `present: false` (the host alone acts)."""
    return card_of(args) if flag(args, "present", True) else None


def preset_of(args: dict[str, Any]) -> Preset:
    return Preset(
        int(args.get("nozzle", 1)),
        amount=fen(args["amount"], "amount") if "amount" in args else None,
        volume=fen(args["litres"], "litres") if "litres" in args else None,
    )


def insert(fc: Forecourt, args: dict[str, Any]) -> str:
    card, at = str(args["card"]), str(args["at"])
    data = fc.insert(card, at, str(args["pin"]) if "pin" in args else None)
    return f"card {data.public.asn.hex().upper()} ready" if data else f"{card} in {at}"


def remove(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.remove(str(args["card"]))
    return f"{args['card']} removed"


def lift(fc: Forecourt, args: dict[str, Any]) -> str:
    fuelling = fc.lift(str(args["at"]), preset_of(args))
    return f"grey-locked at CTC {fuelling.locked.lock_ctc}"


def tick(fc: Forecourt, args: dict[str, Any]) -> str:
    volume = fc.tick(str(args["at"]), int(args.get("count", 1)))
    return f"{volume / 100:.2f} L delivered"


def hang_up(fc: Forecourt, args: dict[str, Any]) -> str:
    bill = fc.hang_up(str(args["at"]))
    return f"bill type {bill.tx_type:02X}, {bill.amount / 100:.2f}"


def fuel(fc: Forecourt, args: dict[str, Any]) -> str:
    pull = args.get("pull_at_tick")
    bill = fc.fuel(
        str(args["at"]),
        preset_of(args),
        card=card_of(args),
        pin=pin_of(args),
        ticks=int(args.get("ticks", 10_000)),
        pull_at_tick=int(pull) if pull is not None else None,
    )
    return f"bill type {bill.tx_type:02X}, {bill.volume / 100:.2f} L, {bill.amount / 100:.2f}"


def pay(fc: Forecourt, args: dict[str, Any]) -> str:
    receipt = fc.pay(
        str(args["at"]), fen(args["amount"], "amount"), card=counter(args), pin=pin_of(args)
    )
    return f"receipt {receipt.number}: {receipt.amount / 100:.2f}"


def load(fc: Forecourt, args: dict[str, Any]) -> str:
    result = fc.load(
        str(args["at"]), fen(args["amount"], "amount"), card=counter(args), pin=pin_of(args)
    )
    return f"loaded; balance {result.balance_after / 100:.2f}"


def store_flag(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.set_store_flag(str(args["at"]), flag(args, "on", True), card=counter(args))
    return "store flag written"


def report_loss(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.report_loss(str(args["at"]), str(args["card"]), present=flag(args, "present", True))
    return "blacklisted"


def unblock(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.unblock(str(args["at"]), str(args["card"]), present=flag(args, "present", True))
    return "unblocked"


def reload_pin(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.reload_pin(str(args["at"]), pin_of(args), card=counter(args))
    return "PIN reloaded"


def online_unlock(fc: Forecourt, args: dict[str, Any]) -> str:
    fc.online_unlock(str(args["at"]), card=counter(args), pin=pin_of(args))
    return "unlocked online"


def advance_clock(fc: Forecourt, args: dict[str, Any]) -> str:
    seconds = float(args.get("hours", 0)) * 3600 + float(args.get("minutes", 0)) * 60
    now = fc.advance_clock(seconds + float(args.get("seconds", 0)))
    return f"now {now.isoformat()}"


def crash(fc: Forecourt, args: dict[str, Any]) -> str:
    bills = fc.crash(str(args["at"]), card_removed=flag(args, "card_removed"), card=card_of(args))
    return f"recovered {len(bills)} transaction(s)"


def tear(fc: Forecourt, args: dict[str, Any]) -> str:
    """Pull the card during its next `command` (by name; default: its next writing command), at
    write point `point` (0: before anything is committed), or with `after: true` once the command
    committed but before the answer leaves the card. Armed now if the card is in a slot, else
    when it is next inserted."""
    name = str(args["card"])
    fc.world.card(name)
    command = args.get("command")
    if command is not None and command not in COMMAND_NAMES:
        raise ScenarioError(f"command {command!r}: expected one of {', '.join(COMMAND_NAMES)}")
    after = flag(args, "after")
    point = None if after else int(args.get("point", 0))

    def applies(request: bytes) -> bool:
        return command is None or command_name(CommandApdu.from_bytes(request)) == command

    pulled = Tear(applies, point)
    slot = fc.world.slot_of(name)
    if slot is None:
        fc.world.tears[name] = pulled
    else:
        slot.tear_next(pulled)
    where = "after it commits" if after else f"at write point {point}"
    return f"{name} will be pulled during {command or 'its next writing command'} {where}"


def host_link(fc: Forecourt) -> HostLink:
    link = fc.world.link
    if link is None:
        raise ScenarioError("this world has no host to switch")
    return link


def host_down(fc: Forecourt, args: dict[str, Any]) -> str:
    """The host cannot be reached (HTTP: the server stops; in process: every call refused)."""
    host_link(fc).down()
    return "host down"


def host_up(fc: Forecourt, args: dict[str, Any]) -> str:
    """The host is back (HTTP: on the same port and database file); kept escape bills go."""
    sent = host_link(fc).up()
    return f"host up; {sent} kept escape bill(s) uploaded"


def expect(fc: Forecourt, args: dict[str, Any]) -> str:
    world = fc.world
    checked = []
    if "card" in args:
        cells = world.card(str(args["card"])).nvm.cells
        if "balance" in args:
            got = int.from_bytes(cells["et.balance"], "big")
            want = fen(args["balance"], "balance")
            assert got == want, f"balance is {got / 100:.2f}, expected {want / 100:.2f}"
            checked.append("balance")
        if "lock" in args:
            status = LockRecord.from_bytes(cells["lock"]).status
            if args["lock"] not in LOCKS:
                raise ScenarioError(
                    f"expect: lock {args['lock']!r}, expected one of {', '.join(LOCKS)}"
                )
            want_lock = LOCKS[str(args["lock"])]
            assert status == want_lock, f"lock status {status:02X}, expected {want_lock:02X}"
            checked.append("lock")
        if "store_flag" in args:
            enabled = PublicAppData.from_bytes(cells["ef15"]).store_enabled
            assert enabled is flag(args, "store_flag"), f"store flag is {enabled}"
            checked.append("store flag")
        if "log_entries" in args:
            entries = len(cells["ef18"]) // layout.EF18_RECORD_SIZE
            want_entries = count(args, "log_entries")
            assert entries == want_entries, (
                f"the card's log holds {entries} entries, expected {want_entries}"
            )
            checked.append("log")
        if "host_balance" in args:
            if world.link is None:
                raise ScenarioError("expect: host_balance needs a host")
            asn = PublicAppData.from_bytes(cells["ef15"]).asn
            got = world.link.card_balance(asn)
            want = fen(args["host_balance"], "host_balance", signed=True)
            assert got == want, (
                f"the host's ledger holds {got / 100:.2f} for the card, expected {want / 100:.2f}"
            )
            checked.append("host ledger")
    else:
        for key in ("balance", "lock", "store_flag", "log_entries", "host_balance"):
            if key in args:
                raise ScenarioError(f"expect: {key} needs card")
    if "message" in args or "messages_exclude" in args:
        if "at" in args:
            world.terminal(str(args["at"]))
        messages = [
            str(e.data["text"])
            for e in world.events.of(MESSAGE)
            if "at" not in args or e.terminal == args["at"]
        ]
        if "message" in args:
            assert any(str(args["message"]) in m for m in messages), (
                f"no message with {args['message']!r}; shown: {messages[-5:]}"
            )
            checked.append("message")
        if "messages_exclude" in args:
            for text in texts(args, "messages_exclude"):
                shown = [m for m in messages if text in m]
                assert not shown, f"a message with {text!r} was shown: {shown[0]!r}"
            checked.append("messages excluded")
    if ("bill" in args or "bills" in args) and "at" not in args:
        raise ScenarioError("expect: bill and bills need at (a dispenser)")
    if "bills" in args:
        pump = fc.dispenser(str(args["at"]))
        want_count = count(args, "bills")
        assert len(pump.bills) == want_count, (
            f"{pump.name} stored {len(pump.bills)} bills, expected {want_count}"
        )
        checked.append("bills")
    if "bill" in args:
        pump = fc.dispenser(str(args["at"]))
        assert pump.bills, f"{pump.name} stored no bill"
        if not isinstance(args["bill"], dict):
            raise ScenarioError(f"expect: bill: a mapping expected, not {args['bill']!r}")
        bill, want_bill = pump.bills[-1], dict(args["bill"])
        unknown = set(want_bill) - {"type", "amount", "litres", "discount"}
        if unknown:
            raise ScenarioError(f"expect: bill: unknown field {sorted(unknown)[0]!r}")
        if "type" in want_bill:
            if want_bill["type"] not in BILL_TYPES:
                raise ScenarioError(
                    f"expect: bill: type {want_bill['type']!r}, expected one of "
                    + ", ".join(BILL_TYPES)
                )
            assert bill.tx_type == BILL_TYPES[str(want_bill["type"])], (
                f"bill type {bill.tx_type:02X}"
            )
        if "amount" in want_bill:
            assert bill.amount == fen(want_bill["amount"], "bill amount"), (
                f"bill amount {bill.amount / 100:.2f}"
            )
        if "litres" in want_bill:
            assert bill.volume == fen(want_bill["litres"], "litres"), f"volume {bill.volume}"
        if "discount" in want_bill:
            # The bill keeps the list price: its discount is volume × price − amount.
            off = (bill.volume * bill.price + 50) // 100 - bill.amount
            assert off == fen(want_bill["discount"], "bill discount"), (
                f"bill discount {off / 100:.2f}"
            )
        checked.append("bill")
    if not checked:
        raise ScenarioError(
            "expect: nothing to check (card with balance/lock/store_flag/log_entries, "
            "message, messages_exclude, bill, bills)"
        )
    return "checked " + ", ".join(checked)


ACTIONS: dict[str, Callable[[Forecourt, dict[str, Any]], str | None]] = {
    "insert": insert,
    "remove": remove,
    "lift": lift,
    "tick": tick,
    "hang_up": hang_up,
    "fuel": fuel,
    "pay": pay,
    "load": load,
    "store_flag": store_flag,
    "report_loss": report_loss,
    "unblock": unblock,
    "reload_pin": reload_pin,
    "online_unlock": online_unlock,
    "advance_clock": advance_clock,
    "crash": crash,
    "tear": tear,
    "recover": lambda fc, args: fc.recover(str(args["at"])),
    "host_down": host_down,
    "host_up": host_up,
    "expect": expect,
}

from terminal_sim import scenario_vfc  # noqa: E402, F401  (registers the virtual card steps)
