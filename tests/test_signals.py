"""Signals on handcrafted series: each fires exactly once, at a known bar, in a known direction.

Where TA-Lib computes the underlying indicator, the expected bar is also derived from TA-Lib's
values, so the index is not merely a recorded output.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import talib

from flink_job.core.analyzer import Analyzer, Enriched
from flink_job.core.indicators import AnalyticsSettings
from flink_job.core.signals import (
    INITIAL_STATE, Reading, Signal, SignalState, cross, detect, dump_state, load_state,
)
from tests.bar_data import minute_bars

SETTINGS = AnalyticsSettings()


def run(closes: list[float], volumes: list[int] | None = None,
        settings: AnalyticsSettings = SETTINGS) -> list[Enriched]:
    analyzer = Analyzer(settings)
    return [analyzer.update(bar) for bar in minute_bars(closes, volumes)]


def fired(out: list[Enriched], kind: str) -> list[tuple[int, str, str]]:
    return [(i, s.direction, s.detail)
            for i, e in enumerate(out) for s in e.signals if s.type == kind]


def mirror(closes: list[float]) -> list[float]:
    """The series reflected around 100: every rise becomes a fall."""
    return [200.0 - c for c in closes]


def first_sign_change(diff: np.ndarray) -> int:
    """First bar whose non-NaN difference has the opposite sign of the first defined one."""
    defined = np.flatnonzero(~np.isnan(diff))
    start = np.sign(diff[defined[0]])
    return int(next(i for i in defined if np.sign(diff[i]) == -start))


# Linear fall for 80 bars, then a steeper linear rise.
V_SHAPE = [100 - 0.1 * i for i in range(80)] + [92 + 0.3 * i for i in range(1, 61)]
# An accelerating fall keeps the MACD under its signal line, then a linear rise crosses it.
BOWL = [100 - 0.002 * i * i for i in range(60)]
BOWL += [BOWL[-1] + 0.2 * i for i in range(1, 41)]
# RSI around 50 on alternating closes, then a steady climb.
CLIMB = [100 + (0.5 if i % 2 else 0.0) for i in range(30)] + [100.5 + 0.5 * i for i in range(1, 15)]
# Tight oscillation, then a jump to a new flat level.
JUMP = [100 + (0.1 if i % 2 else -0.1) for i in range(40)] + [102.0] * 30
# Returns alternating +-0.1%, then one +5% bar.
WIGGLE = [100.0]
for _i in range(1, 40):
    WIGGLE.append(WIGGLE[-1] * (1.001 if _i % 2 else 0.999))
# Flat, then a steady climb.
FLAT_THEN_CLIMB = [100.0] * 40 + [100 + 0.05 * i for i in range(1, 40)]


@pytest.mark.parametrize("closes, direction, detail", [
    (V_SHAPE, "up", "golden"), (mirror(V_SHAPE), "down", "death")])
def test_sma_cross_fires_once(closes, direction, detail):
    expected = first_sign_change(talib.SMA(np.array(closes), 20) - talib.SMA(np.array(closes), 50))
    assert expected == 95
    assert fired(run(closes), "sma_cross") == [(95, direction, detail)]


@pytest.mark.parametrize("closes, direction, detail", [
    (BOWL, "up", "bullish"), (mirror(BOWL), "down", "bearish")])
def test_macd_cross_fires_once(closes, direction, detail):
    assert first_sign_change(talib.MACD(np.array(closes), 12, 26, 9)[2]) == 62
    assert fired(run(closes), "macd_cross") == [(62, direction, detail)]


@pytest.mark.parametrize("closes, direction, detail", [
    (CLIMB, "up", "overbought"), (mirror(CLIMB), "down", "oversold")])
def test_rsi_zone_fires_once(closes, direction, detail):
    rsi = talib.RSI(np.array(closes), 14)
    crossing = (rsi[35] <= 70 < rsi[36]) if direction == "up" else (rsi[35] >= 30 > rsi[36])
    assert crossing
    out = run(closes)
    assert fired(out, "rsi_zone") == [(36, direction, detail)]
    assert [s.value for s in out[36].signals if s.type == "rsi_zone"] == [pytest.approx(rsi[36])]


@pytest.mark.parametrize("closes, direction, detail", [
    (JUMP, "up", "upper"), (mirror(JUMP), "down", "lower")])
def test_bb_breakout_fires_once(closes, direction, detail):
    upper, _, lower = talib.BBANDS(np.array(closes), 20, 2.0, 2.0, 0)
    band = upper if direction == "up" else lower
    assert first_sign_change(np.array(closes) - band) == 40
    assert fired(run(closes), "bb_breakout") == [(40, direction, detail)]


def test_volume_spike_fires_once():
    alternating = [100 if i % 2 else 300 for i in range(30)]
    volumes = alternating + [2000] + alternating[:20]
    out = run([100.0] * len(volumes), volumes)
    assert fired(out, "volume_spike") == [(30, "up", "spike")]
    # The previous 20 volumes alternate 300/100: mean 200, std 100.
    assert out[30].signals[0].value == (2000 - 200) / 100


@pytest.mark.parametrize("factor, direction, detail", [
    (1.05, "up", "jump"), (0.95, "down", "drop")])
def test_price_anomaly_fires_once(factor, direction, detail):
    closes = WIGGLE + [WIGGLE[-1] * factor] * 6
    out = run(closes)
    assert fired(out, "price_anomaly") == [(40, direction, detail)]
    assert abs(out[40].return_z_20) >= 4 > max(abs(e.return_z_20) for e in out[41:])


@pytest.mark.parametrize("closes, direction", [
    (FLAT_THEN_CLIMB, "up"), (mirror(FLAT_THEN_CLIMB), "down")])
def test_trend_change_fires_once(closes, direction):
    x = np.arange(20) - 9.5
    relative = [np.dot(closes[i - 19:i + 1], x) / (x @ x) / np.mean(closes[i - 19:i + 1])
                for i in range(19, len(closes))]
    expected = 19 + next(i for i, r in enumerate(relative) if abs(r) > SETTINGS.trend_flat_band)
    assert expected == 45
    assert fired(run(closes), "trend_change") == [(45, direction, f"flat->{direction}")]


@pytest.mark.parametrize("closes", [
    [100 + 0.01 * i for i in range(200)],  # steady climb: each crossing difference keeps its side
    [100.0] * 200,  # flat: all differences are zero, all z-scores undefined
])
def test_quiet_series_fire_nothing(closes):
    assert [e.signals for e in run(closes)] == [()] * len(closes)


def test_flat_run_residue_does_not_cross():
    """Once a flat run fills a window, band and SMA differences are rounding residue; the tie band
    keeps it from firing, which it would do with cross_tolerance=0."""
    strict = AnalyticsSettings(cross_tolerance=0.0)
    strict_fired = 0
    for seed in range(5):
        rng = random.Random(seed)
        closes = [100.0]
        for _ in range(199):
            closes.append(closes[-1] * (1 + rng.gauss(0.0, 0.002)))
        closes += [closes[-1]] * 300  # flat from bar 199: the 20-bar window is flat from bar 218
        assert [i for i, *_ in fired(run(closes), "bb_breakout") if i >= 218] == []
        assert [i for i, *_ in fired(run(closes), "sma_cross") if i >= 248] == []
        strict_out = run(closes, settings=strict)
        strict_fired += len([i for i, *_ in fired(strict_out, "bb_breakout") if i >= 218])
    assert strict_fired > 0


# --- the crossing rule and detection as pure functions ------------------------------------------


def sides(diffs: list[float | None], tolerance: float = 0.0) -> list[int]:
    """Directions fired over a sequence of differences."""
    side, out = 0, []
    for diff in diffs:
        side, direction = cross(side, diff, tolerance)
        out.append(direction)
    return out


def test_crossing_rule_with_zero_and_undefined_differences():
    assert sides([-1.0, 1.0]) == [0, 1]
    assert sides([1.0, -2.0, -1.0, 3.0]) == [0, -1, 0, 1]
    assert sides([-1.0, 0.0, 0.0, 1.0]) == [0, 0, 0, 1]  # through zero: fires on reaching +
    assert sides([-1.0, 0.0, -1.0]) == [0, 0, 0]  # touching zero and turning back
    assert sides([0.0, 0.0, 1.0, -1.0]) == [0, 0, 0, -1]  # zero never seeds the memory
    assert sides([-1.0, None, 1.0]) == [0, 0, 0]  # an undefined bar clears it
    assert sides([-1.5, 0.5, 2.0], tolerance=1.0) == [0, 0, 1]  # within tolerance is zero
    assert sides([-1.0, 2.0], tolerance=1.0) == [0, 0]  # -1 is within it: no side yet


def reading(**values) -> Reading:
    base = dict(close=100.0, sma_mid=None, sma_long=None, macd=None, macd_signal=None, rsi=None,
                bb_upper=None, bb_lower=None, volume_z=None, return_1=None, return_z=None,
                trend=None, trend_slope=None)
    return Reading(**{**base, **values})


def test_rsi_zone_boundaries():
    def zone(prev: float, cur: float) -> list[tuple[str, str]]:
        signals, _ = detect(INITIAL_STATE._replace(rsi=prev), reading(rsi=cur), SETTINGS)
        return [(s.direction, s.detail) for s in signals]

    assert zone(70.0, 70.5) == [("up", "overbought")]
    assert zone(69.0, 70.0) == []
    assert zone(71.0, 75.0) == []
    assert zone(30.0, 29.5) == [("down", "oversold")]
    assert zone(31.0, 30.0) == []


def test_level_signals_and_their_values():
    signals, state = detect(INITIAL_STATE, reading(volume_z=3.0, return_1=0.0, return_z=-4.0),
                            SETTINGS)
    assert signals == (Signal("volume_spike", "up", 3.0, "spike"),
                       Signal("price_anomaly", "down", -4.0, "drop"))  # zero return: by z's sign
    assert detect(state, reading(volume_z=2.99, return_1=0.01, return_z=3.99), SETTINGS)[0] == ()
    assert signals[0].to_record() == {"type": "volume_spike", "direction": "up", "value": 3.0,
                                      "detail": "spike", "timeframe": "1m"}


def test_signal_state_round_trips_through_floats():
    state = SignalState(1, -1, 0, 1, 55.5, "down")
    out: list[float] = []
    dump_state(state, out)
    assert all(type(v) is float for v in out)
    assert load_state(iter(out)) == state
    out = []
    dump_state(INITIAL_STATE, out)
    assert load_state(iter(out)) == INITIAL_STATE
