"""The bar record the fetcher puts on ``stock_stream_data``: one JSON object per Kinesis record.

    {"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 1.0, "high": 1.0, "low": 1.0,
     "close": 1.0, "volume": 100, "interval": "1min", "source": "alphavantage"}

``ts`` is the bar start in UTC, ISO-8601 with ``Z``; prices are JSON numbers, volume an integer.
The consumer of the stream validates exactly these fields, so this module is the single place where
the fetcher shapes them. Because ``ts`` has a fixed width, string order is time order: the cursor
compares timestamps as strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SOURCE = "alphavantage"


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    ts: str
    open: float
    high: float
    low: float
    close: float
    volume: int
    interval: str = "1min"

    def to_record(self) -> dict:
        return {
            "symbol": self.symbol, "ts": self.ts, "open": self.open, "high": self.high,
            "low": self.low, "close": self.close, "volume": self.volume,
            "interval": self.interval, "source": SOURCE,
        }

    def to_bytes(self) -> bytes:
        """The Kinesis record data: compact JSON, UTF-8."""
        return json.dumps(self.to_record(), separators=(",", ":")).encode()
