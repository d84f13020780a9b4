"""Scenario actors and steps for virtual fleet cards (docs/scenarios.md, docs/virtual-cards.md).

Actors (any of them starts a fleet host: the real host app over HTTP on an SQLite file, on the
scenario's clock):

    vfc_host: {luk_budget: 3}                       host policy overrides (host_sim.vfc_policy)
    fleets:   {taxi: {admins: [ann], drivers: [bob, cid]}}
    vfc_pumps: {pump1: {station: ST01, pump: 1, terminal_id: "440101000011"}}
    phones:   {bob-phone: {driver: bob, wall_offset: 120, synced: false, zone: Europe/Berlin}}

Steps: `vfc_topup`, `vfc_issue`, `vfc_bind`, `vfc_block`, `vfc_limits` (admin), `phone_setup`
(sync + install the card + keys), `phone_sync`, `phone_online`, `phone_atc_jump`,
`phone_arm`, `vfc_pay` (arm unless `arm: false`, then pay by qr, numeric or nfc, prepaid or flash),
`vfc_race` (one code at several pumps at once), `vfc_expect`. A refusal is expected with
`refused: E_…` as for every step.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from card_profiles.hce_applet import HceApplet
from cardcore import vfc
from cardcore.clockrng import SeededRng
from cardcore.errors import FuelsimError
from host_sim import ledger
from host_sim.vfc_policy import VfcPolicy
from terminal_sim.host_client import HostError
from terminal_sim.phone import Phone, PhoneHost
from terminal_sim.readers import InProcReader
from terminal_sim.scenario_world import ACTOR_HOOKS, ScenarioError, VpcdSlot, World
from terminal_sim.scenarios import ACTIONS, ARGUMENTS, arguments, fen, flag
from terminal_sim.service import Forecourt
from terminal_sim.vfc_pump import Presented, VfcPump, presented_text
from terminal_sim.vfc_rig import DEFAULT_PIN, VfcRig

ACTOR_KEYS = ("vfc_host", "fleets", "vfc_pumps", "phones")


@dataclass
class VfcWorld:
    rig: VfcRig
    cards: dict[str, str] = field(default_factory=dict)  # scenario name → card id
    codes: dict[str, vfc.Token] = field(default_factory=dict)  # phone → last token shown
    numerics: dict[str, str] = field(default_factory=dict)
    zones: dict[str, ZoneInfo] = field(default_factory=dict)
    hosts: dict[str, PhoneHost] = field(default_factory=dict)  # phones' connections
    last: dict[str, Any] = field(default_factory=dict)  # the last payment answer

    def phone(self, name: str) -> Phone:
        if name not in self.rig.phones:
            raise ScenarioError(f"no phone {name!r}; phones: {', '.join(self.rig.phones)}")
        return self.rig.phones[name]

    def pump(self, name: str) -> VfcPump:
        if name not in self.rig.pumps:
            raise ScenarioError(f"no VFC pump {name!r}; pumps: {', '.join(self.rig.pumps)}")
        return self.rig.pumps[name]

    def card_id(self, name: str) -> str:
        if name not in self.cards:
            raise ScenarioError(f"no virtual card {name!r} (issue it with vfc_issue first)")
        return self.cards[name]


def vfc_world(fc: Forecourt) -> VfcWorld:
    found = fc.world.extensions.get("vfc")
    if not isinstance(found, VfcWorld):
        raise ScenarioError("no fleet host: add fleets, phones or vfc_pumps to the actors")
    return found


# Actors ----------------------------------------------------------------------------------------


def _mapping(actors: dict[str, Any], key: str) -> dict[str, Any]:
    value = actors.get(key) or {}
    if not isinstance(value, dict):
        raise ScenarioError(f"{key}: a mapping expected")
    return value


def build_vfc(world: World, actors: dict[str, Any], workdir: Path, seed: int) -> None:
    if not any(key in actors for key in ACTOR_KEYS):
        return
    folder = workdir / "vfc"
    folder.mkdir(exist_ok=True)
    rig = VfcRig.start(world.clock, folder, world.hsm)
    world.closers.append(rig.close)
    vw = VfcWorld(rig)
    world.extensions["vfc"] = vw
    try:
        rig.set_policy(VfcPolicy(**_mapping(actors, "vfc_host")))
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"vfc_host: {exc}") from None
    for company, spec in _mapping(actors, "fleets").items():
        spec = dict(spec or {})
        rig.add_fleet(str(company), list(spec.get("admins", [])), list(spec.get("drivers", [])))
    for offset, (name, spec) in enumerate(_mapping(actors, "vfc_pumps").items(), 1):
        spec = dict(spec or {})
        terminal = str(spec.get("terminal_id", f"4401010000{offset:02d}"))
        rig.add_pump(
            str(name),
            terminal,
            str(spec.get("station", "ST01")),
            int(spec.get("pump", offset)),
            seed + 200 + offset,
        )
    for offset, (name, spec) in enumerate(_mapping(actors, "phones").items(), 1):
        spec = dict(spec or {})
        if "driver" not in spec:
            raise ScenarioError(f"phone {name!r}: driver is required")
        phone = rig.add_phone(
            str(name),
            str(spec["driver"]),
            offset_s=float(spec.get("wall_offset", 0)),
            seed=seed + 300 + offset,
        )
        assert phone.host is not None
        vw.hosts[str(name)] = phone.host
        if "zone" in spec:
            try:
                vw.zones[str(name)] = ZoneInfo(str(spec["zone"]))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ScenarioError(f"phone {name!r}: zone: {exc}") from None


ACTOR_HOOKS.append(build_vfc)


# Admin steps -----------------------------------------------------------------------------------


def vfc_topup(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    with vw.rig.user_client(str(args["admin"])) as admin:
        answer = admin.request(
            "POST",
            "/v1/fleet/topups",
            payload={
                "amount": fen(args["amount"], "amount"),
                "card_number": str(args.get("bank_card", "4111111111111111")),
            },
        )
    return f"topped up; balance {answer['balance'] / 100:.2f}"


def vfc_issue(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    payload = {"driver_id": str(args["driver"])} if "driver" in args else {}
    if "expiry" in args:
        payload["expiry"] = str(args["expiry"])
    with vw.rig.user_client(str(args["admin"])) as admin:
        card = admin.request("POST", "/v1/fleet/cards", payload=payload)
    vw.cards[str(args["card"])] = card["card_id"]
    return f"card {card['card_id']} ({card['card_number']}, alias {card['alias']})"


def vfc_bind(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    card_id = vw.card_id(str(args["card"]))
    with vw.rig.user_client(str(args["admin"])) as admin:
        admin.request(
            "POST", f"/v1/fleet/cards/{card_id}/bind", payload={"driver_id": str(args["driver"])}
        )
    return f"{card_id} bound to {args['driver']}"


def vfc_block(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    card_id = vw.card_id(str(args["card"]))
    action = "block" if flag(args, "blocked", True) else "unblock"
    with vw.rig.user_client(str(args["admin"])) as admin:
        admin.request(
            "POST",
            f"/v1/fleet/cards/{card_id}/{action}",
            payload={"reason": str(args.get("reason", ""))},
        )
    return f"{card_id} {action}ed"


def vfc_limits(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    card_id = vw.card_id(str(args["card"]))
    limits: dict[str, Any] = {}
    for key in ("per_day_amount", "per_fill_amount"):
        if key in args:
            limits[key] = fen(args[key], key)
    if "per_day_count" in args:
        limits["per_day_count"] = int(args["per_day_count"])
    for key in ("products", "stations"):
        if key in args:
            limits[key] = [str(v) for v in args[key]]
    with vw.rig.user_client(str(args["admin"])) as admin:
        admin.request("PUT", f"/v1/fleet/cards/{card_id}/limits", payload=limits)
    return f"limits of {card_id}: {limits}"


# Phone steps -----------------------------------------------------------------------------------


def phone_setup(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    phone = vw.phone(str(args["phone"]))
    if flag(args, "sync", True):
        phone.sync_time()
    phone.provision(vw.card_id(str(args["card"])), str(args.get("pin", DEFAULT_PIN)))
    return f"{args['phone']}: card installed, {len(phone.state.luks)} key(s)"


def phone_sync(fc: Forecourt, args: dict[str, Any]) -> str:
    sample = vfc_world(fc).phone(str(args["phone"])).sync_time()
    return f"synced (delay {sample.delay_s:.3f} s)"


def phone_online(fc: Forecourt, args: dict[str, Any]) -> str:
    """`online: false` cuts the phone off the host (no sync, no new keys)."""
    vw = vfc_world(fc)
    name = str(args["phone"])
    online = flag(args, "online", True)
    vw.phone(name).host = vw.hosts[name] if online else None
    return f"{name} {'online' if online else 'offline'}"


def phone_atc_jump(fc: Forecourt, args: dict[str, Any]) -> str:
    """The phone's counter leaps (a restored or corrupted app state)."""
    phone = vfc_world(fc).phone(str(args["phone"]))
    phone.state.atc += int(args["by"])
    phone.store.save(phone.state)
    return f"ATC now {phone.state.atc}"


