"""Indicators against TA-Lib and independent references, on generated and handcrafted bars.

Comparison rule (``assert_series``): the value is None exactly where the reference is NaN, and
elsewhere |actual - expected| <= 1e-9 * max(|expected|, floor). The floor is the scale on which the
quantity's rounding error lives, so values that are legitimately 0 or tiny compare absolutely:
  * 0 (purely relative) for price-level values: SMA, EMA, Bollinger bands, VWAP, return_1;
  * the bar's close for MACD, signal and histogram: differences of price-level EMAs that cross 0,
    so their tolerance is 1e-9 of the price, not of their own value (the README says so);
  * 1 for RSI (0..100, exactly 0 on flat input) and z-scores (O(1), exactly 0 possible);
  * 1e-6 for the trend's relative slope (an absolute 1e-15, far inside the 1e-4 flat band).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, datetime

import numpy as np
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

from flink_job.core.analyzer import RECORD_FIELDS, SNAPSHOT_VERSION, Analyzer, Enriched, IncompatibleState
from flink_job.core.bars import Bar, validate_record
from flink_job.core.patterns import SNAPSHOT_LEN as PATTERNS_SNAPSHOT_LEN
from flink_job.core.indicators import (
    EMA, MACD, RSI, SMA, AnalyticsSettings, BollingerBands, SessionVWAP, Trend, TrailingZScore,
    VolumeZScore, new_york_session,
)
from tests.bar_data import (
    CLOSE_MINUTE, DST_DAYS, NEW_YORK, OPEN_MINUTE, generate_bars, minute_bars, new_york_ms,
    trading_days,
)

REL = 1e-9
SETTINGS = AnalyticsSettings()
SERIES = {
    "dst_100": dict(seed=1),
    "tiny_1e-3": dict(seed=2, price=1e-3, days=DST_DAYS + (date(2024, 3, 12),), flat_start=40),
    "huge_1e5": dict(seed=3, price=1e5),
}
# Other periods and thresholds than the defaults, every period changed.
CUSTOM = AnalyticsSettings(sma_short_period=3, sma_mid_period=10, sma_long_period=30, ema_fast_period=5,
                           ema_slow_period=13, macd_signal_period=4, rsi_period=7, bb_period=15,
                           bb_stddev=1.5, zscore_window=12, trend_window=9, trend_flat_band=0.0005)


def analyze(bars: list[Bar], settings: AnalyticsSettings = SETTINGS) -> list[Enriched]:
    analyzer = Analyzer(settings)
    return [analyzer.update(bar) for bar in bars]


@pytest.fixture(scope="module", params=sorted(SERIES))
def run(request) -> tuple[list[Bar], list[Enriched]]:
    bars = generate_bars(**SERIES[request.param])
    return bars, analyze(bars)


@pytest.fixture(scope="module")
def spanning() -> tuple[list[Bar], list[Enriched]]:
    """Over 100k bars on 113 trading days (one DST change) falling from 1e6 to 1e-4."""
    bars = generate_bars(4, trading_days(date(2024, 1, 2), 113), price=1e6, end_price=1e-4,
                         volatility=0.001)
    return bars, analyze(bars)


# --- comparison helpers ------------------------------------------------------------------------


def column(out: list[Enriched], name: str) -> list:
    return [getattr(e, name) for e in out]


def as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def assert_series(name: str, actual: list[float | None], expected: np.ndarray,
                  floor: float | np.ndarray = 0.0) -> None:
    """The module's comparison rule (see the module docstring)."""
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in actual), name
    got, want = as_array(actual), np.asarray(expected, dtype=float)
    missing = np.isnan(want)
    wrong_none = np.flatnonzero(np.isnan(got) != missing)
    assert wrong_none.size == 0, f"{name}: None/NaN differ first at bar {wrong_none[0]}"
    tolerance = REL * np.maximum(np.abs(want), floor)
    bad = np.flatnonzero(~missing & ~(np.abs(got - want) <= tolerance))
    assert bad.size == 0, (f"{name}: {bad.size} values off, first bar {bad[0]}: "
                           f"{got[bad[0]]!r} vs {want[bad[0]]!r}")


