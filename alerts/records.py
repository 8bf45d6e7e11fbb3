"""An enriched record from ``stock_sma_stream`` into what alerts need: the bar and its signals.

The record contract is the job's (README, "What the job emits"): one JSON object per record with
the bar's fields, the indicators and ``signals``, a list of ``{type, direction, value, detail,
timeframe}`` (``timeframe`` came later: a record without it is of 1-minute signals).
Anything that does not fit is ``Malformed`` with a reason; the caller logs it and moves on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

SYMBOL = re.compile(r"^[A-Z0-9.\-]{1,12}$")


class Malformed(ValueError):
    """The record cannot be read as an enriched record; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Signal:
    type: str
    direction: str
    value: float | None
    detail: str
    timeframe: str = "1m"  # the candle length it was found on: 1m, 5m or 15m


@dataclass(frozen=True, slots=True)
class SignalRecord:
    symbol: str
    ts: str  # the bar's start, ISO-8601 UTC with Z
    ts_ms: int
    close: float | None
    signals: tuple[Signal, ...]


def parse_record(data: bytes) -> SignalRecord:
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Malformed("not_json", str(err)[:200]) from None
    if not isinstance(record, dict):
        raise Malformed("not_object", f"a JSON {type(record).__name__}, not an object")
    symbol, ts, signals = record.get("symbol"), record.get("ts"), record.get("signals", [])
    if not isinstance(symbol, str) or not SYMBOL.match(symbol):
        raise Malformed("bad_symbol", f"symbol {symbol!r} is not a ticker symbol")
    if not isinstance(ts, str):
        raise Malformed("missing_field", "no ts")
    try:
        ts_ms = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp() * 1000)
    except ValueError:
        raise Malformed("bad_ts", f"ts {ts[:40]!r} is not ISO-8601") from None
    if signals is None:
        signals = []
    if not isinstance(signals, list):
        raise Malformed("bad_type", "signals is not a list")
    close = record.get("close")
    close = float(close) if isinstance(close, (int, float)) and not isinstance(close, bool) else None
    return SignalRecord(symbol, ts, ts_ms, close, tuple(_signal(s) for s in signals))


def _signal(raw: object) -> Signal:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or not isinstance(raw.get("direction"), str):
        raise Malformed("bad_signal", f"a signal without type and direction: {str(raw)[:200]}")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        value = None
    detail, timeframe = raw.get("detail"), raw.get("timeframe")
    return Signal(raw["type"], raw["direction"], None if value is None else float(value),
                  detail if isinstance(detail, str) else "", timeframe if isinstance(timeframe, str) else "1m")
