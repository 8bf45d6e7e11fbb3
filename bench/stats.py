"""Small statistics for repeated, noisy measurements: medians with their spread, percentiles."""

from __future__ import annotations

import statistics
from typing import Sequence


def summary(values: Sequence[float]) -> dict:
    """Median plus min/max: on a shared machine the spread says how far to trust the median."""
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values),
            "values": list(values)}


def spread_pct(stat: dict) -> float:
    """(max - min) / median, in percent."""
    return 100.0 * (stat["max"] - stat["min"]) / stat["median"] if stat["median"] else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]
