"""Read card or PSAM memory back as labelled, human-readable sections (for `fuelsim card show`).

Keys are shown by their check values only.
"""

from __future__ import annotations

from enum import IntEnum

from card_profiles.psam import KIND as PSAM_KIND
from card_profiles.psam import GreySession, SessionState
from cardcore import crypto, layout
from cardcore.bcd import asn_to_card_number
from cardcore.errors import DecodeError
from cardcore.layout import AppBlock, CardType, LockStatus, TxType
from cardcore.records import (
    NO_LIMIT,
    Cardholder,
    EtGeneralInfo,
    LockRecord,
    PsamKeyInfo,
    PsamSerial,
    PublicAppData,
    Restrictions,
    TxLogEntry,
)

Section = tuple[str, list[tuple[str, str]]]


def money(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return f"{enum(value).name.lower().replace('_', ' ')} ({value:02X})"
    except ValueError:
        return f"{value:02X}"


def _limit(value: int, unit: str = "") -> str:
    return "none" if value == NO_LIMIT else f"{value}{unit}"


def _dt(raw: bytes) -> str:
    text = raw.hex()
    if raw == bytes(len(raw)):
        return "-"
    return f"{text[:4]}-{text[4:6]}-{text[6:8]} {text[8:10]}:{text[10:12]}:{text[12:14]}"


def describe(cells: dict[str, bytes]) -> list[Section]:
    try:
        if cells.get("kind") == PSAM_KIND:
            return _psam(cells)
        return _user_card(cells)
    except (DecodeError, KeyError) as exc:
        raise DecodeError(f"card memory does not decode: {exc}", field="memory", offset=0) from exc


def _keys(cells: dict[str, bytes]) -> Section:
    rows = [
        (name.removeprefix("key.").upper(), crypto.kcv(value).hex().upper())
        for name, value in cells.items()
        if name.startswith("key.")
    ]
    return ("keys (KCV)", rows)


def _user_card(cells: dict[str, bytes]) -> list[Section]:
    public = PublicAppData.from_bytes(cells["ef15"])
    holder = Cardholder.from_bytes(cells["ef16"])
    general = EtGeneralInfo.from_bytes(cells["ef1b"])
    limits = Restrictions.from_bytes(cells["ef1c"])
    lock = LockRecord.from_bytes(cells["lock"])
    tries = cells["pin.tries"][0]
    size = layout.EF18_RECORD_SIZE
    log = [
        TxLogEntry.from_bytes(cells["ef18"][i : i + size])
        for i in range(0, len(cells["ef18"]), size)
    ]
    sections: list[Section] = [
        (
            "application (EF15)",
            [
                ("profile", cells.get("profile", b"").decode() or "-"),
                ("card number", asn_to_card_number(public.asn)),
                ("ASN", public.asn.hex().upper()),
                ("issuer", public.issuer_id.hex().upper()),
                ("valid", f"{public.start} to {public.expiry}"),
                ("store purchases", "enabled" if public.store_enabled else "not enabled"),
                ("application", _name(AppBlock, cells["et.block"][0])),
            ],
        ),
        (
            "holder (EF16, EF1B)",
            [
                ("card type", _name(CardType, holder.card_type)),
                ("name", holder.name or "-"),
                ("ID number", holder.id_number or "-"),
                ("staff", f"no {general.staff_no}" if holder.staff_flag else "no"),
                ("PIN", "blocked" if tries == 0 else f"{tries} tries left"),
                ("default PIN", "in use" if general.default_pin_flag == 0 else "changed"),
            ],
        ),
        (
            "restrictions (EF1C)",
            [
                ("product", "any" if limits.product == NO_LIMIT else f"{limits.product:04X}"),
                ("litres per fill", _limit(limits.max_litres_per_fill, " L")),
                ("fills per day", _limit(limits.max_fills_per_day)),
                (
                    "amount per day",
                    "none"
                    if limits.max_amount_per_day == NO_LIMIT
                    else money(limits.max_amount_per_day),
                ),
                ("plate", limits.plate or "-"),
            ],
        ),
        (
            "purse",
            [
                ("balance", money(int.from_bytes(cells["et.balance"], "big"))),
                ("offline CTC", str(int.from_bytes(cells["et.offline_ctc"], "big"))),
                ("online CTC", str(int.from_bytes(cells["et.online_ctc"], "big"))),
                ("loyalty points", str(int.from_bytes(cells["loyalty.balance"], "big"))),
            ],
        ),
        (
            "grey lock",
            [
                ("status", _name(LockStatus, lock.status)),
                ("type", _name(TxType, lock.tx_type) if lock.tx_type else "-"),
                ("balance", money(lock.balance)),
                ("CTC", str(lock.ctc)),
                ("terminal", lock.term.hex().upper()),
                ("date and time", _dt(lock.dt)),
                (
                    "MAC2" if lock.status == LockStatus.GREY else "amount",
                    lock.word22.hex().upper()
                    if lock.status == LockStatus.GREY
                    else money(lock.amount),
                ),
                ("GTAC" if lock.status == LockStatus.GREY else "TAC", lock.tac.hex().upper()),
            ],
        ),
        (
            "transaction log (EF18, newest first)",
            [
                (
                    f"#{n}",
                    f"CTC {e.ctc}  {_name(TxType, e.tx_type)}  {money(e.amount)}  "
                    f"term {e.term.hex().upper()}  {_dt(e.dt)}",
                )
                for n, e in enumerate(log, 1)
            ]
            or [("-", "empty")],
        ),
        _keys(cells),
    ]
    return sections


def _psam(cells: dict[str, bytes]) -> list[Section]:
    serial = PsamSerial.from_bytes(cells["ef15"])
    info = PsamKeyInfo.from_bytes(cells["ef17"])
    raw = cells["grey"]
    size = GreySession.SIZE
    sessions = [GreySession.from_bytes(raw[i : i + size]) for i in range(0, len(raw), size)]
    states = {
        SessionState.OPEN: "open",
        SessionState.LOCKED: "locked",
        SessionState.ANSWERED: "answered",
    }
    return [
        (
            "PSAM",
            [
                ("profile", cells.get("profile", b"").decode() or "-"),
                ("serial", serial.serial.hex().upper()),
                ("terminal", cells["ef16"].hex().upper()),
                ("key index", str(info.key_index)),
                ("issuer", info.issuer_id.hex().upper()),
                ("valid", f"{info.start} to {info.expiry}"),
                ("next TTC", str(int.from_bytes(cells["ttc"], "big"))),
            ],
        ),
        (
            "grey-lock sessions (newest first)",
            [
                (
                    f"TTC {s.lock_ttc}",
                    f"ASN8 {s.asn8.hex().upper()}  CTC {s.lock_ctc}  "
                    f"{states.get(s.state, '?')}  "
                    + (
                        f"unlock TTC {s.unlock_ttc} amount {money(s.amount)}"
                        if s.state == SessionState.ANSWERED
                        else ""
                    ),
                )
                for s in sessions
            ]
            or [("-", "none")],
        ),
        _keys(cells),
    ]
