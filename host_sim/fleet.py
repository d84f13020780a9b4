"""Fleet accounts: companies, their admin and driver users, virtual cards, limits, top-ups and
limited-use key provisioning.

Who is who: every fleet user has one access key of kind `app`; `fleet_users.ak` ties the key to
the user, so a signed call names its user. Admins (scope `fleet.admin`) issue, bind, re-bind,
block cards, set limits and top up their own company; drivers (scope `fleet.driver`) see the
cards bound to them and fetch keys for those only. A card of another company answers
E_UNKNOWN_CARD: its existence is not revealed.

Re-binding a card revokes every LUK handed out, so the old phone can neither pay (E_KEY_INVALID)
nor fetch keys (E_NOT_BOUND). Blocking keeps the keys but refuses every payment (E_CARD_BLOCKED,
checked after the cryptogram) and every key request; unblocking makes them usable again.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from host_sim import ledger
from host_sim.access import AccessKey, add_access_key
from host_sim.db import Database, returned_id, utc_text
from host_sim.errors import ApiError, bad_request
from host_sim.vfc_policy import VfcKeySource, VfcPolicy

ROLES = ("admin", "driver")
ROLE_SCOPES = {"admin": ("fleet.admin",), "driver": ("fleet.driver",)}
CARD_NUMBER_PREFIX = "8156000"  # 7 digits + alias (8) + Luhn digit = 16
CARD_LIFETIME_DAYS = 3 * 365


@dataclass(frozen=True)
class FleetUser:
    user_id: str
    company_id: str
    role: str
    name: str
    ak: str


@dataclass(frozen=True)
class Limits:
    per_day_amount: int | None = None
    per_day_count: int | None = None
    per_fill_amount: int | None = None
    products: tuple[str, ...] | None = None
    stations: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Card:
    card_id: str
    company_id: str
    alias: str
    card_number: str
    expiry: date
    kv: int
    driver_id: str | None
    binding: int
    status: str
    block_reason: str
    atc_high: int
    last_offset_s: int | None
    limits: Limits


@dataclass(frozen=True)
class ProvisionedKey:
    index: int
    key: bytes
    kv: int
    expires_at: int  # Unix seconds
    budget: int


@dataclass(frozen=True)
class TopUp:
    topup_id: int
    status: str
    amount: int
    decline_code: str
    acquirer_ref: str
    transaction_id: int | None
    balance: int


def fleet_account(company_id: str) -> str:
    return f"fleet:{company_id}"


def hold_account(company_id: str) -> str:
    return f"fleet:{company_id}:hold"


def luhn_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_digit(number[:-1]) == number[-1]


# Companies and users ------------------------------------------------------------------------


def create_company(db: Database, company_id: str, name: str, now: datetime) -> None:
    if not company_id or ":" in company_id:
        raise ValueError("company id must be non-empty and free of ':'")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO fleet_companies (company_id, name, created_at) VALUES (?, ?, ?)",
            (company_id, name, utc_text(now)),
        )


def add_user(
    db: Database,
    company_id: str,
    user_id: str,
    role: str,
    *,
    ak: str,
    sk: str,
    name: str = "",
    now: datetime,
) -> FleetUser:
    """A fleet user with its `app` access key (scopes by role): the bootstrap for tools/tests."""
    if role not in ROLES:
        raise ValueError(f"role must be admin or driver, got {role!r}")
    add_access_key(db, ak, sk, "app", ROLE_SCOPES[role], f"fleet:{user_id}")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO fleet_users (user_id, company_id, role, name, ak, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, company_id, role, name or user_id, ak, utc_text(now)),
        )
    return FleetUser(user_id, company_id, role, name or user_id, ak)


def _user(row: sqlite3.Row) -> FleetUser:
    return FleetUser(row["user_id"], row["company_id"], row["role"], row["name"], row["ak"])


def user_of_key(conn: sqlite3.Connection, key: AccessKey, role: str) -> FleetUser:
    """The fleet user signing with `key`, who must have `role`."""
    row = conn.execute("SELECT * FROM fleet_users WHERE ak = ?", (key.ak,)).fetchone()
    if row is None:
        raise ApiError(
            "E_NOT_FLEET_USER", 403, f"access key {key.ak!r} belongs to no fleet user", ak=key.ak
        )
    user = _user(row)
    if user.role != role:
        raise ApiError(
            "E_FORBIDDEN",
            403,
            f"user {user.user_id} is a {user.role}; this needs a {role}",
            role=user.role,
            required_role=role,
        )
    return user


def driver_of(conn: sqlite3.Connection, admin: FleetUser, driver_id: str) -> FleetUser:
    row = conn.execute(
        "SELECT * FROM fleet_users WHERE user_id = ? AND company_id = ?",
        (driver_id, admin.company_id),
    ).fetchone()
    if row is None or row["role"] != "driver":
        raise ApiError(
            "E_UNKNOWN_USER",
            404,
            f"company {admin.company_id} has no driver {driver_id!r}",
            driver_id=driver_id,
        )
    return _user(row)


# Cards ----------------------------------------------------------------------------------------


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split())


def card_from_row(row: sqlite3.Row, limits: sqlite3.Row | None) -> Card:
    return Card(
        card_id=row["card_id"],
        company_id=row["company_id"],
        alias=row["alias"],
        card_number=row["card_number"],
        expiry=date.fromisoformat(row["expiry"]),
        kv=row["kv"],
        driver_id=row["driver_id"],
        binding=row["binding"],
        status=row["status"],
        block_reason=row["block_reason"],
        atc_high=row["atc_high"],
        last_offset_s=row["last_offset_s"],
        limits=Limits()
        if limits is None
        else Limits(
            limits["per_day_amount"],
            limits["per_day_count"],
            limits["per_fill_amount"],
            _split(limits["products"]),
            _split(limits["stations"]),
        ),
    )


def load_card(conn: sqlite3.Connection, column: str, value: str) -> Card | None:
    """A card by `card_id`, `alias` or `card_number`."""
    if column not in ("card_id", "alias", "card_number"):
        raise ValueError(column)
    row = conn.execute(f"SELECT * FROM vfc_cards WHERE {column} = ?", (value,)).fetchone()
    if row is None:
        return None
    limits = conn.execute(
        "SELECT * FROM vfc_limits WHERE card_id = ?", (row["card_id"],)
    ).fetchone()
    return card_from_row(row, limits)


def company_card(conn: sqlite3.Connection, user: FleetUser, card_id: str) -> Card:
    card = load_card(conn, "card_id", card_id)
    if card is None or card.company_id != user.company_id:
        raise ApiError("E_UNKNOWN_CARD", 404, f"no card {card_id!r}", card_id=card_id)
    return card


def cards_of(conn: sqlite3.Connection, user: FleetUser) -> list[Card]:
    """An admin sees the company's cards, a driver the cards bound to them."""
    column, value = (
        ("company_id", user.company_id) if user.role == "admin" else ("driver_id", user.user_id)
    )
    ids = conn.execute(
        f"SELECT card_id FROM vfc_cards WHERE {column} = ? ORDER BY created_at, card_id", (value,)
    ).fetchall()
    return [c for (card_id,) in ids if (c := load_card(conn, "card_id", card_id)) is not None]


