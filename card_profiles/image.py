"""Card images: the documented, versioned YAML format that describes a card or PSAM to emulate.

An image names its keys (issued by the HSM from a key set, or given explicitly), its files,
purse values, counters, PIN and block state; a user card may also be handed over grey-locked or
with an unread unlock TAC, which `history` produces by running the real commands against the
card and a PSAM. `docs/card-images.md` is the reference; `profiles/*.yaml` are the shipped ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from card_profiles.fuel_card_memory import KEY_NAMES, FuelCardContent
from card_profiles.nvm import Cells
from card_profiles.psam import PsamContent
from cardcore import layout
from cardcore.bcd import card_number_to_asn, encode_pin
from cardcore.errors import FuelsimError
from cardcore.keys import CardKeys, PsamKeys
from cardcore.layout import AppBlock, CardType
from cardcore.ports import Hsm
from cardcore.records import (
    NO_LIMIT,
    Cardholder,
    EtGeneralInfo,
    PsamKeyInfo,
    PsamSerial,
    PublicAppData,
    Restrictions,
)

IMAGE_FORMAT = "fuelsim.card-image/1"
KINDS = ("user-card", "psam")
CARD_TYPES = {t.name.lower().replace("_", "-"): t for t in CardType}
BLOCKS = {
    "active": AppBlock.ACTIVE,
    "temporarily-blocked": AppBlock.TEMPORARY,
    "permanently-blocked": AppBlock.PERMANENT,
}


class ImageError(FuelsimError):
    title = "bad card image"


class _Doc:
    """Typed access to one mapping of the YAML document, naming the path in every error."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ImageError(f"{source}: {path or 'the document'} must be a mapping")
        self.data, self.path, self.source = data, path, source
        self.seen: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ImageError:
        return ImageError(f"{self.source}: {self._where(key)}: {problem}")

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def section(self, key: str) -> _Doc:
        return _Doc(self.raw(key, {}), self._where(key), self.source)

    def optional_section(self, key: str) -> _Doc | None:
        return None if self.raw(key) is None else self.section(key)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, "expected text" if value is not None else "missing")
        return value

    def integer(self, key: str, default: int | None = None, *, maximum: int = 2**32 - 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "expected a whole number" if value is not None else "missing")
        if not 0 <= value <= maximum:
            raise self.error(key, f"{value} is outside 0..{maximum}")
        return value

    def limit(self, key: str, maximum: int) -> int:
        return NO_LIMIT if self.raw(key) is None else self.integer(key, maximum=maximum)

    def hexbytes(self, key: str, size: int, default: str | None = None) -> bytes:
        if isinstance(self.raw(key, default), int):
            raise self.error(key, 'quote hex values, e.g. "0123…", or YAML reads them as numbers')
        value = self.text(key, default)
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not hex") from None
        if len(raw) != size:
            raise self.error(key, f"expected {size} bytes, got {len(raw)}")
        return raw

    def day(self, key: str, default: date | None = None) -> date:
        value = self.raw(key, default)
        if isinstance(value, datetime) or not isinstance(value, date):
            raise self.error(key, "expected a date like 2030-12-31")
        return value

    def moment(self, key: str) -> datetime:
        value = self.raw(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise self.error(key, "expected a date and time like 2026-11-22 10:00:00")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "expected true or false")
        return value

    def choice(self, key: str, options: Mapping[str, Any], default: str) -> Any:
        value = self.text(key, default)
        if value not in options:
            raise self.error(key, f"{value!r} is not one of {', '.join(options)}")
        return options[value]

    def finish(self) -> None:
        unknown = set(self.data) - self.seen
        if unknown:
            raise self.error(sorted(unknown)[0], "unknown field")


@dataclass(frozen=True)
class GreyLockSetup:
    """`history.grey_lock`: lock the card at a PSAM, deliver, and leave it grey or TAC-unread."""

    psam: str
    at: datetime
    delivered: int
    card_rand: bytes
    psam_rand: bytes
    unlock: bool  # True: re-debit done, status 10 (TAC unread); False: grey, escape bill kept