def phone_arm(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    name = str(args["phone"])
    code = vw.phone(name).arm(str(args.get("pin", DEFAULT_PIN)))
    vw.codes[name], vw.numerics[name] = code.token, code.numeric
    return f"armed: ATC {code.token.atc}, numeric {code.numeric}"


def _presented(
    vw: VfcWorld,
    phone: str,
    method: str,
    pump: VfcPump,
    amount: int,
    tamper: bool,
    world: World,
) -> Presented:
    if method == "nfc":
        applet = HceApplet(vw.phone(phone), SeededRng(7))
        if world.transport != "vpcd":
            return pump.tap(InProcReader(applet, f"{phone} NFC"), amount)
        # The tap goes through pcscd + vpcd + pyscard, in a vpcd slot no card terminal holds.
        contactless = VpcdSlot(f"{phone} NFC", in_use=world.vpcd_in_use)
        contactless.serve(applet)
        try:
            return pump.tap(contactless, amount)
        finally:
            contactless.remove()
    if phone not in vw.codes:
        raise ScenarioError(f"{phone} shows no code: arm it first")
    if method == "numeric":
        return presented_text("numeric", vw.numerics[phone])
    if method != "qr":
        raise ScenarioError(f"method {method!r}: expected qr, numeric or nfc")
    raw = bytearray(vw.codes[phone].encode())
    if tamper:
        raw[raw.index(bytes.fromhex("9F26")) + 3] ^= 0x01
    return presented_text("qr", base64.b64encode(bytes(raw)).decode("ascii"))


def vfc_pay(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    phone, pump = str(args["phone"]), vw.pump(str(args["at"]))
    method = str(args.get("method", "qr"))
    amount = fen(args["amount"], "amount")
    product = str(args.get("product", "92"))
    if flag(args, "arm", True):
        phone_arm(fc, {"phone": phone, **({"pin": args["pin"]} if "pin" in args else {})})
    code = _presented(vw, phone, method, pump, amount, flag(args, "tamper"), fc.world)
    if str(args.get("model", "prepaid")) == "flash":
        answer = pump.flash_pay(code, product, amount, str(args.get("sale_id", "S-1")))
    else:
        answer = pump.authorize(code, product, amount)
        if "delivered" in args:
            answer = {
                **pump.settle(answer["hold_id"], fen(args["delivered"], "delivered")),
                "warnings": answer["warnings"],
            }
    vw.last = answer
    warnings = [w["code"] for w in answer.get("warnings", [])]
    if "warning" in args:
        assert str(args["warning"]) in warnings, f"warnings {warnings}, expected {args['warning']}"
    elif warnings:
        raise AssertionError(f"unexpected warnings {answer['warnings']}")
    return (
        f"{answer['status']} {answer['amount'] / 100:.2f} (held {answer['held_amount'] / 100:.2f})"
    )


def vfc_race(fc: Forecourt, args: dict[str, Any]) -> str:
    """The code the phone shows, submitted at every pump of `at` at the same moment."""
    vw = vfc_world(fc)
    phone = str(args["phone"])
    pumps = [vw.pump(str(name)) for name in args["at"]]
    amount = fen(args["amount"], "amount")
    phone_arm(fc, {"phone": phone})
    method = str(args.get("method", "qr"))
    barrier = threading.Barrier(len(pumps))
    results: list[Any] = [None] * len(pumps)

    def run(i: int) -> None:
        code = _presented(vw, phone, method, pumps[i], amount, False, fc.world)
        barrier.wait()
        try:
            results[i] = pumps[i].authorize(code, "92", amount)
        except FuelsimError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pumps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [r for r in results if isinstance(r, dict)]
    lost = [r.code for r in results if isinstance(r, HostError)]
    assert len(won) == 1 and lost == ["E_REPLAYED"] * (len(pumps) - 1), (
        f"expected exactly one approval and E_REPLAYED for the rest, got {results}"
    )
    return f"one approval (hold {won[0]['hold_id']}), {len(lost)} × E_REPLAYED"


def vfc_expect(fc: Forecourt, args: dict[str, Any]) -> str:
    vw = vfc_world(fc)
    checked = []
    with vw.rig.db.connect() as conn:
        if "fleet" in args:
            fleet_id = str(args["fleet"])
            for key, account in (
                ("balance", f"fleet:{fleet_id}"),
                ("held", f"fleet:{fleet_id}:hold"),
            ):
                if key in args:
                    got, want = ledger.balance(conn, account), fen(args[key], key)
                    assert got == want, f"{account} is {got / 100:.2f}, expected {want / 100:.2f}"
                    checked.append(key)
        if "station" in args:
            got = ledger.balance(conn, f"station:{args['station']}")
            want = fen(args["station_balance"], "station_balance")
            assert got == want, (
                f"station {args['station']} is owed {got / 100:.2f}, expected {want / 100:.2f}"
            )
            checked.append("station")
        if "payments" in args:
            got = conn.execute("SELECT COUNT(*) FROM vfc_payments").fetchone()[0]
            assert got == int(args["payments"]), f"{got} VFC payments, expected {args['payments']}"
            checked.append("payments")
    if "phone" in args and "local_time" in args:
        name = str(args["phone"])
        zone = vw.zones.get(name, ZoneInfo("UTC"))
        wall = datetime.fromtimestamp(vw.phone(name).clock.wall(), UTC).astimezone(zone)
        shown = f"{wall:%H:%M} {wall.tzname()}"
        assert shown == str(args["local_time"]), f"{name} shows {shown}"
        checked.append("phone time")
    if "last_status" in args:
        assert vw.last.get("status") == args["last_status"], f"last payment {vw.last}"
        checked.append("last payment")
    if not checked:
        raise ScenarioError("vfc_expect: nothing to check")
    return "checked " + ", ".join(checked)


ACTIONS.update(
    vfc_topup=vfc_topup,
    vfc_issue=vfc_issue,
    vfc_bind=vfc_bind,
    vfc_block=vfc_block,
    vfc_limits=vfc_limits,
    phone_setup=phone_setup,
    phone_sync=phone_sync,
    phone_online=phone_online,
    phone_atc_jump=phone_atc_jump,
    phone_arm=phone_arm,
    vfc_pay=vfc_pay,
    vfc_race=vfc_race,
    vfc_expect=vfc_expect,
)
ARGUMENTS.update(
    vfc_topup=arguments("admin amount", "bank_card"),
    vfc_issue=arguments("admin card", "driver expiry"),
    vfc_bind=arguments("admin card driver"),
    vfc_block=arguments("admin card", "blocked reason"),
    vfc_limits=arguments(
        "admin card", "per_day_amount per_day_count per_fill_amount products stations"
    ),
    phone_setup=arguments("phone card", "pin sync"),
    phone_sync=arguments("phone"),
    phone_online=arguments("phone", "online"),
    phone_atc_jump=arguments("phone by"),
    phone_arm=arguments("phone", "pin"),
    vfc_pay=arguments(
        "phone at amount", "method model product delivered sale_id arm pin tamper warning"
    ),
    vfc_race=arguments("phone at amount", "method"),
    vfc_expect=arguments(
        "", "fleet balance held station station_balance payments phone local_time last_status"
    ),
)
