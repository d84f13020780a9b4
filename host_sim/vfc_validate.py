"""Validation of a virtual fleet card payment code, in the order of virtual-cards spec §4, and the
authorisation that follows it.

1. strict parse (E_FORMAT, E_VERSION); 2. card (E_UNKNOWN_CARD) and LUK (E_KEY_INVALID);
3. throttle (E_THROTTLED), then the cryptogram (E_CRYPTOGRAM, counted); 4. card blocked
(E_CARD_BLOCKED), card expired (E_CARD_EXPIRED), LUK budget/TTL (E_KEY_EXHAUSTED); 5. time
(E_CLOCK_SKEW, E_EXPIRED, warning W_CLOCK_DRIFT); 6. replay (E_REPLAYED, E_ATC_OUT_OF_RANGE);
7. fraud rules (E_CARD_BLOCKED), restrictions (E_RESTRICTED), limits (E_LIMIT_EXCEEDED),
funds (E_INSUFFICIENT_FUNDS), then the money model (flash pay: E_SALE_ALREADY_PAID).

Steps 1-5 read only (a failed cryptogram and an unsynchronised phone's offset are recorded in
their own small transactions). Steps 6 and 7 run in one `BEGIN IMMEDIATE` transaction: the
`vfc_uses` row (primary key (card, ATC), unique cryptogram) is inserted together with the
authorisation, so of two pumps racing the same code exactly one commits it. A code refused by
a business rule stays used: one code, one attempt.
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cardcore import vfc
from host_sim import ledger
from host_sim.db import Database, transaction, utc_text
from host_sim.errors import ApiError
from host_sim.fleet import Card, fleet_account, load_card, set_blocked
from host_sim.vfc_money import Payment, Sale, capture, open_hold
from host_sim.vfc_policy import VfcKeySource, VfcPolicy

METHODS = ("qr", "nfc", "numeric")


@dataclass(frozen=True)
class Presented:
    """What the terminal forwards: a token (QR text = base64; NFC = the same bytes as base64)
    or a 19-digit numeric code."""

    method: str  # qr | nfc | numeric
    data: str


@dataclass(frozen=True)
class Validated:
    card: Card
    atc: int
    luk_index: int
    binding: int  # the LUK's binding: ATCs count per binding
    replay_key: str
    method: str
    delta_s: int
    skew_steps: int | None
    warnings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Authorisation:
    payment: Payment
    validated: Validated
    luk_used: int
    luk_budget: int
    luk_expires_at: int


@dataclass(frozen=True)
class _Code:
    """The parsed code, whatever its form: what steps 2-5 need."""

    token: vfc.Token | None
    numeric: vfc.NumericCode | None


def _fail(code: str, status: int, message: str, **figures: Any) -> ApiError:
    return ApiError(code, status, message, **figures)


# Step 1 ------------------------------------------------------------------------------------------


def parse(presented: Presented) -> _Code:
    if presented.method not in METHODS:
        raise _fail("E_FORMAT", 400, f"method must be one of {', '.join(METHODS)}")
    try:
        if presented.method == "numeric":
            return _Code(None, vfc.parse_numeric_code(presented.data))
        return _Code(vfc.from_qr_text(presented.data), None)
    except vfc.VfcFormatError as exc:
        raise _fail(exc.code, 400, exc.detail, method=presented.method) from None


# Steps 2-3 -------------------------------------------------------------------------------------


def _luk_row(conn: sqlite3.Connection, card: Card, index: int, kv: int) -> sqlite3.Row:
    row = conn.execute(
        "SELECT * FROM vfc_luks WHERE card_id = ? AND luk_index = ?", (card.card_id, index)
    ).fetchone()
    reason = (
        "unknown"
        if row is None
        else "revoked"
        if row["revoked"]
        else "key version differs"
        if row["kv"] != kv
        else "issued to an earlier binding"
        if row["binding"] != card.binding
        else ""
    )
    if reason:
        raise _fail(
            "E_KEY_INVALID",
            403,
            f"LUK {index} of card {card.card_id}: {reason}",
            card_id=card.card_id,
            luk_index=index,
            kv=kv,
            reason=reason,
        )
    assert row is not None
    row_found: sqlite3.Row = row
    return row_found


def _throttle(conn: sqlite3.Connection, card: Card, policy: VfcPolicy, epoch: float) -> None:
    since = epoch - policy.failure_window_s
    rows = conn.execute(
        "SELECT COUNT(*), MIN(at_epoch) FROM vfc_failures WHERE card_id = ? AND at_epoch > ?",
        (card.card_id, since),
    ).fetchone()
    failures = int(rows[0])
    if policy.failure_limit and failures >= policy.failure_limit:
        retry = int(rows[1] + policy.failure_window_s - epoch) + 1
        raise _fail(
            "E_THROTTLED",
            429,
            f"card {card.card_id}: {failures} failed codes in {policy.failure_window_s} s",
            card_id=card.card_id,
            failures=failures,
            failure_limit=policy.failure_limit,
            window_s=policy.failure_window_s,
            retry_after_s=max(1, retry),
        )


def _record_failure(db: Database, card: Card, epoch: float, policy: VfcPolicy) -> int:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO vfc_failures (card_id, code, at_epoch) VALUES (?, 'E_CRYPTOGRAM', ?)",
            (card.card_id, epoch),
        )
        conn.execute(
            "DELETE FROM vfc_failures WHERE card_id = ? AND at_epoch <= ?",
            (card.card_id, epoch - policy.failure_window_s),
        )
        count = conn.execute(
            "SELECT COUNT(*) FROM vfc_failures WHERE card_id = ?", (card.card_id,)
        ).fetchone()[0]
    return int(count)


def _bad_cryptogram(
    db: Database, card: Card, index: int | None, epoch: float, policy: VfcPolicy
) -> ApiError:
    failures = _record_failure(db, card, epoch, policy)
    return _fail(
        "E_CRYPTOGRAM",
        403,
        f"the code's cryptogram does not verify for card {card.card_id}",
        card_id=card.card_id,
        luk_index=index,
        failures=failures,
        failure_limit=policy.failure_limit,
        attempts_left=max(0, policy.failure_limit - failures),
    )


def _nfc_context(sale: Sale) -> bytes:
    try:
        return vfc.NfcContext(sale.amount, sale.station_id, sale.pump).encode()
    except ValueError as exc:
        raise _fail("E_FORMAT", 400, f"NFC context: {exc}") from None


# Steps 4-5 -------------------------------------------------------------------------------------


def _card_state(card: Card, now: datetime) -> None:
    if card.status != "active":
        raise _fail(
            "E_CARD_BLOCKED",
            403,
            f"card {card.card_id} is blocked: {card.block_reason}",
            card_id=card.card_id,
            reason=card.block_reason,
        )
    if card.expiry < now.date():
        raise _fail(
            "E_CARD_EXPIRED",
            403,
            f"card {card.card_id} expired on {card.expiry.isoformat()}",
            card_id=card.card_id,
            expiry=card.expiry.isoformat(),
            today=now.date().isoformat(),
        )


def _luk_state(luk: sqlite3.Row, epoch: int) -> None:
    if luk["used"] >= luk["budget"] or epoch >= luk["expires_at"]:
        why = "budget used" if luk["used"] >= luk["budget"] else "TTL over"
        raise _fail(
            "E_KEY_EXHAUSTED",
            403,
            f"LUK {luk['luk_index']}: {why}; fetch new keys",
            luk_index=luk["luk_index"],
            used=luk["used"],
            budget=luk["budget"],
            expires_at=luk["expires_at"],
            reason=why,
        )


def _remember_offset(db: Database, card: Card, offset: int) -> None:
    with db.write() as conn:
        conn.execute(
            "UPDATE vfc_cards SET last_offset_s = ? WHERE card_id = ?", (offset, card.card_id)
        )


def _token_time(
    db: Database, card: Card, iad: vfc.Iad, epoch: int, policy: VfcPolicy
) -> tuple[int, list[dict[str, Any]]]:
    """Step 5 for a token: (delta, warnings) or E_CLOCK_SKEW / E_EXPIRED."""
    delta = epoch - iad.t_gen
    common = {"t_gen": iad.t_gen, "server_epoch": epoch, "synced": iad.synced, "ttl_s": iad.ttl}
    tolerance = policy.ahead_synced_s if iad.synced else policy.ahead_unsynced_s
    history = card.last_offset_s
    if not iad.synced:
        _remember_offset(db, card, delta)
    if delta < -tolerance:
        raise _fail(
            "E_CLOCK_SKEW",
            422,
            f"the code was made {-delta} s in the future: the phone's clock is ahead",
            direction="ahead",
            skew_s=-delta,
            tolerance_s=tolerance,
            **common,
        )
    if delta > iad.ttl + policy.expiry_grace_s:
        if iad.synced:
            raise _fail(
                "E_EXPIRED",
                422,
                f"the code is {delta} s old; it was valid for {iad.ttl} s",
                age_s=delta,
                grace_s=policy.expiry_grace_s,
                **common,
            )
        if history is not None and abs(history - delta) <= policy.offset_match_s:
            raise _fail(
                "E_CLOCK_SKEW",
                422,
                f"the phone's clock is {delta} s behind (seen before for this card)",
                direction="behind",
                skew_s=delta,
                previous_offset_s=history,
                **common,
            )
        raise _fail(
            "E_EXPIRED",
            422,
            f"the code is {delta} s old by the phone's unsynchronised clock; "
            f"its clock may be {delta} s behind",
            age_s=delta,
            grace_s=policy.expiry_grace_s,
            suspected_skew_s=delta,
            **common,
        )
    warnings = []
    # Synced: the phone reports wall − trusted. Unsynced: a code from the future shows it too.
    drifts = [iad.skew_s] + ([-delta] if not iad.synced and delta < 0 else [])
    drift = max(drifts, key=abs)
    if abs(drift) > policy.drift_warning_s:
        warnings.append(
            {
                "code": "W_CLOCK_DRIFT",
                "message": "the phone's wall clock is off: turn on automatic time",
                "drift_s": drift,
                "direction": "ahead" if drift > 0 else "behind",
                "synced": iad.synced,
            }
        )
    return delta, warnings


def _numeric_time(step: int, server_step: int, policy: VfcPolicy) -> tuple[int, int]:
    """Step 5 for a numeric code: the window never widens; skew is reported in steps."""
    skew = step - server_step
    figures = {"step": step, "server_step": server_step, "step_s": vfc.STEP_S}
    if skew > policy.numeric_steps_ahead:
        raise _fail(
            "E_CLOCK_SKEW",
            422,
            f"the code is {skew} time steps ahead of the host",
            direction="ahead",
            skew_steps=skew,
            skew_s=skew * vfc.STEP_S,
            window_steps=[-policy.numeric_steps_behind, policy.numeric_steps_ahead],
            **figures,
        )
    if -skew > policy.numeric_steps_behind:
        raise _fail(
            "E_EXPIRED",
            422,
            f"the code is {-skew} time steps old (window {policy.numeric_steps_behind})",
            age_steps=-skew,
            age_s=-skew * vfc.STEP_S,
            suspected_skew_steps=-skew,
            window_steps=[-policy.numeric_steps_behind, policy.numeric_steps_ahead],
            **figures,
        )
    return skew * vfc.STEP_S, skew


# Steps 1-5 together ----------------------------------------------------------------------------


def validate(
    db: Database,
    hsm: VfcKeySource,
    key_set: str,
    presented: Presented,
    sale: Sale,
    policy: VfcPolicy,
    now: datetime,
) -> Validated:
    code = parse(presented)
    epoch = int(now.timestamp())
    with db.connect() as conn:
        if code.token is not None:
            card = load_card(conn, "card_number", code.token.card_number)
            if card is None:
                raise _fail(
                    "E_UNKNOWN_CARD",
                    404,
                    f"no virtual card {code.token.card_number}",
                    card_number=code.token.card_number,
                )
            return _validate_token(
                db, conn, hsm, key_set, card, code.token, presented, sale, policy, now
            )
        assert code.numeric is not None
        card = load_card(conn, "alias", code.numeric.alias)
        if card is None:
            raise _fail(
                "E_UNKNOWN_CARD",
                404,
                f"no card alias {code.numeric.alias}",
                alias=code.numeric.alias,
            )
        return _validate_numeric(db, conn, hsm, key_set, card, code.numeric, policy, now, epoch)


def _validate_token(
    db: Database,
    conn: sqlite3.Connection,
    hsm: VfcKeySource,
    key_set: str,
    card: Card,
    token: vfc.Token,
    presented: Presented,
    sale: Sale,
    policy: VfcPolicy,
    now: datetime,
) -> Validated:
    epoch = int(now.timestamp())
    luk = _luk_row(conn, card, token.iad.luk_index, token.iad.kv)
    _throttle(conn, card, policy, now.timestamp())
    context = _nfc_context(sale) if presented.method == "nfc" else b""
    key = hsm.vfc_luk(card.card_id, token.iad.kv, token.iad.luk_index, key_set)
    if token.expiry != card.expiry or not vfc.verify_cryptogram(key, token, context):
        raise _bad_cryptogram(db, card, token.iad.luk_index, now.timestamp(), policy)
    _card_state(card, now)
    _luk_state(luk, epoch)
    delta, warnings = _token_time(db, card, token.iad, epoch, policy)
    return Validated(
        card,
        token.atc,
        token.iad.luk_index,
        int(luk["binding"]),
        token.cryptogram.hex(),
        presented.method,
        delta,
        None,
        warnings,
    )


def _validate_numeric(
    db: Database,
    conn: sqlite3.Connection,
    hsm: VfcKeySource,
    key_set: str,
    card: Card,
    code: vfc.NumericCode,
    policy: VfcPolicy,
    now: datetime,
    epoch: int,
) -> Validated:
    luks = conn.execute(
        "SELECT * FROM vfc_luks WHERE card_id = ? AND revoked = 0 AND kv = ? AND binding = ?"
        " ORDER BY luk_index DESC LIMIT ?",
        (card.card_id, card.kv, card.binding, policy.max_active_luks),
    ).fetchall()
    if not luks:
        raise _fail(
            "E_KEY_INVALID",
            403,
            f"card {card.card_id} has no key that is not revoked",
            card_id=card.card_id,
            luk_index=None,
            kv=card.kv,
            reason="no usable key",
        )
    _throttle(conn, card, policy, now.timestamp())
    server_step = vfc.time_step(epoch)
    step = vfc.recover_step(code.step_mod_100, server_step)
    low = max(0, card.atc_high - policy.atc_replay_window)
    atcs = vfc.atc_candidates(code.atc_mod_10, low, card.atc_high + policy.atc_forward)
    match = next(
        (
            (luk, atc)
            for luk in luks
            for key in [hsm.vfc_luk(card.card_id, card.kv, luk["luk_index"], key_set)]
            for atc in atcs
            if hmac.compare_digest(vfc.numeric_otp(key, step, atc), code.otp)
        ),
        None,
    )
    if match is None:
        raise _bad_cryptogram(db, card, None, now.timestamp(), policy)
    luk, atc = match
    _card_state(card, now)
    _luk_state(luk, epoch)
    delta, skew_steps = _numeric_time(step, server_step, policy)
    warnings = []
    if skew_steps > 0:
        warnings.append(
            {
                "code": "W_CLOCK_DRIFT",
                "message": "the code's time step is ahead of the host",
                "drift_s": skew_steps * vfc.STEP_S,
                "skew_steps": skew_steps,
                "direction": "ahead",
                "synced": None,
            }
        )
    replay = f"N{card.alias}:{step}:{atc}:{code.otp}"
    return Validated(
        card,
        atc,
        int(luk["luk_index"]),
        int(luk["binding"]),
        replay,
        "numeric",
        -delta,
        skew_steps,
        warnings,
    )


# Steps 6-7: replay, business rules and the money, in one transaction --------------------------


def _replay(
    conn: sqlite3.Connection, v: Validated, sale: Sale, policy: VfcPolicy, now: datetime
) -> None:
    row = conn.execute(
        "SELECT atc_high, binding FROM vfc_cards WHERE card_id = ?", (v.card.card_id,)
    ).fetchone()
    if row["binding"] != v.binding:  # re-bound since the checks above
        raise _fail(
            "E_KEY_INVALID",
            403,
            f"LUK {v.luk_index} of card {v.card.card_id}: issued to an earlier binding",
            card_id=v.card.card_id,
            luk_index=v.luk_index,
            reason="issued to an earlier binding",
        )
    high = int(row["atc_high"])
    figures = {"atc": v.atc, "atc_high": high}
    if v.atc < high - policy.atc_replay_window:
        raise _fail(
            "E_REPLAYED",
            409,
            f"ATC {v.atc} is far below the card's high-water mark {high}",
            reason="far below the high-water mark",
            window=policy.atc_replay_window,
            **figures,
        )
    if v.atc > high + policy.atc_forward:
        raise _fail(
            "E_ATC_OUT_OF_RANGE",
            422,
            f"ATC {v.atc} jumps more than {policy.atc_forward} above the high-water mark {high}",
            max_forward=policy.atc_forward,
            **figures,
        )
    # ON CONFLICT rather than catching the error: PostgreSQL aborts the transaction on one.
    stored = conn.execute(
        "INSERT INTO vfc_uses (card_id, binding, atc, cryptogram, luk_index, terminal_id,"
        " outcome, used_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
        (
            v.card.card_id,
            v.binding,
            v.atc,
            v.replay_key,
            v.luk_index,
            sale.terminal_id,
            utc_text(now),
        ),
    )
    if stored.rowcount != 1:
        first = conn.execute(
            "SELECT terminal_id, used_at, outcome FROM vfc_uses"
            " WHERE (card_id = ? AND binding = ? AND atc = ?) OR cryptogram = ?",
            (v.card.card_id, v.binding, v.atc, v.replay_key),
        ).fetchone()
        raise _fail(
            "E_REPLAYED",
            409,
            f"this code (card {v.card.card_id}, ATC {v.atc}) was already used",
            reason="already used",
            first_terminal=first["terminal_id"] if first else None,
            first_used_at=first["used_at"] if first else None,
            **figures,
        )
    conn.execute(
        "UPDATE vfc_cards SET atc_high = ? WHERE card_id = ? AND atc_high < ?",
        (v.atc, v.card.card_id, v.atc),
    )


def _spend_luk(conn: sqlite3.Connection, v: Validated) -> sqlite3.Row:
    """Count the use against the LUK's budget (checked again here: codes of one LUK race)."""
    row = conn.execute(
        "UPDATE vfc_luks SET used = used + 1 WHERE card_id = ? AND luk_index = ?"
        " AND used < budget AND revoked = 0 RETURNING used, budget, expires_at, luk_index",
        (v.card.card_id, v.luk_index),
    ).fetchall()
    if not row:
        raise _fail(
            "E_KEY_EXHAUSTED",
            403,
            f"LUK {v.luk_index} was used up or revoked meanwhile",
            luk_index=v.luk_index,
            reason="budget used or revoked",
        )
    spent: sqlite3.Row = row[0]
    return spent


