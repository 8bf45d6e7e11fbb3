"""Incremental technical indicators for one symbol's bar stream.

Each class takes one value per bar through ``update`` and keeps only the bounded window it needs.
Its state lives in *slots* of one flat list of floats that the indicators of a symbol share (see
``Slots``): an indicator updates its slots in place, so the whole analysis of a symbol is one flat
numeric layout and its snapshot is a copy of that list. None travels as NaN, counts as floats.

The TA-Lib-equivalent indicators reproduce TA-Lib on the same input sequence. Where TA-Lib's
answer depends on its order of float operations (running window sums, EMA recursion, Wilder
smoothing), the same operations are replayed in the same order: SMA, EMA and the MACD line come
out bit-identical to ``talib`` however long the series; RSI, the MACD signal and the Bollinger
width agree to about 1e-12 relative.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from operator import mul, sub
from zoneinfo import ZoneInfo

from flink_job.core.patterns import DEFAULT_SIGNAL_MIN_STRENGTH, DEFAULT_SIGNAL_PATTERNS, PATTERN_NAMES
from flink_job.core.slots import NAN, History, Slots, check_count, history_of

NONE3: tuple[None, None, None] = (None, None, None)

PERIOD_FIELDS = (
    "sma_short_period", "sma_mid_period", "sma_long_period", "ema_fast_period",
    "ema_slow_period", "macd_signal_period", "rsi_period", "bb_period", "zscore_window",
    "trend_window",
)


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """Periods and thresholds of the analytics.

    Periods shape the checkpointed state: after a restart with other periods, each symbol's state
    no longer fits and its warm-up starts again (``symbol_state.restore_or_reset``). Thresholds are
    applied per bar and can change freely between restarts. ``config.parse_analytics`` builds
    these from the ``Analytics`` property group. Output field names
    (``sma_5``, ``rsi_14``, ...) follow the defaults whatever the configured periods.
    """

    sma_short_period: int = 5
    sma_mid_period: int = 20
    sma_long_period: int = 50
    ema_fast_period: int = 12
    ema_slow_period: int = 26
    macd_signal_period: int = 9
    rsi_period: int = 14
    bb_period: int = 20
    bb_stddev: float = 2.0
    zscore_window: int = 20
    trend_window: int = 20
    trend_flat_band: float = 0.0001
    volume_spike_z: float = 3.0
    price_anomaly_z: float = 4.0
    rsi_upper: float = 70.0
    rsi_lower: float = 30.0
    # A crossing difference within cross_tolerance * close counts as zero: flat runs leave ULP-sized
    # residues in running sums and EMAs whose sign is noise, not a cross.
    cross_tolerance: float = 1e-12
    # Which candlestick patterns are also signals (``candle_pattern``), and the |TA-Lib output| they
    # need: see ``patterns`` for the measured rates behind the defaults.
    signal_patterns: frozenset[str] = DEFAULT_SIGNAL_PATTERNS
    pattern_min_strength: float = DEFAULT_SIGNAL_MIN_STRENGTH

    def __post_init__(self) -> None:
        for name in PERIOD_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2")
        if self.ema_fast_period >= self.ema_slow_period:
            raise ValueError("ema_fast_period must be below ema_slow_period")
        unknown = set(self.signal_patterns) - set(PATTERN_NAMES)
        if unknown:
            raise ValueError(f"signal_patterns: unknown pattern(s) {sorted(unknown)}")
        for f in fields(self):
            if f.name == "signal_patterns":
                continue
            value = getattr(self, f.name)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            if f.name not in PERIOD_FIELDS and not finite:
                raise ValueError(f"{f.name} must be a finite number")
        if not 0.0 <= self.rsi_lower < self.rsi_upper <= 100.0:
            raise ValueError("need 0 <= rsi_lower < rsi_upper <= 100")
        if min(self.bb_stddev, self.volume_spike_z, self.price_anomaly_z) <= 0.0:
            raise ValueError("bb_stddev, volume_spike_z and price_anomaly_z must be positive")
        if self.trend_flat_band < 0.0 or self.cross_tolerance < 0.0:
            raise ValueError("trend_flat_band and cross_tolerance must be >= 0")

    def state_key(self) -> list[float]:
        """The periods, as stored in a snapshot header."""
        return [float(getattr(self, name)) for name in PERIOD_FIELDS]


# --- New York trading session ----------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
REGULAR_OPEN_MS = (9 * 60 + 30) * 60_000
REGULAR_CLOSE_MS = 16 * HOUR_MS


@lru_cache(maxsize=512)
def _new_york_offset_ms(utc_hour: int) -> int:
    """New York's UTC offset during one UTC hour; its DST switches fall on whole UTC hours."""
    offset = datetime.fromtimestamp(utc_hour * 3600, tz=NEW_YORK).utcoffset()
    return int(offset.total_seconds()) * 1000 if offset is not None else 0


