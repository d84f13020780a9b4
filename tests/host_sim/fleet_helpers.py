"""A fleet on the test host (company, admin, two drivers, a terminal at a station) and a bare
token maker built on cardcore.vfc, so each validation rule can be hit exactly."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cardcore import vfc
from host_sim import fleet
from host_sim.access import DEFAULT_SCOPES, add_access_key, add_terminal
from terminal_sim.host_client import HostClient

from .conftest import TERMINAL, TERMINAL_AK, TERMINAL_SK, Host

COMPANY = "acme"
STATION = "ST01"
ADMIN_AK, ADMIN_SK = "acme-admin", "admin-secret-0123456789abcdef"
DRIVER_AK, DRIVER_SK = "acme-dave", "driver-secret-0123456789abcdef"
DRIVER2_AK, DRIVER2_SK = "acme-erin", "driver2-secret-0123456789abcde"
OTHER_ADMIN_AK, OTHER_ADMIN_SK = "other-admin", "other-secret-0123456789abcdef"
TERMINAL2 = "440101000002"
TERMINAL2_AK, TERMINAL2_SK = "term-2", "terminal2-secret-0123456789abcd"
APPROVED_CARD = "4111111111111111"


def setup_fleet(host: Host) -> None:
    now = host.clock.now()
    fleet.create_company(host.db, COMPANY, "Acme Taxi", now)
    fleet.create_company(host.db, "other", "Other Logistics", now)
    fleet.add_user(host.db, COMPANY, "alice", "admin", ak=ADMIN_AK, sk=ADMIN_SK, now=now)
    fleet.add_user(host.db, COMPANY, "dave", "driver", ak=DRIVER_AK, sk=DRIVER_SK, now=now)
    fleet.add_user(host.db, COMPANY, "erin", "driver", ak=DRIVER2_AK, sk=DRIVER2_SK, now=now)
    fleet.add_user(host.db, "other", "olga", "admin", ak=OTHER_ADMIN_AK, sk=OTHER_ADMIN_SK, now=now)
    add_terminal(host.db, TERMINAL, STATION)
    add_access_key(
        host.db, TERMINAL2_AK, TERMINAL2_SK, "terminal", DEFAULT_SCOPES["terminal"], TERMINAL2
    )
    add_terminal(host.db, TERMINAL2, STATION)


def admin(host: Host) -> HostClient:
    return host.client(ADMIN_AK, ADMIN_SK)


def driver(host: Host, second: bool = False) -> HostClient:
    return host.client(DRIVER2_AK, DRIVER2_SK) if second else host.client(DRIVER_AK, DRIVER_SK)


def terminal(host: Host, second: bool = False) -> HostClient:
    if second:
        return host.client(TERMINAL2_AK, TERMINAL2_SK, terminal_id=TERMINAL2)
    return host.client(TERMINAL_AK, TERMINAL_SK, terminal_id=TERMINAL)


@dataclass
class TokenMaker:
    """The phone's arithmetic without the phone: keys as the host handed them out."""

    card_id: str
    card_number: str
    alias: str
    expiry: date
    kv: int
    keys: dict[int, bytes] = field(default_factory=dict)
    atc: int = 0

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> TokenMaker:
        maker = cls(
            answer["card_id"],
            answer["card_number"],
            answer["alias"],
            date.fromisoformat(answer["expiry"]),
            answer["kv"],
        )
        maker.add(answer)
        return maker

    def add(self, answer: dict[str, Any]) -> None:
        for key in answer["keys"]:
            self.keys[key["index"]] = bytes.fromhex(key["key"])

    def token(
        self,
        now: datetime,
        *,
        t_gen: int | None = None,
        ttl: int = 60,
        synced: bool = True,
        skew_s: int = 0,
        luk_index: int | None = None,
        atc: int | None = None,
        un: bytes = b"\x01\x02\x03\x04",
        nfc: vfc.NfcContext | None = None,
        key: bytes | None = None,
    ) -> vfc.Token:
        if atc is None:
            self.atc += 1
            atc = self.atc
        index = min(self.keys) if luk_index is None else luk_index
        iad = vfc.Iad(
            kv=self.kv,
            luk_index=index,
            t_gen=int(now.timestamp()) if t_gen is None else t_gen,
            ttl=ttl,
            synced=synced,
            sync_age_bucket=0 if synced else 7,
            wall_off=abs(skew_s) > 30,
            skew_s=skew_s,
        )
        context = b"" if nfc is None else nfc.encode()
        secret = self.keys.get(index, bytes(32)) if key is None else key
        return vfc.make_token(secret, self.card_number, self.expiry, atc, un, iad, context)

    def qr(self, now: datetime, **kw: Any) -> str:
        return vfc.to_qr_text(self.token(now, **kw))

    def numeric(
        self,
        now: datetime,
        *,
        step: int | None = None,
        atc: int | None = None,
        luk_index: int | None = None,
    ) -> str:
        if atc is None:
            self.atc += 1
            atc = self.atc
        index = min(self.keys) if luk_index is None else luk_index
        step = vfc.time_step(int(now.timestamp())) if step is None else step
        return vfc.numeric_code(self.alias, self.keys[index], step, atc)


def nfc_data(token: vfc.Token) -> str:
    return base64.b64encode(token.encode()).decode()


def issue_and_provision(host: Host, *, count: int | None = None) -> TokenMaker:
    """A card bound to dave, with his keys on his 'phone'."""
    with admin(host) as a:
        card = a.request("POST", "/v1/fleet/cards", payload={"driver_id": "dave"})
    with driver(host) as d:
        keys = d.request(
            "POST",
            f"/v1/vfc/cards/{card['card_id']}/keys",
            payload={"count": count} if count else None,
        )
    return TokenMaker.from_answer(keys)


def top_up(host: Host, amount: int = 100_000) -> dict[str, Any]:
    with admin(host) as a:
        answer: dict[str, Any] = a.request(
            "POST", "/v1/fleet/topups", payload={"amount": amount, "card_number": APPROVED_CARD}
        )
    return answer


def pay(
    host: Host,
    data: str,
    *,
    method: str = "qr",
    amount: int = 30_000,
    product: str = "92",
    pump: int = 3,
    second: bool = False,
    sale_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "terminal_id": TERMINAL2 if second else TERMINAL,
        "method": method,
        "data": data,
        "pump": pump,
        "product": product,
        "amount": amount,
    }
    path = "/v1/vfc/authorize"
    if sale_id is not None:
        body["sale_id"] = sale_id
        path = "/v1/vfc/flash-pay"
    with terminal(host, second) as t:
        answer: dict[str, Any] = t.request("POST", path, payload=body)
    return answer
