"""Signal detection from one bar's indicator values and what was remembered from earlier bars.

Pure: ``detect(state, reading, settings)`` returns the bar's signals and the next state; the
state is a small tuple so it checkpoints as a handful of floats.

Crossing rule (sma_cross, macd_cross, bb_breakout). A difference has a side in {-1, 0, +1}; a
difference within ``settings.cross_tolerance * close`` of zero has side 0 (running sums and EMAs
leave ULP-sized residues on flat runs whose sign is noise). The state remembers the last non-zero
side. A cross fires on a bar whose side is non-zero and differs from the remembered one, so
touching zero and turning back fires nothing, and passing through zero fires once, on the bar that
reaches the other side. The first non-zero side after warm-up only seeds the memory, and an
undefined difference clears it (a cross needs both sides observed while defined).

RSI zones compare the previous and current RSI directly: up when prev <= upper < cur, down when
prev >= lower > cur. Volume spikes and price anomalies are level tests on the current bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from flink_job.core.indicators import TREND_CODES, TREND_NAMES, AnalyticsSettings
from flink_job.core.slots import decode, encode

UP = "up"
DOWN = "down"


@dataclass(frozen=True, slots=True)
class Signal:
    # sma_cross, macd_cross, rsi_zone, bb_breakout, volume_spike, price_anomaly or trend_change
    type: str
    direction: str  # "up" or "down"; for trend_change the new trend ("up", "down", "flat")
    value: float | None  # the quantity that triggered it, see detect()
    detail: str
    # The candle length the signal was found on: "1m" for a bar's own signals, "5m" or "15m" for a
    # signal on closed candles (see ``candle_indicators``).
    timeframe: str = "1m"

    def to_record(self) -> dict:
        return {"type": self.type, "direction": self.direction, "value": self.value,
                "detail": self.detail, "timeframe": self.timeframe}


class Reading(NamedTuple):
    """The current bar's indicator values that detection looks at."""

    close: float
    sma_mid: float | None
    sma_long: float | None
    macd: float | None
    macd_signal: float | None
    rsi: float | None
    bb_upper: float | None
    bb_lower: float | None
    volume_z: float | None
    return_1: float | None
    return_z: float | None
    trend: str | None
    trend_slope: float | None


class SignalState(NamedTuple):
    """What detection remembers: the last non-zero side of each crossing difference, the
    previous RSI and the previous trend."""

    sma_side: int = 0
    macd_side: int = 0
    upper_side: int = 0
    lower_side: int = 0
    rsi: float | None = None
    trend: str | None = None


INITIAL_STATE = SignalState()
STATE_SIZE = len(INITIAL_STATE)


def cross(last_side: int, diff: float | None, tolerance: float) -> tuple[int, int]:
    """(side to remember, direction fired: -1, 0 or +1) under the crossing rule above."""
    if diff is None:
        return 0, 0
    if diff > tolerance:
        side = 1
    elif diff < -tolerance:
        side = -1
    else:
        return last_side, 0
    return side, (side if last_side and side != last_side else 0)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def detect(state: SignalState, cur: Reading,
           settings: AnalyticsSettings) -> tuple[tuple[Signal, ...], SignalState]:
    """The bar's signals (in a fixed type order) and the state for the next bar.

    Values: sma_cross sma_mid - sma_long, macd_cross the histogram, rsi_zone the RSI, bb_breakout
    the close, volume_spike the volume z-score, price_anomaly the return z-score, trend_change the
    relative slope.
    """
    # Unpacked once: tuple fields by name cost a lookup each, and this runs per bar.
    (close, sma_mid, sma_long, macd, macd_signal, rsi, bb_upper, bb_lower, volume_z, return_1, z,
     trend, trend_slope) = cur
    last_sma_side, last_macd_side, last_upper_side, last_lower_side, prev_rsi, prev_trend = state
    tolerance = settings.cross_tolerance * close
    found: list[Signal] = []

    sma_diff = _difference(sma_mid, sma_long)
    sma_side, fired = cross(last_sma_side, sma_diff, tolerance)
    if fired:
        found.append(Signal("sma_cross", UP, sma_diff, "golden") if fired > 0
                     else Signal("sma_cross", DOWN, sma_diff, "death"))

    hist = _difference(macd, macd_signal)
    macd_side, fired = cross(last_macd_side, hist, tolerance)
    if fired:
        found.append(Signal("macd_cross", UP, hist, "bullish") if fired > 0
                     else Signal("macd_cross", DOWN, hist, "bearish"))

    if rsi is not None and prev_rsi is not None:
        if prev_rsi <= settings.rsi_upper < rsi:
            found.append(Signal("rsi_zone", UP, rsi, "overbought"))
        elif prev_rsi >= settings.rsi_lower > rsi:
            found.append(Signal("rsi_zone", DOWN, rsi, "oversold"))

    upper_side, fired = cross(last_upper_side, _difference(close, bb_upper), tolerance)
    if fired > 0:
        found.append(Signal("bb_breakout", UP, close, "upper"))
    lower_side, fired = cross(last_lower_side, _difference(close, bb_lower), tolerance)
    if fired < 0:
        found.append(Signal("bb_breakout", DOWN, close, "lower"))

    if volume_z is not None and volume_z >= settings.volume_spike_z:
        found.append(Signal("volume_spike", UP, volume_z, "spike"))

    if z is not None and abs(z) >= settings.price_anomaly_z:
        # By the sign of the return; a zero return (only after one-sided returns) by its z-score.
        ret = return_1 or z
        found.append(Signal("price_anomaly", UP, z, "jump") if ret > 0
                     else Signal("price_anomaly", DOWN, z, "drop"))

    if trend is not None and prev_trend is not None and trend != prev_trend:
        found.append(Signal("trend_change", trend, trend_slope, f"{prev_trend}->{trend}"))

    next_state = SignalState(sma_side, macd_side, upper_side, lower_side, rsi, trend)
    return (tuple(found) if found else ()), next_state


def dump_state(state: SignalState, out: list[float]) -> None:
    out += (float(state.sma_side), float(state.macd_side), float(state.upper_side),
            float(state.lower_side), encode(state.rsi),
            TREND_CODES[state.trend] if state.trend is not None else float("nan"))


def load_state(it: Iterator[float]) -> SignalState:
    sma, macd, upper, lower = [int(next(it)) for _ in range(4)]
    rsi = decode(next(it))
    trend_code = decode(next(it))
    return SignalState(sma, macd, upper, lower, rsi,
                       None if trend_code is None else TREND_NAMES[trend_code])
