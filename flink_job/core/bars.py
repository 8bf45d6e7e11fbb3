"""The bar record: the public contract of ``stock_stream_data``, and its validation.

A record is one JSON object per Kinesis record::

    {"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 1.0, "high": 1.0, "low": 1.0,
     "close": 1.0, "volume": 100, "interval": "1min", "source": "alphavantage"}

Contract version 2 adds an optional ``"basis": N`` (an integer from 0): the symbol's price basis.
The fetcher raises it when Alpha Vantage re-bases the symbol's history (a split or a dividend) and
re-sends that history at the new basis, oldest first. A bar of a higher basis than the symbol's
restarts the symbol's analysis from that bar; a bar of a lower one is dead-lettered
(``stale_basis``). A record without ``basis`` (version 1) is taken at the symbol's current basis.

Pure: no Flink, no I/O. ``parse_bar`` turns raw text into a ``Bar`` or raises ``InvalidBar`` whose
``reason`` is a short, stable code (it becomes the dead-letter record's ``reason``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9.\-]{1,12}$")
MAX_FUTURE_MS = 24 * 3600 * 1000
MIN_TS_MS = 631_152_000_000  # 1990-01-01: nothing older is intraday data
PRICE_FIELDS = ("open", "high", "low", "close")
# Bounds keep every indicator finite (a return of MAX/MIN is 1e15, a squared price 1e18) and every
# volume a Java long: a value outside them is an error in the feed, not a price.
MIN_PRICE, MAX_PRICE = 1e-6, 1e9
MAX_VOLUME = 10**15
MAX_BASIS = 2**31 - 1
NO_BASIS = -1  # a version-1 record: no claim, taken at the symbol's current basis
RAW_LIMIT_BYTES = 10 * 1024  # a dead letter keeps the first 10 KB of the record, as UTF-8


class InvalidBar(ValueError):
    """A record that is not a valid bar. ``reason`` is a stable code, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Not frozen: a frozen dataclass sets each field through object.__setattr__, several times the
# cost of a plain slot store, and a Bar is built per record. Nothing changes one once built.
@dataclass(slots=True)
class Bar:
    symbol: str
    ts: str  # bar start, UTC, ISO-8601 with Z, normalised to seconds
    ts_ms: int  # the same instant in epoch milliseconds
    open: float
    high: float
    low: float
    close: float
    volume: int
    interval: str = "1min"
    source: str = "alphavantage"
    basis: int = NO_BASIS

    def to_record(self) -> dict:
        """The bar as its public JSON contract (``basis`` only when the record named one)."""
        record = {
            "symbol": self.symbol, "ts": self.ts, "open": self.open, "high": self.high,
            "low": self.low, "close": self.close, "volume": self.volume,
            "interval": self.interval, "source": self.source,
        }
        if self.basis != NO_BASIS:
            record["basis"] = self.basis
        return record