def issue_card(
    conn: sqlite3.Connection,
    admin: FleetUser,
    kv: int,
    now: datetime,
    *,
    driver_id: str | None = None,
    expiry: date | None = None,
) -> Card:
    """A new virtual card, usable at once: a fresh 8-digit alias, its 16-digit card number."""
    if expiry is not None and expiry < now.date():
        raise bad_request("expiry", f"{expiry.isoformat()} is in the past")
    driver = driver_of(conn, admin, driver_id) if driver_id else None
    expiry = expiry or now.date() + timedelta(days=CARD_LIFETIME_DAYS)
    for _ in range(20):
        alias = f"{secrets.randbelow(10**8):08d}"
        body = CARD_NUMBER_PREFIX + alias
        number = body + luhn_digit(body)
        # ON CONFLICT rather than catching the error: PostgreSQL aborts the transaction on one.
        drawn = conn.execute(
            "INSERT INTO vfc_cards (card_id, company_id, alias, card_number, expiry, kv,"
            " driver_id, binding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                f"VFC{alias}",
                admin.company_id,
                alias,
                number,
                expiry.isoformat(),
                kv,
                driver.user_id if driver else None,
                1 if driver else 0,
                utc_text(now),
            ),
        )
        if drawn.rowcount != 1:
            continue  # alias taken: draw again
        card = load_card(conn, "card_id", f"VFC{alias}")
        assert card is not None
        return card
    raise ApiError("E_ALIAS_SPACE", 503, "could not draw a free card alias")


