"""Per-symbol stream semantics, pure: what a new bar does to a symbol's analysis.

- A bar newer than the symbol's latest is applied.
- A bar with the latest bar's ``ts`` and the same open/high/low/close/volume is a duplicate: no output.
- A bar with the latest bar's ``ts`` and other values is a revision: the analysis is recomputed from the
  state before the latest bar, and the result replaces the previous one (same document ids).
- A bar older than the latest is late: it is not applied.

The whole state is one flat list of floats (``to_state``/``from_state``), so Flink keeps it as a typed
``double[]`` ValueState that checkpoints, savepoints and rescales like any other keyed state.
"""

from __future__ import annotations

from enum import Enum

from flink_job.analyzer import AnalyticsSettings, Analyzer, Enriched
from flink_job.bars import Bar

_LATEST_LEN = 6  # ts_ms, open, high, low, close, volume


class Outcome(Enum):
    APPLIED = "applied"
    REVISED = "revised"
    DUPLICATE = "duplicate"
    LATE = "late"


class SymbolTracker:
    """The latest bar of one symbol plus the analysis before and after it."""

    __slots__ = ("settings", "latest", "before", "analyzer", "revision", "_after")

    def __init__(self, settings: AnalyticsSettings):
        self.settings = settings
        self.latest: tuple[float, ...] | None = None
        self.before: list[float] | None = None  # analyzer snapshot before the latest bar
        self.analyzer = Analyzer(settings)
        self.revision = 0  # how often the latest bar was revised: orders its versions downstream
        # The snapshot to_state took after the latest bar; the next bar's "before" is the same
        # values, so the hot path takes one snapshot per bar, not two. None once the analyzer moves.
        self._after: list[float] | None = None

    def offer(self, bar: Bar) -> tuple[Outcome, Enriched | None]:
        key = (bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)
        latest = self.latest
        if latest is None or bar.ts_ms > latest[0]:
            outcome = Outcome.APPLIED
            self.revision = 0
            self.before = self._after if self._after is not None else self.analyzer.snapshot()
        elif bar.ts_ms < latest[0]:
            return Outcome.LATE, None
        elif key == latest:
            return Outcome.DUPLICATE, None
        else:
            outcome = Outcome.REVISED
            self.revision += 1
            self.analyzer = Analyzer.restore(self.settings, self.before)
        self.latest = key
        self._after = None
        return outcome, self.analyzer.update(bar)

    def to_state(self) -> list[float]:
        assert self.latest is not None and self.before is not None
        self._after = self.analyzer.snapshot()
        return [*self.latest, float(self.revision), float(len(self.before)), *self.before, *self._after]

    @classmethod
    def from_state(cls, settings: AnalyticsSettings, state: list[float]) -> "SymbolTracker":
        tracker = cls(settings)
        tracker.latest = tuple(state[:_LATEST_LEN - 1]) + (int(state[_LATEST_LEN - 1]),)
        tracker.revision = int(state[_LATEST_LEN])
        split = _LATEST_LEN + 2 + int(state[_LATEST_LEN + 1])
        tracker.before = list(state[_LATEST_LEN + 2:split])
        tracker._after = list(state[split:])
        tracker.analyzer = Analyzer.restore(settings, tracker._after)
        return tracker