def format_ts(ts_ms: int) -> str:
    """Epoch milliseconds to the contract's ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(value: object) -> int:
    """An ISO-8601 UTC timestamp (``Z`` or ``+00:00``) to epoch milliseconds."""
    if not isinstance(value, str) or not (value.endswith("Z") or value.endswith("+00:00")):
        raise InvalidBar("bad_ts", "ts must be an ISO-8601 UTC string ending in Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidBar("bad_ts", "ts is not a valid ISO-8601 timestamp") from None
    return int(parsed.timestamp() * 1000)


# Every symbol's bar of one minute carries the same ts text: parsing and formatting it once per
# minute, not once per bar, is a measurable share of the per-bar cost. Bounded: cleared when full.
_TS_CACHE: dict[str, tuple[int, str]] = {}
_TS_CACHE_SIZE = 4096


def _timestamp(value: object) -> tuple[int, str]:
    """``parse_ts`` and its normalised text (``format_ts``), cached by the text."""
    cached = _TS_CACHE.get(value) if value.__class__ is str else None
    if cached is None:
        ts_ms = parse_ts(value)
        cached = (ts_ms, format_ts(ts_ms))
        if len(_TS_CACHE) >= _TS_CACHE_SIZE:
            _TS_CACHE.clear()
        _TS_CACHE[value] = cached
    return cached


def _number(record: dict, field: str) -> float:
    value = record.get(field)
    if value is None:
        raise InvalidBar("missing_field", field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidBar("bad_type", f"{field} must be a number")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        raise InvalidBar("out_of_range", field) from None
    if not math.isfinite(value):
        raise InvalidBar("non_finite", field)
    return value


def validate_record(record: object, now_ms: int) -> Bar:
    """A decoded JSON value to a ``Bar``; raises ``InvalidBar`` naming the first problem found."""
    if not isinstance(record, dict):
        raise InvalidBar("not_object", "a bar is a JSON object")
    symbol = record.get("symbol")
    if symbol is None:
        raise InvalidBar("missing_field", "symbol")
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise InvalidBar("bad_symbol", "symbol must match ^[A-Z0-9.\\-]{1,12}$")
    if "ts" not in record:
        raise InvalidBar("missing_field", "ts")
    ts_ms, ts = _timestamp(record["ts"])
    if ts_ms > now_ms + MAX_FUTURE_MS:
        raise InvalidBar("future_ts", "ts is more than a day in the future")
    if ts_ms < MIN_TS_MS:
        raise InvalidBar("bad_ts", "ts is before 1990")
    o, h, l, c = record.get("open"), record.get("high"), record.get("low"), record.get("close")
    # Fast path: four floats within the bounds pass every check of _prices (NaN fails any comparison).
    if not (o.__class__ is h.__class__ is l.__class__ is c.__class__ is float
            and MIN_PRICE <= o <= MAX_PRICE and MIN_PRICE <= h <= MAX_PRICE
            and MIN_PRICE <= l <= MAX_PRICE and MIN_PRICE <= c <= MAX_PRICE):
        o, h, l, c = _prices(record)
    if h < l:
        raise InvalidBar("high_below_low")
    if not (l <= o <= h and l <= c <= h):
        raise InvalidBar("price_outside_range", "open and close must lie within [low, high]")
    volume = record.get("volume")
    if volume.__class__ is not int or not 0 <= volume <= MAX_VOLUME:  # fast path: a plain int in range
        volume = _volume(volume)
    interval = record.get("interval", "1min")
    source = record.get("source", "alphavantage")
    if not isinstance(interval, str) or not isinstance(source, str):
        raise InvalidBar("bad_type", "interval and source must be strings")
    basis = record.get("basis")
    if basis is None:
        basis = NO_BASIS
    elif basis.__class__ is not int or not 0 <= basis <= MAX_BASIS:  # bool is not int here
        raise InvalidBar("bad_basis", f"basis must be an integer from 0 to {MAX_BASIS}")
    return Bar(symbol, ts, ts_ms, o, h, l, c, volume, interval[:16], source[:32], basis)


def _prices(record: dict) -> tuple[float, float, float, float]:
    """open, high, low, close, each a finite, positive float within the bounds."""
    o, h, l, c = (_number(record, f) for f in PRICE_FIELDS)
    if min(o, h, l, c) <= 0:
        raise InvalidBar("non_positive_price")
    if min(o, h, l, c) < MIN_PRICE or max(o, h, l, c) > MAX_PRICE:
        raise InvalidBar("out_of_range", f"prices must lie within [{MIN_PRICE:g}, {MAX_PRICE:g}]")
    return o, h, l, c


def _volume(volume: object) -> int:
    """The volume as an integer within [0, MAX_VOLUME]."""
    if volume is None:
        raise InvalidBar("missing_field", "volume")
    if isinstance(volume, bool) or not isinstance(volume, (int, float)) or volume != volume:
        raise InvalidBar("bad_type", "volume must be an integer")
    if isinstance(volume, float) and (not math.isfinite(volume) or not volume.is_integer()):
        raise InvalidBar("bad_type", "volume must be an integer")
    if volume < 0:
        raise InvalidBar("negative_volume")
    if volume > MAX_VOLUME:
        raise InvalidBar("out_of_range", f"volume must be at most {MAX_VOLUME:g}")
    return int(volume)


def parse_bar(raw: str, now_ms: int) -> Bar:
    """Raw record text to a ``Bar``; raises ``InvalidBar`` (``not_json`` when it does not decode)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidBar("not_json") from None
    return validate_record(record, now_ms)


def parse_keyed(raw: str, key: str, now_ms: int) -> Bar:
    """``parse_bar`` for a record the stream keyed by ``key``: the symbol the keying step read
    (Flink's ``JSON_VALUE``). Raises ``InvalidBar("ambiguous_symbol")`` when the parser reads
    another symbol, e.g. a bar with ``NaN`` in an extra field, which Python's JSON accepts and
    ``JSON_VALUE`` does not: its state would be looked up under the wrong key."""
    bar = parse_bar(raw, now_ms)
    if bar.symbol != key:
        raise InvalidBar("ambiguous_symbol", f"keyed as {key[:20]!r} but the bar's symbol is {bar.symbol!r}")
    return bar


def clip_utf8(text: str, limit: int = RAW_LIMIT_BYTES) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``limit`` bytes (never half a
    character)."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes
        return text
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
