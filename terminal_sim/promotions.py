"""How a pump learns a card's discount (明折明扣) at authorisation: the `PriceQuoter` Protocol,
answered in process over `host_sim.promotions` or by the host over HTTP.

The pump quotes the gross (list-price) amount it is about to allow; the answer is an `Offer`
whose terms price the delivered sale at hang-up. A host that cannot be reached gives no offer:
the sale goes on at list price rather than stopping the pump.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from host_sim.promotions import (
    Offer,
    QuoteRequest,
    Rule,
    UseBook,
    best_offer,
    province_of,
    rule_from_dict,
)
from terminal_sim.host_client import HostClient, HostUnavailable


@dataclass(frozen=True)
class PumpSale:
    """What the pump knows when the nozzle is lifted."""

    asn: bytes  # 10 BCD bytes
    term: bytes  # 6 bytes
    grade: int
    amount: int  # gross fen the pump will allow at list price
    volume: int  # 0.01 L the pump will allow
    at: datetime


class PriceQuoter(Protocol):
    def quote(self, sale: PumpSale) -> Offer | None: ...


def station_by_terminal(term: bytes) -> str:
    """The in-process host's station of a terminal: its first 4 bytes (as terminal_sim.online)."""
    return term[:4].hex().upper()


@dataclass
class InProcessQuoter:
    """Rules evaluated in process; each granted offer counts as one use, as on the host."""

    rules: list[Rule]
    station_of: Callable[[bytes], str] = station_by_terminal
    book: UseBook = field(default_factory=UseBook)

    @classmethod
    def from_dicts(cls, rules: Iterable[Mapping[str, Any]]) -> InProcessQuoter:
        return cls([rule_from_dict(r) for r in rules])

    def quote(self, sale: PumpSale) -> Offer | None:
        request = QuoteRequest(
            asn=sale.asn.hex(),
            station=self.station_of(sale.term),
            province=province_of(sale.term.hex()),
            grade=sale.grade,
            amount=sale.amount,
            volume=sale.volume,
            at=sale.at,
        )
        offer = best_offer(self.rules, request, self.book.counts)
        if offer is not None:
            self.book.record(offer.rule_id, request.asn, sale.at)
        return offer


@dataclass
class HostQuoter:
    """The host's `POST /v1/promotions/quote` through the terminal's signed client."""

    client: HostClient
    unreachable: list[str] = field(default_factory=list)  # what went wrong, for the display

    def quote(self, sale: PumpSale) -> Offer | None:
        try:
            answer = self.client.quote_promotion(
                sale.term.hex().upper(), sale.asn, sale.grade, sale.amount, sale.volume
            )
        except HostUnavailable as exc:
            self.unreachable.append(str(exc))
            return None
        if answer.rule_id is None or answer.level is None or answer.kind is None:
            return None
        rule = Rule(
            rule_id=answer.rule_id,
            level=answer.level,
            kind=answer.kind,
            value=answer.value,
            min_amount=answer.min_amount,
            max_discount=answer.max_discount,
            text=answer.text,
        )
        return Offer(rule, answer.discount)
