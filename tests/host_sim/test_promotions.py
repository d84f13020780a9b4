"""Pure rule evaluation: kinds, levels, precedence, limits, validation of rules and files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from host_sim.promotions import (
    PromotionError,
    QuoteRequest,
    UseBook,
    best_offer,
    discount_of,
    rule_from_dict,
    rules_from_document,
)
from terminal_sim.cli import main

AT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ASN = "01000114400000000001"


def sale(**changes: Any) -> QuoteRequest:
    fields: dict[str, Any] = {
        "asn": ASN,
        "station": "ST-0001",
        "province": "44",
        "grade": 0x0092,
        "amount": 15_000,  # 20 L at 7.50
        "volume": 2_000,
        "at": AT,
    }
    return QuoteRequest(**{**fields, **changes})


def rule(**fields: Any) -> Any:
    return rule_from_dict(
        {"id": "R1", "level": "national", "kind": "fixed", "value": 500, **fields}
    )


def test_each_kind_prices_a_sale() -> None:
    per_litre = rule(kind="per_litre", value=30)
    assert discount_of(per_litre, 15_000, 2_000) == 600  # 0.30 × 20 L
    assert discount_of(per_litre, 15_000, 1_234) == 370  # 12.34 L × 0.30 = 3.702 → 3.70
    percent = rule(kind="percent", value=300)
    assert discount_of(percent, 15_000, 2_000) == 450
    assert discount_of(rule(kind="percent", value=300, max_discount=200), 15_000, 0) == 200
    fixed = rule(value=1_000, min_amount=10_000)
    assert discount_of(fixed, 10_000, 0) == 1_000
    assert discount_of(fixed, 9_999, 0) == 0
    assert discount_of(rule(value=1_000), 800, 0) == 800  # never more than the sale
    assert discount_of(rule(value=1_000), 0, 0) == 0


def test_levels_match_their_place() -> None:
    province = rule(level="province", region="44", value=100)
    station = rule(id="R2", level="station", region="ST-0001", value=100)
    assert best_offer([province], sale()) is not None
    assert best_offer([province], sale(province="11")) is None
    assert best_offer([station], sale(station="ST-0002")) is None
    assert best_offer([rule(grades=[0x0095])], sale()) is None
    assert best_offer([rule(enabled=False)], sale()) is None
    window = rule(starts="2026-11-23T00:00:00Z")
    assert best_offer([window], sale()) is None
    assert best_offer([window], sale(at=datetime(2026, 11, 23, 0, 0))) is not None


def test_best_for_customer_then_most_specific_level_then_id() -> None:
    national = rule(id="N", kind="per_litre", value=30)  # 6.00 on 20 L
    station = rule(id="S", level="station", region="ST-0001", value=500)  # 5.00
    offer = best_offer([station, national], sale())
    assert offer is not None and (offer.rule_id, offer.quoted_discount) == ("N", 600)
    same = rule(id="P", level="province", region="44", value=600)
    offer = best_offer([national, same], sale())
    assert offer is not None and offer.rule_id == "P"  # a tie: the province is more specific
    twins = [rule(id="B", value=600), rule(id="A", value=600)]
    offer = best_offer(twins, sale())
    assert offer is not None and offer.rule_id == "A"


def test_coupons_apply_only_when_presented_and_limits_count_uses() -> None:
    coupon = rule(id="C", coupon="WELCOME", value=800, limit_per_card=1)
    assert best_offer([coupon], sale()) is None
    book = UseBook()
    offer = best_offer([coupon], sale(coupon="WELCOME"), book.counts)
    assert offer is not None and offer.quoted_discount == 800
    book.record("C", ASN, AT)
    assert best_offer([coupon], sale(coupon="WELCOME"), book.counts) is None
    other = "01000114400000000002"
    assert best_offer([coupon], sale(coupon="WELCOME", asn=other), book.counts) is not None
    daily = rule(id="D", value=100, limit_per_day=1)
    book.record("D", other, AT)
    assert best_offer([daily], sale(), book.counts) is None
    assert best_offer([daily], sale(at=datetime(2026, 11, 23, 1, 0)), book.counts) is not None
    assert book.counts("D", ASN, date(2026, 11, 22)).per_day == 1


def test_the_display_text() -> None:
    assert rule(kind="per_litre", value=30).display == "discount 0.30/L"
    assert rule(value=500, min_amount=10_000).display == "discount 5.00 on 100.00 or more"
    assert rule(kind="percent", value=250).display == "discount 2.5%"
    assert rule(text="优惠 0.30/L").display == "优惠 0.30/L"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"level": "city"}, "level"),
        ({"kind": "bogof"}, "kind"),
        ({"value": 0}, "value"),
        ({"value": True}, "value"),
        ({"kind": "percent", "value": 10_001}, "value"),
        ({"level": "province", "region": "Guangdong"}, "region"),
        ({"level": "station"}, "region"),
        ({"region": "44"}, "region"),
        ({"grades": ["92"]}, "grades"),
        ({"limit_per_card": 0}, "limit_per_card"),
        ({"starts": "yesterday"}, "starts"),
        ({"starts": "2026-11-22T00:00:00Z", "ends": "2026-11-21T00:00:00Z"}, "ends"),
        ({"text": "x" * 41}, "text"),
        ({"colour": "red"}, "colour"),
        ({"id": "no spaces"}, "id"),
    ],
)
def test_bad_rules_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(PromotionError) as caught:
        rule(**fields)
    assert caught.value.field == field


def test_a_rules_document() -> None:
    rules = rules_from_document(
        {
            "format": "fuelsim.promotions/1",
            "rules": [
                {"id": "A", "level": "national", "kind": "fixed", "value": 100},
                {"id": "B", "level": "station", "region": "S", "kind": "per_litre", "value": 5},
            ],
        }
    )
    assert [r.rule_id for r in rules] == ["A", "B"]
    assert rules_from_document([rules[0].to_dict()]) == [rules[0]]  # the API form round-trips
    with pytest.raises(PromotionError, match=r"rules\[1\]\.value"):
        rules_from_document([rules[0].to_dict(), {**rules[1].to_dict(), "value": -1}])
    with pytest.raises(PromotionError, match="appears twice"):
        rules_from_document([rules[0].to_dict(), rules[0].to_dict()])
    with pytest.raises(PromotionError, match="format"):
        rules_from_document({"format": "other", "rules": []})


def test_the_cli_loads_a_rules_file_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "host.sqlite"
    good = tmp_path / "rules.yaml"
    good.write_text(
        "format: fuelsim.promotions/1\n"
        "rules:\n"
        "  - {id: N-92, level: national, kind: per_litre, value: 30, grades: [0x0092]}\n"
        "  - {id: S-1, level: station, region: ST-0001, kind: fixed, value: 500}\n"
    )
    runner = CliRunner()
    loaded = runner.invoke(main, ["host", "promotions", "load", str(good), "--db", str(db)])
    assert loaded.exit_code == 0, loaded.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {id: X, level: national, kind: fixed, value: 0}\n")
    refused = runner.invoke(main, ["host", "promotions", "load", str(bad), "--db", str(db)])
    assert refused.exit_code == 1 and "rules[0].value" in refused.output
    listed = runner.invoke(main, ["host", "promotions", "list", "--db", str(db)])
    assert listed.exit_code == 0
    assert [r.rule_id for r in rules_from_document(yaml.safe_load(listed.output))] == [
        "N-92",
        "S-1",
    ]
