"""The throughput input: seeded synthetic bars in the public bar contract, cached on disk.

One JSON line per bar, interleaved by minute (every symbol's bar of minute 0, then of minute 1, ...),
as a multi-symbol feed arrives. Prices are a per-symbol geometric random walk with valid OHLC
(low ≤ open, close ≤ high), minutes are New York 04:00-20:00 on weekdays, so the input mixes
extended and regular hours like the live feed does. Generated with numpy (a million bars in a few
seconds) and kept under ``.local/bench/``: the same arguments always give the same bytes.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import numpy as np

from flink_job.core.bars import format_ts
from stack.services import ROOT
from tests.bar_data import FIRST_MINUTE, LAST_MINUTE, new_york_ms, trading_days

CACHE_DIR = ROOT / ".local" / "bench"
FIRST_DAY = date(2024, 3, 4)
FORMAT_VERSION = 1  # part of the file name: bump when the generated content changes
_LINE = ('{"symbol":"%s","ts":"%s","open":%.4f,"high":%.4f,"low":%.4f,"close":%.4f,'
         '"volume":%d,"interval":"1min","source":"alphavantage"}\n')


def symbols(count: int) -> list[str]:
    return [f"BN{i:04d}" for i in range(count)]


def minute_stamps(count: int) -> list[int]:
    """Epoch ms of ``count`` consecutive trading minutes (04:00-20:00 New York, weekdays)."""
    per_day = LAST_MINUTE - FIRST_MINUTE
    days = trading_days(FIRST_DAY, -(-count // per_day))
    return [new_york_ms(day, FIRST_MINUTE + m) for day in days for m in range(per_day)][:count]


def _series(rng: np.random.Generator, minutes: int, count: int) -> tuple[np.ndarray, ...]:
    """OHLCV arrays shaped (minutes, symbols)."""
    start = rng.uniform(5.0, 500.0, count)
    steps = rng.normal(0.0, 0.0012, (minutes, count))
    close = start * np.exp(np.cumsum(steps, axis=0))
    open_ = np.vstack([start, close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0006, (2, minutes, count)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.lognormal(8.0, 0.8, (minutes, count)).astype(np.int64)
    # Rare spikes so that volume and price signals fire as they do on real data.
    volume[rng.random((minutes, count)) < 0.002] *= 25
    # Round like the feed (4 decimals) and keep OHLC valid after rounding.
    open_, close = np.round(open_, 4), np.round(close, 4)
    high = np.maximum(np.round(high, 4), np.maximum(open_, close))
    low = np.minimum(np.round(low, 4), np.minimum(open_, close))
    return open_, high, low, close, volume


def write_bars(path: Path, bars: int, symbol_count: int, seed: int) -> None:
    minutes = -(-bars // symbol_count)
    rng = np.random.default_rng(seed)
    open_, high, low, close, volume = _series(rng, minutes, symbol_count)
    names = symbols(symbol_count)
    stamps = [format_ts(ms) for ms in minute_stamps(minutes)]
    tmp = path.with_suffix(".tmp")
    written = 0
    with tmp.open("w") as out:
        for m, ts in enumerate(stamps):
            rows = zip(names, open_[m].tolist(), high[m].tolist(), low[m].tolist(), close[m].tolist(),
                       volume[m].tolist())
            chunk = [_LINE % (s, ts, o, h, l, c, v) for s, o, h, l, c, v in rows][:bars - written]
            out.writelines(chunk)
            written += len(chunk)
    os.replace(tmp, path)  # a killed run never leaves a truncated file under the final name


def bars_file(bars: int, symbol_count: int, seed: int = 1) -> Path:
    """The cached input file for these arguments, generated on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"bars-v{FORMAT_VERSION}-{bars}x{symbol_count}-seed{seed}.jsonl"
    if not path.exists():
        write_bars(path, bars, symbol_count, seed)
    return path