def revoke_keys(conn: sqlite3.Connection, card_id: str) -> int:
    return conn.execute(
        "UPDATE vfc_luks SET revoked = 1 WHERE card_id = ? AND revoked = 0", (card_id,)
    ).rowcount


def bind_card(conn: sqlite3.Connection, admin: FleetUser, card_id: str, driver_id: str) -> Card:
    """Bind (or re-bind) a card to a driver: every LUK of the previous binding is revoked, and
    the new phone's ATC starts again (replay is checked per binding)."""
    card = company_card(conn, admin, card_id)
    driver = driver_of(conn, admin, driver_id)
    revoke_keys(conn, card.card_id)
    conn.execute(
        "UPDATE vfc_cards SET driver_id = ?, binding = binding + 1, atc_high = -1,"
        " last_offset_s = NULL WHERE card_id = ?",
        (driver.user_id, card.card_id),
    )
    return company_card(conn, admin, card_id)


def set_blocked(conn: sqlite3.Connection, card_id: str, blocked: bool, reason: str = "") -> None:
    conn.execute(
        "UPDATE vfc_cards SET status = ?, block_reason = ? WHERE card_id = ?",
        ("blocked" if blocked else "active", reason if blocked else "", card_id),
    )


def block_card(
    conn: sqlite3.Connection, admin: FleetUser, card_id: str, blocked: bool, reason: str
) -> Card:
    company_card(conn, admin, card_id)
    set_blocked(conn, card_id, blocked, reason or ("blocked by admin" if blocked else ""))
    return company_card(conn, admin, card_id)


def set_limits(conn: sqlite3.Connection, admin: FleetUser, card_id: str, limits: Limits) -> Card:
    company_card(conn, admin, card_id)
    conn.execute(
        "INSERT INTO vfc_limits (card_id, per_day_amount, per_day_count, per_fill_amount,"
        " products, stations) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (card_id) DO UPDATE SET"
        " per_day_amount = excluded.per_day_amount, per_day_count = excluded.per_day_count,"
        " per_fill_amount = excluded.per_fill_amount, products = excluded.products,"
        " stations = excluded.stations",
        (
            card_id,
            limits.per_day_amount,
            limits.per_day_count,
            limits.per_fill_amount,
            None if limits.products is None else " ".join(limits.products),
            None if limits.stations is None else " ".join(limits.stations),
        ),
    )
    return company_card(conn, admin, card_id)


# Top-up by bank card: a simulated acquirer ---------------------------------------------------

# Explicit test card numbers (docs/virtual-cards.md): anything else is declined.
ACQUIRER_TEST_CARDS = {
    "4111111111111111": "",
    "5555555555554444": "",
    "4000000000000002": "do_not_honour",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}
ACQUIRER_ACCOUNT = "clearing:acquirer"


def acquirer_answer(pan: str) -> str:
    """The simulated acquirer: "" (approved) or a decline code."""
    return ACQUIRER_TEST_CARDS.get(pan, "not_a_test_card")


def top_up(
    conn: sqlite3.Connection, admin: FleetUser, amount: int, pan: str, now: datetime
) -> TopUp:
    """Charge a bank card and credit the company account (approved), or record the decline."""
    if not luhn_valid(pan) or not 12 <= len(pan) <= 19:
        raise bad_request("card_number", "must be 12-19 digits with a valid Luhn check digit")
    decline = acquirer_answer(pan)
    reference = f"ACQ{secrets.token_hex(6).upper()}"
    txn_id = None
    if not decline:
        txn_id = ledger.post(
            conn,
            kind="fleet.topup",
            memo=f"top-up {admin.company_id} by card …{pan[-4:]} ({reference})",
            legs=[
                ledger.Leg(ACQUIRER_ACCOUNT, amount),
                ledger.Leg(fleet_account(admin.company_id), -amount),
            ],
            now=now,
        )
    cursor = conn.execute(
        "INSERT INTO fleet_topups (company_id, amount, card_last4, status, decline_code,"
        " acquirer_ref, txn_id, ak, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING topup_id",
        (
            admin.company_id,
            amount,
            pan[-4:],
            "declined" if decline else "approved",
            decline,
            reference,
            txn_id,
            admin.ak,
            utc_text(now),
        ),
    )
    return TopUp(
        returned_id(cursor),
        "declined" if decline else "approved",
        amount,
        decline,
        reference,
        txn_id,
        ledger.balance(conn, fleet_account(admin.company_id)),
    )


