"""Promotions (营销): which discount a sale gets, decided by pure rule evaluation.

A rule belongs to a level — `national`, `province` (its `region` is the two-digit province code,
the first two digits of a terminal id, e.g. `44`) or `station` (its `region` is the station id) —
and is one of three kinds:

* `per_litre` — 明折明扣: `value` fen off every litre (e.g. 30 = 0.30/L), usually by grade;
* `fixed` — a fixed reduction of `value` fen once the sale reaches `min_amount`;
* `percent` — `value` basis points off the amount (300 = 3 %), optionally capped.

A rule may name `grades`, a validity window, a `min_amount`, a `max_discount`, and limits on its
uses (`limit_per_card`, `limit_per_day` over all cards in one UTC day, `limit_total`). A rule with
a `coupon` code applies only when that code is presented; the others apply by themselves.

**Precedence: best for the customer.** Every rule that applies is priced for the quoted sale;
the largest discount wins. Ties go to the most specific level (station, then province, then
national), then to the smaller rule id. Discounts never stack: one rule per sale.

The rule is chosen at authorisation (a pump quotes its preset, or what the card may buy); the
sale is then priced by that rule's terms for what was delivered (`Offer.discount`), so a fixed
reduction whose minimum the delivered sale misses gives nothing. A discount never exceeds the
sale's amount.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from cardcore.errors import FuelsimError

Level = Literal["national", "province", "station"]
Kind = Literal["per_litre", "fixed", "percent"]
LEVELS: tuple[Level, ...] = ("national", "province", "station")
KINDS: tuple[Kind, ...] = ("per_litre", "fixed", "percent")
SPECIFICITY = {"national": 0, "province": 1, "station": 2}
FORMAT = "fuelsim.promotions/1"

_RULE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PROVINCE = re.compile(r"[0-9]{2}")
_ASN = re.compile(r"[0-9]{20}")
_FIELDS = {
    "id",
    "level",
    "region",
    "kind",
    "value",
    "grades",
    "min_amount",
    "max_discount",
    "coupon",
    "limit_per_card",
    "limit_per_day",
    "limit_total",
    "starts",
    "ends",
    "text",
    "enabled",
}


class PromotionError(FuelsimError, ValueError):
    """A rule or a quote request that is not in shape; the message names the field."""

    title = "bad promotion"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Rule:
    rule_id: str
    level: Level
    kind: Kind
    value: int
    region: str = ""
    grades: frozenset[int] = frozenset()
    min_amount: int = 0
    max_discount: int | None = None
    coupon: str | None = None
    limit_per_card: int | None = None
    limit_per_day: int | None = None
    limit_total: int | None = None
    starts: datetime | None = None
    ends: datetime | None = None
    text: str = ""
    enabled: bool = True

    @property
    def display(self) -> str:
        """What the pump shows: the rule's own text, else one made from its terms."""
        if self.text:
            return self.text
        if self.kind == "per_litre":
            return f"discount {self.value / 100:.2f}/L"
        if self.kind == "fixed":
            floor = f" on {self.min_amount / 100:.2f} or more" if self.min_amount else ""
            return f"discount {self.value / 100:.2f}{floor}"
        return f"discount {self.value / 100:g}%"

    def to_dict(self) -> dict[str, Any]:
        """The rule as the API and the YAML file spell it (see `rule_from_dict`)."""
        return {
            "id": self.rule_id,
            "level": self.level,
            "region": self.region,
            "kind": self.kind,
            "value": self.value,
            "grades": sorted(self.grades),
            "min_amount": self.min_amount,
            "max_discount": self.max_discount,
            "coupon": self.coupon,
            "limit_per_card": self.limit_per_card,
            "limit_per_day": self.limit_per_day,
            "limit_total": self.limit_total,
            "starts": _time_text(self.starts),
            "ends": _time_text(self.ends),
            "text": self.text,
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class QuoteRequest:
    """A sale as known at authorisation: `amount` is its gross (list-price) fen, `volume` in
    0.01 L (0 when the preset is by amount)."""

    asn: str
    station: str
    province: str
    grade: int
    amount: int
    volume: int
    at: datetime
    coupon: str | None = None


@dataclass(frozen=True)
class UseCounts:
    per_card: int = 0  # uses of the rule by this card
    per_day: int = 0  # uses by all cards on the day (UTC)
    total: int = 0


UsageLookup = Callable[[str, str, date], UseCounts]
"""(rule id, ASN, UTC day) → how often the rule was used."""


@dataclass(frozen=True)
class Offer:
    """The terms a sale is priced by: one rule, with what it takes off the quoted sale."""

    rule: Rule
    quoted_discount: int

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id

    @property
    def level(self) -> Level:
        return self.rule.level

    @property
    def text(self) -> str:
        return self.rule.display

    def discount(self, amount: int, volume: int) -> int:
        """Fen off a sale of `amount` gross fen and `volume` 0.01 L, by this rule's terms."""
        return discount_of(self.rule, amount, volume)


def discount_of(rule: Rule, amount: int, volume: int) -> int:
    """What `rule` takes off a sale, rounded half up to the fen, never more than the sale."""
    if amount <= 0 or amount < rule.min_amount:
        return 0
    if rule.kind == "per_litre":
        off = (volume * rule.value + 50) // 100
    elif rule.kind == "fixed":
        off = rule.value
    else:
        off = (amount * rule.value + 5000) // 10_000
    if rule.max_discount is not None:
        off = min(off, rule.max_discount)
    return max(0, min(off, amount))


def applies(rule: Rule, request: QuoteRequest) -> bool:
    """The rule covers this sale: enabled, in its window, its level's place, grade, coupon."""
    at = _utc(request.at)
    if not rule.enabled:
        return False
    if (rule.starts is not None and at < rule.starts) or (
        rule.ends is not None and at >= rule.ends
    ):
        return False
    if rule.level == "province" and rule.region != request.province:
        return False
    if rule.level == "station" and rule.region != request.station:
        return False
    if rule.grades and request.grade not in rule.grades:
        return False
    return rule.coupon is None or rule.coupon == request.coupon


def within_limits(rule: Rule, counts: UseCounts) -> bool:
    return not (
        (rule.limit_per_card is not None and counts.per_card >= rule.limit_per_card)
        or (rule.limit_per_day is not None and counts.per_day >= rule.limit_per_day)
        or (rule.limit_total is not None and counts.total >= rule.limit_total)
    )


def has_limits(rule: Rule) -> bool:
    return (rule.limit_per_card, rule.limit_per_day, rule.limit_total) != (None, None, None)


def best_offer(
    rules: Iterable[Rule], request: QuoteRequest, usage: UsageLookup | None = None
) -> Offer | None:
    """The rule that takes the most off the quoted sale (see the module's precedence), or None."""
    day = utc_day(request.at)
    priced: list[tuple[int, int, str, Rule]] = []
    for rule in rules:
        if not applies(rule, request):
            continue
        if (
            usage is not None
            and has_limits(rule)
            and not within_limits(rule, usage(rule.rule_id, request.asn, day))
        ):
            continue
        off = discount_of(rule, request.amount, request.volume)
        if off > 0:
            # Larger discount first, then the more specific level, then the smaller id.
            priced.append((-off, -SPECIFICITY[rule.level], rule.rule_id, rule))
    if not priced:
        return None
    first = min(priced, key=lambda item: item[:3])
    return Offer(first[3], -first[0])


@dataclass
class UseBook:
    """Uses of rules kept in memory (the in-process host); the database keeps them otherwise."""

    uses: list[tuple[str, str, date]] = field(default_factory=list)

    def counts(self, rule_id: str, asn: str, day: date) -> UseCounts:
        mine = [u for u in self.uses if u[0] == rule_id]
        return UseCounts(
            per_card=sum(u[1] == asn for u in mine),
            per_day=sum(u[2] == day for u in mine),
            total=len(mine),
        )

    def record(self, rule_id: str, asn: str, at: datetime) -> None:
        self.uses.append((rule_id, asn, utc_day(at)))


# Validation: the one place a rule's shape is checked (API bodies and YAML files) -------------
def rule_from_dict(data: Mapping[str, Any]) -> Rule:
    """A rule from its API/YAML form; `PromotionError` names the first bad field."""
    if not isinstance(data, Mapping):
        raise PromotionError("rule", f"a mapping expected, not {data!r}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise PromotionError(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise PromotionError("id", "1–64 characters of A–Z a–z 0–9 . _ - required")
    level = data.get("level")
    if level not in LEVELS:
        raise PromotionError("level", f"one of {', '.join(LEVELS)}, not {level!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise PromotionError("kind", f"one of {', '.join(KINDS)}, not {kind!r}")
    region = data.get("region") or ""
    if not isinstance(region, str):
        raise PromotionError("region", "text expected")
    if level == "national" and region:
        raise PromotionError("region", "a national rule has no region")
    if level == "province" and not _PROVINCE.fullmatch(region):
        raise PromotionError("region", "a province rule needs the two-digit province code")
    if level == "station" and not region:
        raise PromotionError("region", "a station rule needs the station id")
    value = _count(data, "value", minimum=1)
    assert value is not None
    if kind == "percent" and value > 10_000:
        raise PromotionError("value", "a percentage is at most 10000 basis points (100 %)")
    grades = data.get("grades") or []
    if not isinstance(grades, list) or not all(
        isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= 0xFFFF for g in grades
    ):
        raise PromotionError("grades", "a list of grade codes (0–0xFFFF) expected")
    coupon = data.get("coupon")
    if coupon is not None and (not isinstance(coupon, str) or not _RULE_ID.fullmatch(coupon)):
        raise PromotionError("coupon", "1–64 characters of A–Z a–z 0–9 . _ - expected")
    text = data.get("text") or ""
    if not isinstance(text, str) or len(text) > 40:
        raise PromotionError("text", "at most 40 characters (the pump's display line)")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PromotionError("enabled", "true or false expected")
    starts, ends = _time(data, "starts"), _time(data, "ends")
    if starts is not None and ends is not None and ends <= starts:
        raise PromotionError("ends", "must be after starts")
    return Rule(
        rule_id=rule_id,
        level=level,
        kind=kind,
        value=value,
        region=region,
        grades=frozenset(grades),
        min_amount=_count(data, "min_amount") or 0,
        max_discount=_count(data, "max_discount", minimum=1),
        coupon=coupon,
        limit_per_card=_count(data, "limit_per_card", minimum=1),
        limit_per_day=_count(data, "limit_per_day", minimum=1),
        limit_total=_count(data, "limit_total", minimum=1),
        starts=starts,
        ends=ends,
        text=text,
        enabled=enabled,
    )


def rules_from_document(document: Any) -> list[Rule]:
    """The rules of a `fuelsim.promotions/1` document (`{format, rules: [...]}`) or a bare
    list of rules; rule ids must be unique."""
    if isinstance(document, Mapping):
        if document.get("format") != FORMAT:
            raise PromotionError("format", f"{FORMAT} expected")
        unknown = sorted(set(document) - {"format", "rules"})
        if unknown:
            raise PromotionError(unknown[0], "unknown field (known: format, rules)")
        document = document.get("rules")
    if not isinstance(document, list):
        raise PromotionError("rules", "a list of rules expected")
    rules: list[Rule] = []
    for index, item in enumerate(document):
        try:
            rules.append(rule_from_dict(item))
        except PromotionError as exc:
            raise PromotionError(
                f"rules[{index}].{exc.field}", str(exc).partition(": ")[2]
            ) from None
    ids = [r.rule_id for r in rules]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    if doubled:
        raise PromotionError("rules", f"rule id {doubled[0]!r} appears twice")
    return rules


def check_asn(asn: str) -> str:
    if not _ASN.fullmatch(asn):
        raise PromotionError("asn", "20 decimal digits (10-byte BCD ASN) expected")
    return asn


def province_of(terminal_id: str) -> str:
    """The province code of a terminal: its first two digits (GB/T 2260, `44` Guangdong)."""
    return terminal_id[:2]


def _count(data: Mapping[str, Any], name: str, minimum: int = 0) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 1 << 31:
        raise PromotionError(name, f"a whole number from {minimum} expected, not {value!r}")
    return value


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str):
        raise PromotionError(name, "ISO 8601 time expected")
    try:
        return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise PromotionError(name, f"ISO 8601 time expected, not {value!r}") from None


def utc_day(moment: datetime) -> date:
    """The UTC day of a moment (a naive time is UTC): what `limit_per_day` counts by."""
    return _utc(moment).date()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
