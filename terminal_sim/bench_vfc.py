"""`token_validations_per_s`: host-side virtual card validations per second, in process, on a real
SQLite file as the host runs it (WAL, synchronous=FULL).

Each validation is a fresh valid QR token (a new ATC, made with the phone's arithmetic outside
the timed part) taken through every step of virtual-cards spec §4: strict parse, card and LUK
lookup, cryptogram (LUK from the mock HSM), card and key state, time, the atomic replay insert
and the prepaid hold with its ledger postings, committed. Fraud rules that would block a card
paying hundreds of times a second are switched off, and the bench moves to a fresh card every
200 payments; everything else is the default policy.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cardcore import vfc
from host_sim import fleet
from host_sim.access import add_terminal
from host_sim.db import Database
from host_sim.fleet import FleetUser
from host_sim.vfc_money import Sale
from host_sim.vfc_policy import VfcPolicy
from host_sim.vfc_validate import Presented, authorise, validate
from hsm_mock.hsm import MockHsm

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TERMINAL, STATION = "440101000001", "ST01"
POLICY = VfcPolicy(
    luk_budget=1_000_000_000, velocity_max=0, unusual_amount=0, max_stations_per_day=0
)
CARD_USES = 200  # a fresh card now and then: per-card daily sums stay at a realistic size


class _Card:
    """A card bound to the bench driver with one LUK, and the tokens it makes."""

    def __init__(self, db: Database, hsm: MockHsm, admin: FleetUser, driver: FleetUser) -> None:
        with db.write() as conn:
            card = fleet.issue_card(conn, admin, 1, NOW, driver_id=driver.user_id)
            _, keys = fleet.provision_keys(conn, hsm, "DEV", driver, card.card_id, 1, POLICY, NOW)
        self.card, self.key, self.atc = card, keys[0], 0

    def token(self) -> str:
        self.atc += 1
        iad = vfc.Iad(kv=self.card.kv, luk_index=self.key.index, t_gen=int(NOW.timestamp()))
        un = self.atc.to_bytes(4, "big")
        token = vfc.make_token(
            self.key.key, self.card.card_number, self.card.expiry, self.atc, un, iad
        )
        return vfc.to_qr_text(token)


def bench_token_validations(seconds: float, synchronous: str = "FULL") -> float:
    """Validations (each approved and committed) per second."""
    hsm = MockHsm()
    with tempfile.TemporaryDirectory(prefix="fuelsim-bench-vfc-") as folder:
        db = Database(Path(folder) / "host.sqlite", synchronous=synchronous)
        fleet.create_company(db, "bench", "Bench fleet", NOW)
        admin = fleet.add_user(db, "bench", "admin", "admin", ak="bench-a", sk="s" * 16, now=NOW)
        driver = fleet.add_user(db, "bench", "drv", "driver", ak="bench-d", sk="s" * 16, now=NOW)
        add_terminal(db, TERMINAL, STATION)
        with db.write() as conn:
            fleet.top_up(conn, admin, 10**12, "4111111111111111", NOW)
        card = _Card(db, hsm, admin, driver)
        sale = Sale(TERMINAL, STATION, 1, "92", 100)
        count, spent = 0, 0.0
        # A serving host always has some connection open; without one, every close of the
        # last connection checkpoints and truncates the WAL, which is not what a host does.
        with db.connect() as _held:
            while spent < seconds:
                if card.atc >= CARD_USES:
                    card = _Card(db, hsm, admin, driver)
                presented = Presented("qr", card.token())
                began = time.perf_counter()
                checked = validate(db, hsm, "DEV", presented, sale, POLICY, NOW)
                authorise(db, checked, sale, "prepaid", POLICY, NOW)
                spent += time.perf_counter() - began
                count += 1
        db.close()
    return count / spent
