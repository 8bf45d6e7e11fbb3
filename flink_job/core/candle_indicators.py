"""Indicators and signals on one symbol's final candles of one length (5 or 15 minutes).

A ``CandleIndicators`` is fed the close of each final candle, in order (``close``), and gives the
same indicators as the 1-minute analysis over that series of candle closes: each equals TA-Lib over
the candle closes (``talib.SMA(closes, 20)``, ...), with the periods of ``AnalyticsSettings``, and
None exactly where TA-Lib gives NaN. It reuses the 1-minute indicator classes (``indicators``) and
signal rules (``signals.detect``): on a closed candle, ``macd_cross`` and ``rsi_zone`` fire as on a
1-minute bar and carry the candle's ``timeframe``.

``provisional`` gives the values the open candle would get if it closed now, leaving the state as it
was. The state is one flat list of floats that the indicators update in place (``slots``);
``snapshot``/``restore`` copy it.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

from flink_job.core.bars import format_ts
from flink_job.core.indicators import EMA, MACD, RSI, SMA, AnalyticsSettings, BollingerBands
from flink_job.core.rollups import CLOSE, COUNT, HIGH, LOW, OPEN, START, SUM_CLOSE, SUM_TYPICAL_VOLUME, VOLUME
from flink_job.core.signals import Reading, Signal, SignalState, detect
from flink_job.core.slots import NAN, History, IncompatibleState, decode, encode, fill, snapshot_body, widen_window

# 2: the flat slots, the window of closes at a fixed place and length; version 1 (length-prefixed)
# still restores exactly.
CANDLE_SNAPSHOT_VERSION = 2.0
# The periods that shape a candle snapshot (stored in its header, as the analyzer's are).
CANDLE_PERIOD_FIELDS = ("sma_mid_period", "ema_fast_period", "ema_slow_period", "macd_signal_period",
                        "rsi_period", "bb_period")
DEFAULT_SETTINGS = AnalyticsSettings()
_NO_SIGNALS: tuple[Signal, ...] = ()
_MINUTE_MS = 60_000


class CandleReading(NamedTuple):
    """A candle's indicators (None while warming up), named as the 1-minute ones with the default
    periods; ``provisional`` marks the values of a still open candle; ``signals`` are those of a
    closed candle (none on a provisional reading)."""

    sma_20: float | None
    ema_12: float | None
    ema_26: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    rsi_14: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    provisional: bool = False
    signals: tuple[Signal, ...] = _NO_SIGNALS

    def to_record(self) -> dict:
        """The indicators, ``provisional`` and the signals as JSON-ready values (a non-finite
        number, only possible from absurd inputs, becomes None)."""
        record: dict = {}
        for name in INDICATOR_NAMES:
            value = getattr(self, name)
            record[name] = value if value is None or math.isfinite(value) else None
        record["provisional"] = self.provisional
        record["signals"] = [signal.to_record() for signal in self.signals]
        return record


INDICATOR_NAMES = CandleReading._fields[:10]


@lru_cache(maxsize=8)
def _snapshot_header(settings: AnalyticsSettings) -> tuple[float, ...]:
    return (CANDLE_SNAPSHOT_VERSION, *(float(getattr(settings, name)) for name in CANDLE_PERIOD_FIELDS))


class CandleIndicators:
    """The indicators and signal memory of one symbol's candles of one length (``timeframe``).

    State (``slots``, one flat list of floats): version and periods, the closes, each indicator's
    slots, then the last MACD side and the previous RSI (the only signal memory a candle needs).
    """

    __slots__ = ("settings", "timeframe", "slots", "_closes", "_sma", "_ema_fast", "_ema_slow", "_macd",
                 "_rsi", "_bands", "_memory_at")

    def __init__(self, settings: AnalyticsSettings = DEFAULT_SETTINGS, timeframe: str = "5m") -> None:
        s = settings
        self.settings = settings
        self.timeframe = timeframe
        state = self.slots = list(_snapshot_header(settings))
        # The closes the SMA and the bands look back over, kept once (as in ``analyzer``). The slots'
        # order is the snapshot's; changing it needs a new CANDLE_SNAPSHOT_VERSION.
        self._closes = History(max(s.sma_mid_period, s.bb_period), state)
        self._sma = SMA(s.sma_mid_period, self._closes)
        self._ema_fast = EMA(s.ema_fast_period, state=state)
        self._ema_slow = EMA(s.ema_slow_period, state=state)
        self._macd = MACD(s.ema_fast_period, s.ema_slow_period, s.macd_signal_period, state)
        self._rsi = RSI(s.rsi_period, state)
        self._bands = BollingerBands(s.bb_period, s.bb_stddev, self._closes)
        self._memory_at = len(state)
        state += (0.0, NAN)  # the last MACD side, the previous RSI

    def _update(self, close: float) -> tuple[float | None, ...]:
        """The ten indicator values after ``close``; changes the state."""
        self._closes.append(close)  # before the indicators that read it
        macd, macd_signal, macd_hist = self._macd.update(close)
        bb_upper, bb_middle, bb_lower = self._bands.update(close)
        return (self._sma.update(close), self._ema_fast.update(close), self._ema_slow.update(close), macd,
                macd_signal, macd_hist, self._rsi.update(close), bb_upper, bb_middle, bb_lower)

    def close(self, candle_close: float) -> CandleReading:
        """The reading of a final candle whose close is ``candle_close``, the next in order, with its
        ``macd_cross`` and ``rsi_zone`` signals (the 1-minute rules, see ``signals``)."""
        values = self._update(candle_close)
        s, i = self.slots, self._memory_at
        # Only the MACD lines and the RSI are given, so only macd_cross and rsi_zone can fire.
        signals, memory = detect(
            SignalState(macd_side=int(s[i]), rsi=decode(s[i + 1])),
            Reading(candle_close, None, None, values[3], values[4], values[6], None, None, None, None, None,
                    None, None),
            self.settings)
        s[i], s[i + 1] = float(memory.macd_side), encode(memory.rsi)
        if signals:
            signals = tuple(replace(signal, timeframe=self.timeframe) for signal in signals)
        return CandleReading._make((*values, False, signals))

    def provisional(self, open_candle_close: float) -> CandleReading:
        """The values the open candle would get if it closed now at ``open_candle_close``, marked
        provisional, without signals; the state is left exactly as it was."""
        saved = self.slots[:]
        try:
            values = self._update(open_candle_close)
        finally:
            self.slots[:] = saved
        return CandleReading._make((*values, True, ()))

    def snapshot(self) -> list[float]:
        """The state as a flat list of floats (a copy of the slots, about 50 values)."""
        return self.slots[:]

    @classmethod
    def restore(cls, settings: AnalyticsSettings, snapshot: Iterable[float],
                timeframe: str = "5m") -> CandleIndicators:
        """The ``CandleIndicators`` a ``snapshot`` was taken from. Raises ``IncompatibleState`` if the
        snapshot has another version, was taken under other periods, or is malformed."""
        candles = cls(settings, timeframe)
        values = list(snapshot)
        header = _snapshot_header(settings)
        body = snapshot_body(values, (1.0, CANDLE_SNAPSHOT_VERSION), header, CANDLE_PERIOD_FIELDS, "candle snapshot")
        slots = candles.slots
        try:
            if values[0] == 1.0:  # its closes were length-prefixed
                it = iter(body)
                body = widen_window(it, candles._closes.size) + list(it)
            fill(slots, len(header), body, "candle snapshot")
            for part in (candles._closes, candles._ema_fast, candles._ema_slow, candles._macd, candles._rsi):
                part.check()
            macd_side = slots[candles._memory_at]
            if macd_side not in (-1.0, 0.0, 1.0):
                raise ValueError(f"MACD side {macd_side} is not -1, 0 or 1")
        except StopIteration:
            raise IncompatibleState("malformed", "candle snapshot is truncated") from None
        except IncompatibleState:
            raise
        except (ValueError, OverflowError) as err:  # a window that does not fit, a NaN count
            raise IncompatibleState("malformed", f"candle snapshot: {err}") from None
        return candles


def candle_record(symbol: str, timeframe: str, minutes: int, window: Sequence[float],
                  reading: CandleReading) -> dict:
    """A candle (a ``rollups`` window with all its bars) and its reading as one JSON-ready dict: the
    fields of a ``stock-bars-*`` document, ``timeframe``, the indicators, ``provisional`` and the
    signals."""
    start = int(window[START])
    volume = window[VOLUME]
    record = {
        "symbol": symbol, "timeframe": timeframe, "window_start": format_ts(start),
        "window_end": format_ts(start + minutes * _MINUTE_MS), "open": window[OPEN], "high": window[HIGH],
        "low": window[LOW], "close": window[CLOSE], "volume": int(volume),
        "avg_close": window[SUM_CLOSE] / window[COUNT],
        "vwap": window[SUM_TYPICAL_VOLUME] / volume if volume else None, "bar_count": int(window[COUNT]),
    }
    record.update(reading.to_record())
    return record