def talib_reference(closes: np.ndarray, s: AnalyticsSettings = SETTINGS) -> dict[str, tuple[np.ndarray, float | np.ndarray]]:
    """field -> (TA-Lib values under the settings' periods, comparison floor)."""
    macd, signal, hist = talib.MACD(closes, s.ema_fast_period, s.ema_slow_period, s.macd_signal_period)
    upper, middle, lower = talib.BBANDS(closes, s.bb_period, s.bb_stddev, s.bb_stddev, 0)
    return {
        "sma_5": (talib.SMA(closes, s.sma_short_period), 0.0), "sma_20": (talib.SMA(closes, s.sma_mid_period), 0.0),
        "sma_50": (talib.SMA(closes, s.sma_long_period), 0.0), "ema_12": (talib.EMA(closes, s.ema_fast_period), 0.0),
        "ema_26": (talib.EMA(closes, s.ema_slow_period), 0.0), "macd": (macd, closes),
        "macd_signal": (signal, closes), "macd_hist": (hist, closes),
        "rsi_14": (talib.RSI(closes, s.rsi_period), 1.0), "bb_upper": (upper, 0.0),
        "bb_middle": (middle, 0.0), "bb_lower": (lower, 0.0),
    }


def session_reference(bars: list[Bar]) -> tuple[list[str], np.ndarray]:
    """Sessions and VWAP recomputed per bar from zoneinfo wall-clock times."""
    sessions, vwaps = [], []
    day, pv, volume = None, 0.0, 0
    for bar in bars:
        local = datetime.fromtimestamp(bar.ts_ms / 1000, tz=NEW_YORK)
        minute = local.hour * 60 + local.minute
        if not OPEN_MINUTE <= minute < CLOSE_MINUTE:
            sessions.append("extended")
            vwaps.append(np.nan)
            continue
        sessions.append("regular")
        if local.date() != day:
            day, pv, volume = local.date(), 0.0, 0
        pv += (bar.high + bar.low + bar.close) / 3 * bar.volume
        volume += bar.volume
        vwaps.append(pv / volume if volume else np.nan)
    return sessions, np.array(vwaps)


