"""The backtest on a Flink mini-cluster equals the pure model, at parallelism 1 and 4.

The input mixes four symbols with duplicates, a revision, late bars and bad records; the expected
output comes from running ``parse_bar`` and ``SymbolTracker`` in plain Python over the same lines.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest

from flink_job.analyzer import AnalyticsSettings
from flink_job.backtest import main as backtest
from flink_job.bars import InvalidBar, parse_bar
from flink_job.main import PUBLISHED_FIELDS
from flink_job.schema import names
from flink_job.symbol_state import Outcome, SymbolTracker
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


def pure_model(lines: list[str]):
    trackers: dict[str, SymbolTracker] = {}
    enriched, signals, reasons = {}, {}, []
    for line in lines:
        try:
            bar = parse_bar(line, now_ms=1_900_000_000_000)
        except InvalidBar as err:
            reasons.append(err.reason)
            continue
        tracker = trackers.setdefault(bar.symbol, SymbolTracker(AnalyticsSettings()))
        outcome, result = tracker.offer(bar)
        if outcome is Outcome.LATE:
            reasons.append("late")
        elif result is not None:
            record = result.to_record()
            enriched.setdefault(bar.symbol, []).append({f: record[f] for f in FIELDS if f != "signals"})
            signals.setdefault(bar.symbol, []).extend(
                (bar.ts, s.type, s.direction, s.detail) for s in result.signals)
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
    got_signals = by_symbol(read_jsonl(sig), lambda r: (r["ts"], r["type"], r["direction"], r["detail"]))
    assert {k: v for k, v in got_signals.items()} == {k: v for k, v in signals.items() if v}
    assert sorted(r["reason"] for r in read_jsonl(dlq)) == reasons
    assert "late" in reasons and len(reasons) > 4


def test_clean_input_gives_an_empty_dead_letter_file(tmp_path):
    source = tmp_path / "bars.jsonl"
    source.write_text("\n".join(json.dumps(b.to_record()) for b in generate_bars(2, days=(date(2024, 3, 8),))[:30]) + "\n")
    out = tmp_path / "enriched.jsonl"
    assert backtest(["--input", str(source), "--output", str(out)]) == 0
    assert len(read_jsonl(out)) == 30
    assert out.with_suffix(".dlq.jsonl").read_text() == ""
