"""What one analysis subtask did since its last summary: the content of its periodic log lines.

Pure: the operator reports each outcome here and asks, per record, whether a summary is due; the
lines it gets back are plain dicts (``logs.log_event`` writes them). Nothing is logged for a quiet
interval.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

DEFAULT_SUMMARY_INTERVAL_MS = 60_000
RESTORED_EXAMPLES = 10  # symbols named in a state_restored line; the count covers all


@dataclass
class Activity:
    """Counts since the last summary; ``due`` hands them out at most once per ``interval_ms``."""

    started_ms: int
    interval_ms: int = DEFAULT_SUMMARY_INTERVAL_MS
    dead_letters: Counter = field(default_factory=Counter)  # by reason
    late_bars: int = 0
    duplicate_bars: int = 0
    revised_bars: int = 0
    accepted_bars: int = 0
    state_resets: int = 0
    restored: list[str] = field(default_factory=list)
    restored_count: int = 0

    def __post_init__(self) -> None:
        self.next_ms = self.started_ms + self.interval_ms

    def restored_symbol(self, symbol: str) -> None:
        self.restored_count += 1
        if len(self.restored) < RESTORED_EXAMPLES:
            self.restored.append(symbol)

    def due(self, now_ms: int) -> bool:
        return now_ms >= self.next_ms

    def take(self, now_ms: int, layout_version: int) -> list[tuple[str, dict]]:
        """The (event, fields) lines for the interval ending now; counts start again from zero."""
        lines: list[tuple[str, dict]] = []
        seconds = round((now_ms - (self.next_ms - self.interval_ms)) / 1000, 1)
        if self.restored_count:
            lines.append(("state_restored", {"symbols": self.restored_count, "examples": self.restored,
                                             "layout_version": layout_version}))
        if self.dead_letters or self.accepted_bars or self.duplicate_bars or self.state_resets:
            lines.append(("summary", {
                "interval_s": seconds, "accepted_bars": self.accepted_bars,
                "dead_letters": sum(self.dead_letters.values()),
                "dead_letters_by_reason": dict(sorted(self.dead_letters.items())),
                "late_bars": self.late_bars, "duplicate_bars": self.duplicate_bars,
                "revised_bars": self.revised_bars, "state_resets": self.state_resets,
            }))
        fresh = Activity(now_ms, self.interval_ms)
        self.__dict__.update(fresh.__dict__)
        return lines
