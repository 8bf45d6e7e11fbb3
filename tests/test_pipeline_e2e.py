"""End to end on the real local services: Kinesis in → Flink mini-cluster → Kinesis out and OpenSearch.

One job serves the module (a mini-cluster takes ~20 s to start); each test uses symbols of its own.
"""

from __future__ import annotations

import math
from datetime import date

import pytest

from tests.bar_data import generate_bars
from tests.pipeline_harness import JobHarness, unique_symbol, wait_for


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    harness = JobHarness(tmp_path_factory.mktemp("e2e"))
    harness.start()
    yield harness
    harness.stop()


def reference_sma(closes: list[float], period: int) -> list[float | None]:
    return [math.fsum(closes[i + 1 - period:i + 1]) / period if i + 1 >= period else None
            for i in range(len(closes))]


def bar_records(symbol: str, seed: int, count: int) -> list[dict]:
    return [b.to_record() for b in generate_bars(seed, days=(date(2024, 3, 8),), symbol=symbol)[:count]]


def test_every_bar_arrives_once_with_sma_20(job):
    symbols = [unique_symbol("E2A"), unique_symbol("E2B")]
    bars = {s: bar_records(s, seed, 120) for seed, s in enumerate(symbols)}
    interleaved = [b for pair in zip(*bars.values()) for b in pair]
    job.put_bars(interleaved)

    expected = sum(len(v) for v in bars.values())
    wait_for(lambda: len(job.docs_for("stock-indicators", symbols)) >= expected, 180,
             "all bars in stock-indicators", job)
    docs = {(d["symbol"], d["ts"]): d for d in job.docs_for("stock-indicators", symbols)}
    assert len(docs) == expected
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
            assert docs[(symbol, bar["ts"])]["_id"] == f"{symbol}|{bar['ts']}"


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
