"""The index families: which index a record goes to, which indices have expired, the ISM policies."""

from __future__ import annotations

import json
from datetime import date

import pytest

from flink_job.core.index_lifecycle import BY_NAME, FAMILIES, RetentionError, expired, family_of_index, ism_policy, \
    parse_retention, period_bounds
from stack.services import ROOT

DEFAULTS = parse_retention("")
INDICATORS, DLQ, BARS_5M = BY_NAME["stock-indicators"], BY_NAME["stock-dlq"], BY_NAME["stock-bars-5m"]


def test_a_record_goes_to_the_index_of_its_own_time_utc():
    assert INDICATORS.index_for("2024-03-08T14:31:00Z") == "stock-indicators-2024.03"
    assert INDICATORS.index_for("2024-03-31T23:59:00Z") == "stock-indicators-2024.03"
    assert INDICATORS.index_for("2024-04-01T00:00:00Z") == "stock-indicators-2024.04"
    assert BARS_5M.index_for("2024-12-31T23:55:00Z") == "stock-bars-5m-2024"
    assert DLQ.index_for("2025-01-02T03:04:05.678Z") == "stock-dlq-2025.01"


def test_every_family_has_a_template_with_its_pattern_and_alias():
    for fam in FAMILIES:
        template = json.loads((ROOT / "flink_job" / "index_templates" / f"{fam.name}.json").read_text())
        assert template["index_patterns"] == [fam.pattern]
        assert template["template"]["aliases"] == {fam.name: {}}
        assert fam.time_field in template["template"]["mappings"]["properties"]


def test_index_names_are_read_back_and_other_names_are_not_ours():
    assert family_of_index("stock-bars-15m-2024") == (BY_NAME["stock-bars-15m"], "2024")
    assert family_of_index("stock-bars-5m-2024") == (BARS_5M, "2024")
    assert family_of_index("stock-signals-2023.12") == (BY_NAME["stock-signals"], "2023.12")
    for other in ("stock-indicators", "stock-indicators-2024", "stock-indicators-2024.13",
                  "stock-bars-5m-2024.03", "stock-indicators-unpartitioned", ".kibana_1", "loader-x-stock-dlq-2024.01"):
        assert family_of_index(other) is None, other


def test_period_bounds():
    assert period_bounds(INDICATORS, "2024.02") == (date(2024, 2, 1), date(2024, 3, 1))
    assert period_bounds(INDICATORS, "2024.12") == (date(2024, 12, 1), date(2025, 1, 1))
    assert period_bounds(BARS_5M, "2024") == (date(2024, 1, 1), date(2025, 1, 1))


def test_an_index_expires_retention_days_after_its_period_ends():
    # March 2024 ends on 1 April; 90 days later is 30 June.
    index = "stock-indicators-2024.03"
    assert expired([index], date(2024, 6, 29), DEFAULTS) == []
    assert expired([index], date(2024, 6, 30), DEFAULTS) == [index]
    # A yearly rollup index: 730 days after 1 January 2025.
    assert expired(["stock-bars-15m-2024"], date(2026, 12, 31), DEFAULTS) == []
    assert expired(["stock-bars-15m-2024"], date(2027, 1, 1), DEFAULTS) == ["stock-bars-15m-2024"]


def test_expiry_picks_per_family_and_never_touches_other_indices():
    names = ["stock-indicators-2024.01", "stock-indicators-2024.05", "stock-dlq-2024.04", "stock-dlq-2024.05",
             "stock-bars-5m-2023", "stock-indicators", "other-2020.01", "stock-signals-2024.02"]
    assert expired(names, date(2024, 6, 10), DEFAULTS) == [
        "stock-dlq-2024.04", "stock-indicators-2024.01", "stock-signals-2024.02"]
    shorter = parse_retention("stock-indicators=9,stock-bars-5m=100")  # May ended 9 days before
    assert expired(names, date(2024, 6, 10), shorter) == [
        "stock-bars-5m-2023", "stock-dlq-2024.04", "stock-indicators-2024.01", "stock-indicators-2024.05",
        "stock-signals-2024.02"]


def test_retention_defaults_and_overrides():
    assert DEFAULTS == {"stock-indicators": 90, "stock-signals": 90, "stock-dlq": 30, "stock-bars-5m": 730,
                        "stock-bars-15m": 730}
    assert parse_retention(" stock-dlq = 7 , ") == {**DEFAULTS, "stock-dlq": 7}


@pytest.mark.parametrize("text, message", [
    ("stock-dlq=0", "retention of stock-dlq must be a whole number of days >= 1, got '0'"),
    ("stock-dlq=x", "got 'x'"),
    ("stock-dlq", "got ''"),
    ("stock-bars=3", "unknown index family 'stock-bars'"),
])
def test_malformed_retention_names_the_family(text, message):
    with pytest.raises(RetentionError, match=message):
        parse_retention(text)


def test_ism_policy_deletes_after_retention_plus_the_longest_period():
    policy = ism_policy(INDICATORS, 90)["policy"]
    assert policy["ism_template"] == [{"index_patterns": ["stock-indicators-*"], "priority": 100}]
    hot, delete = policy["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "121d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert ism_policy(BARS_5M, 730)["policy"]["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "1096d"}