@dataclass(frozen=True)
class CardImage:
    """A parsed image. `content(hsm)` issues it: keys from the HSM, files laid out."""

    name: str
    kind: str
    description: str
    source: str
    document: Mapping[str, Any]
    grey_lock: GreyLockSetup | None = None

    def content(self, hsm: Hsm) -> FuelCardContent | PsamContent:
        doc = _Doc(self.document, "", self.source)
        for key in ("format", "kind", "name", "description", "history"):
            doc.raw(key)
        content = _psam(doc, hsm) if self.kind == "psam" else _user_card(doc, hsm)
        doc.finish()
        return content

    def cells(self, hsm: Hsm) -> Cells:
        return self.content(hsm).cells()


def _explicit_keys(doc: _Doc, names: tuple[str, ...]) -> dict[str, bytes] | None:
    """`keys.explicit`, or None when the HSM issues the keys."""
    keys = doc.section("keys")
    explicit = keys.optional_section("explicit")
    if explicit is None:
        return None
    values = {name: explicit.hexbytes(name, 16) for name in names}
    explicit.finish()
    keys.finish()  # explicit keys and `issued_by` exclude each other
    return values


def _issued(doc: _Doc, issue: Callable[[str, int], Any]) -> Any:
    """Keys from the HSM key set named by `keys.issued_by`, via `issue(key_set, levels)`."""
    keys = doc.section("keys")
    key_set = keys.text("issued_by", "DEV")
    levels = keys.integer("purchase_key_levels", 2, maximum=2)
    keys.finish()
    if levels not in (1, 2):
        raise keys.error("purchase_key_levels", "must be 1 or 2")
    try:
        return issue(key_set, levels)
    except FuelsimError as exc:
        raise keys.error("issued_by", str(exc)) from exc


def _card_keys(doc: _Doc, hsm: Hsm, asn8: bytes, issuer8: bytes) -> CardKeys:
    explicit = _explicit_keys(doc, KEY_NAMES)
    if explicit is not None:
        return CardKeys(**explicit)
    keys: CardKeys = _issued(
        doc,
        lambda key_set, levels: hsm.personalise_card(
            asn8, issuer8 if levels == 2 else None, key_set
        ),
    )
    return keys


def _psam_keys(doc: _Doc, hsm: Hsm) -> PsamKeys:
    explicit = _explicit_keys(doc, ("mpk", "mtk", "mtmac"))
    if explicit is not None:
        return PsamKeys(**explicit)
    keys: PsamKeys = _issued(doc, lambda key_set, _: hsm.personalise_psam(key_set))
    return keys


def _user_card(doc: _Doc, hsm: Hsm) -> FuelCardContent:
    app = doc.section("application")
    issuer = app.hexbytes("issuer_id", 8, "10FFFFFFFFFFFFFF")
    number = app.text("card_number")
    try:
        asn = card_number_to_asn(number)
    except ValueError as exc:
        raise app.error("card_number", str(exc)) from None
    public = PublicAppData(
        issuer,
        asn,
        app.day("start", date(2024, 1, 1)),
        app.day("expiry", date(2034, 12, 31)),
        layout.STORE_FLAG_ON if app.flag("store_flag", False) else layout.STORE_FLAG_OFF,
    )
    app.finish()
    keys = _card_keys(doc, hsm, public.asn8, issuer)

    holder_doc = doc.section("holder")
    holder = Cardholder(
        holder_doc.choice("card_type", CARD_TYPES, "user"),
        1 if holder_doc.flag("staff", False) else 0,
        holder_doc.text("name", ""),
        holder_doc.text("id_number", ""),
        holder_doc.integer("id_type", 0, maximum=0xFF),
    )
    holder_doc.finish()

    pin_doc = doc.section("pin")
    pin = pin_doc.text("digits", layout.DEFAULT_PIN)
    try:
        encode_pin(pin)
    except ValueError as exc:
        raise pin_doc.error("digits", str(exc)) from None
    tries = pin_doc.integer("tries_left", layout.PIN_TRIES, maximum=layout.PIN_TRIES)
    default_pin = pin_doc.flag("default", pin == layout.DEFAULT_PIN)
    pin_doc.finish()

    general_doc = doc.section("general")
    general = EtGeneralInfo(
        layout.DEFAULT_PIN_FLAG_DEFAULT if default_pin else layout.DEFAULT_PIN_FLAG_CHANGED,
        general_doc.integer("staff_no", 0, maximum=0xFF),
        general_doc.hexbytes("staff_password", 2, "0000"),
        0,
        general_doc.integer("discount_card", 0, maximum=0xFF),
        general_doc.integer("sub_type", 0x01, maximum=0xFF),
    )
    general_doc.finish()

    limits = doc.section("restrictions")
    restrictions = Restrictions(
        product=limits.limit("product", 0xFFFE),
        max_litres_per_fill=limits.limit("max_litres_per_fill", 0xFFFE),
        max_fills_per_day=limits.limit("max_fills_per_day", 0xFE),
        max_amount_per_day=limits.limit("max_amount_per_day", 0xFFFFFFFE),
        plate=limits.text("plate", ""),
    )
    limits.finish()

    purse, loyalty = doc.section("purse"), doc.section("loyalty")
    content = FuelCardContent(
        keys=keys,
        public=public,
        holder=holder,
        general=general,
        restrictions=restrictions,
        balance=purse.integer("balance", 0),
        offline_ctc=purse.integer("offline_ctc", 0, maximum=layout.CTC_MAX),
        online_ctc=purse.integer("online_ctc", 0, maximum=layout.CTC_MAX),
        overdraft=purse.integer("overdraft", 0, maximum=0xFFFFFF),
        block=doc.choice("status", BLOCKS, "active"),
        pin=pin,
        pin_tries=tries,
        loyalty_balance=loyalty.integer("balance", 0),
    )
    purse.finish()
    loyalty.finish()
    return content


