"""Per-symbol analytics: one ``Analyzer`` turns each ``Bar`` into an ``Enriched`` record.

The streaming layer keeps one analyzer (or its ``snapshot``) per symbol and feeds bars in order;
duplicates, revisions and late bars are its business (it re-applies a bar to the snapshot taken
before it), so ``update`` has no revision logic. ``restore(settings, snapshot())`` followed by
``update`` gives exactly what continuing the original would.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from itertools import islice

from flink_job.core.bars import Bar
from flink_job.core.indicators import (
    PERIOD_FIELDS, EMA, MACD, RSI, SMA, TREND_CODES, TREND_NAMES, AnalyticsSettings, BollingerBands, Return,
    SessionVWAP, Trend, TrailingZScore, VolumeZScore, new_york_session,
)
from flink_job.core.patterns import SNAPSHOT_LEN, CandlePatterns, pattern_signals
from flink_job.core.signals import STATE_SIZE, Reading, Signal, SignalState, detect
from flink_job.core.slots import NAN, History, IncompatibleState, encode, fill, snapshot_body, widen_window

REGULAR = "regular"
CANDLE_PATTERN = "candle_pattern"  # the signal type of a candlestick pattern (detail: its TA-Lib name)
EXTENDED = "extended"
# 2: one history of closes instead of a window per indicator; 3: the candlestick patterns' state at
# the end (a version 1 or 2 snapshot restores with the patterns' warm-up, 13 bars, starting again);
# 4: the analyzer's own flat slots, each window at a fixed place and length (``History``) instead of
# length-prefixed. Versions 1 to 3 still restore exactly.
SNAPSHOT_VERSION = 4.0
# After the closes and the two z-score windows, the scalars of a version 2 or 3 snapshot, as version 4
# keeps them: the three SMAs' sums, two EMAs, the MACD's three EMAs, RSI, the bands' SMA, VWAP.
_SCALARS = 3 + 3 + 3 + 9 + 4 + 1 + 3
DEFAULT_SETTINGS = AnalyticsSettings()


@dataclass(slots=True)  # not frozen, as bars.Bar: built per bar, never changed once built
class Enriched:
    """A bar with its indicators (None while warming up or not applicable) and signals."""

    symbol: str
    ts: str
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    interval: str
    source: str
    session: str  # "regular" (09:30 <= New York time < 16:00) or "extended"
    return_1: float | None
    return_z_20: float | None  # return_1's z-score against the previous returns (price_anomaly)
    volume_z_20: float | None
    sma_5: float | None
    sma_20: float | None
    sma_50: float | None
    ema_12: float | None
    ema_26: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    rsi_14: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    vwap: float | None
    trend: str | None  # "up", "down" or "flat"
    trend_slope: float | None  # least-squares slope per bar / mean close, over the trend window
    patterns: dict[str, int]  # TA-Lib candlestick function -> its non-zero output for this bar
    signals: tuple[Signal, ...]

    def to_record(self) -> dict:
        """A plain JSON-ready dict; ts_ms is left out as in the bar contract, and a non-finite
        number (only possible from absurd inputs) becomes None."""
        record = {}
        for name in RECORD_FIELDS:
            value = getattr(self, name)
            if value.__class__ is float and not math.isfinite(value):
                value = None
            record[name] = value
        record["signals"] = [signal.to_record() for signal in self.signals]
        return record


RECORD_FIELDS = tuple(f.name for f in fields(Enriched) if f.name not in ("ts_ms", "signals"))


@lru_cache(maxsize=8)
def _snapshot_header(settings: AnalyticsSettings) -> tuple[float, ...]:
    """A snapshot's leading values: the version and the periods that shape it."""
    return (SNAPSHOT_VERSION, *settings.state_key())  # a tuple: the cache shares it


