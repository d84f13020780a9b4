"""A fleet host for scenarios and tests: the real host app over HTTP (uvicorn on 127.0.0.1, an
SQLite file), fleets with admin and driver keys, terminals at stations, drivers' phones and
dispensers paid by virtual card. Everything shares one injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from cardcore.clockrng import ManualClock, SeededRng
from host_sim import fleet
from host_sim.access import DEFAULT_SCOPES, add_access_key, add_terminal
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.server import BackgroundServer
from host_sim.vfc_policy import VfcPolicy
from hsm_mock.hsm import MockHsm
from terminal_sim.host_client import HostClient
from terminal_sim.phone import Phone
from terminal_sim.phone_clock import PhoneClock
from terminal_sim.phone_http import HttpPhoneHost
from terminal_sim.vfc_pump import VfcPump

DEFAULT_PIN = "2580"


def secret(name: str) -> str:
    """A fixed secret per key name: scenario hosts are throw-away."""
    return f"{name}-secret-0123456789abcdef"


@dataclass
class VfcRig:
    clock: ManualClock
    hsm: MockHsm
    app: FastAPI
    db: Database
    server: BackgroundServer
    clients: list[HostClient] = field(default_factory=list)
    phones: dict[str, Phone] = field(default_factory=dict)
    pumps: dict[str, VfcPump] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user id → AK

    @classmethod
    def start(cls, clock: ManualClock, workdir: Path, hsm: MockHsm | None = None) -> VfcRig:
        hsm = hsm or MockHsm()
        app = create_app(workdir / "host.sqlite", hsm, clock, rate_limit_per_minute=None)
        server = BackgroundServer(app)
        server.start()
        return cls(clock, hsm, app, app.state.host.db, server)

    def set_policy(self, policy: VfcPolicy) -> None:
        self.app.state.vfc_policy = policy

    def client(self, ak: str, terminal_id: str | None = None) -> HostClient:
        client = HostClient(
            self.server.base_url, ak, secret(ak), self.clock, terminal_id=terminal_id
        )
        self.clients.append(client)
        return client

    def user_client(self, user_id: str) -> HostClient:
        return self.client(self.users[user_id])

    def add_fleet(self, company_id: str, admins: list[str], drivers: list[str]) -> None:
        now = self.clock.now()
        fleet.create_company(self.db, company_id, company_id, now)
        for role, names in (("admin", admins), ("driver", drivers)):
            for user_id in names:
                ak = f"app-{user_id}"
                fleet.add_user(self.db, company_id, user_id, role, ak=ak, sk=secret(ak), now=now)
                self.users[user_id] = ak

    def add_pump(
        self, name: str, terminal_id: str, station_id: str, pump: int, seed: int
    ) -> VfcPump:
        ak = f"term-{terminal_id}"
        add_access_key(self.db, ak, secret(ak), "terminal", DEFAULT_SCOPES["terminal"], terminal_id)
        add_terminal(self.db, terminal_id, station_id)
        pump_ = VfcPump(self.client(ak, terminal_id), station_id, pump, SeededRng(seed))
        self.pumps[name] = pump_
        return pump_

    def add_phone(self, name: str, driver: str, *, offset_s: float, seed: int) -> Phone:
        host = HttpPhoneHost(self.user_client(driver))
        phone = Phone(
            host, PhoneClock(self.clock, offset_s=offset_s), SeededRng(seed), device_id=name
        )
        self.phones[name] = phone
        return phone

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.stop()