def _fraud(
    conn: sqlite3.Connection, card: Card, sale: Sale, policy: VfcPolicy, now: datetime
) -> None:
    """Velocity, unusual amount, too many stations a day: block the card (committed)."""
    recent = 0
    if policy.velocity_max:
        since = utc_text(
            datetime.fromtimestamp(now.timestamp() - policy.velocity_window_s, now.tzinfo)
        )
        recent = conn.execute(
            "SELECT COUNT(*) FROM vfc_payments WHERE card_id = ? AND created_at > ?",
            (card.card_id, since),
        ).fetchone()[0]
    stations = {sale.station_id}
    if policy.max_stations_per_day:
        stations |= {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT station_id FROM vfc_payments WHERE card_id = ? AND day = ?",
                (card.card_id, now.date().isoformat()),
            )
        }
    rule, figures = "", {}
    if policy.velocity_max and recent >= policy.velocity_max:
        rule = "velocity"
        figures = {
            "payments": int(recent),
            "window_s": policy.velocity_window_s,
            "max": policy.velocity_max,
        }
    elif policy.unusual_amount and sale.amount > policy.unusual_amount:
        rule = "unusual amount"
        figures = {"amount": sale.amount, "max": policy.unusual_amount}
    elif policy.max_stations_per_day and len(stations) > policy.max_stations_per_day:
        rule = "unusual stations"
        figures = {"stations_today": len(stations), "max": policy.max_stations_per_day}
    if rule:
        set_blocked(conn, card.card_id, True, f"fraud: {rule}")
        raise _fail(
            "E_CARD_BLOCKED",
            403,
            f"card {card.card_id} blocked by the fraud rule '{rule}'",
            card_id=card.card_id,
            reason=f"fraud: {rule}",
            rule=rule,
            **figures,
        )


