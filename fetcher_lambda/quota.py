"""A daily call cap (``AV_CALLS_PER_DAY``) spread over the session, decided from the clock alone.

The free key allows 25 calls a day. Called every minute, it is spent in 25 minutes. Spread instead,
each symbol gets ``calls_per_day // len(SYMBOLS)`` calls a day (the cap is the key's, shared by every
symbol of every group), at fixed minutes of the fetch window: the last exactly at its end (after the
close, the entitlement's lag and the grace minute, so the session's last bar is fetched), the others
``spacing`` minutes apart before it. A compact call returns the latest 100 bars, so while the spacing
stays at or under ``COMPACT_REACH_MIN`` minutes consecutive calls overlap and no bar is missed; the
first call of the day reaches back into the previous session's last bars the same way.

Between its call minutes a symbol's cursor is still read (one DynamoDB read), so its data age is
reported every minute. No state: whether a minute is a symbol's call minute follows from the clock and the settings, so any
invocation (any container, any group) reaches the same answer. An invocation that misses a call
minute (a throttled schedule, a symbol put off by the per-minute budget) fetches at the next one,
and the cursor's catch-up (``outputsize=full``) covers a gap longer than the compact window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

COMPACT_REACH_MIN = 100  # bars in a compact response: at one bar a minute, 100 minutes


@dataclass(frozen=True)
class CallPlan:
    """A symbol's calls in today's fetch window: ``calls`` of them, ``spacing_min`` apart, ending at ``end``."""

    calls: int
    spacing_min: int
    end: datetime

    @property
    def reaches(self) -> bool:
        """Whether consecutive compact calls overlap (else some bars need the catch-up)."""
        return self.spacing_min <= COMPACT_REACH_MIN

    def due(self, now: datetime) -> bool:
        """Is ``now``'s minute one of the call minutes?"""
        minute = now.replace(second=0, microsecond=0)  # a schedule fires some seconds into its minute
        minutes_before_end = math.floor((self.end - minute).total_seconds() / 60)
        return (0 <= minutes_before_end < self.calls * self.spacing_min
                and minutes_before_end % self.spacing_min == 0)


def plan(calls_per_day: int, symbols: int, window_start: datetime, window_end: datetime) -> CallPlan | None:
    """The plan of each symbol's calls; None when there is no cap (every minute is a call minute)."""
    if calls_per_day <= 0:
        return None
    calls = max(1, calls_per_day // max(1, symbols))
    window_min = math.floor((window_end - window_start) / timedelta(minutes=1))
    # ``calls`` minutes spaced evenly, the first ``spacing`` after the window opens (a call right at
    # the open would find no bar of today yet), the last at the window's end.
    spacing = max(1, math.ceil(window_min / calls))
    return CallPlan(calls=calls, spacing_min=spacing, end=window_end)