def trailing_z_reference(values: np.ndarray, window: int = 20) -> np.ndarray:
    """z of values[i] against values[i-window:i], population std; NaN if short or std == 0."""
    z = np.full(len(values), np.nan)
    if len(values) > window:
        previous = sliding_window_view(values[:-1], window)
        mean, std = previous.mean(axis=1), previous.std(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z[window:] = np.where(std > 0, (values[window:] - mean) / std, np.nan)
    return z


def trend_reference(closes: np.ndarray, window: int = 20) -> np.ndarray:
    """Least-squares slope of the last ``window`` closes divided by their mean."""
    rel = np.full(len(closes), np.nan)
    x = np.arange(window) - (window - 1) / 2
    windows = sliding_window_view(closes, window)
    rel[window - 1:] = (windows @ x) / (x @ x) / windows.mean(axis=1)
    return rel


def check_against_references(bars: list[Bar], out: list[Enriched], s: AnalyticsSettings = SETTINGS) -> None:
    closes = np.array([b.close for b in bars])
    for name, (expected, floor) in talib_reference(closes, s).items():
        assert_series(name, column(out, name), expected, floor)

    sessions, vwap = session_reference(bars)
    assert column(out, "session") == sessions
    assert_series("vwap", column(out, "vwap"), vwap)

    returns = closes[1:] / closes[:-1] - 1.0
    assert_series("return_1", column(out, "return_1"), np.concatenate([[np.nan], returns]))
    assert_series("return_z_20", column(out, "return_z_20"),
                  np.concatenate([[np.nan], trailing_z_reference(returns, s.zscore_window)]), 1.0)
    volumes = np.array([b.volume for b in bars], dtype=float)
    assert_series("volume_z_20", column(out, "volume_z_20"), trailing_z_reference(volumes, s.zscore_window), 1.0)

    rel = trend_reference(closes, s.trend_window)
    assert_series("trend_slope", column(out, "trend_slope"), rel, 1e-6)
    band = s.trend_flat_band
    for i, (trend, r) in enumerate(zip(column(out, "trend"), rel)):
        if np.isnan(r):
            assert trend is None, i
        elif abs(abs(r) - band) > 1e-12:  # away from the band edge, where rounding decides
            assert trend == ("up" if r > band else "down" if r < -band else "flat"), i


# --- generated series --------------------------------------------------------------------------


def test_generated_series_cover_the_hard_cases(run):
    bars, out = run
    closes = [b.close for b in bars]
    offsets = {datetime.fromtimestamp(b.ts_ms / 1000, tz=NEW_YORK).utcoffset() for b in bars}
    assert len(offsets) == 2  # both sides of the DST change
    assert {e.session for e in out} == {"regular", "extended"}
    assert any(b2.ts_ms - b1.ts_ms > 60_000 for b1, b2 in zip(bars, bars[1:]))  # gaps
    assert any(len(set(closes[i:i + 50])) == 1 for i in range(0, len(closes) - 50, 5))  # flat runs
    assert any(e.session == "regular" and e.vwap is None for e in out)  # zero-volume open
    assert any(e.volume_z_20 is not None and e.volume_z_20 > 10 for e in out)  # spikes
    for bar in bars:
        assert validate_record(bar.to_record(), bar.ts_ms) == bar


def test_every_indicator_matches_its_reference(run):
    check_against_references(*run)


@pytest.mark.parametrize("series", sorted(SERIES))
def test_other_periods_and_thresholds_match_talib(series):
    bars = generate_bars(**SERIES[series])
    check_against_references(bars, analyze(bars, CUSTOM), CUSTOM)


def test_rsi_is_zero_on_a_flat_start_as_in_talib():
    bars = generate_bars(**SERIES["tiny_1e-3"])
    out = analyze(bars[:20])
    assert [e.rsi_14 for e in out[13:16]] == [None, 0.0, 0.0]
    assert talib.RSI(np.array([b.close for b in bars[:20]]), 14)[14] == 0.0


def test_long_series_spanning_1e6_to_1e_minus_4_matches_talib(spanning):
    bars, out = spanning
    closes = [b.close for b in bars]
    assert len(bars) >= 100_000 and max(closes) > 5e5 and min(closes) < 2e-4
    check_against_references(bars, out)


def test_running_sums_replay_talib_bit_for_bit(spanning):
    """SMA/EMA replay TA-Lib's float operations, so they stay identical where an exact window sum
    would not: TA-Lib's running sum keeps residue from the 1e6 prices into the 1e-4 ones."""
    bars, out = spanning
    closes = np.array([b.close for b in bars])
    reference = talib_reference(closes)
    for name in ("sma_5", "sma_20", "sma_50", "ema_12", "ema_26", "bb_middle"):
        expected = reference[name][0]
        got = as_array(column(out, name))
        assert np.array_equal(got, expected, equal_nan=True), name


# --- shared invariants -------------------------------------------------------------------------


def test_invariants_across_all_indicators(run):
    bars, out = run
    closes = np.array([b.close for b in bars])
    # Warm-up lengths are TA-Lib's own: the number of leading NaNs of each reference.
    lookback = {name: int(np.argmax(~np.isnan(values))) for name, (values, _) in talib_reference(closes).items()}
    assert lookback["macd"] == 33 and lookback["rsi_14"] == 14  # as the README states
    for i, (bar, e) in enumerate(zip(bars, out)):
        assert (e.symbol, e.ts, e.ts_ms, e.open, e.high, e.low, e.close, e.volume, e.interval,
                e.source) == (bar.symbol, bar.ts, bar.ts_ms, bar.open, bar.high, bar.low,
                              bar.close, bar.volume, bar.interval, bar.source)
        for name, first in lookback.items():  # None exactly during warm-up, then always set
            assert (getattr(e, name) is None) == (i < first), (name, i)
        assert (e.return_1 is None) == (i == 0)
        assert (e.trend is None) == (e.trend_slope is None) == (i < 19)
        assert e.trend in (None, "up", "down", "flat")
        assert e.session in ("regular", "extended")
        if e.session == "extended":
            assert e.vwap is None
        if i >= 19:
            assert e.bb_lower <= e.bb_middle <= e.bb_upper
        if i >= 14:
            assert 0.0 <= e.rsi_14 <= 100.0
        for name, period in (("sma_5", 5), ("sma_20", 20), ("sma_50", 50)):
            if i >= period - 1:
                window = [b.close for b in bars[i - period + 1:i + 1]]
                assert min(window) * (1 - 1e-12) <= getattr(e, name) <= max(window) * (1 + 1e-12)
        assert all(s.type and s.direction for s in e.signals)


def test_vwap_stays_within_the_session_range(run):
    bars, out = run
    low = high = None
    day = None
    for bar, e in zip(bars, out):
        if e.session != "regular":
            continue
        bar_day = new_york_session(bar.ts_ms)[0]
        if bar_day != day:
            day, low, high = bar_day, bar.low, bar.high
        low, high = min(low, bar.low), max(high, bar.high)
        if e.vwap is not None:
            assert low * (1 - 1e-12) <= e.vwap <= high * (1 + 1e-12)


def test_records_are_plain_json(run):
    _, out = run
    for e in out[:200]:
        record = e.to_record()
        assert list(record) == [*RECORD_FIELDS, "signals"]
        assert json.loads(json.dumps(record, allow_nan=False)) == record


def test_state_stays_bounded():
    bars = generate_bars(5)
    analyzer = Analyzer()
    sizes = set()
    for i, bar in enumerate(bars):
        analyzer.update(bar)
        if i >= 60:
            sizes.add(len(analyzer.snapshot()))
    assert len(sizes) == 1 and sizes.pop() < 300


# --- snapshot / restore --------------------------------------------------------------------------


def same_floats(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


@pytest.mark.parametrize("series", ["dst_100", "tiny_1e-3"])
def test_restore_then_update_equals_continuing_at_every_bar(series):
    bars = generate_bars(**SERIES[series])
    analyzer = Analyzer()
    for bar in bars:
        snapshot = analyzer.snapshot()
        assert all(type(v) is float for v in snapshot)
        restored = Analyzer.restore(SETTINGS, snapshot)
        assert same_floats(restored.snapshot(), snapshot)
        assert restored.update(bar) == analyzer.update(bar)
        assert same_floats(restored.snapshot(), analyzer.snapshot())


def test_reapplying_a_revised_bar_to_the_earlier_snapshot_equals_a_clean_run():
    bars = generate_bars(6)
    analyzer = Analyzer()
    snapshots = []
    for bar in bars:
        snapshots.append(analyzer.snapshot())
        analyzer.update(bar)
    for i in range(40, len(bars), 151):
        b = bars[i]
        revised = Bar(b.symbol, b.ts, b.ts_ms, b.open, b.high * 1.01, b.low, b.high * 1.01,
                      b.volume + 7)
        clean = analyze(bars[:i] + [revised])[-1]
        assert Analyzer.restore(SETTINGS, snapshots[i]).update(revised) == clean


def test_restore_names_why_a_snapshot_does_not_fit():
    analyzer = Analyzer()
    for bar in generate_bars(7)[:80]:
        analyzer.update(bar)
    snapshot = analyzer.snapshot()
    cases = {
        "periods_changed": (AnalyticsSettings(sma_long_period=60), snapshot),
        "layout_version": (SETTINGS, [SNAPSHOT_VERSION + 1, *snapshot[1:]]),
        "malformed": (SETTINGS, snapshot[:-3]),
    }
    for reason, (settings, stored) in cases.items():
        with pytest.raises(IncompatibleState) as err:
            Analyzer.restore(settings, stored)
        assert err.value.reason == reason
    with pytest.raises(IncompatibleState, match="trailing"):
        Analyzer.restore(SETTINGS, [*snapshot, 0.0])
    with pytest.raises(IncompatibleState, match="sma_long_period.: .50 -> 60"):
        Analyzer.restore(AnalyticsSettings(sma_long_period=60), snapshot)
    # Thresholds are not part of the state: under other thresholds the snapshot restores, and the
    # indicators continue as a run under those thresholds from the start would have them.
    bars = generate_bars(7)[:81]
    other = AnalyticsSettings(volume_spike_z=2.5, trend_flat_band=0.001)
    continued = Analyzer.restore(other, snapshot).update(bars[80])
    clean = analyze(bars, other)[-1]
    assert continued.sma_50 is not None and replace(continued, signals=()) == replace(clean, signals=())


def version_3_snapshot(snapshot: list[float], s: AnalyticsSettings = SETTINGS) -> list[float]:
    """A current (version 4) snapshot in the layout of version 3, whose windows (the closes, the
    returns, the volumes) were length-prefixed and held only the values seen."""
    it = iter(snapshot[1 + 10:])

    def window(size: int) -> list[float]:
        slots = [next(it) for _ in range(1 + size)]
        count = int(slots[0])
        return [float(count), *slots[1 + size - count:]]

    closes = window(max(s.sma_short_period, s.sma_mid_period, s.sma_long_period, s.bb_period, s.trend_window))
    previous = next(it)
    returns, volumes = window(s.zscore_window), window(s.zscore_window)
    return [3.0, *snapshot[1:11], *closes, previous, *returns, *volumes, *it]


@pytest.mark.parametrize("cut", [0, 1, 4, 13, 19, 20, 49, 50, 51, 90])
def test_a_version_3_snapshot_continues_exactly(cut):
    bars = generate_bars(8)[:140]
    analyzer = Analyzer()
    for bar in bars[:cut]:
        analyzer.update(bar)
    old = version_3_snapshot(analyzer.snapshot())
    assert len(old) < len(analyzer.snapshot()) or cut >= 50
    restored = Analyzer.restore(SETTINGS, old)
    assert same_floats(restored.snapshot(), analyzer.snapshot())
    assert [restored.update(b) for b in bars[cut:]] == [analyzer.update(b) for b in bars[cut:]]


def version_1_snapshot(snapshot: list[float], s: AnalyticsSettings = SETTINGS) -> list[float]:
    """A version 3 snapshot in the layout of version 1, which kept a window of closes per indicator:
    each SMA its last period - 1 closes, the bands their SMA's and their last bb_period, the trend
    its last trend_window."""
    it = iter(snapshot[1 + 10:-PATTERNS_SNAPSHOT_LEN])  # version 1 had no candlestick patterns

    def window() -> list[float]:
        count = int(next(it))
        return [float(count), *(next(it) for _ in range(count))]

    history = window()[1:]

    def last(count: int) -> list[float]:
        values = history[-count:] if len(history) >= count else history
        return [float(len(values)), *values]

    previous, returns, volumes = next(it), window(), window()
    totals = [next(it) for _ in range(3)]
    averages = [next(it) for _ in range(19)]
    bands_total = next(it)
    vwap = [next(it) for _ in range(3)]
    return [1.0, *snapshot[1:11], previous, *returns, *volumes,
            totals[0], *last(s.sma_short_period - 1), totals[1], *last(s.sma_mid_period - 1),
            totals[2], *last(s.sma_long_period - 1), *averages, bands_total, *last(s.bb_period - 1),
            *last(s.bb_period), *vwap, *last(s.trend_window), *it]


def test_a_version_1_snapshot_continues_exactly():
    bars = generate_bars(8)[:140]
    for cut in (0, 1, 4, 19, 20, 49, 50, 51, 90):
        analyzer = Analyzer()
        for bar in bars[:cut]:
            analyzer.update(bar)
        restored = Analyzer.restore(SETTINGS, version_1_snapshot(version_3_snapshot(analyzer.snapshot())))
        # Everything continues exactly but the candlestick patterns, whose short warm-up starts again.
        assert [without_patterns(restored.update(b)) for b in bars[cut:]] == \
            [without_patterns(analyzer.update(b)) for b in bars[cut:]], cut


def without_patterns(enriched):
    return replace(enriched, patterns={}, signals=tuple(s for s in enriched.signals if s.type != "candle_pattern"))


# --- known values --------------------------------------------------------------------------------


def feed(indicator, values):
    return [indicator.update(v) for v in values]


def test_sma_and_ema_known_values():
    assert feed(SMA(5), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [None, None, None, None, 3.0, 4.0]
    # Seed (1+2+3)/3 = 2, then (4-2)*0.5+2 = 3 and (8-3)*0.5+3 = 5.5.
    assert feed(EMA(3), [1.0, 2.0, 3.0, 4.0, 8.0]) == [None, None, 2.0, 3.0, 5.5]
    assert feed(EMA(3, skip=2), [9.0, 9.0, 1.0, 2.0, 3.0]) == [None, None, None, None, 2.0]


def test_rsi_known_values():
    assert feed(RSI(14), [float(v) for v in range(1, 17)])[14:] == [100.0, 100.0]
    assert feed(RSI(14), [5.0] * 16)[13:] == [None, 0.0, 0.0]
    alternating = [10.0 + (i % 2) for i in range(15)]  # 7 gains and 7 losses of 1
    assert feed(RSI(14), alternating)[14] == 50.0
    # One Wilder step after the seed averages of 0.5: a loss of 1 gives (0.5*13 + 0)/14 against
    # (0.5*13 + 1)/14.
    gain, loss = 0.5 * 13 / 14, (0.5 * 13 + 1.0) / 14
    rsi = feed(RSI(14), alternating + [9.0])[15]
    assert rsi == pytest.approx(100 * gain / (gain + loss), rel=1e-15)


def test_macd_seeds_the_fast_ema_on_closes_14_to_25():
    closes = [100 + 3 * math.sin(i / 3) + 0.1 * i for i in range(60)]
    out = feed(MACD(12, 26, 9), closes)
    assert all(v == (None, None, None) for v in out[:33]) and out[33][0] is not None

    def ema(values, period, seed_end):
        k, value = 2 / (period + 1), sum(values[seed_end - period + 1:seed_end + 1]) / period
        series = {seed_end: value}
        for i in range(seed_end + 1, len(values)):
            value = (values[i] - value) * k + value
            series[i] = value
        return series

    fast, slow = ema(closes, 12, 25), ema(closes, 26, 25)
    line = [fast[i] - slow[i] for i in range(25, 60)]
    signal = ema(line, 9, 8)
    macd_33, signal_33, hist_33 = out[33]
    assert macd_33 == pytest.approx(line[8], rel=1e-12)
    assert signal_33 == pytest.approx(signal[8], rel=1e-12)
    assert hist_33 == pytest.approx(line[8] - signal[8], rel=1e-9)
    expected = talib.MACD(np.array(closes), 12, 26, 9)
    assert [v[0] for v in out[33:]] == pytest.approx(list(expected[0][33:]), rel=1e-12)
    # Seeding the fast EMA on closes[0:12] instead would give a visibly different MACD.
    naive_fast = ema(closes, 12, 11)
    assert abs((naive_fast[33] - slow[33]) - macd_33) > 1e-6


def test_bollinger_known_values():
    for upper, middle, lower in feed(BollingerBands(20, 2.0), [3.7] * 25)[19:]:
        assert upper == middle == lower  # a flat window has exactly zero width
    upper, middle, lower = feed(BollingerBands(20, 2.0), [float(v) for v in range(1, 21)])[19]
    std = math.sqrt((20 * 20 - 1) / 12)
    assert middle == 10.5
    assert upper == pytest.approx(10.5 + 2 * std, rel=1e-15)
    assert lower == pytest.approx(10.5 - 2 * std, rel=1e-15)


def test_sessions_around_the_dst_change():
    friday, monday = DST_DAYS
    cases = {  # UTC time -> New York time, regular?
        f"{friday}T14:29:00Z": False, f"{friday}T14:30:00Z": True,  # 09:29 / 09:30 EST
        f"{friday}T20:59:00Z": True, f"{friday}T21:00:00Z": False,  # 15:59 / 16:00 EST
        f"{monday}T13:29:00Z": False, f"{monday}T13:30:00Z": True,  # 09:29 / 09:30 EDT
        f"{monday}T19:59:00Z": True, f"{monday}T20:00:00Z": False,  # 15:59 / 16:00 EDT
        f"{monday}T03:59:00Z": False,  # 23:59 EDT on Sunday
    }
    for ts, regular in cases.items():
        ts_ms = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()) * 1000
        assert new_york_session(ts_ms)[1] is regular, ts
    # Days are New York dates, not UTC ones: 03:59Z on Monday is still Sunday in New York.
    sunday_late = new_york_ms(date(2024, 3, 10), 23 * 60 + 59)
    assert sunday_late == int(datetime.fromisoformat(f"{monday}T03:59:00+00:00").timestamp()) * 1000
    sunday = (date(2024, 3, 10) - date(1970, 1, 1)).days
    assert new_york_session(sunday_late)[0] == sunday
    assert new_york_session(sunday_late + 60_000)[0] == sunday + 1


def test_vwap_known_values():
    vwap = SessionVWAP()
    monday = DST_DAYS[1]
    day, regular = new_york_session(new_york_ms(monday, 9 * 60))
    assert not regular and vwap.update(day, regular, 11.0, 9.0, 10.0, 500) is None
    day, regular = new_york_session(new_york_ms(monday, OPEN_MINUTE))
    assert vwap.update(day, regular, 10.0, 10.0, 10.0, 0) is None  # no volume yet
    assert vwap.update(day, regular, 12.0, 9.0, 9.0, 100) == 10.0
    expected = (10 * 100 + 21 * 300) / 400
    assert vwap.update(day, regular, 22.0, 20.0, 21.0, 300) == pytest.approx(expected)
    next_day, _ = new_york_session(new_york_ms(date(2024, 3, 12), OPEN_MINUTE))
    assert vwap.update(next_day, True, 5.0, 5.0, 5.0, 10) == 5.0  # reset on a new date


def test_return_volume_z_and_trend_known_values():
    out = analyze(minute_bars([100.0, 110.0, 99.0]))
    assert [e.return_1 for e in out] == [None, 110.0 / 100.0 - 1.0, 99.0 / 110.0 - 1.0]

    volume_z = VolumeZScore(20)
    assert feed(volume_z, [100 if i % 2 else 300 for i in range(20)] + [500]) == [None] * 20 + [3.0]
    assert feed(VolumeZScore(20), [40] * 22)[20:] == [None, None]  # std 0

    assert feed(TrailingZScore(3), [0.1, 0.1, 0.1, 0.5]) == [None, None, None, None]  # std 0
    assert feed(TrailingZScore(2), [1.0, 3.0, 4.0]) == [None, None, 2.0]

    assert feed(Trend(20, 1e-4), [50.0] * 19)[-1] == (None, None)
    assert feed(Trend(20, 1e-4), [50.0] * 20)[-1] == ("flat", 0.0)
    trend, slope = feed(Trend(20, 1e-4), [50.0 + i for i in range(20)])[-1]
    assert trend == "up" and slope == pytest.approx(1 / 59.5, rel=1e-15)
    assert feed(Trend(20, 1e-4), [50.0 - i for i in range(20)])[-1][0] == "down"
    assert feed(Trend(20, 0.1), [50.0 + i for i in range(20)])[-1][0] == "flat"


def test_settings_are_validated():
    for bad in (dict(sma_short_period=1), dict(ema_fast_period=26), dict(rsi_lower=80.0),
                dict(bb_stddev=0.0), dict(trend_flat_band=-1.0), dict(volume_spike_z=math.nan),
                dict(rsi_period=14.0)):
        with pytest.raises(ValueError):
            AnalyticsSettings(**bad)
