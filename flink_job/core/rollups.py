"""Per-symbol OHLCV rollups (5 and 15 minutes, aligned to UTC), kept by each symbol's tracker.

Why not SQL windows: an event-time window closes on its subtask's watermark, which every symbol of
the subtask shares, so a symbol that lags the others (a one-symbol backfill while the rest stream
live) got no rollups at all. Flink SQL has no per-key event time. Here a symbol's windows move with
its own bars only: a window is whatever its bars made it, whatever the other symbols do.

The open window is emitted with every accepted bar and upserted by (symbol, window_start), so a
dashboard sees the current candle grow and the last version of each window is its final candle.
The tracker keeps, per window length, the aggregate of the open window's bars *before* the latest
bar; the latest bar is added when emitting. A revision replaces only the latest bar, so it counts
once, as revised. A bar older than the latest never reaches a window (it is late).

A window is a flat list of floats (``WINDOW_LEN``), so it fits the tracker's float state as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

ROLLUP_WINDOWS = {"5m": 5, "15m": 15}
# A window: its start, its OHLCV, and the sums its average close and VWAP come from.
START, OPEN, HIGH, LOW, CLOSE, VOLUME, SUM_CLOSE, SUM_TYPICAL_VOLUME, COUNT = range(9)
WINDOW_LEN = 9
# A window that was open before its symbol's state kept windows: its earlier bars are unknown, so it
# is never emitted (a partial candle would overwrite the real one).
INCOMPLETE = -1.0
_MINUTE_MS = 60_000


def window_start(ts_ms: int, minutes: int) -> int:
    return ts_ms - ts_ms % (minutes * _MINUTE_MS)


def empty_window(ts_ms: int, minutes: int) -> list[float]:
    return [float(window_start(ts_ms, minutes)), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def incomplete_window(ts_ms: int, minutes: int) -> list[float]:
    window = empty_window(ts_ms, minutes)
    window[COUNT] = INCOMPLETE
    return window


def add_bar(window: list[float], bar: tuple[float, ...]) -> list[float]:
    """``window`` with ``bar`` (ts_ms, open, high, low, close, volume), a later bar of the same window,
    added: a new list. An incomplete window stays incomplete."""
    _, o, h, l, c, v = bar
    count = window[COUNT]
    if count == INCOMPLETE:
        return window
    if count == 0:  # floats throughout, as the packed state and row hold them
        return [window[START], o, h, l, c, float(v), c, (h + l + c) / 3 * v, 1.0]
    return [window[START], window[OPEN], max(window[HIGH], h), min(window[LOW], l), c, window[VOLUME] + v,
            window[SUM_CLOSE] + c, window[SUM_TYPICAL_VOLUME] + (h + l + c) / 3 * v, count + 1]


def rollup_query(view: str, at: Callable[[int], str], minutes: int, timeframe: str,
                 indicators: Mapping[str, str | None]) -> str:
    """SELECT producing ``schema.ROLLUP_FIELDS`` from a view with ``symbol`` and a window whose value
    ``index`` (START, OPEN, ...) is the SQL ``at(index)``: NULL when there is none (an incomplete open
    window, or no candle closed). ``indicators`` maps each candle indicator to its SQL, or all of them
    to None: the open candle, still growing, has none and is ``provisional``."""
    start = f"TO_TIMESTAMP_LTZ(CAST({at(START)} AS BIGINT), 3)"
    iso = "'yyyy-MM-dd''T''HH:mm:ss''Z'''"
    provisional = "TRUE" if all(sql is None for sql in indicators.values()) else "FALSE"
    values = ",\n  ".join(f"{sql or 'CAST(NULL AS DOUBLE)'} AS `{name}`" for name, sql in indicators.items())
    return f"""
SELECT
  symbol,
  DATE_FORMAT({start}, {iso}) AS window_start,
  DATE_FORMAT({start} + INTERVAL '{minutes}' MINUTE, {iso}) AS window_end,
  {at(OPEN)} AS `open`,
  {at(HIGH)} AS high,
  {at(LOW)} AS low,
  {at(CLOSE)} AS `close`,
  CAST({at(VOLUME)} AS BIGINT) AS volume,
  {at(SUM_CLOSE)} / {at(COUNT)} AS avg_close,
  {at(SUM_TYPICAL_VOLUME)} / NULLIF({at(VOLUME)}, 0) AS vwap,
  CAST({at(COUNT)} AS BIGINT) AS bar_count,
  '{timeframe}' AS timeframe,
  {provisional} AS provisional,
  {values}
FROM {view}
WHERE {at(START)} IS NOT NULL"""
