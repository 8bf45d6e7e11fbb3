"""Incremental technical indicators for one symbol's bar stream.

Each class takes one value per bar through ``update`` and keeps only the bounded window it needs,
so per-symbol state stays small and checkpoints as a flat list of floats (``dump``/``load``).

The TA-Lib-equivalent indicators reproduce TA-Lib on the same input sequence. Where TA-Lib's
answer depends on its order of float operations (running window sums, EMA recursion, Wilder
smoothing), the same operations are replayed in the same order: SMA, EMA and the MACD line come
out bit-identical to ``talib`` however long the series; RSI, the MACD signal and the Bollinger
width agree to about 1e-12 relative.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from itertools import islice
from operator import mul, sub
from zoneinfo import ZoneInfo

from flink_job.core.patterns import DEFAULT_SIGNAL_MIN_STRENGTH, DEFAULT_SIGNAL_PATTERNS, PATTERN_NAMES

NAN = math.nan
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


# --- snapshot encoding: None travels as NaN, counts as floats --------------------------------


def encode(value: float | None) -> float:
    return NAN if value is None else value


def decode(value: float) -> float | None:
    return None if value != value else value


def dump_window(out: list[float], window: deque) -> None:
    """Append ``window`` length-prefixed; its values are floats already (see ``VolumeZScore``)."""
    out.append(float(len(window)))
    out += window


def load_window(it: Iterator[float], window: deque) -> None:
    """Refill ``window`` from a length-prefixed run of floats."""
    count = int(next(it))
    if not 0 <= count <= (window.maxlen or 0):
        raise ValueError(f"window of {count} values does not fit maxlen {window.maxlen}")
    window.clear()
    window.extend(islice(it, count))
    if len(window) != count:
        raise ValueError("snapshot is truncated")


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


# A history of the latest closes (a deque) can be shared by the indicators that look back over a
# window of closes: a bar appends its close once, and a snapshot holds each close once. Its owner
# appends each value before updating the indicators that read it; an indicator built without one
# keeps and appends to its own.


def history_of(period: int, closes: deque | None) -> tuple[deque, bool]:
    """(the closes an indicator over ``period`` values reads, whether it owns them)."""
    if closes is None:
        return deque(maxlen=period), True
    if (closes.maxlen or 0) < period:
        raise ValueError(f"a history of {closes.maxlen} closes is shorter than the period {period}")
    return closes, False


class SMA:
    """``talib.SMA``: TA-Lib's running window sum, replayed operation for operation.

    TA-Lib adds the new value, divides, then subtracts the value leaving the window; the rounding
    residue that running sum carries is part of TA-Lib's answer. Replaying it keeps results
    bit-identical on any series, whereas an exactly recomputed window sum drifts *away* from TA-Lib
    once prices fall by orders of magnitude (~6e-5 relative on a 1e6 -> 1e-4 series).
    ``closes``: a shared history of closes (see ``history_of``).
    """

    __slots__ = ("period", "_closes", "_own", "_total")

    def __init__(self, period: int, closes: deque | None = None) -> None:
        self.period = period
        self._closes, self._own = history_of(period, closes)
        self._total = 0.0  # the running sum of the last period - 1 values before this one

    def update(self, value: float) -> float | None:
        closes = self._closes
        if self._own:
            closes.append(value)
        total = self._total + value
        if len(closes) < self.period:
            self._total = total
            return None
        self._total = total - closes[-self.period]
        return total / self.period

    def dump(self, out: list[float]) -> None:
        out.append(self._total)
        if self._own:
            dump_window(out, self._closes)

    def load(self, it: Iterator[float]) -> None:
        self._total = next(it)
        if self._own:
            load_window(it, self._closes)


class EMA:
    """``talib.EMA``: seeded with the plain average of the first ``period`` inputs, k=2/(period+1).

    ``skip`` ignores that many leading inputs, which is how TA-Lib's MACD aligns its fast EMA's
    seed window with the end of the slow one.
    """

    __slots__ = ("period", "_k", "_skip", "_seen", "_sum", "_value")

    def __init__(self, period: int, skip: int = 0) -> None:
        self.period = period
        self._k = 2.0 / (period + 1)
        self._skip = skip
        self._seen = 0
        self._sum = 0.0
        self._value: float | None = None

    def update(self, value: float) -> float | None:
        prev = self._value
        if prev is not None:
            prev = (value - prev) * self._k + prev
            self._value = prev
            return prev
        self._seen += 1
        if self._seen <= self._skip:
            return None
        self._sum += value
        if self._seen - self._skip < self.period:
            return None
        self._value = self._sum / self.period
        return self._value

    def dump(self, out: list[float]) -> None:
        out += (float(self._seen), self._sum, encode(self._value))

    def load(self, it: Iterator[float]) -> None:
        self._seen = int(next(it))
        self._sum = next(it)
        self._value = decode(next(it))


class MACD:
    """``talib.MACD``: both price EMAs first output on bar ``slow-1`` (the fast one seeded on the
    ``fast`` closes ending there), the signal EMA seeded on the first ``signal`` MACD values, so
    the first output is on bar ``slow + signal - 2``."""

    __slots__ = ("_fast", "_slow", "_signal")

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self._fast = EMA(fast, skip=slow - fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)

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

    def dump(self, out: list[float]) -> None:
        self._fast.dump(out)
        self._slow.dump(out)
        self._signal.dump(out)

    def load(self, it: Iterator[float]) -> None:
        self._fast.load(it)
        self._slow.load(it)
        self._signal.load(it)


class RSI:
    """``talib.RSI``: Wilder smoothing seeded with the average gain/loss of the first ``period``
    changes; 0 when there was neither gain nor loss (TA-Lib's convention for flat input)."""

    __slots__ = ("period", "_decay", "_prev", "_count", "_gain", "_loss")

    def __init__(self, period: int) -> None:
        self.period = period
        self._decay = float(period - 1)
        self._prev: float | None = None
        self._count = 0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, value: float) -> float | None:
        prev = self._prev
        self._prev = value
        if prev is None:
            return None
        change = value - prev
        gain, loss = self._gain, self._loss
        if self._count < self.period:  # seeding: plain sums of the first `period` changes
            self._count += 1
        else:  # Wilder: (prev * (period-1) + change) / period, in TA-Lib's order
            gain *= self._decay
            loss *= self._decay
        if change < 0.0:
            loss -= change
        else:
            gain += change
        if self._count < self.period:
            self._gain, self._loss = gain, loss
            return None
        gain /= self.period
        loss /= self.period
        self._gain, self._loss = gain, loss
        total = gain + loss
        return 100.0 * (gain / total) if total != 0.0 else 0.0

    def dump(self, out: list[float]) -> None:
        out += (encode(self._prev), float(self._count), self._gain, self._loss)

    def load(self, it: Iterator[float]) -> None:
        self._prev = decode(next(it))
        self._count = int(next(it))
        self._gain = next(it)
        self._loss = next(it)