# Limited-use keys ------------------------------------------------------------------------------


def driver_card(conn: sqlite3.Connection, driver: FleetUser, card_id: str) -> Card:
    """A card the driver may use: bound to them now."""
    card = company_card(conn, driver, card_id)
    if card.driver_id != driver.user_id:
        raise ApiError(
            "E_NOT_BOUND",
            403,
            f"card {card_id} is not bound to driver {driver.user_id}",
            card_id=card_id,
            driver_id=driver.user_id,
        )
    return card


def provision_keys(
    conn: sqlite3.Connection,
    hsm: VfcKeySource,
    key_set: str,
    driver: FleetUser,
    card_id: str,
    count: int,
    policy: VfcPolicy,
    now: datetime,
) -> tuple[Card, list[ProvisionedKey]]:
    """New LUKs for the bound driver's phone (replenishment is the same call)."""
    card = driver_card(conn, driver, card_id)
    if card.status != "active":
        raise ApiError(
            "E_CARD_BLOCKED", 403, f"card {card_id} is blocked", reason=card.block_reason
        )
    if card.expiry < now.date():
        raise ApiError(
            "E_CARD_EXPIRED", 403, f"card {card_id} expired", expiry=card.expiry.isoformat()
        )
    epoch = int(now.timestamp())
    active = conn.execute(
        "SELECT COUNT(*) FROM vfc_luks WHERE card_id = ? AND revoked = 0 AND expires_at > ?"
        " AND used < budget",
        (card_id, epoch),
    ).fetchone()[0]
    room = policy.max_active_luks - int(active)
    if room <= 0:
        raise ApiError(
            "E_TOO_MANY_KEYS",
            409,
            f"card {card_id} already has {active} usable keys (at most {policy.max_active_luks})",
            active=int(active),
            max_active=policy.max_active_luks,
        )
    first = conn.execute(
        "SELECT COALESCE(MAX(luk_index), -1) + 1 FROM vfc_luks WHERE card_id = ?", (card_id,)
    ).fetchone()[0]
    keys = []
    expires = epoch + policy.luk_ttl_s
    for index in range(int(first), int(first) + min(count, room)):
        conn.execute(
            "INSERT INTO vfc_luks (card_id, luk_index, kv, driver_id, binding, issued_at,"
            " expires_at, budget) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                card_id,
                index,
                card.kv,
                driver.user_id,
                card.binding,
                utc_text(now),
                expires,
                policy.luk_budget,
            ),
        )
        key = hsm.vfc_luk(card.card_id, card.kv, index, key_set)
        keys.append(ProvisionedKey(index, key, card.kv, expires, policy.luk_budget))
    return card, keys


def bootstrap_dev_fleet(
    db: Database, now: datetime, out: Callable[[str], None] = print
) -> list[FleetUser]:
    """A development fleet (company `dev-fleet`, admin `dev-admin`, driver `dev-driver`), made
    once and reused, printed with the keys' secrets (`fuelsim host serve --dev-key`)."""
    with db.connect() as conn:
        known = conn.execute(
            "SELECT 1 FROM fleet_companies WHERE company_id = 'dev-fleet'"
        ).fetchone()
    if known is None:
        create_company(db, "dev-fleet", "Development fleet", now)
        for user_id, role in (("dev-admin", "admin"), ("dev-driver", "driver")):
            add_user(db, "dev-fleet", user_id, role, ak=user_id, sk=secrets.token_hex(24), now=now)
    users = []
    with db.connect() as conn:
        for row in conn.execute(
            "SELECT u.*, k.sk FROM fleet_users u JOIN access_keys k ON k.ak = u.ak"
            " WHERE u.company_id = 'dev-fleet' ORDER BY u.role, u.user_id"
        ):
            users.append(_user(row))
            out(f"dev fleet {row['role']} {row['user_id']}:  AK {row['ak']}  SK {row['sk']}")
    return users
