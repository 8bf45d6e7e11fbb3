"""Seeded synthetic 1-minute bars for the analytics tests.

A geometric random walk over New York trading days from 04:00 to 20:00 local time (extended and
regular hours), with what real feeds contain and the indicators must survive: missing minutes
and longer gaps, exactly flat runs (OHLC equal, constant volume), zero volumes (every other day
the first regular-hours bar has none), volume spikes, a DST change between two days, and any
price scale, optionally drifting between two scales so one series spans many orders of magnitude.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flink_job.core.bars import Bar, format_ts

NEW_YORK = ZoneInfo("America/New_York")
# The Friday before and the Monday after the 2024-03-10 switch from EST to EDT.
DST_DAYS = (date(2024, 3, 8), date(2024, 3, 11))
FIRST_MINUTE = 4 * 60  # 04:00 New York
LAST_MINUTE = 20 * 60  # 20:00 New York, exclusive
OPEN_MINUTE = 9 * 60 + 30
CLOSE_MINUTE = 16 * 60


def new_york_ms(day: date, minute_of_day: int) -> int:
    """Epoch ms of a New York wall-clock minute on ``day``."""
    hour, minute = divmod(minute_of_day, 60)
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
    return int(local.timestamp()) * 1000


def trading_days(first: date, count: int) -> list[date]:
    """``count`` weekdays from ``first`` on."""
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _minutes(rng: random.Random, days: list[date] | tuple[date, ...]) -> list[tuple[int, int, int]]:
    """(ts_ms, minute of day, day index) of every bar, after dropping minutes and gaps."""
    stamps = []
    for index, day in enumerate(days):
        minute = FIRST_MINUTE
        while minute < LAST_MINUTE:
            roll = rng.random()
            if roll < 0.002:
                minute += rng.randint(5, 45)  # a longer outage
                continue
            if roll > 0.03:  # else: one missing minute
                stamps.append((new_york_ms(day, minute), minute, index))
            minute += 1
    return stamps


def _flat_volumes(rng: random.Random, count: int, flat_start: int) -> list[int | None]:
    """Per bar: the volume of the flat run it belongs to, or None for a moving bar."""
    marks: list[int | None] = [500] * min(flat_start, count)
    while len(marks) < count:
        if rng.random() < 0.004:
            marks += [rng.choice((0, 100, 2500))] * rng.randint(25, 80)
        else:
            marks.append(None)
    return marks[:count]


def generate_bars(seed: int, days: list[date] | tuple[date, ...] = DST_DAYS, price: float = 100.0,
                  end_price: float | None = None, symbol: str = "TEST", volatility: float = 0.002,
                  flat_start: int = 0) -> list[Bar]:
    """A reproducible bar series; ``end_price`` adds the drift that reaches it by the last bar,
    ``flat_start`` makes the first bars one flat run."""
    rng = random.Random(seed)
    stamps = _minutes(rng, days)
    flat = _flat_volumes(rng, len(stamps), flat_start)
    moving = sum(volume is None for volume in flat)
    drift = math.log(end_price / price) / moving if end_price else 0.0
    bars: list[Bar] = []
    close = price
    opened_day = -1
    for (ts_ms, minute, day_index), flat_volume in zip(stamps, flat):
        regular = OPEN_MINUTE <= minute < CLOSE_MINUTE
        first_regular = regular and day_index != opened_day
        if first_regular:
            opened_day = day_index
        if flat_volume is not None:
            open_ = high = low = close
            volume = flat_volume
        else:
            open_ = close
            close = open_ * math.exp(drift + rng.gauss(0.0, volatility))
            high = max(open_, close) * (1.0 + abs(rng.gauss(0.0, volatility / 2)))
            low = min(open_, close) * (1.0 - abs(rng.gauss(0.0, volatility / 2)))
            volume = int(rng.lognormvariate(8.5 if regular else 5.0, 0.6))
            if not regular and rng.random() < 0.3:
                volume = 0
            if rng.random() < 0.003:
                volume *= 25
        if first_regular and day_index % 2 == 0:
            volume = 0
        bars.append(Bar(symbol, format_ts(ts_ms), ts_ms, open_, high, low, close, volume))
    return bars


def minute_bars(closes: list[float], volumes: list[int] | None = None, symbol: str = "SIG",
                start_ms: int = new_york_ms(DST_DAYS[1], OPEN_MINUTE)) -> list[Bar]:
    """Bars on consecutive minutes with OHLC all equal to the given closes (handcrafted series)."""
    volumes = volumes if volumes is not None else [1000] * len(closes)
    return [Bar(symbol, format_ts(start_ms + i * 60_000), start_ms + i * 60_000, c, c, c, c, v)
            for i, (c, v) in enumerate(zip(closes, volumes, strict=True))]


def series(symbols: list[str], bars_each: int, seed: int = 0) -> dict[str, list[dict]]:
    """``bars_each`` bar records per symbol, over two trading days, each symbol its own walk."""
    days = (date(2024, 3, 11), date(2024, 3, 12))
    return {s: [b.to_record() for b in generate_bars(seed + i, days=days, symbol=s)[:bars_each]]
            for i, s in enumerate(symbols)}


def interleave(bars: dict[str, list[dict]]) -> list[dict]:
    """The symbols' bars in stream order: one bar of each symbol, then the next."""
    return [b for group in zip(*bars.values()) for b in group]