def shifted_moments(values: Iterable[float], ref: float) -> tuple[float, float]:
    """(mean of values - ref, population variance), two-pass on values shifted by ``ref``.

    With ``ref`` taken from the window, an all-equal window yields exactly 0 variance (a plain
    mean of equal floats is often off by an ULP), and no E[x^2]-E[x]^2 cancellation can occur.
    """
    offsets = [v - ref for v in values]
    n = len(offsets)
    mean = sum(offsets) / n
    return mean, sum([(d - mean) * (d - mean) for d in offsets]) / n


def latest(closes: deque, count: int) -> islice:
    """The last ``count`` values of ``closes``, oldest first."""
    return islice(closes, len(closes) - count, None)


class BollingerBands:
    """``talib.BBANDS(period, dev, dev, SMA)``: TA-Lib's SMA middle band +/- dev population std.

    TA-Lib's deviation does not inherit its SMA's running-sum residue (it stays accurate where
    that drifts), so it is recomputed from the window each bar rather than replayed.
    ``closes``: a shared history of closes (see ``history_of``).
    """

    __slots__ = ("_sma", "_closes", "_own", "_period", "_dev")

    def __init__(self, period: int, dev: float, closes: deque | None = None) -> None:
        self._closes, self._own = history_of(period, closes)
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
        width = math.sqrt(shifted_moments(latest(self._closes, self._period), value)[1]) * self._dev
        return middle + width, middle, middle - width

    def dump(self, out: list[float]) -> None:
        self._sma.dump(out)
        if self._own:
            dump_window(out, self._closes)

    def load(self, it: Iterator[float]) -> None:
        self._sma.load(it)
        if self._own:
            load_window(it, self._closes)


