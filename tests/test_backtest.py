"""The backtest on a Flink mini-cluster equals the pure model, at parallelism 1 and 4.

The input mixes four symbols with duplicates, a revision, late bars and bad records; the expected
output comes from running ``parse_bar`` and ``SymbolTracker`` in plain Python over the same lines.

Restarts expected: none, and none possible: a backtest runs with the restart strategy ``none``
(``create_environment(keep_restarting=False)``), so any failure fails the run, and the test.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest

from flink_job.backtest import main as backtest
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import InvalidBar, parse_bar
from flink_job.core.symbol_state import Outcome, SymbolTracker
from flink_job.main import PUBLISHED_FIELDS
from flink_job.schema import names
from tests.bar_data import generate_bars

FIELDS = names(PUBLISHED_FIELDS)
BAD_LINES = ['{"symbol": "IBM"', '"just a string"', json.dumps({"symbol": "lower", "ts": "2024-03-08T15:00:00Z"}),
             json.dumps({"symbol": "IBM", "ts": "2024-03-08T15:00:00Z", "open": 1, "high": 1, "low": 2,
                         "close": 1, "volume": 1})]


def mixed_input() -> list[str]:
    days = (date(2024, 3, 8), date(2024, 3, 11))
    series = {s: generate_bars(i + 11, days=days, symbol=s)[:400] for i, s in enumerate(["AA", "BB.X", "CC-1", "DD"])}
    lines = []
    for i, bars in enumerate(zip(*series.values())):
        lines.extend(json.dumps(b.to_record()) for b in bars)
        if i == 100:
            lines.append(json.dumps(bars[0].to_record()))  # duplicate of AA's latest
        if i == 150:
            revised = replace(bars[1], close=bars[1].high, volume=bars[1].volume + 1)
            lines.append(json.dumps(revised.to_record()))  # revision of BB.X's latest
        if i == 200:
            lines.append(json.dumps(series["CC-1"][50].to_record()))  # late
        if i % 97 == 0:
            lines.append(BAD_LINES[(i // 97) % len(BAD_LINES)])
    return lines


def pure_model(lines: list[str], settings: AnalyticsSettings = AnalyticsSettings()):
    trackers: dict[str, SymbolTracker] = {}
    enriched, signals, reasons = {}, {}, []
    for line in lines:
        try:
            bar = parse_bar(line, now_ms=1_900_000_000_000)
        except InvalidBar as err:
            reasons.append(err.reason)
            continue
        tracker = trackers.setdefault(bar.symbol, SymbolTracker(settings))
        outcome, result = tracker.offer(bar)
        if outcome is Outcome.LATE:
            reasons.append("late")
        elif result is not None:
            record = result.to_record()
            enriched.setdefault(bar.symbol, []).append({f: record[f] for f in FIELDS if f != "signals"})
            candle_signals = [s for c in tracker.closed_candles() if c is not None for s in c.reading.signals]
            signals.setdefault(bar.symbol, []).extend(
                (bar.ts, s.type, s.direction, s.detail, s.timeframe) for s in [*result.signals, *candle_signals])
    return enriched, signals, sorted(reasons)


def by_symbol(records: list[dict], project) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for r in records:
        grouped.setdefault(r["symbol"], []).append(project(r))
    return grouped


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def expected():
    lines = mixed_input()
    return lines, pure_model(lines)


@pytest.mark.jvm  # the backtest runs the real job in a local mini-cluster
@pytest.mark.parametrize("parallelism", [1, 4])
def test_backtest_equals_the_pure_model(tmp_path, expected, parallelism):
    lines, (enriched, signals, reasons) = expected
    source = tmp_path / "bars.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out, sig, dlq = tmp_path / "enriched.jsonl", tmp_path / "signals.jsonl", tmp_path / "dlq.jsonl"
    assert backtest(["--input", str(source), "--output", str(out), "--signals", str(sig), "--dlq", str(dlq),
                     "--parallelism", str(parallelism)]) == 0

    got = by_symbol(read_jsonl(out), lambda r: {f: r[f] for f in FIELDS if f != "signals"})
    assert got.keys() == enriched.keys()
    for symbol in enriched:
        assert got[symbol] == enriched[symbol], symbol
    got_signals = by_symbol(read_jsonl(sig), lambda r: (r["ts"], r["type"], r["direction"], r["detail"],
                                                        r["timeframe"]))
    assert {k: v for k, v in got_signals.items()} == {k: v for k, v in signals.items() if v}
    assert sorted(r["reason"] for r in read_jsonl(dlq)) == reasons
    assert "late" in reasons and len(reasons) > 4


def properties_file(path, analytics: dict[str, str]):
    path.write_text(json.dumps([{"PropertyGroupId": "Analytics", "PropertyMap": analytics}]))
    return path


@pytest.mark.jvm
def test_clean_input_under_other_periods_equals_the_model_with_an_empty_dead_letter_file(tmp_path):
    analytics = {"sma_mid_period": "10", "sma_long_period": "30", "rsi_period": "7", "ema_fast_period": "5",
                 "ema_slow_period": "13", "macd_signal_period": "4", "bb_period": "15", "trend_window": "9"}
    lines = [json.dumps(b.to_record()) for b in generate_bars(2, days=(date(2024, 3, 8),))[:60]]
    source = tmp_path / "bars.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "enriched.jsonl"
    properties = properties_file(tmp_path / "properties.json", analytics)
    assert backtest(["--input", str(source), "--output", str(out), "--properties", str(properties)]) == 0
    settings = AnalyticsSettings(**{k: int(v) for k, v in analytics.items()})
    (expected,) = pure_model(lines, settings)[0].values()
    assert [{f: r[f] for f in FIELDS if f != "signals"} for r in read_jsonl(out)] == expected
    assert expected[12]["sma_20"] is not None, "a 10-bar SMA under the sma_20 field"
    assert out.with_suffix(".dlq.jsonl").read_text() == ""


def test_bad_analytics_properties_stop_the_backtest_naming_the_key(tmp_path, capsys):
    source = tmp_path / "bars.jsonl"
    source.write_text("{}\n")
    properties = properties_file(tmp_path / "properties.json", {"rsi_period": "x"})
    with pytest.raises(SystemExit) as exit_:
        backtest(["--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--properties", str(properties)])
    assert exit_.value.code == 2
    assert "ConfigError: Analytics.rsi_period must be an integer >= 2, got 'x'" in capsys.readouterr().err
