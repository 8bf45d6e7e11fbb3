"""Validation of the query parameters the dashboard's API accepts.

Every value that reaches an OpenSearch query passes through here first, so the backend only ever
sends queries of the shapes it builds itself.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

SYMBOL = re.compile(r"^[A-Z0-9.\-]{1,12}$")  # the bar contract's symbol
MAX_LIMIT = 5000


class BadRequest(ValueError):
    """A query parameter is missing or invalid; the message says which and what is accepted."""


def single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"give '{name}' once")
    return values[0]


def symbol(query: dict[str, list[str]], required: bool = True) -> str | None:
    value = single(query, "symbol")
    if value is None or value == "":
        if required:
            raise BadRequest("'symbol' is required, e.g. ?symbol=IBM")
        return None
    if not SYMBOL.match(value):
        raise BadRequest("'symbol' must match ^[A-Z0-9.\\-]{1,12}$ (upper case, e.g. IBM or BRK.B)")
    return value


def limit(query: dict[str, list[str]], default: int) -> int:
    value = single(query, "limit")
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def timestamp(query: dict[str, list[str]], name: str) -> int | None:
    """An instant as epoch milliseconds, given as epoch milliseconds or ISO-8601 UTC (``...Z``)."""
    value = single(query, name)
    if value is None or value == "":
        return None
    if value.isdigit() and len(value) <= 15:
        return int(value)
    if value.endswith("Z"):
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            pass
        else:
            return int(parsed.astimezone(timezone.utc).timestamp() * 1000)
    raise BadRequest(f"'{name}' must be epoch milliseconds or ISO-8601 UTC, e.g. 2024-03-08T14:31:00Z")


TIMEFRAMES = ("1m", "5m", "15m")


def timeframe(query: dict[str, list[str]]) -> str:
    """The candle length to read: 1m (the enriched bars, the default), 5m or 15m (the rollups)."""
    value = single(query, "timeframe") or "1m"
    if value not in TIMEFRAMES:
        raise BadRequest(f"'timeframe' must be one of {', '.join(TIMEFRAMES)}")
    return value