# --- session, return and distribution indicators ---------------------------------------------


class SessionVWAP:
    """Volume-weighted typical price (H+L+C)/3 of the regular-hours bars of one New York date.

    Restarts with the first regular bar of each date; None on extended-hours bars and while the
    session's volume is still 0.
    """

    __slots__ = ("_day", "_pv", "_volume")

    def __init__(self) -> None:
        self._day: int | None = None
        self._pv = 0.0
        self._volume = 0

    def update(self, day: int, regular: bool, high: float, low: float, close: float,
               volume: int) -> float | None:
        if not regular:
            return None
        if day != self._day:
            self._day, self._pv, self._volume = day, 0.0, 0
        self._pv += (high + low + close) / 3.0 * volume
        self._volume += volume
        return self._pv / self._volume if self._volume else None

    def dump(self, out: list[float]) -> None:
        out += (NAN if self._day is None else float(self._day), self._pv, float(self._volume))

    def load(self, it: Iterator[float]) -> None:
        day = next(it)
        self._day = None if day != day else int(day)
        self._pv = next(it)
        self._volume = int(next(it))


class Return:
    """One-bar simple return close / previous close - 1."""

    __slots__ = ("_prev",)

    def __init__(self) -> None:
        self._prev: float | None = None

    def update(self, value: float) -> float | None:
        prev = self._prev
        self._prev = value
        return None if prev is None else value / prev - 1.0

    def dump(self, out: list[float]) -> None:
        out.append(encode(self._prev))

    def load(self, it: Iterator[float]) -> None:
        self._prev = decode(next(it))


class TrailingZScore:
    """z-score of each value against the ``window`` values before it (population std).

    None until ``window`` earlier values exist or when they are all equal (std 0).
    """

    __slots__ = ("_window", "_size")

    def __init__(self, window: int) -> None:
        self._window: deque[float] = deque(maxlen=window)
        self._size = window

    def update(self, value: float) -> float | None:
        window = self._window
        z = None
        if len(window) == self._size:
            ref = window[-1]
            mean, variance = shifted_moments(window, ref)
            if variance > 0.0:
                z = ((value - ref) - mean) / math.sqrt(variance)
        window.append(value)
        return z

    def dump(self, out: list[float]) -> None:
        dump_window(out, self._window)

    def load(self, it: Iterator[float]) -> None:
        load_window(it, self._window)


class VolumeZScore:
    """z-score of each bar's volume against the ``window`` volumes before it (population std).

    Volumes are integers, so the window sums are kept exactly and updated in O(1) without drift.
    The window holds them as floats (exact below 2**53), ready for a snapshot.
    """

    __slots__ = ("_window", "_size", "_sum", "_sumsq")

    def __init__(self, window: int) -> None:
        self._window: deque[float] = deque(maxlen=window)
        self._size = window
        self._sum = 0
        self._sumsq = 0

    def update(self, volume: int) -> float | None:
        window = self._window
        z = None
        if len(window) == self._size:
            n, total = self._size, self._sum
            spread = n * self._sumsq - total * total  # n^2 * variance, exact
            if spread > 0:
                z = (n * volume - total) / math.sqrt(spread)
            oldest = int(window[0])
            self._sum = total - oldest
            self._sumsq -= oldest * oldest
        window.append(float(volume))
        self._sum += volume
        self._sumsq += volume * volume
        return z

    def dump(self, out: list[float]) -> None:
        dump_window(out, self._window)

    def load(self, it: Iterator[float]) -> None:
        load_window(it, self._window)
        volumes = [int(v) for v in self._window]
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

    def __init__(self, window: int, flat_band: float, closes: deque | None = None) -> None:
        self._closes, self._own = history_of(window, closes)
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
        if len(closes) < size:
            return None, None
        pairs = map(sub, reversed(closes), latest(closes, size))  # newest - oldest, inwards
        slope = sum(map(mul, self._weights, pairs)) / self._sxx
        relative = slope / (sum(latest(closes, size)) / size)
        if relative > self._band:
            return "up", relative
        if relative < -self._band:
            return "down", relative
        return "flat", relative

    def dump(self, out: list[float]) -> None:
        if self._own:
            dump_window(out, self._closes)

    def load(self, it: Iterator[float]) -> None:
        if self._own:
            load_window(it, self._closes)
