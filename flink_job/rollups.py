"""Event-time OHLCV rollups per symbol, in SQL: tumbling windows aligned to UTC.

A revised bar reaches the enriched stream once per version, each a millisecond later in event time
(see ``pipeline``); window deduplication keeps the latest version of each bar, so a window counts
every bar once, as finally revised.
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
_TS_LEN = len("2024-03-08T14:31:00Z")


def rollup_query(view: str, minutes: int) -> str:
    """SELECT producing ``ROLLUP_FIELDS`` from a view with ``rowtime`` and the bar columns."""
    return f"""
SELECT
  symbol,
  DATE_FORMAT(window_start, {_ISO}) AS window_start,
  DATE_FORMAT(window_end, {_ISO}) AS window_end,
  -- Deduplicated rows reach the aggregate in no particular order and Flink SQL has no ARG_MIN, so
  -- the earliest bar's open (latest bar's close) is taken as MIN (MAX) of "ts + value" strings: the
  -- contract's ts is fixed-width and sorts by time, and a double's string form parses back exactly.
  CAST(SUBSTRING(MIN(CONCAT(ts, CAST(`open` AS STRING))) FROM {_TS_LEN + 1}) AS DOUBLE) AS `open`,
  MAX(high) AS high,
  MIN(low) AS low,
  CAST(SUBSTRING(MAX(CONCAT(ts, CAST(`close` AS STRING))) FROM {_TS_LEN + 1}) AS DOUBLE) AS `close`,
  SUM(volume) AS volume,
  AVG(`close`) AS avg_close,
  SUM((high + low + `close`) / 3 * volume) / NULLIF(CAST(SUM(volume) AS DOUBLE), 0) AS vwap,
  COUNT(*) AS bar_count
FROM (
  SELECT * FROM (
    SELECT symbol, ts, `open`, high, low, `close`, volume, window_start, window_end, rowtime,
      ROW_NUMBER() OVER (PARTITION BY window_start, window_end, symbol, ts ORDER BY rowtime DESC) AS latest
    FROM TABLE(TUMBLE(TABLE {view}, DESCRIPTOR(rowtime), INTERVAL '{minutes}' MINUTES))
  ) WHERE latest = 1
)
GROUP BY symbol, window_start, window_end"""