def _psam(doc: _Doc, hsm: Hsm) -> PsamContent:
    psam = doc.section("psam")
    issuer = psam.hexbytes("issuer_id", 8, "10FFFFFFFFFFFFFF")
    content = PsamContent(
        keys=_psam_keys(doc, hsm),
        serial=PsamSerial(psam.hexbytes("serial", 10)),
        term=psam.hexbytes("terminal_id", 6),
        key_info=PsamKeyInfo(
            psam.integer("key_index", layout.KEY_INDEX, maximum=0xFF),
            issuer,
            psam.hexbytes("acquirer_id", 8, "10FFFFFFFFFFFFFF"),
            psam.day("start", date(2024, 1, 1)),
            psam.day("expiry", date(2034, 12, 31)),
        ),
        ttc=psam.integer("ttc", 0),
    )
    psam.finish()
    return content


def _grey_lock_setup(history: _Doc) -> GreyLockSetup | None:
    lock = history.optional_section("grey_lock")
    history.finish()
    if lock is None:
        return None
    setup = GreyLockSetup(
        psam=lock.text("psam", "psam-dispenser"),
        at=lock.moment("at"),
        delivered=lock.integer("delivered"),
        card_rand=lock.hexbytes("card_rand", 4, "99AABBCC"),
        psam_rand=lock.hexbytes("psam_rand", 4, "01020304"),
        unlock=lock.flag("unlocked", False),
    )
    lock.finish()
    return setup


def parse_image(text: str, source: str) -> CardImage:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImageError(f"{source}: not valid YAML: {exc}") from None
    doc = _Doc(data, "", source)
    if doc.raw("format") != IMAGE_FORMAT:
        raise doc.error("format", f"expected {IMAGE_FORMAT!r}, got {doc.raw('format')!r}")
    kind = doc.text("kind")
    if kind not in KINDS:
        raise doc.error("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    grey = _grey_lock_setup(doc.section("history"))
    if grey is not None and kind != "user-card":
        raise doc.error("history", "only a user card has a history")
    return CardImage(doc.text("name"), kind, doc.text("description", ""), source, data, grey)


def shipped_profiles() -> list[str]:
    folder = resources.files("card_profiles") / "profiles"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_image(name_or_path: str) -> CardImage:
    """A shipped profile by name (`normal`), or an image file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            return parse_image(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ImageError(f"{path}: {exc.strerror}") from None
    resource = resources.files("card_profiles") / "profiles" / f"{name_or_path}.yaml"
    if not resource.is_file():
        known = ", ".join(shipped_profiles())
        raise ImageError(f"no card profile {name_or_path!r}; shipped profiles: {known}")
    return parse_image(resource.read_text(encoding="utf-8"), f"profile {name_or_path}")
