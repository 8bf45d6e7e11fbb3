"""The Alpha Vantage calls-per-minute budget: calls evenly spaced, shared by every fetching thread.

Alpha Vantage limits calls per key per minute (5 on the free tier, 75 to 1,200 on premium plans) and
answers a call over the limit with a notice instead of data. ``CallBudget`` gives out one slot every
``60 / calls_per_minute`` seconds; a thread reserves the next free slot and sleeps until it. Spacing
rather than bursting keeps every 60-second window at or under the budget (slots ``d`` apart fit at
most ``60 / d`` in any half-open minute), whatever the threads do.

A slot that would come too late for the caller (after ``latest``) is not reserved: the caller
then skips the call instead of starting one it cannot finish before the invocation's deadline.

The Lambda keeps one budget per container (see ``handler``), so consecutive invocations in a
warm container continue the same spacing. A new budget grants its first slot at once.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class CallBudget:
    """Thread-safe evenly spaced slots: at most ``calls_per_minute`` calls in any 60 s."""

    def __init__(self, calls_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not calls_per_minute > 0:
            raise ValueError(f"calls_per_minute must be > 0; got {calls_per_minute!r}")
        self.calls_per_minute = calls_per_minute
        self.interval_s = 60.0 / calls_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_slot = clock()
        self._lock = threading.Lock()
        self.granted = 0

    def reserve(self, latest: float = float("inf")) -> float | None:
        """The next free slot (a ``clock`` value), now taken; ``None`` if it would be after ``latest``."""
        with self._lock:
            slot = max(self._next_slot, self._clock())
            if slot > latest:
                return None
            self._next_slot = slot + self.interval_s
            self.granted += 1
            return slot

    def next_slot(self) -> float:
        """When the next call could start, without reserving it."""
        with self._lock:
            return max(self._next_slot, self._clock())

    def acquire(self, latest: float = float("inf")) -> bool:
        """Wait for a slot; False (without waiting) when the next one would be after ``latest``."""
        slot = self.reserve(latest)
        if slot is None:
            return False
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)
        return True