class Analyzer:
    """Indicators and signals of one symbol, updated bar by bar with bounded state.

    The whole state is one flat list of floats (``slots``), which every indicator updates in place:
    the snapshot header (version and periods), the history of closes, each indicator's slots in a
    fixed order, the signal memory and the candlestick patterns. A snapshot is a copy of it.
    """

    __slots__ = ("settings", "slots", "_return", "_return_z", "_volume_z", "_sma_short", "_sma_mid",
                 "_sma_long", "_ema_fast", "_ema_slow", "_macd", "_rsi", "_bands", "_vwap",
                 "_trend", "_closes", "_signal_at", "_memory", "_patterns", "_checked")

    def __init__(self, settings: AnalyticsSettings = DEFAULT_SETTINGS) -> None:
        s = settings
        self.settings = settings
        state = self.slots = list(_snapshot_header(settings))
        # The closes the moving averages, the bands and the trend look back over, kept once. The
        # slots' order below is the snapshot's; changing it needs a new SNAPSHOT_VERSION.
        self._closes = History(max(s.sma_short_period, s.sma_mid_period, s.sma_long_period, s.bb_period,
                                   s.trend_window), state)
        self._return = Return(state)
        self._return_z = TrailingZScore(s.zscore_window, state)
        self._volume_z = VolumeZScore(s.zscore_window, state)
        self._sma_short = SMA(s.sma_short_period, self._closes)
        self._sma_mid = SMA(s.sma_mid_period, self._closes)
        self._sma_long = SMA(s.sma_long_period, self._closes)
        self._ema_fast = EMA(s.ema_fast_period, state=state)
        self._ema_slow = EMA(s.ema_slow_period, state=state)
        self._macd = MACD(s.ema_fast_period, s.ema_slow_period, s.macd_signal_period, state)
        self._rsi = RSI(s.rsi_period, state)
        self._bands = BollingerBands(s.bb_period, s.bb_stddev, self._closes)
        self._vwap = SessionVWAP(state)
        self._trend = Trend(s.trend_window, s.trend_flat_band, self._closes)
        # The signal memory (``signals.SignalState``): four sides, the previous RSI, the trend code.
        self._signal_at = len(state)
        state += (0.0, 0.0, 0.0, 0.0, NAN, NAN)
        self._memory = SignalState()  # the same, as ``detect`` takes it
        self._patterns = CandlePatterns(state)
        # Validators of a restored state, in slot order (the volume z-score also rebuilds its sums).
        self._checked = (self._closes, self._return_z, self._volume_z, self._ema_fast, self._ema_slow,
                         self._macd, self._rsi, self._vwap, self._patterns)

    def update(self, bar: Bar) -> Enriched:
        close = bar.close
        self._closes.append(close)  # before the indicators that read it
        day, regular = new_york_session(bar.ts_ms)
        return_1 = self._return.update(close)
        return_z = None if return_1 is None else self._return_z.update(return_1)
        volume_z = self._volume_z.update(bar.volume)
        sma_mid = self._sma_mid.update(close)
        sma_long = self._sma_long.update(close)
        macd, macd_signal, macd_hist = self._macd.update(close)
        rsi = self._rsi.update(close)
        bb_upper, bb_middle, bb_lower = self._bands.update(close)
        trend, trend_slope = self._trend.update(close)
        vwap = self._vwap.update(day, regular, bar.high, bar.low, close, bar.volume)
        signals, memory = detect(
            self._memory,
            Reading(close, sma_mid, sma_long, macd, macd_signal, rsi, bb_upper, bb_lower,
                    volume_z, return_1, return_z, trend, trend_slope),
            self.settings)
        self._memory = memory
        i = self._signal_at
        self.slots[i:i + STATE_SIZE] = (float(memory[0]), float(memory[1]), float(memory[2]), float(memory[3]),
                                        encode(memory[4]), NAN if memory[5] is None else TREND_CODES[memory[5]])
        patterns = self._patterns.update(bar.open, bar.high, bar.low, close)
        if patterns:
            signals = self._with_pattern_signals(signals, patterns)
        return Enriched(
            bar.symbol, bar.ts, bar.ts_ms, bar.open, bar.high, bar.low, close, bar.volume,
            bar.interval, bar.source, REGULAR if regular else EXTENDED, return_1, return_z,
            volume_z, self._sma_short.update(close), sma_mid, sma_long,
            self._ema_fast.update(close), self._ema_slow.update(close), macd, macd_signal,
            macd_hist, rsi, bb_upper, bb_middle, bb_lower, vwap, trend, trend_slope, patterns, signals)

    def _with_pattern_signals(self, signals: tuple[Signal, ...], patterns: dict[str, int]) -> tuple[Signal, ...]:
        s = self.settings
        found = pattern_signals(patterns, s.signal_patterns, s.pattern_min_strength)
        if not found:
            return signals
        return signals + tuple(Signal(CANDLE_PATTERN, "up" if value > 0 else "down", float(value), name)
                               for name, value in found)

    def snapshot(self) -> list[float]:
        """The whole state as a flat list of floats: a copy of the slots."""
        return self.slots[:]

    @classmethod
    def restore(cls, settings: AnalyticsSettings, snapshot: Iterable[float]) -> Analyzer:
        """The analyzer a ``snapshot`` was taken from. Raises ``IncompatibleState`` if the snapshot
        has another layout version, was taken under other periods, or is malformed."""
        analyzer = cls(settings)
        values = snapshot if isinstance(snapshot, list) else list(snapshot)
        header = _snapshot_header(settings)
        body = snapshot_body(values, (1.0, 2.0, 3.0, SNAPSHOT_VERSION), header, PERIOD_FIELDS, "analysis snapshot")
        slots = analyzer.slots
        try:
            if values[0] != SNAPSHOT_VERSION:
                body = analyzer._widened(iter(body), values[0])
            fill(slots, len(header), body, "analysis snapshot")
            for part in analyzer._checked:
                part.check()
            i = analyzer._signal_at
            for side in slots[i:i + 4]:
                if side not in (-1.0, 0.0, 1.0):
                    raise ValueError(f"signal side {side!r} is not -1, 0 or 1")
            if slots[i + 5] == slots[i + 5] and slots[i + 5] not in TREND_NAMES:
                raise IncompatibleState("malformed", "snapshot has an unknown trend code")
            analyzer._memory = SignalState(int(slots[i]), int(slots[i + 1]), int(slots[i + 2]), int(slots[i + 3]),
                                           None if slots[i + 4] != slots[i + 4] else slots[i + 4],
                                           TREND_NAMES.get(slots[i + 5]))
        except StopIteration:
            raise IncompatibleState("malformed", "snapshot is truncated") from None
        except IncompatibleState:
            raise
        except (ValueError, OverflowError) as err:  # a window that does not fit its period, a NaN count
            raise IncompatibleState("malformed", str(err)) from None
        return analyzer

    def _widened(self, it: Iterator[float], version: float) -> list[float]:
        """The body of a version 1 to 3 snapshot (after its header) in this layout: its
        length-prefixed windows at their fixed lengths; a version 1 or 2 snapshot, which had no
        candlestick patterns, gets their empty slots (their short warm-up starts again)."""
        if version == 1.0:
            it = iter(_version_1_body(it))
        zscore = self.settings.zscore_window
        body = widen_window(it, self._closes.size)
        body.append(next(it))  # the previous close (``Return``)
        body += widen_window(it, zscore)
        body += widen_window(it, zscore)
        body += islice(it, _SCALARS + STATE_SIZE)
        body += islice(it, SNAPSHOT_LEN) if version == 3.0 else CandlePatterns().snapshot()
        body += it  # trailing values: the length check rejects them
        return body


def _version_1_body(it: Iterator[float]) -> list[float]:
    """The rest of a version 1 snapshot, which kept one window of closes per indicator, in the
    current layout: its longest close window becomes the history (the others are its suffixes, and
    it holds every close an indicator reads), so a state saved before the change continues exactly.
    """
    def window() -> list[float]:
        count = int(next(it))
        values = list(islice(it, count))
        if len(values) != count:
            raise ValueError("snapshot is truncated")
        return values

    previous_close, returns, volumes = next(it), window(), window()
    sma_totals, closes = [], []
    for _ in range(3):  # short, mid and long SMA: running total, window
        sma_totals.append(next(it))
        closes.append(window())
    averages = [next(it) for _ in range(3 + 3 + 9 + 4)]  # fast and slow EMA, MACD, RSI
    bands_total = next(it)
    closes += (window(), window())  # the bands' SMA window, the bands' window
    vwap = [next(it) for _ in range(3)]
    closes.append(window())  # the trend's
    history = max(closes, key=len)
    return [float(len(history)), *history, previous_close, float(len(returns)), *returns,
            float(len(volumes)), *volumes, *sma_totals, *averages, bands_total, *vwap, *it]
