"""How many Managed Flink KPUs the job needs for a symbol count, in each Python execution mode.

Pure arithmetic on the per-bar CPU cost measured by ``make bench`` (the full operator with
blackhole sinks, ``bench/results/20261202T0036Z-all.json``: ``analyze_blackhole`` in thread mode,
``analyze_blackhole_process`` in process mode). A KPU has one vCPU, so one KPU analyses
1 / (CPU seconds per bar) bars a second. Real time asks little of it: every symbol brings one bar a
minute. What needs KPUs is catching up, after an outage or for a backfill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# CPU microseconds per bar through the whole job (source, Python operator, SQL, sinks), median of
# the run named above; process mode pays a round trip to the Python worker for every record.
CPU_US_PER_BAR = {"thread": 585.0, "process": 1323.0}
BENCH_RUN = "bench/results/20261202T0036Z-all.json"
# Keep a subtask at most half busy in real time: the other half absorbs the minute's bars arriving
# together, sink retries and checkpoints.
MAX_BUSY_SHARE = 0.5
# The minutes a trading day has bars in (Alpha Vantage's extended hours, 04:00-20:00 New York) and
# in the regular session (09:30-16:00).
MARKET_MINUTES = {True: 960, False: 390}


def bars_per_kpu_second(mode: str) -> float:
    """Bars one KPU (one vCPU) analyses a second in ``mode`` (thread or process)."""
    try:
        return 1e6 / CPU_US_PER_BAR[mode]
    except KeyError:
        raise ValueError(f"execution mode must be one of {', '.join(CPU_US_PER_BAR)}; got {mode!r}") from None


@dataclass(frozen=True)
class Capacity:
    symbols: int
    mode: str
    kpus: int  # processing KPUs (Parallelism / ParallelismPerKPU), without the orchestration one
    busy_share: float  # share of those KPUs' CPU that real time keeps busy
    catch_up_day_s: float  # seconds to analyse one trading day of every symbol's bars on them


def capacity(symbols: int, mode: str, extended_hours: bool = True) -> Capacity:
    """The KPUs that keep ``symbols`` in real time at most ``MAX_BUSY_SHARE`` busy (at least one)."""
    per_kpu = bars_per_kpu_second(mode)
    real_time = symbols / 60.0  # one bar per symbol a minute
    kpus = max(1, math.ceil(real_time / (per_kpu * MAX_BUSY_SHARE)))
    day = symbols * MARKET_MINUTES[extended_hours]
    return Capacity(symbols, mode, kpus, real_time / (per_kpu * kpus), day / (per_kpu * kpus))
