"""Per-symbol stream semantics, pure: what a new bar does to a symbol's analysis.

- A bar newer than the symbol's latest is applied.
- A bar with the latest bar's ``ts`` and the same open/high/low/close/volume is a duplicate: no output.
- A bar with the latest bar's ``ts`` and other values is a revision: the analysis is recomputed from the
  state before the latest bar, and the result replaces the previous one (same document ids).
- A bar older than the latest is late: it is not applied.

The tracker also keeps the symbol's open 5- and 15-minute rollup windows (``rollups``), so they
follow the same rules and depend on no other symbol.

The whole state is one flat list of floats (``to_state``/``from_state``), led by its layout version.
The operator stores it as the packed float64 bytes of that list in a ``PICKLED_BYTE_ARRAY`` ValueState
(a fixed, documented layout, not a pickled object graph); it checkpoints, savepoints and rescales like
any other keyed state.

A stored state that no longer fits (another layout version, other indicator periods, or malformed) is
never an error that fails the job, which would fail again on every restart: ``restore_or_reset``
starts that symbol's warm-up afresh and says why.
"""

from __future__ import annotations

from enum import Enum

from flink_job.core.analyzer import AnalyticsSettings, Analyzer, Enriched, IncompatibleState
from flink_job.core.bars import Bar
from flink_job.core.rollups import COUNT, INCOMPLETE, ROLLUP_WINDOWS, WINDOW_LEN, add_bar, advance, empty_window, \
    incomplete_window

# Version 1 had no version field (it began with the latest bar's ts_ms); 2 leads with the version;
# 3 adds the rollup windows; 4 keeps the analysis before the latest bar only (the analysis after it is
# that bar re-applied, when the state is read). Versions 2 and 3 are still read: their analysis after
# the latest bar is left aside and rebuilt the same way, and a version 2's open windows become incomplete.
STATE_LAYOUT_VERSION = 4
_LATEST_LEN = 6  # ts_ms, open, high, low, close, volume
_WINDOWS_LEN = WINDOW_LEN * len(ROLLUP_WINDOWS)
_HEADER_LEN = 1 + _LATEST_LEN + 1 + _WINDOWS_LEN  # version, latest bar, revision, open windows
_V2_HEADER_LEN = 1 + _LATEST_LEN + 2  # version, latest bar, revision, length of "before"
_V3_HEADER_LEN = _V2_HEADER_LEN + _WINDOWS_LEN  # ... then the open windows (before the latest bar)
_MINUTES = tuple(ROLLUP_WINDOWS.values())


class Outcome(Enum):
    APPLIED = "applied"
    REVISED = "revised"
    DUPLICATE = "duplicate"
    LATE = "late"


class SymbolTracker:
    """The latest bar of one symbol plus the analysis before and after it."""

    __slots__ = ("settings", "latest", "before", "analyzer", "revision", "windows")

    def __init__(self, settings: AnalyticsSettings):
        self.settings = settings
        self.latest: tuple[float, ...] | None = None
        self.before: list[float] | None = None  # analyzer snapshot before the latest bar
        self.analyzer = Analyzer(settings)  # the analysis after the latest bar
        self.revision = 0  # how often the latest bar was revised
        # Per rollup length: the latest bar's window without the latest bar (see ``rollups``).
        self.windows: list[list[float]] = []

    def offer(self, bar: Bar) -> tuple[Outcome, Enriched | None]:
        key = (bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)
        latest = self.latest
        if latest is None or bar.ts_ms > latest[0]:
            outcome = Outcome.APPLIED
            self.revision = 0
            ts_ms = bar.ts_ms
            if latest is None:
                self.windows = [empty_window(ts_ms, m) for m in _MINUTES]
            else:
                self.windows = [advance(w, latest, ts_ms, m) for w, m in zip(self.windows, _MINUTES)]
            self.before = self.analyzer.snapshot()  # the one snapshot per bar
        elif bar.ts_ms < latest[0]:
            return Outcome.LATE, None
        elif key == latest:
            return Outcome.DUPLICATE, None
        else:
            outcome = Outcome.REVISED
            self.revision += 1
            self.analyzer = Analyzer.restore(self.settings, self.before)
        self.latest = key
        return outcome, self.analyzer.update(bar)

    def rollups(self) -> list[list[float] | None]:
        """Per rollup length, the open window with the latest bar: a ``rollups`` window, or None
        while it is incomplete."""
        assert self.latest is not None
        out = []
        for window in self.windows:
            out.append(None if window[COUNT] == INCOMPLETE else add_bar(window, self.latest))
        return out

    def to_state(self) -> list[float]:
        assert self.latest is not None and self.before is not None
        state = [float(STATE_LAYOUT_VERSION), *self.latest, float(self.revision)]
        for window in self.windows:
            state += window
        state += self.before
        return state

    @classmethod
    def from_state(cls, settings: AnalyticsSettings, state: list[float]) -> "SymbolTracker":
        """The tracker ``to_state`` was taken from. Raises ``IncompatibleState`` if the state has
        another layout version, was taken under other periods, or is malformed."""
        version = state[0] if state else None
        if version not in (2, 3, STATE_LAYOUT_VERSION):
            raise IncompatibleState("layout_version", f"state layout {version!r}, expected {STATE_LAYOUT_VERSION}")
        header = {2: _V2_HEADER_LEN, 3: _V3_HEADER_LEN}.get(version, _HEADER_LEN)
        if len(state) < header:
            raise IncompatibleState("malformed", "state is truncated")
        tracker = cls(settings)
        latest = state[1:1 + _LATEST_LEN]
        try:
            tracker.latest = tuple(latest[:-1]) + (int(latest[-1]),)
            tracker.revision = int(state[1 + _LATEST_LEN])
            # Versions 2 and 3 stored the analysis after the latest bar behind the one before it.
            end = len(state) if version == STATE_LAYOUT_VERSION else header + int(state[_V2_HEADER_LEN - 1])
            if version == 2:
                tracker.windows = [incomplete_window(int(latest[0]), m) for m in _MINUTES]
            else:
                start = header - _WINDOWS_LEN
                tracker.windows = [list(state[i:i + WINDOW_LEN]) for i in range(start, header, WINDOW_LEN)]
        except (ValueError, OverflowError):  # NaN or infinity where a count belongs
            raise IncompatibleState("malformed", "state header is not a bar and counts") from None
        tracker.before = list(state[header:end])
        tracker.analyzer = Analyzer.restore(settings, tracker.before)
        ts_ms, o, h, l, c, volume = tracker.latest
        tracker.analyzer.update(Bar("", "", int(ts_ms), o, h, l, c, volume))  # only the numbers count
        return tracker


def restore_or_reset(settings: AnalyticsSettings, state: list[float]) -> tuple[SymbolTracker, IncompatibleState | None]:
    """The tracker stored in ``state``, or, if that state no longer fits, a fresh one (its warm-up
    starts again) and the reason."""
    try:
        return SymbolTracker.from_state(settings, state), None
    except IncompatibleState as err:
        return SymbolTracker(settings), err
