"""Event-time OHLCV rollups per symbol, in SQL: tumbling windows aligned to UTC.

A revised bar reaches the enriched stream twice with the same ``ts``; window deduplication keeps the
last version of each bar, so a window counts every bar once, as finally revised.
"""

from __future__ import annotations

from flink_job.schema import DOUBLE, LONG, STRING

ROLLUP_WINDOWS = {"5m": 5, "15m": 15}
ROLLUP_FIELDS = [
    ("symbol", STRING), ("window_start", STRING), ("window_end", STRING), ("open", DOUBLE),
    ("high", DOUBLE), ("low", DOUBLE), ("close", DOUBLE), ("volume", LONG), ("avg_close", DOUBLE),
    ("vwap", DOUBLE), ("bar_count", LONG),
]
_ISO = "'yyyy-MM-dd''T''HH:mm:ss''Z'''"


def rollup_query(view: str, minutes: int) -> str:
    """SELECT producing ``ROLLUP_FIELDS`` from a view with ``rowtime`` and the bar columns."""
    return f"""
SELECT
  symbol,
  DATE_FORMAT(window_start, {_ISO}) AS window_start,
  DATE_FORMAT(window_end, {_ISO}) AS window_end,
  FIRST_VALUE(`open`) AS `open`,
  MAX(high) AS high,
  MIN(low) AS low,
  LAST_VALUE(`close`) AS `close`,
  SUM(volume) AS volume,
  AVG(`close`) AS avg_close,
  SUM((high + low + `close`) / 3 * volume) / NULLIF(CAST(SUM(volume) AS DOUBLE), 0) AS vwap,
  COUNT(*) AS bar_count
FROM (
  SELECT * FROM (
    SELECT symbol, ts, `open`, high, low, `close`, volume, window_start, window_end, window_time,
      ROW_NUMBER() OVER (PARTITION BY window_start, window_end, symbol, ts ORDER BY window_time DESC) AS version
    FROM TABLE(TUMBLE(TABLE {view}, DESCRIPTOR(rowtime), INTERVAL '{minutes}' MINUTES))
  ) WHERE version = 1
)
GROUP BY symbol, window_start, window_end"""
