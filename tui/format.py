"""Money, volumes and card states as the screens show them."""

from __future__ import annotations


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100:,}.{fen % 100:02d}"


def litres(centilitres: int) -> str:
    return f"{centilitres // 100}.{centilitres % 100:02d} L"


def parse_yuan(text: str, *, zero: bool = False) -> int:
    """'12.50' → 1250 fen; anything else is a ValueError naming the input. 0.00 only when
    `zero` allows it."""
    whole, _, cents = text.strip().partition(".")
    if not whole.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)):
        raise ValueError(f"{text!r} is not an amount like 50.00")
    value = int(whole) * 100 + int(cents.ljust(2, "0") or 0)
    if value <= 0 and not zero:
        raise ValueError("the amount must be above 0.00")
    return value
