"""The time an invocation may still use.

Under Lambda the limit is the function timeout (``context.get_remaining_time_in_millis()``); the
runtime kills the process when it is reached, so every blocking step (HTTP attempts, Kinesis retries,
the cursor lease) is sized from this one deadline. Local runs get a fixed budget instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Deadline:
    expires_at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_context(cls, context: Any, fallback_s: float) -> "Deadline":
        """From a Lambda context; ``fallback_s`` when there is none (local runs, tests)."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            return cls.after(remaining_ms() / 1000.0)
        return cls.after(fallback_s)

    def remaining_s(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def wall_clock_ms(self) -> int:
        """The deadline as epoch milliseconds (what other processes can compare against)."""
        return int((time.time() + self.remaining_s()) * 1000)