def _restrictions(card: Card, sale: Sale) -> None:
    limits = card.limits
    for rule, value, allowed in (
        ("product", sale.product, limits.products),
        ("station", sale.station_id, limits.stations),
    ):
        if allowed is not None and value not in allowed:
            raise _fail(
                "E_RESTRICTED",
                403,
                f"{rule} {value} is not allowed for card {card.card_id}",
                rule=rule,
                value=value,
                allowed=list(allowed),
            )


def _limits(conn: sqlite3.Connection, card: Card, sale: Sale, now: datetime) -> None:
    limits = card.limits
    used_amount, used_count = conn.execute(
        "SELECT COALESCE(SUM(CASE status WHEN 'held' THEN held_amount ELSE amount END), 0),"
        " COUNT(*) FROM vfc_payments WHERE card_id = ? AND day = ? AND status <> 'released'",
        (card.card_id, now.date().isoformat()),
    ).fetchone()
    checks = (
        ("per_fill_amount", limits.per_fill_amount, 0, sale.amount),
        ("per_day_amount", limits.per_day_amount, int(used_amount), sale.amount),
        ("per_day_count", limits.per_day_count, int(used_count), 1),
    )
    for name, limit, used, requested in checks:
        if limit is not None and used + requested > limit:
            raise _fail(
                "E_LIMIT_EXCEEDED",
                402,
                f"{name} {limit}: {used} used, {requested} requested",
                limit_name=name,
                limit=limit,
                used=used,
                requested=requested,
                remaining=max(0, limit - used),
                day=now.date().isoformat(),
            )


