"""End to end on the real local services: Kinesis in → Flink mini-cluster → Kinesis out and OpenSearch.

One job serves the module (a mini-cluster takes ~20 s to start); each test uses symbols of its own.
"""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import parse_bar
from flink_job.core.symbol_state import SymbolTracker
from tests.bar_data import generate_bars, stream_record
from tests.pipeline_harness import (JobHarness, assert_no_restarts, assert_rollups_equal, start_with_rest, unique_symbol,
                                    wait_for)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    harness = JobHarness(tmp_path_factory.mktemp("e2e"))
    harness.rest = start_with_rest(harness)
    yield harness
    harness.stop()


def reference_sma(closes: list[float], period: int) -> list[float | None]:
    return [math.fsum(closes[i + 1 - period:i + 1]) / period if i + 1 >= period else None
            for i in range(len(closes))]


def bar_records(symbol: str, seed: int, count: int, day: date = date(2024, 3, 8)) -> list[dict]:
    return [b.to_record() for b in generate_bars(seed, days=(day,), symbol=symbol)[:count]]


def test_every_bar_arrives_once_with_sma_20(job):
    symbols = [unique_symbol("E2A"), unique_symbol("E2B")]
    bars = {s: bar_records(s, seed, 120) for seed, s in enumerate(symbols)}
    interleaved = [b for pair in zip(*bars.values()) for b in pair]
    job.put_bars(interleaved)

    expected = sum(len(v) for v in bars.values())
    wait_for(lambda: len(job.docs_for("stock-indicators", symbols)) >= expected, 180,
             "all bars in stock-indicators", job)
    indexed = job.docs_for("stock-indicators", symbols)
    assert sorted(d["_id"] for d in indexed) == sorted(f"{b['symbol']}|{b['ts']}" for b in interleaved), \
        "exactly one document per bar, under its id"
    docs = {(d["symbol"], d["ts"]): d for d in indexed}
    wait_for(lambda: len(job.output_for(symbols)) >= expected, 60, "all bars on the output stream", job)
    out = job.output_for(symbols)
    assert sorted((r["symbol"], r["ts"]) for r in out) == sorted(docs), "each bar exactly once on the stream"

    stream = {(r["symbol"], r["ts"]): r for r in out}
    for symbol, series in bars.items():
        sma = reference_sma([b["close"] for b in series], 20)
        for bar, want in zip(series, sma):
            for got in (docs[(symbol, bar["ts"])], stream[(symbol, bar["ts"])]):
                assert got["close"] == bar["close"] and got["volume"] == bar["volume"]
                if want is None:
                    assert got["sma_20"] is None
                else:
                    assert got["sma_20"] == pytest.approx(want, rel=1e-9)
    assert_no_restarts(job.rest)


def test_replaying_the_same_bars_adds_no_documents(job):
    symbol = unique_symbol("E2R")
    series = bar_records(symbol, 7, 60)
    job.put_bars(series[:-1])
    wait_for(lambda: len(job.docs_for("stock-indicators", [symbol])) == len(series) - 1, 180,
             "the first pass", job)
    job.put_bars(series[:-1])  # the replay
    job.put_bars(series[-1:])  # a sentinel: once it is indexed, the replay has been processed
    wait_for(lambda: any(d["ts"] == series[-1]["ts"] for d in job.docs_for("stock-indicators", [symbol])),
             120, "the sentinel bar", job)
    assert len(job.docs_for("stock-indicators", [symbol])) == len(series)
    wait_for(lambda: any(r["ts"] == series[-1]["ts"] for r in job.output_for([symbol])), 60,
             "the sentinel on the output stream", job)
    assert len(job.output_for([symbol])) == len(series), "duplicates produce no output"
    assert_no_restarts(job.rest)


def test_mixed_input_leaves_exactly_the_expected_documents(job):
    symbol = unique_symbol("E2M")
    # A later day than the other tests: while rollups were event-time windows, a symbol behind the
    # others of its subtask lost them. Rollups are per symbol now; test_cluster proves the lagging case.
    series = bar_records(symbol, 21, 90, day=date(2024, 6, 3))
    revised = dict(series[30], close=series[30]["high"], volume=series[30]["volume"] + 5)
    bad = ['{"symbol": "' + symbol + '", "ts": ', json.dumps(dict(series[5], high=-1.0)),
           json.dumps(dict(series[6], symbol=symbol.lower())),
           # Python's JSON reads NaN, Flink's JSON_VALUE does not: keyed as '', parsed as the symbol.
           json.dumps(dict(series[7], note=math.nan))]
    records = ([(symbol, json.dumps(b)) for b in series[:31]]
               + [(symbol, json.dumps(series[30]))]          # duplicate
               + [(symbol, json.dumps(revised))]             # revision of the latest
               + [(symbol, json.dumps(series[3]))]           # late
               + [(symbol, text) for text in bad]
               + [(symbol, json.dumps(b)) for b in series[31:]])
    job.put_raw(records)
    final = series[:30] + [revised] + series[31:]

    wait_for(lambda: len(job.docs_for("stock-indicators", [symbol])) == len(final), 120, "indicators", job)
    wait_for(lambda: len(dead_letters(job, symbol)) == 5, 60, "dead letters", job)
    model, expected_signals = SymbolTracker(AnalyticsSettings()), []
    for bar in final:
        enriched = model.offer(parse_bar(json.dumps(bar), now_ms=1_900_000_000_000))[1]
        expected_signals.extend((bar["ts"], s["type"]) for s in stream_record(model, enriched)["signals"])
        doc = next(d for d in job.docs_for("stock-indicators", [symbol]) if d["ts"] == bar["ts"]) \
            if bar is final[-1] or bar is revised else None
        if doc:
            record = enriched.to_record()
            assert {k: doc[k] for k in ("close", "volume", "sma_20", "rsi_14", "macd")} == \
                   {k: record[k] for k in ("close", "volume", "sma_20", "rsi_14", "macd")}
    assert sorted(d["reason"] for d in dead_letters(job, symbol)) == sorted(
        ["not_json", "non_positive_price", "bad_symbol", "ambiguous_symbol", "late"])
    wait_for(lambda: len(job.docs_for("stock-signals", [symbol])) == len(expected_signals), 60, "signals", job)
    assert sorted((d["ts"], d["type"]) for d in job.docs_for("stock-signals", [symbol])) == sorted(expected_signals)

    # Every 5- and 15-minute window, the open one too, with the revision counted once.
    assert_rollups_equal(job, {symbol: final}, watch=job)
    assert_no_restarts(job.rest)


def dead_letters(job, symbol: str) -> list[dict]:
    """This job's dead letters (their ids start with its own input stream) that name the symbol."""
    ours = job.search("stock-dlq", {"prefix": {"record_id": f"{job.config.source.stream_name}/"}})
    return [d for d in ours if symbol in d["raw"] or symbol.lower() in d["raw"]]

