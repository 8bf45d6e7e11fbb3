"""Bar validation and per-symbol stream semantics, pure (no Flink): exact outcomes and reasons."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from flink_job.analyzer import AnalyticsSettings
from flink_job.bars import InvalidBar, parse_bar
from flink_job.symbol_state import Outcome, SymbolTracker
from tests.bar_data import generate_bars

NOW_MS = 1_710_000_000_000  # 2024-03-09T16:00:00Z
GOOD = {"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 10.0, "high": 11.0, "low": 9.0,
        "close": 10.5, "volume": 100, "interval": "1min", "source": "alphavantage"}


def variant(**changes) -> str:
    record = dict(GOOD, **changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize("raw,reason", [
    ("{not json", "not_json"),
    ("[1, 2]", "not_object"),
    (variant(symbol=...), "missing_field"),
    (variant(close=...), "missing_field"),
    (variant(volume=...), "missing_field"),
    (variant(open="10.0"), "bad_type"),
    (variant(volume=1.5), "bad_type"),
    (variant(volume=True), "bad_type"),
    (variant(high=float("nan")), "non_finite"),
    (variant(low=float("-inf")), "non_finite"),
    (variant(open=0.0, low=0.0), "non_positive_price"),
    (variant(low=-1.0), "non_positive_price"),
    (variant(high=8.0), "high_below_low"),
    (variant(open=12.0), "price_outside_range"),
    (variant(close=8.5), "price_outside_range"),
    (variant(volume=-1), "negative_volume"),
    (variant(volume=10**16), "out_of_range"),
    ('{"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 1' + "0" * 400 + ', "high": 1, "low": 1, '
     '"close": 1, "volume": 1}', "out_of_range"),
    (variant(open=2e9, high=2e9), "out_of_range"),
    (variant(open=1e-7, low=1e-7), "out_of_range"),
    (variant(ts="1969-12-31T23:59:00Z"), "bad_ts"),
    ("[" * 100_000, "not_json"),
    (variant(ts="2024-03-08 14:31"), "bad_ts"),
    (variant(ts="2024-02-30T14:31:00Z"), "bad_ts"),
    (variant(ts=1709908260), "bad_ts"),
    (variant(ts="2099-01-01T00:00:00Z"), "future_ts"),
    (variant(symbol="ibm"), "bad_symbol"),
    (variant(symbol="ÅAPL"), "bad_symbol"),
    (variant(symbol="X" * 13), "bad_symbol"),
    (variant(symbol=42), "bad_symbol"),
])
def test_each_bad_input_class_has_its_reason(raw, reason):
    with pytest.raises(InvalidBar) as err:
        parse_bar(raw, NOW_MS)
    assert err.value.reason == reason


def test_a_good_bar_is_normalised():
    bar = parse_bar(variant(ts="2024-03-08T14:31:00.000+00:00", volume=100.0), NOW_MS)
    assert (bar.ts, bar.ts_ms, bar.volume) == ("2024-03-08T14:31:00Z", 1709908260000, 100)
    assert bar.to_record() == dict(GOOD)


@pytest.fixture
def series():
    return generate_bars(3)[:80]


def run(tracker: SymbolTracker, bars) -> list[tuple[Outcome, dict | None]]:
    return [(o, e.to_record() if e else None) for o, e in map(tracker.offer, bars)]


def test_duplicate_produces_nothing_and_changes_nothing(series):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    assert tracker.offer(series[49]) == (Outcome.DUPLICATE, None)
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()), series)[50:]


def test_revision_recomputes_from_the_state_before_the_latest_bar(series):
    original = series[49]
    revised = replace(original, high=original.high * 1.01, close=original.high * 1.01, volume=original.volume + 7)
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    outcome, enriched = tracker.offer(revised)
    expected = run(SymbolTracker(AnalyticsSettings()), series[:49] + [revised])
    assert outcome is Outcome.REVISED
    assert enriched.to_record() == expected[-1][1]
    # and the stream continues as if the revised bar had been the original
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()),
                                            series[:49] + [revised] + series[50:])[50:]


def test_late_bar_is_not_applied(series):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    assert tracker.offer(series[10]) == (Outcome.LATE, None)
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()), series)[50:]


def test_state_round_trip_continues_exactly(series):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    run(tracker, series[:40])
    restored = SymbolTracker.from_state(settings, tracker.to_state())
    assert restored.offer(series[39]) == (Outcome.DUPLICATE, None)
    assert run(restored, series[40:]) == run(tracker, series[40:])