def _funds(conn: sqlite3.Connection, card: Card, sale: Sale) -> None:
    balance = ledger.balance(conn, fleet_account(card.company_id))
    if balance < sale.amount:
        raise _fail(
            "E_INSUFFICIENT_FUNDS",
            402,
            f"company {card.company_id} holds {balance} fen, {sale.amount} needed",
            balance=balance,
            requested=sale.amount,
            company_id=card.company_id,
        )


def authorise(
    db: Database, v: Validated, sale: Sale, model: str, policy: VfcPolicy, now: datetime
) -> Authorisation:
    refusal: ApiError | None = None
    with db.connect() as conn, transaction(conn):
        _replay(conn, v, sale, policy, now)
        luk = _spend_luk(conn, v)
        card = load_card(conn, "card_id", v.card.card_id)
        assert card is not None
        try:
            _card_state(card, now)  # blocked meanwhile (by an admin or a fraud rule)
            _fraud(conn, card, sale, policy, now)
            _restrictions(card, sale)
            _limits(conn, card, sale, now)
            _funds(conn, card, sale)
            money = open_hold if model == "prepaid" else capture
            payment = money(
                conn, card, sale, atc=v.atc, luk_index=v.luk_index, method=v.method, now=now
            )
            outcome = f"payment {payment.payment_id}"
        except ApiError as error:
            refusal, outcome = error, error.code
        conn.execute(
            "UPDATE vfc_uses SET outcome = ? WHERE card_id = ? AND binding = ? AND atc = ?",
            (outcome, card.card_id, v.binding, v.atc),
        )
    if refusal is not None:
        raise refusal
    return Authorisation(payment, v, int(luk["used"]), int(luk["budget"]), int(luk["expires_at"]))
