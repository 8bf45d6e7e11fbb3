"""Noticing that Alpha Vantage re-based a symbol's prices (a split or a dividend): bar contract v2.

With ``adjusted=true`` Alpha Vantage scales a symbol's whole history when a split or dividend takes
effect, so bars the stream already carries come back at a new price basis. The cursor item keeps
the last two bars sent (ts, close). When both come back with their closes scaled by the same factor
other than 1, the history was re-based. One scaled bar alone is not: the newest bar of a window may
still be forming, and Alpha Vantage revises it.

Prices have four decimals, so a ratio of two closes is only known to within their rounding: a
factor counts as "the same" and as "not 1" beyond that uncertainty, whatever the price level.
"""

from __future__ import annotations

from typing import Sequence

from .contract import Bar

PRICE_HALF_STEP = 0.00005  # half of Alpha Vantage's last price digit (4 decimals)


def rebase_factor(recent: Sequence[tuple[str, float]], bars: Sequence[Bar]) -> float | None:
    """The factor the last two sent bars were scaled by (new close / sent close), if they were.

    None when fewer than two bars were sent, when either is missing from ``bars`` (out of the
    window), when the two ratios differ (a revision, not a re-basing) or when they are 1.
    """
    if len(recent) < 2:
        return None
    closes = {bar.ts: bar.close for bar in bars}
    ratios, tolerance = [], 0.0
    for ts, sent in recent[-2:]:
        returned = closes.get(ts)
        if returned is None or sent <= 0 or returned <= 0:
            return None
        ratios.append(returned / sent)
        # The relative uncertainty of this ratio, from the rounding of both closes.
        tolerance += PRICE_HALF_STEP / returned + PRICE_HALF_STEP / sent
    first, second = ratios
    factor = (first + second) / 2
    if abs(first - second) > tolerance * factor or abs(factor - 1) <= tolerance:
        return None
    return factor
