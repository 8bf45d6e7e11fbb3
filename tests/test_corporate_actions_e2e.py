"""A 2-for-1 split end to end: Alpha Vantage re-bases a symbol's history between two fetches, the
fetcher re-sends it at a new price basis (bar contract v2), and the real job restarts the symbol's
analysis from it.

Real parts: the fake Alpha Vantage API on a socket (its ``rebase`` halves the stored prices before the
split day, as adjusted history does), the local Kinesis and DynamoDB, the job on a local
mini-cluster, OpenSearch. Expected job restarts: zero.

The result must be the adjusted series alone, as if the split had always been there: every document
of the symbol holds the adjusted prices, the indicators equal TA-Lib over the adjusted closes, and the
signals are exactly those of the adjusted series, so none comes from the re-basing itself (no
``price_anomaly``, no cross at the split). Prices are multiples of 0.0002, so halving them is exact and
the two passes over Monday agree to the bit.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import talib

from fetcher_lambda import handler
from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.pipeline import Clients
from fetcher_lambda.samples import Row
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import validate_record
from flink_job.core.symbol_state import SymbolTracker
from tests.local_aws import KINESIS_URL
from tests.pipeline_harness import JobHarness, start_with_rest, unique_symbol, wait_for

NY = ZoneInfo("America/New_York")
TICK = 0.0002  # a price step whose half is still a 4-decimal price
SPLIT_DAY = "2026-12-01 00:00:00"


def walk(start_local: str, count: int, seed: int) -> list[Row]:
    """Minute rows of a random walk around 100, every price a multiple of TICK."""
    rng = random.Random(seed)
    first = datetime.fromisoformat(start_local)
    rows, close = [], 100.0
    for i in range(count):
        open_ = close
        close = max(50.0, round((close * math.exp(rng.gauss(0, 0.002))) / TICK) * TICK)
        high = max(open_, close) + TICK * rng.randint(0, 20)
        low = min(open_, close) - TICK * rng.randint(0, 20)
        ts = first + timedelta(minutes=i)
        rows.append(Row(ts.strftime("%Y-%m-%d %H:%M:%S"), round(open_, 4), round(high, 4), round(low, 4),
                        round(close, 4), rng.randint(1_000, 50_000)))
    return rows


def halved(row: Row) -> Row:
    return Row(row.local_ts, *(round(p / 2, 4) for p in (row.open, row.high, row.low, row.close)), row.volume * 2)


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY).astimezone(timezone.utc)


@pytest.fixture
def job(tmp_path):
    harness = JobHarness(tmp_path, parallelism=1)
    rest = start_with_rest(harness)
    yield harness, rest
    harness.stop()


def test_a_split_leaves_one_consistent_series_and_signals_nothing(job, fake_alphavantage, fetcher_settings,
                                                                  fetcher_clients_factory):
    harness, rest = job
    job_id = rest.running_job()
    symbol = unique_symbol("SPL")
    series = walk("2026-11-30 14:30:00", 180, seed=7)
    monday = series[:90]  # 14:30 to 15:59, before the split
    tuesday = [halved(row) for row in series[90:]]  # 09:30 on: post-split prices
    tuesday = [row._replace(local_ts=f"2026-12-01 {9 + (30 + i) // 60:02d}:{(30 + i) % 60:02d}:00")
               for i, row in enumerate(tuesday)]
    adjusted = [halved(row) for row in monday] + tuesday
    fake_alphavantage.set_series(symbol, monday + tuesday)
    settings = replace(fetcher_settings, symbols=(symbol,), stream_name=harness.config.source.stream_name,
                       kinesis_endpoint_url=KINESIS_URL, ignore_market_hours=False, extended_hours=False,
                       entitlement="delayed")
    clients = Clients(*fetcher_clients_factory())

    def fetch(at: str):
        fake_alphavantage.set_clock(ny(at))
        return handler.invoke(settings, clients, Deadline.after(60), clock=fake_alphavantage.now)

    assert fetch("2026-11-30 16:16").bars_sent == len(monday)
    ts = [to_utc(row.local_ts, NY) for row in adjusted]
    wait_for(lambda: len(harness.docs_for("stock-indicators", [symbol])) >= len(monday), 180,
             "Monday's bars in stock-indicators", harness)

    fake_alphavantage.rebase(symbol, 0.5, before_local_ts=SPLIT_DAY)
    second = fetch("2026-12-01 10:15")  # delayed: Tuesday up to 09:59
    assert second.rebased == {symbol: 0.5}
    assert fetch("2026-12-01 10:46").bars_sent == 31  # 10:00 to 10:30, at the new basis
    expected = adjusted[:90 + 30 + 31]
    expected_ts = ts[:len(expected)]

    def settled() -> bool:
        docs = harness.docs_for("stock-indicators", [symbol])
        return len(docs) == len(expected) and all(d["close"] == row.close for d, row in
                                                  zip(sorted(docs, key=lambda d: d["ts"]), expected))
    wait_for(settled, 240, "every document at the adjusted prices", harness)

    # One consistent series: the adjusted prices throughout, the indicators TA-Lib's over them.
    docs = sorted(harness.docs_for("stock-indicators", [symbol]), key=lambda d: d["ts"])
    assert [d["ts"] for d in docs] == expected_ts
    assert [(d["open"], d["high"], d["low"], d["close"], d["volume"]) for d in docs] == \
        [(r.open, r.high, r.low, r.close, r.volume) for r in expected]
    closes = np.array([row.close for row in expected])
    macd, macd_signal, _ = talib.MACD(closes, 12, 26, 9)
    for field, reference in (("sma_20", talib.SMA(closes, 20)), ("sma_50", talib.SMA(closes, 50)),
                             ("rsi_14", talib.RSI(closes, 14)), ("macd", macd), ("macd_signal", macd_signal)):
        for doc, want in zip(docs, reference):
            got = doc[field]
            if math.isnan(want):
                assert got is None, (field, doc["ts"])
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9 * doc["close"]), (field, doc["ts"])

    # The signals are exactly those of the adjusted series: none from the re-basing.
    tracker, model = SymbolTracker(AnalyticsSettings()), set()
    for row, bar_ts in zip(expected, expected_ts):
        bar = validate_record({"symbol": symbol, "ts": bar_ts, "open": row.open, "high": row.high, "low": row.low,
                               "close": row.close, "volume": row.volume}, now_ms=1_900_000_000_000)
        _, enriched = tracker.offer(bar)
        candles = [s for c in tracker.closed_candles() if c is not None for s in c.reading.signals]
        model |= {(bar_ts, s.type, s.direction, s.timeframe, s.detail) for s in [*enriched.signals, *candles]}
    stored = {(s["ts"], s["type"], s["direction"], s["timeframe"], s["detail"])
              for s in harness.docs_for("stock-signals", [symbol])}
    assert stored == model
    split_open = ts[90]
    assert not [s for s in stored if s[0] == split_open and s[1] in ("price_anomaly", "sma_cross", "macd_cross")]

    # The 5-minute candles too: every final one at the adjusted prices.
    candles = harness.docs_for("stock-bars-5m", [symbol])
    by_ts = dict(zip(expected_ts, expected))
    for candle in (c for c in candles if not c["provisional"]):
        inside = [row for t, row in by_ts.items() if candle["window_start"] <= t < candle["window_end"]]
        assert candle["close"] == inside[-1].close and candle["high"] == max(r.high for r in inside)

    dead = harness.search("stock-dlq", {"prefix": {"record_id": f"{harness.config.source.stream_name}/"}})
    assert [d["reason"] for d in dead] == [], "no bar was late or of a stale basis"
    assert rest.failures(job_id) == [], "expected zero job restarts"