def new_york_session(ts_ms: int) -> tuple[int, bool]:
    """(New York calendar day as days since 1970-01-01, whether 09:30 <= local time < 16:00)."""
    day, ms_of_day = divmod(ts_ms + _new_york_offset_ms(ts_ms // HOUR_MS), DAY_MS)
    return day, REGULAR_OPEN_MS <= ms_of_day < REGULAR_CLOSE_MS


# --- moving averages and oscillators (TA-Lib equivalents) ------------------------------------


class SMA(Slots):
    """``talib.SMA``: TA-Lib's running window sum, replayed operation for operation.

    TA-Lib adds the new value, divides, then subtracts the value leaving the window; the rounding
    residue that running sum carries is part of TA-Lib's answer. Replaying it keeps results
    bit-identical on any series, whereas an exactly recomputed window sum drifts *away* from TA-Lib
    once prices fall by orders of magnitude (~6e-5 relative on a 1e6 -> 1e-4 series).
    ``closes``: a shared history of closes (else it keeps its own). Slot: the running sum of the
    last period - 1 values.
    """

    __slots__ = ("period", "_closes", "_own")

    def __init__(self, period: int, closes: History | None = None, state: list[float] | None = None) -> None:
        self._closes, self._own = history_of(period, closes, state)
        super().__init__(self._closes.s, [0.0])
        self.period = period

    def update(self, value: float) -> float | None:
        closes = self._closes
        if self._own:
            closes.append(value)
        s, i, period = self.s, self.o, self.period
        total = s[i] + value
        if s[closes.o] < period:
            s[i] = total
            return None
        s[i] = total - s[closes.end - period]
        return total / period


class EMA(Slots):
    """``talib.EMA``: seeded with the plain average of the first ``period`` inputs, k=2/(period+1).

    ``skip`` ignores that many leading inputs, which is how TA-Lib's MACD aligns its fast EMA's
    seed window with the end of the slow one. Slots: inputs seen while seeding, their sum, the
    value (NaN while seeding).
    """

    __slots__ = ("period", "_k", "_skip")

    def __init__(self, period: int, skip: int = 0, state: list[float] | None = None) -> None:
        super().__init__(state, [0.0, 0.0, NAN])
        self.period = period
        self._k = 2.0 / (period + 1)
        self._skip = skip

    def update(self, value: float) -> float | None:
        s, i = self.s, self.o
        prev = s[i + 2]
        if prev == prev:
            prev = (value - prev) * self._k + prev
            s[i + 2] = prev
            return prev
        seen = s[i] + 1.0
        s[i] = seen
        if seen <= self._skip:
            return None
        total = s[i + 1] + value
        s[i + 1] = total
        if seen - self._skip < self.period:
            return None
        prev = s[i + 2] = total / self.period
        return prev

    def check(self) -> None:
        check_count(self.s[self.o], self._skip + self.period, "EMA seed")


class MACD:
    """``talib.MACD``: both price EMAs first output on bar ``slow-1`` (the fast one seeded on the
    ``fast`` closes ending there), the signal EMA seeded on the first ``signal`` MACD values, so
    the first output is on bar ``slow + signal - 2``."""

    __slots__ = ("_fast", "_slow", "_signal")

    def __init__(self, fast: int, slow: int, signal: int, state: list[float] | None = None) -> None:
        self._fast = EMA(fast, skip=slow - fast, state=state)
        self._slow = EMA(slow, state=self._fast.s)
        self._signal = EMA(signal, state=self._fast.s)

    def update(self, value: float) -> tuple[float, float, float] | tuple[None, None, None]:
        """(macd, signal, histogram), all None while warming up."""
        fast = self._fast.update(value)
        slow = self._slow.update(value)
        if fast is None or slow is None:
            return NONE3
        macd = fast - slow
        signal = self._signal.update(macd)
        if signal is None:
            return NONE3
        return macd, signal, macd - signal

    def check(self) -> None:
        for ema in (self._fast, self._slow, self._signal):
            ema.check()


class RSI(Slots):
    """``talib.RSI``: Wilder smoothing seeded with the average gain/loss of the first ``period``
    changes; 0 when there was neither gain nor loss (TA-Lib's convention for flat input).
    Slots: the previous value (NaN before the first), changes seen (up to ``period``), the average
    gain and loss."""

    __slots__ = ("period", "_decay")

    def __init__(self, period: int, state: list[float] | None = None) -> None:
        super().__init__(state, [NAN, 0.0, 0.0, 0.0])
        self.period = period
        self._decay = float(period - 1)

    def update(self, value: float) -> float | None:
        s, i = self.s, self.o
        prev = s[i]
        s[i] = value
        if prev != prev:
            return None
        change = value - prev
        gain, loss = s[i + 2], s[i + 3]
        count = s[i + 1]
        if count < self.period:  # seeding: plain sums of the first `period` changes
            count += 1.0
            s[i + 1] = count
        else:  # Wilder: (prev * (period-1) + change) / period, in TA-Lib's order
            gain *= self._decay
            loss *= self._decay
        if change < 0.0:
            loss -= change
        else:
            gain += change
        if count < self.period:
            s[i + 2], s[i + 3] = gain, loss
            return None
        gain /= self.period
        loss /= self.period
        s[i + 2], s[i + 3] = gain, loss
        total = gain + loss
        return 100.0 * (gain / total) if total != 0.0 else 0.0

    def check(self) -> None:
        check_count(self.s[self.o + 1], self.period, "RSI")


def shifted_moments(values: list[float], ref: float) -> tuple[float, float]:
    """(mean of values - ref, population variance), two-pass on values shifted by ``ref``.

    With ``ref`` taken from the window, an all-equal window yields exactly 0 variance (a plain
    mean of equal floats is often off by an ULP), and no E[x^2]-E[x]^2 cancellation can occur.
    """
    offsets = [v - ref for v in values]
    n = len(offsets)
    mean = sum(offsets) / n
    deviations = [d - mean for d in offsets]
    return mean, sum(map(mul, deviations, deviations)) / n


class BollingerBands:
    """``talib.BBANDS(period, dev, dev, SMA)``: TA-Lib's SMA middle band +/- dev population std.

    TA-Lib's deviation does not inherit its SMA's running-sum residue (it stays accurate where
    that drifts), so it is recomputed from the window each bar rather than replayed.
    ``closes``: a shared history of closes (else it keeps its own). Slots: its SMA's.
    """

    __slots__ = ("_sma", "_closes", "_own", "_period", "_dev")

    def __init__(self, period: int, dev: float, closes: History | None = None,
                 state: list[float] | None = None) -> None:
        self._closes, self._own = history_of(period, closes, state)
        self._sma = SMA(period, self._closes)
        self._period = period
        self._dev = float(dev)

    def update(self, value: float) -> tuple[float, float, float] | tuple[None, None, None]:
        """(upper, middle, lower), all None while warming up."""
        if self._own:
            self._closes.append(value)
        middle = self._sma.update(value)
        if middle is None:
            return NONE3
        width = math.sqrt(shifted_moments(self._closes.last(self._period), value)[1]) * self._dev
        return middle + width, middle, middle - width


# --- session, return and distribution indicators ---------------------------------------------


class SessionVWAP(Slots):
    """Volume-weighted typical price (H+L+C)/3 of the regular-hours bars of one New York date.

    Restarts with the first regular bar of each date; None on extended-hours bars and while the
    session's volume is still 0. Slots: the date (NaN before the first regular bar), the sum of
    typical price x volume, the volume.
    """

    __slots__ = ()

    def __init__(self, state: list[float] | None = None) -> None:
        super().__init__(state, [NAN, 0.0, 0.0])

    def update(self, day: int, regular: bool, high: float, low: float, close: float,
               volume: int) -> float | None:
        if not regular:
            return None
        s, i = self.s, self.o
        if day != s[i]:
            s[i], s[i + 1], s[i + 2] = float(day), 0.0, 0.0
        pv = s[i + 1] = s[i + 1] + (high + low + close) / 3.0 * volume
        total = s[i + 2] = s[i + 2] + volume
        return pv / total if total else None

    def check(self) -> None:
        check_count(self.s[self.o + 2], 2.0 ** 53, "VWAP volume")


class Return(Slots):
    """One-bar simple return close / previous close - 1. Slot: the previous close."""

    __slots__ = ()

    def __init__(self, state: list[float] | None = None) -> None:
        super().__init__(state, [NAN])

    def update(self, value: float) -> float | None:
        s, i = self.s, self.o
        prev = s[i]
        s[i] = value
        return None if prev != prev else value / prev - 1.0


class TrailingZScore:
    """z-score of each value against the ``window`` values before it (population std).

    None until ``window`` earlier values exist or when they are all equal (std 0). Slots: its
    ``History``.
    """

    __slots__ = ("_window", "_size")

    def __init__(self, window: int, state: list[float] | None = None) -> None:
        self._window = History(window, state)
        self._size = window

    def update(self, value: float) -> float | None:
        window = self._window
        z = None
        if window.s[window.o] == self._size:
            values = window.last(self._size)
            ref = values[-1]
            mean, variance = shifted_moments(values, ref)
            if variance > 0.0:
                z = ((value - ref) - mean) / math.sqrt(variance)
        window.append(value)
        return z

    def check(self) -> None:
        self._window.check()


class VolumeZScore:
    """z-score of each bar's volume against the ``window`` volumes before it (population std).

    Volumes are integers, so the window sums are kept exactly as Python ints, updated in O(1)
    without drift; they are derived from the window (``check`` recomputes them after a restore),
    never stored. Slots: its ``History`` of volumes as floats (exact below 2**53).
    """

    __slots__ = ("_window", "_size", "_sum", "_sumsq")

    def __init__(self, window: int, state: list[float] | None = None) -> None:
        self._window = History(window, state)
        self._size = window
        self._sum = 0
        self._sumsq = 0

    def update(self, volume: int) -> float | None:
        window = self._window
        z = None
        if window.s[window.o] == self._size:
            n, total = self._size, self._sum
            spread = n * self._sumsq - total * total  # n^2 * variance, exact
            if spread > 0:
                z = (n * volume - total) / math.sqrt(spread)
            oldest = int(window.s[window.end - n])
            self._sum = total - oldest
            self._sumsq -= oldest * oldest
        window.append(float(volume))
        self._sum += volume
        self._sumsq += volume * volume
        return z

    def check(self) -> None:
        """Validates the window and derives the sums from it."""
        window = self._window
        window.check()
        volumes = [int(v) for v in window.last(len(window))]
        self._sum = sum(volumes)
        self._sumsq = sum(v * v for v in volumes)


TREND_CODES = {"down": -1.0, "flat": 0.0, "up": 1.0}
TREND_NAMES = {code: name for name, code in TREND_CODES.items()}


class Trend:
    """Least-squares slope of the last ``window`` closes per bar, divided by their mean.

    "flat" when |slope/mean| <= flat_band, else "up"/"down". The slope pairs symmetric points,
    sum((n-1-2i)/2 * (y[n-1-i] - y[i])) / Sxx, so a flat window gives exactly 0 with no mean needed.
    ``closes``: a shared history of closes (see ``history_of``).
    """

    __slots__ = ("_closes", "_own", "_size", "_weights", "_sxx", "_band")

    def __init__(self, window: int, flat_band: float, closes: History | None = None,
                 state: list[float] | None = None) -> None:
        self._closes, self._own = history_of(window, closes, state)
        self._size = window
        self._weights = tuple((window - 1 - 2 * i) / 2 for i in range(window // 2))
        self._sxx = window * (window * window - 1) / 12
        self._band = flat_band

    def update(self, value: float) -> tuple[str, float] | tuple[None, None]:
        """(trend, slope / mean), both None until the window is full."""
        closes = self._closes
        if self._own:
            closes.append(value)
        size = self._size
        if closes.s[closes.o] < size:
            return None, None
        values = closes.last(size)
        pairs = map(sub, reversed(values), values)  # newest - oldest, inwards
        slope = sum(map(mul, self._weights, pairs)) / self._sxx
        relative = slope / (sum(values) / size)
        if relative > self._band:
            return "up", relative
        if relative < -self._band:
            return "down", relative
        return "flat", relative
