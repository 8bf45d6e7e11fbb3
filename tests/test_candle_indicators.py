"""Indicators and signals on final 5- and 15-minute candles, against TA-Lib over the candle closes.

Comparison rule as for the 1-minute indicators (``test_indicators``): None exactly where TA-Lib gives
NaN, otherwise within 1e-9 relative; the MACD lines within 1e-9 of the close, the RSI within 1e-9 of
its 0-100 scale. Candle signals follow the 1-minute rules, so they are checked against the 1-minute
analyzer run over the candle closes as if they were bars.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from flink_job.core.analyzer import AnalyticsSettings, Analyzer, IncompatibleState
from flink_job.backtest import main as backtest
from flink_job.core.bars import Bar, format_ts
from flink_job.core.candle_indicators import CANDLE_SNAPSHOT_VERSION, INDICATOR_NAMES, CandleIndicators, CandleReading
from flink_job.core.rollups import ROLLUP_WINDOWS
from flink_job.core.signals import Signal
from flink_job.core.symbol_state import STATE_LAYOUT_VERSION, ClosedCandle, Outcome, SymbolTracker, restore_or_reset
from tests.bar_data import generate_bars, minute_bars, rollup_differences, rollup_reference
from tests.test_indicators import CUSTOM, assert_series, talib_reference
from tests.test_stream_semantics import layout_5_state, older_layout_state

SETTINGS = AnalyticsSettings()
CANDLE_SIGNALS = ("macd_cross", "rsi_zone")


def walk(seed: int, count: int, price: float = 100.0, volatility: float = 0.01) -> list[float]:
    """Candle closes: a random walk with flat runs (exact repeats), so RSI 0 and flat MACD occur."""
    rng = random.Random(seed)
    closes, close = [], price
    while len(closes) < count:
        if rng.random() < 0.03:
            closes += [close] * rng.randint(15, 40)
        else:
            close *= math.exp(rng.gauss(0.0, volatility))
            closes.append(close)
    return closes[:count]


def assert_talib(closes: list[float], readings: list[CandleReading], settings: AnalyticsSettings = SETTINGS,
                 label: str = "") -> None:
    """Every indicator of every reading equals TA-Lib over ``closes`` (see the module docstring)."""
    assert len(closes) == len(readings)
    reference = talib_reference(np.array(closes, dtype=float), settings)
    for name in INDICATOR_NAMES:
        expected, floor = reference[name]
        assert_series(f"{label}{name}", [getattr(r, name) for r in readings], expected, floor)


def one_minute_signals(closes: list[float], timeframe: str, settings: AnalyticsSettings = SETTINGS) -> list[tuple]:
    """The macd_cross and rsi_zone signals the 1-minute analysis gives the closes as bars, per close,
    with ``timeframe``."""
    analyzer = Analyzer(settings)
    return [tuple(replace(s, timeframe=timeframe) for s in analyzer.update(bar).signals if s.type in CANDLE_SIGNALS)
            for bar in minute_bars(closes)]


SERIES = {"walk_300": walk(1, 300), "tiny_flat": walk(2, 200, price=1e-3, volatility=0.03),
          "huge": walk(3, 250, price=1e5, volatility=0.002)}


@pytest.mark.parametrize("name", sorted(SERIES))
@pytest.mark.parametrize("settings", [SETTINGS, CUSTOM], ids=["defaults", "custom"])
def test_every_candle_equals_talib_over_the_candle_closes(name, settings):
    closes = SERIES[name]
    candles = CandleIndicators(settings, "15m")
    readings = [candles.close(c) for c in closes]
    assert_talib(closes, readings, settings)
    assert not any(r.provisional for r in readings)
    # Warm-up boundaries: the first value of each is where TA-Lib's is.
    first = {n: next(i for i, r in enumerate(readings) if getattr(r, n) is not None) for n in INDICATOR_NAMES}
    if settings == SETTINGS:
        assert first == {"sma_20": 19, "ema_12": 11, "ema_26": 25, "macd": 33, "macd_signal": 33, "macd_hist": 33,
                         "rsi_14": 14, "bb_upper": 19, "bb_middle": 19, "bb_lower": 19}
    # Signals: the 1-minute rules on the same closes, marked with the timeframe.
    assert [r.signals for r in readings] == one_minute_signals(closes, "15m", settings)


def test_short_series_are_all_warm_up_up_to_each_boundary():
    for count in (1, 2, 13, 14, 15, 19, 20, 25, 26, 33, 34):
        closes = walk(count, count)
        candles = CandleIndicators()
        assert_talib(closes, [candles.close(c) for c in closes], label=f"{count} candles: ")


def test_candle_signals_fire_both_ways_and_carry_their_timeframe():
    closes = walk(5, 600, volatility=0.02)
    candles = CandleIndicators(SETTINGS, "5m")
    signals = [s for c in closes for s in candles.close(c).signals]
    kinds = {(s.type, s.direction, s.detail) for s in signals}
    assert kinds == {("macd_cross", "up", "bullish"), ("macd_cross", "down", "bearish"),
                     ("rsi_zone", "up", "overbought"), ("rsi_zone", "down", "oversold")}
    assert {s.timeframe for s in signals} == {"5m"}
    assert signals[0].to_record()["timeframe"] == "5m"
    # A 1-minute bar's signal is of timeframe 1m.
    assert Signal("macd_cross", "up", 1.0, "bullish").to_record() == {
        "type": "macd_cross", "direction": "up", "value": 1.0, "detail": "bullish", "timeframe": "1m"}


@pytest.mark.parametrize("name", sorted(SERIES))
def test_provisional_equals_closing_and_changes_nothing(name):
    closes = SERIES[name]
    candles = CandleIndicators()
    rng = random.Random(7)
    readings = []
    for close in closes:
        before = candles.snapshot()
        other = close * (1 + rng.gauss(0.0, 0.01))  # the open candle's close before its last bar
        assert candles.provisional(other).provisional
        assert candles.snapshot() == before
        provisional = candles.provisional(close)
        assert candles.snapshot() == before
        reading = candles.close(close)
        assert provisional[:10] == reading[:10]
        assert provisional.provisional and not reading.provisional and provisional.signals == ()
        readings.append(reading)
    assert_talib(closes, readings)  # peeking in between changed no later value


@pytest.mark.parametrize("name", sorted(SERIES))
def test_snapshot_restore_at_every_candle_continues_exactly(name):
    closes = SERIES[name][:160]
    candles = CandleIndicators(SETTINGS, "15m")
    original = [candles.close(c) for c in closes]
    fresh = CandleIndicators(SETTINGS, "15m")
    sizes = set()
    for cut in range(len(closes) + 1):
        snapshot = fresh.snapshot()
        sizes.add(len(snapshot))
        assert all(isinstance(v, float) for v in snapshot)
        restored = CandleIndicators.restore(SETTINGS, snapshot, "15m")
        assert restored.snapshot() == snapshot
        assert [restored.close(c) for c in closes[cut:]] == original[cut:], cut
        if cut < len(closes):
            fresh.close(closes[cut])
    assert max(sizes) <= 52, "bounded: the last 20 closes and a few scalars"


def test_restore_names_why_a_snapshot_does_not_fit():
    candles = CandleIndicators()
    for close in walk(9, 40):
        candles.close(close)
    snapshot = candles.snapshot()
    cases = {
        "layout_version": (SETTINGS, [CANDLE_SNAPSHOT_VERSION + 1, *snapshot[1:]]),
        "periods_changed": (AnalyticsSettings(rsi_period=7), snapshot),
        "malformed": (SETTINGS, snapshot[:-1]),
    }
    for reason, (settings, damaged) in cases.items():
        with pytest.raises(IncompatibleState) as err:
            CandleIndicators.restore(settings, damaged)
        assert err.value.reason == reason
    for damaged in ([*snapshot, 1.0], snapshot[:7] + [float("nan")] + snapshot[8:],
                    snapshot[:7] + [99.0] + snapshot[8:], snapshot[:-2] + [3.0, snapshot[-1]], []):
        with pytest.raises(IncompatibleState) as err:
            CandleIndicators.restore(SETTINGS, damaged)
        assert err.value.reason == "malformed"
    # Thresholds are not part of the state: other thresholds restore.
    CandleIndicators.restore(AnalyticsSettings(rsi_upper=60.0, bb_stddev=2.5), snapshot)


# --- through the tracker ---------------------------------------------------------------------------


def offer_all(tracker: SymbolTracker, bars) -> list[ClosedCandle]:
    """Offer ``bars`` in order; the final candles in the order they closed."""
    closed = []
    for bar in bars:
        tracker.offer(bar)
        closed += [c for c in tracker.closed_candles() if c is not None]
    return closed


def by_timeframe(closed: list[ClosedCandle]) -> dict[str, list[ClosedCandle]]:
    out: dict[str, list[ClosedCandle]] = {name: [] for name in ROLLUP_WINDOWS}
    for candle in closed:
        out[candle.timeframe].append(candle)
    return out


def assert_final_candles(closed: list[ClosedCandle], final_bars: list[Bar]) -> None:
    """The candles are the final candles of ``final_bars`` (all windows but the open last one), in
    order, and their indicators and signals equal TA-Lib and the 1-minute rules over their closes."""
    symbol = final_bars[0].symbol
    for name, candles in by_timeframe(closed).items():
        minutes = ROLLUP_WINDOWS[name]
        last_start = final_bars[-1].ts_ms - final_bars[-1].ts_ms % (minutes * 60_000)
        done = [b.to_record() for b in final_bars if b.ts_ms < last_start]
        records = [c.to_record(symbol) for c in candles]
        assert rollup_differences(records, {symbol: done}, minutes) == [], name
        reference = rollup_reference(done, minutes)
        assert [r["window_start"] for r in records] == sorted(reference), "each window once, in time order"
        closes = [reference[start]["close"] for start in sorted(reference)]
        assert_talib(closes, [c.reading for c in candles], label=f"{name} ")
        assert [c.reading.signals for c in candles] == one_minute_signals(closes, name)
        assert all(r["timeframe"] == name and r["provisional"] is False for r in records)
        assert len(candles) > 40


@pytest.fixture(scope="module")
def bars() -> list[Bar]:
    return generate_bars(21, days=(date(2024, 3, 8), date(2024, 3, 11)), symbol="CNDL")


def revision_of(bar: Bar) -> Bar:
    return replace(bar, high=bar.high * 1.01, close=bar.high * 1.01, volume=bar.volume + 7)


def test_final_candles_through_the_tracker_with_a_duplicate_a_revision_and_a_late_bar(bars):
    # Revise the last bar of a 15-minute window: the revised close is that candle's close.
    last_of_window = next(i for i in range(300, len(bars) - 1)
                          if bars[i + 1].ts_ms // 900_000 != bars[i].ts_ms // 900_000)
    revised = revision_of(bars[last_of_window])
    stream = (bars[:last_of_window + 1] + [bars[last_of_window], revised, bars[40]]
              + bars[last_of_window + 1:])
    tracker = SymbolTracker(SETTINGS)
    closed = []
    for bar in stream:
        outcome, _ = tracker.offer(bar)
        now = [c for c in tracker.closed_candles() if c is not None]
        if outcome not in (Outcome.APPLIED, Outcome.REBASED):
            assert now == [], f"a {outcome.value} bar closes nothing"
        closed += now
    final = bars[:last_of_window] + [revised] + bars[last_of_window + 1:]
    assert_final_candles(closed, final)
    candle = next(c for c in closed if c.timeframe == "15m" and c.window[0] == bars[last_of_window].ts_ms
                  - bars[last_of_window].ts_ms % 900_000)
    assert candle.window[4] == revised.close


def test_a_revision_never_touches_a_closed_candle(bars):
    """The latest bar is always in the open window: revising the first bar of a new window (the bar
    that closed the previous one) leaves the closed candle and the candle indicators as they were."""
    first_of_window = next(i for i in range(100, len(bars)) if bars[i].ts_ms % 900_000 == 0
                           and bars[i - 1].ts_ms // 900_000 != bars[i].ts_ms // 900_000)
    tracker = SymbolTracker(SETTINGS)
    offer_all(tracker, bars[:first_of_window + 1])
    (five, fifteen) = tracker.closed_candles()
    assert fifteen is not None and five is not None
    states = [list(s) for s in tracker.candle_states]
    assert tracker.offer(revision_of(bars[first_of_window]))[0] is Outcome.REVISED
    assert tracker.closed_candles() == (None, None)
    assert tracker.candle_states == states
    assert [c.snapshot() for c in tracker.candles] == states


def test_provisional_readings_are_what_closing_gives_and_change_nothing(bars):
    tracker = SymbolTracker(SETTINGS)
    provisional: dict[tuple[str, float], CandleReading] = {}
    for bar in bars[:700]:
        tracker.offer(bar)
        for candle in tracker.closed_candles():
            if candle is not None:
                assert candle.reading[:10] == provisional[(candle.timeframe, candle.window[0])][:10]
        state = tracker.state_bytes(), tracker.candle_state()
        readings = tracker.provisional_readings()
        assert (tracker.state_bytes(), tracker.candle_state()) == state
        for name, window, reading in zip(ROLLUP_WINDOWS, tracker.rollups(), readings):
            assert reading.provisional and reading.signals == ()
            provisional[(name, window[0])] = reading


@pytest.mark.parametrize("cut", [301, 305, 307, 600])
def test_a_state_round_trip_mid_window_continues_exactly(bars, cut):
    tracker = SymbolTracker(SETTINGS)
    before = offer_all(tracker, bars[:cut])
    state, candles = tracker.to_state(), tracker.candle_state()
    assert state[0] == STATE_LAYOUT_VERSION == 7
    restored, reset = restore_or_reset(SETTINGS, state, candles)
    assert reset is None and restored.closed_candles() == (None, None)
    assert restored.state_bytes() == tracker.state_bytes() and restored.candle_state() == candles
    assert restored.take_candle_state() is None, "stored apart already: nothing to write again"
    assert restored.provisional_readings() == tracker.provisional_readings()
    after = offer_all(restored, bars[cut:])
    assert after == offer_all(tracker, bars[cut:])
    assert_final_candles(before + after, bars)


@pytest.mark.parametrize("cut", [302, 600])
def test_a_layout_5_state_reads_and_its_candle_indicators_warm_up_again(bars, cut):
    tracker = SymbolTracker(SETTINGS)
    offer_all(tracker, bars[:cut])
    restored, reset = restore_or_reset(SETTINGS, layout_5_state(tracker))
    assert reset is None
    assert restored.offer(bars[cut - 1]) == (Outcome.DUPLICATE, None)
    later = bars[cut:]
    closed = by_timeframe(offer_all(restored, later))
    # The 1-minute analysis and the candles themselves go on exactly.
    continued = by_timeframe(offer_all(tracker, later))
    for name in ROLLUP_WINDOWS:
        assert [c.window for c in closed[name]] == [c.window for c in continued[name]]
        # The candle indicators start with the first candle that closes after the restore.
        closes = [c.window[4] for c in closed[name]]
        assert_talib(closes, [c.reading for c in closed[name]], label=f"{name} ")
        assert closed[name][0].reading.rsi_14 is None
    assert restored.to_state()[0] == 7


def test_a_layout_2_state_never_closes_the_window_whose_earlier_bars_it_lacks(bars):
    tracker = SymbolTracker(SETTINGS)
    offer_all(tracker, bars[:302])
    restored, reset = restore_or_reset(SETTINGS, older_layout_state(tracker, with_windows=False))
    assert reset is None
    closed = by_timeframe(offer_all(restored, bars[302:]))
    for name, minutes in ROLLUP_WINDOWS.items():
        open_at_restore = bars[301].ts_ms - bars[301].ts_ms % (minutes * 60_000)
        starts = [c.window[0] for c in closed[name]]
        assert starts and starts[0] > open_at_restore, name
        assert_talib([c.window[4] for c in closed[name]], [c.reading for c in closed[name]], label=f"{name} ")


def test_a_new_basis_restarts_the_candle_indicators(bars):
    tracker = SymbolTracker(SETTINGS)
    offer_all(tracker, bars[:500])
    adjusted = [replace(b, open=b.open / 2, high=b.high / 2, low=b.low / 2, close=b.close / 2,
                        volume=b.volume * 2, basis=1) for b in bars]
    assert tracker.offer(adjusted[0])[0] is Outcome.REBASED
    assert tracker.closed_candles() == (None, None), "the old basis's open window is dropped, not closed"
    closed = [c for c in tracker.closed_candles() if c] + offer_all(tracker, adjusted[1:])
    assert closed == offer_all(SymbolTracker(SETTINGS), adjusted)
    assert_final_candles(closed, adjusted)


def test_malformed_candle_indicators_in_a_state_restart_the_warm_up(bars):
    tracker = SymbolTracker(SETTINGS)
    offer_all(tracker, bars[:200])
    state, candles = tracker.to_state(), tracker.candle_state()
    at = 0  # the 5m candle indicators' length
    for damaged in (candles[:at] + [float("nan")] + candles[at + 1:], candles[:at] + [1e9] + candles[at + 1:],
                    candles[:at + 1] + [CANDLE_SNAPSHOT_VERSION + 1] + candles[at + 2:], candles[:at + 3],
                    [*candles, 1.0], []):
        restored, reset = restore_or_reset(SETTINGS, state, damaged)
        assert reset is not None and reset.reason in ("malformed", "layout_version")
        assert restored.latest is None
    restored, reset = restore_or_reset(AnalyticsSettings(rsi_period=7), state, candles)
    assert reset is not None and reset.reason == "periods_changed"


# --- the backtest on the shipped sample data ------------------------------------------------------


@pytest.mark.jvm  # the backtest runs the real job in a local mini-cluster
@pytest.mark.parametrize("parallelism", [1, 4])
def test_backtest_writes_final_candles_equal_to_talib_on_the_sample_data(tmp_path, parallelism):
    from fetcher_lambda.replay import load_bars  # the sample data set, as the producer replays it

    records = [b.to_record() for b in load_bars()]
    source = tmp_path / "bars.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out, candles_file, signals_file = tmp_path / "enriched.jsonl", tmp_path / "candles.jsonl", tmp_path / "signals.jsonl"
    assert backtest(["--input", str(source), "--output", str(out), "--rollups", str(candles_file),
                     "--signals", str(signals_file), "--parallelism", str(parallelism)]) == 0
    assert len(out.read_text().splitlines()) == len(records)
    lines = [json.loads(line) for line in candles_file.read_text().splitlines()]
    candle_signals = [json.loads(line) for line in signals_file.read_text().splitlines()]
    candle_signals = [s for s in candle_signals if s["timeframe"] != "1m"]

    symbols = sorted({r["symbol"] for r in records})
    mismatches, signals = [], 0
    for symbol in symbols:
        bars = [r for r in records if r["symbol"] == symbol]
        for name, minutes in ROLLUP_WINDOWS.items():
            got = [line for line in lines if line["symbol"] == symbol and line["timeframe"] == name]
            last_start = max(rollup_reference(bars, minutes))
            done = [b for b in bars if b["ts"] < last_start]
            mismatches += rollup_differences(got, {symbol: done}, minutes)
            assert [g["window_start"] for g in got] == sorted(rollup_reference(done, minutes))
            readings = [CandleReading(*(g[n] for n in INDICATOR_NAMES)) for g in got]
            closes = [g["close"] for g in got]
            try:
                assert_talib(closes, readings, label=f"{symbol} {name} ")
            except AssertionError as err:
                mismatches.append(str(err))
            want = [(s.type, s.direction, s.detail) for found in one_minute_signals(closes, name) for s in found]
            found = [(s["type"], s["direction"], s["detail"]) for s in candle_signals
                     if s["symbol"] == symbol and s["timeframe"] == name]
            if found != want:
                mismatches.append(f"{symbol} {name} signals differ")
            signals += len(found)
            assert len(got) > 100 if name == "5m" else len(got) > 40
    assert mismatches == []
    assert signals > 0
    assert all(line["provisional"] is False and line["window_end"] > line["window_start"] for line in lines)
    assert format_ts(0) < lines[0]["window_start"]
