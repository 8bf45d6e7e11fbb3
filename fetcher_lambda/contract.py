"""The bar record the fetcher puts on ``stock_stream_data``: one JSON object per Kinesis record.

Versions (each a superset of the one before, so consumers of an older one keep working):

v1::

    {"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 1.0, "high": 1.0, "low": 1.0,
     "close": 1.0, "volume": 100, "interval": "1min", "source": "alphavantage"}

``ts`` is the bar start in UTC, ISO-8601 with ``Z``; prices are JSON numbers, volume an integer.
Because ``ts`` has a fixed width, string order is time order: the cursor compares timestamps as
strings. (symbol, ts) identifies a bar. ``source`` is ``alphavantage`` for fetched bars and
``replay`` for the shipped sample data put by ``--replay``.

v2: v1 plus an optional ``"basis": N`` (an integer >= 0), the symbol's price basis number. Prices
are Alpha Vantage's adjusted prices (``adjusted=true``, the default): when a split or dividend
happens, Alpha Vantage re-bases the symbol's history. The fetcher notices it (the last two bars it
sent come back with their closes scaled by one factor other than 1), increments the symbol's basis,
and re-sends the whole series it can fetch (``outputsize=full``), oldest first, at the new basis;
every later bar carries that basis too. A consumer restarts the symbol's analysis at a bar whose
basis is above the one it knows, and drops a bar whose basis is below it (``stale_basis``).
``basis`` is left out while it is 0, so a symbol that was never re-based looks exactly like v1;
a record without ``basis`` (v1, backfills, the sample replay) is taken at the symbol's current basis.

The consumer of the stream validates these fields, so this module is the single place where the
fetcher shapes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SOURCE = "alphavantage"
# The shipped sample data put by ``--replay``: old by design, so the dashboard calls it a replay, not stale.
REPLAY_SOURCE = "replay"
VERSION = 2


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

    def to_record(self, basis: int = 0, source: str = SOURCE) -> dict:
        record = {
            "symbol": self.symbol, "ts": self.ts, "open": self.open, "high": self.high,
            "low": self.low, "close": self.close, "volume": self.volume,
            "interval": self.interval, "source": source,
        }
        if basis:
            record["basis"] = basis
        return record

    def to_bytes(self, basis: int = 0, source: str = SOURCE) -> bytes:
        """The Kinesis record data: compact JSON, UTF-8."""
        return json.dumps(self.to_record(basis, source), separators=(",", ":")).encode()
