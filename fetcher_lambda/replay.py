"""Replay the shipped sample data set to the stream, faster than real time.

Lets the rest of the pipeline (the stream consumer, the dashboards) be exercised with several
trading days of bars in under a minute, with no Alpha Vantage key. The sample files are parsed by the
same ``parse_response`` as live responses, so the records are exactly what the live fetcher sends.

Order: all symbols merged by bar time, oldest first (per symbol strictly oldest first). Pacing counts
bar timestamps, not wall-clock market time: ``speed`` is how many distinct bar minutes go out per
second, so nights and the weekend cost nothing. ``speed=0`` sends as fast as Kinesis takes it.
No cursor is read or written: a replay is a demo/test feed, not part of the live bookkeeping.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Sequence

from .alphavantage import parse_response
from .contract import REPLAY_SOURCE, Bar
from .deadline import Deadline
from .kinesis import Entry, RetryPolicy, put_entries
from .samples import SAMPLE_DIR, sample_files

DEFAULT_SPEED = 60.0  # bar minutes per second: the ~2,000 minutes of the sample set in ~35 s
SEND_INTERVAL_S = 0.2  # bars that fall due within this interval go in one PutRecords call
PROGRESS_INTERVAL_S = 2.0


class ReplayError(RuntimeError):
    """The stream refused bars; the message says which and what to check."""


@dataclass(frozen=True)
class ReplayStats:
    bars: int
    ticks: int
    put_records_calls: int
    seconds: float


def load_bars(directory: Path = SAMPLE_DIR) -> list[Bar]:
    """All sample bars, ordered by (ts, symbol)."""
    files = sample_files(directory)
    if not files:
        raise ReplayError(f"no sample files in {directory}: run python -m fetcher_lambda.samples")
    bars: list[Bar] = []
    for path in files:
        body = path.read_bytes()
        meta = json.loads(body).get("Meta Data", {})
        symbol = str(meta.get("2. Symbol") or path.stem).upper()
        interval = str(meta.get("4. Interval") or "1min")
        bars.extend(parse_response(body, symbol, interval).bars)
    return merge_by_time(bars)


def merge_by_time(bars: Sequence[Bar]) -> list[Bar]:
    return sorted(bars, key=lambda bar: (bar.ts, bar.symbol))


def ticks(bars: Sequence[Bar]) -> list[list[Bar]]:
    """Bars grouped by timestamp (input ordered by ts)."""
    return [list(group) for _, group in groupby(bars, key=lambda bar: bar.ts)]


def replay(client: Any, stream_name: str, bars: Sequence[Bar], speed: float = DEFAULT_SPEED,
           progress: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> ReplayStats:
    """Put ``bars`` (ordered by ts) to the stream, ``speed`` bar minutes per second (0 = no pacing)."""
    if speed < 0:
        raise ValueError("speed must be >= 0 (0 = as fast as possible)")
    groups = ticks(bars)
    total = len(bars)
    started = last_progress = clock()
    done_ticks = sent = calls = 0
    progress(f"replay: {total} bars, {len(groups)} bar minutes, "
             f"{'as fast as possible' if speed == 0 else f'{speed:g} bar minutes/s'} -> {stream_name}")
    while done_ticks < len(groups):
        elapsed = clock() - started
        due = len(groups) if speed == 0 else min(len(groups), max(done_ticks + 1, int(elapsed * speed) + 1))
        chunk = [bar for group in groups[done_ticks:due] for bar in group]
        entries = [Entry(bar.symbol, bar.to_bytes(source=REPLAY_SOURCE)) for bar in chunk]
        result = put_entries(client, stream_name, entries, Deadline.after(300), RetryPolicy(attempts=8))
        calls += result.calls
        if result.error:
            raise ReplayError(f"stopped after {sent + result.accepted_count} of {total} bars: {result.error}")
        sent += len(chunk)
        done_ticks = due
        now = clock()
        if now - last_progress >= PROGRESS_INTERVAL_S or done_ticks == len(groups):
            last_progress = now
            rate = sent / max(now - started, 1e-6)
            progress(f"replay: {sent}/{total} bars ({100 * sent / max(total, 1):.0f}%), "
                     f"through {chunk[-1].ts}, {rate:,.0f} bars/s")
        if speed and done_ticks < len(groups):
            sleep(max(SEND_INTERVAL_S, done_ticks / speed - (clock() - started)))
    return ReplayStats(total, len(groups), calls, clock() - started)