def same(got, want) -> bool:
    """A field of an output equal to the model's: floats to 1e-12, everything else exactly."""
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-12)
    return got == want


def rollup_reference(bars: list[dict], minutes: int) -> dict[str, dict]:
    """The final candle of each ``minutes`` window of one symbol's bar records (in time order, as
    finally revised), by window start: the fields of a ``stock-bars-*`` document."""
    windows: dict[datetime, list[dict]] = {}
    for bar in bars:
        ts = datetime.fromisoformat(bar["ts"].replace("Z", "+00:00"))
        windows.setdefault(ts.replace(minute=ts.minute - ts.minute % minutes, second=0), []).append(bar)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    out = {}
    for start, ws in windows.items():
        volume = sum(b["volume"] for b in ws)
        out[start.strftime(iso)] = {
            "window_end": (start + timedelta(minutes=minutes)).strftime(iso),
            "open": ws[0]["open"], "high": max(b["high"] for b in ws), "low": min(b["low"] for b in ws),
            "close": ws[-1]["close"], "volume": volume, "bar_count": len(ws),
            "avg_close": sum(b["close"] for b in ws) / len(ws),
            "vwap": sum((b["high"] + b["low"] + b["close"]) / 3 * b["volume"] for b in ws) / volume if volume else None,
        }
    return out


def rollup_differences(docs: list[dict], bars: dict[str, list[dict]], minutes: int) -> list[str]:
    """How rollup documents differ from the reference of each symbol's bars: missing, extra or
    unequal windows (floats to 1e-12); empty if they are equal."""
    want = {(s, start): w for s, b in bars.items() for start, w in rollup_reference(b, minutes).items()}
    got = {(d["symbol"], d["window_start"]): d for d in docs}
    problems = [f"missing {key}" for key in sorted(want.keys() - got.keys())]
    problems += [f"extra {key}" for key in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        diff = {k: (got[key].get(k), v) for k, v in want[key].items() if not same(got[key].get(k), v)}
        if diff:
            problems.append(f"{key}: {diff}")
    return problems


def stream_record(tracker, enriched) -> dict:
    """The enriched record the job publishes for the bar ``tracker`` just took: the bar's own signals
    and those of the candles it closed (``timeframe`` 5m/15m), as the operator emits them."""
    record = enriched.to_record()
    record["signals"] += [s.to_record() for candle in tracker.closed_candles() if candle is not None
                          for s in candle.reading.signals]
    return record
