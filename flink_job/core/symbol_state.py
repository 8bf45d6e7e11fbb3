"""Per-symbol stream semantics, pure: what a new bar does to a symbol's analysis.

- A bar newer than the symbol's latest is applied.
- A bar with the latest bar's ``ts`` and the same open/high/low/close/volume is a duplicate: no output.
- A bar with the latest bar's ``ts`` and other values is a revision: the analysis is recomputed from the
  state before the latest bar, and the result replaces the previous one (same document ids).
- A bar older than the latest is late: it is not applied.
- A bar of a higher price basis than the symbol's (bar contract version 2, see ``bars``) restarts the
  symbol's analysis from that bar: Alpha Vantage re-based the history (a split or a dividend) and the
  fetcher re-sends it at the new basis, so nothing before it belongs to the same series. A bar of a
  lower basis is stale: it is not applied.

The tracker also keeps the symbol's open 5- and 15-minute rollup windows (``rollups``), so they
follow the same rules and depend on no other symbol. A window is final when a bar of a later window
is applied; its candle's close then feeds that length's ``CandleIndicators``, and the final candle
with its indicators and signals is kept for the caller until the next offer (``closed_candles``).
The latest bar is always in the open window, so a revision never touches a closed candle, and a late
bar reaches no window. A new price basis restarts the candle indicators with the rest.

The state is two flat lists of floats: ``to_state``, led by its layout version, changes with every
applied bar; ``candle_state``, the candle indicators, only when a candle closes or the series starts
again (``take_candle_state``), so it is kept apart and written only then. The operator stores each as
the packed float64 bytes of that list in a ``PICKLED_BYTE_ARRAY`` ValueState (a fixed, documented
layout, not a pickled object graph); they checkpoint, savepoint and rescale like any other keyed
state. ``from_state`` reads them back together.

A stored state that no longer fits (another layout version, other indicator periods, or malformed) is
never an error that fails the job, which would fail again on every restart: ``restore_or_reset``
starts that symbol's warm-up afresh and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flink_job.core.analyzer import AnalyticsSettings, Analyzer, Enriched, IncompatibleState
from flink_job.core.bars import NO_BASIS, Bar
from flink_job.core.candle_indicators import CandleIndicators, CandleReading, candle_record
from flink_job.core.rollups import CLOSE, COUNT, INCOMPLETE, ROLLUP_WINDOWS, START, WINDOW_LEN, add_bar, \
    empty_window, incomplete_window, window_start
from flink_job.core.slots import packed, unpacked

# Version 1 had no version field (it began with the latest bar's ts_ms); 2 leads with the version;
# 3 adds the rollup windows; 4 keeps the analysis before the latest bar only (the analysis after it is
# that bar re-applied, when the state is read); 5 adds the price basis after the revision count; 6 adds,
# after the open windows, each rollup length's candle indicators (``CandleIndicators.snapshot``, each
# led by its length); 7 is 5's layout again, the candle indicators stored apart (``candle_state``):
# they change once per candle, the rest with every bar. Versions 2 to 6 are still read: 2 to 4 at
# basis 0, the analysis after the latest bar of 2 and 3 is left aside and rebuilt the same way, and a
# version 2's open windows become incomplete; the candle indicators of 2 to 5 start empty (their
# warm-up starts again with the next final candle). Each part's snapshot carries its own version, so
# a state written before the analysis became flat slots reads too.
STATE_LAYOUT_VERSION = 7
_LATEST_LEN = 6  # ts_ms, open, high, low, close, volume
_WINDOWS_LEN = WINDOW_LEN * len(ROLLUP_WINDOWS)
_HEADER_LEN = 1 + _LATEST_LEN + 2 + _WINDOWS_LEN  # version, latest bar, revision, basis, open windows
_V2_HEADER_LEN = 1 + _LATEST_LEN + 2  # version, latest bar, revision, length of "before"
_V3_HEADER_LEN = _V2_HEADER_LEN + _WINDOWS_LEN  # ... then the open windows (before the latest bar)
_V4_HEADER_LEN = 1 + _LATEST_LEN + 1 + _WINDOWS_LEN  # version, latest bar, revision, open windows
_HEADERS = {2: _V2_HEADER_LEN, 3: _V3_HEADER_LEN, 4: _V4_HEADER_LEN, 5: _HEADER_LEN, 6: _HEADER_LEN,
            STATE_LAYOUT_VERSION: _HEADER_LEN}
_MINUTES = tuple(ROLLUP_WINDOWS.values())
_TIMEFRAMES = tuple(ROLLUP_WINDOWS)
_NONE_CLOSED: tuple[None, ...] = (None,) * len(ROLLUP_WINDOWS)
# A candle snapshot is a few dozen values: a longer length field is damage, not a snapshot.
_MAX_CANDLE_SNAPSHOT = 4096


class Outcome(Enum):
    APPLIED = "applied"
    REVISED = "revised"
    DUPLICATE = "duplicate"
    LATE = "late"
    REBASED = "rebased"  # applied as the first bar of a new price basis: the analysis restarted
    STALE_BASIS = "stale_basis"  # of an older price basis than the symbol's: not applied


@dataclass(slots=True)  # not frozen, as bars.Bar: built per closed window, never changed once built
class ClosedCandle:
    """A final candle: its length (``timeframe``, ``minutes``), its ``rollups`` window with all its
    bars, and its reading (indicators and signals) over the symbol's final candles of that length."""

    timeframe: str
    minutes: int
    window: list[float]
    reading: CandleReading

    def to_record(self, symbol: str) -> dict:
        """One JSON-ready dict: the ``stock-bars-*`` fields, ``timeframe``, indicators, signals."""
        return candle_record(symbol, self.timeframe, self.minutes, self.window, self.reading)


class SymbolTracker:
    """The latest bar of one symbol plus the analysis before and after it, its open rollup windows
    and the indicators of its final candles."""

    __slots__ = ("settings", "latest", "before", "analyzer", "revision", "windows", "basis", "candles",
                 "closed", "_candles_changed", "_with_latest")

    def __init__(self, settings: AnalyticsSettings, basis: int = 0):
        self.settings = settings
        self._start(basis)

    def _start(self, basis: int) -> None:
        """An empty series at ``basis``: no bar, no analysis, no open windows."""
        self.basis = basis  # the price basis of the series (bar contract version 2)
        self.latest: tuple[float, ...] | None = None
        # The analysis before the latest bar: its snapshot, packed (``slots.packed``) as it is stored,
        # so the one snapshot per bar is also most of that bar's state bytes.
        self.before: bytes | None = None
        self.analyzer = Analyzer(self.settings)  # the analysis after the latest bar
        self.revision = 0  # how often the latest bar was revised
        # Per rollup length: the latest bar's window without the latest bar (see ``rollups``).
        self.windows: list[list[float]] = []
        # ``windows`` with the latest bar added (``rollups``), kept until the latest bar changes: the
        # next bar of the same window starts from exactly that.
        self._with_latest: list[list[float]] | None = None
        self._start_candles()

    def _start_candles(self) -> None:
        """Per rollup length, candle indicators with no final candle yet (warm-up)."""
        self.candles = [CandleIndicators(self.settings, timeframe) for timeframe in _TIMEFRAMES]
        self.closed: tuple[ClosedCandle | None, ...] = _NONE_CLOSED
        self._candles_changed = True

    def offer(self, bar: Bar) -> tuple[Outcome, Enriched | None]:
        self.closed = _NONE_CLOSED
        rebased = False
        if bar.basis != self.basis and bar.basis != NO_BASIS:
            if bar.basis < self.basis:
                return Outcome.STALE_BASIS, None
            self._start(bar.basis)  # the series starts again with this bar
            rebased = True
        key = (bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)
        latest = self.latest
        if latest is None or bar.ts_ms > latest[0]:
            outcome = Outcome.REBASED if rebased else Outcome.APPLIED
            self.revision = 0
            ts_ms = bar.ts_ms
            if latest is None:
                self.windows = [empty_window(ts_ms, m) for m in _MINUTES]
            else:
                full = self._with_latest or [add_bar(w, latest) for w in self.windows]
                windows = []
                for i, (old, minutes) in enumerate(zip(self.windows, _MINUTES)):
                    if window_start(ts_ms, minutes) == old[START]:  # the latest bar joins the window
                        windows.append(full[i])
                        continue
                    if old[COUNT] != INCOMPLETE:
                        self._close_candle(i, full[i])
                    windows.append(empty_window(ts_ms, minutes))
                self.windows = windows
            self.before = packed(self.analyzer.slots)  # the one snapshot per bar
        elif bar.ts_ms < latest[0]:
            return Outcome.LATE, None
        elif key == latest:
            return Outcome.DUPLICATE, None
        else:
            outcome = Outcome.REVISED
            self.revision += 1
            self.analyzer = Analyzer.restore(self.settings, unpacked(self.before))
        self.latest = key
        self._with_latest = None
        return outcome, self.analyzer.update(bar)

    def _close_candle(self, index: int, window: list[float]) -> None:
        """The final ``window`` of rollup length ``index`` (all its bars): feed its close to that
        length's candle indicators and keep the candle for ``closed_candles``. (An incomplete window,
        whose earlier bars are unknown, is no candle: it never gets here.)"""
        candles = self.candles[index]
        reading = candles.close(window[CLOSE])
        self._candles_changed = True
        closed = list(self.closed)
        closed[index] = ClosedCandle(_TIMEFRAMES[index], _MINUTES[index], window, reading)
        self.closed = tuple(closed)

    def closed_candles(self) -> tuple[ClosedCandle | None, ...]:
        """Per rollup length (``ROLLUP_WINDOWS`` order), the candle the last offered bar closed, or
        None: set by an applied or rebased bar that opens a later window, None after any other
        outcome (a revision, a duplicate, a late or stale bar close nothing)."""
        return self.closed

    def provisional_readings(self) -> list[CandleReading | None]:
        """Per rollup length, the provisional reading of the open candle (the open window with the
        latest bar, as ``rollups`` gives it): what it would get if it closed now, marked
        ``provisional``; None while the window is incomplete. Changes nothing."""
        assert self.latest is not None
        close = self.latest[4]
        return [None if window[COUNT] == INCOMPLETE else candles.provisional(close)
                for window, candles in zip(self.windows, self.candles)]

    def rollups(self) -> list[list[float] | None]:
        """Per rollup length, the open window with the latest bar: a ``rollups`` window, or None
        while it is incomplete."""
        assert self.latest is not None
        full = self._with_latest
        if full is None:
            full = self._with_latest = [add_bar(w, self.latest) for w in self.windows]
        return [None if window[COUNT] == INCOMPLETE else window for window in full]

    def state_bytes(self) -> bytes:
        """``to_state()`` packed (``slots.packed``): what the job stores with every applied bar."""
        assert self.latest is not None and self.before is not None
        header = [float(STATE_LAYOUT_VERSION), *self.latest, float(self.revision), float(self.basis)]
        for window in self.windows:
            header += window
        return packed(header) + self.before

    def to_state(self) -> list[float]:
        """The state but the candle indicators (layout ``STATE_LAYOUT_VERSION``): version, latest bar,
        revision, basis, the open windows, the analysis before the latest bar."""
        return unpacked(self.state_bytes())

    @property
    def candle_states(self) -> list[list[float]]:
        """Per rollup length, the snapshot of its candle indicators (derived, never kept)."""
        return [candles.snapshot() for candles in self.candles]

    def candle_state(self) -> list[float]:
        """The candle indicators: per rollup length, the length of its snapshot, then the snapshot."""
        state: list[float] = []
        for candle_state in self.candle_states:
            state.append(float(len(candle_state)))
            state += candle_state
        return state

    def take_candle_state(self) -> list[float] | None:
        """``candle_state()`` if it changed since the last call (or since the tracker was built or
        restored from a state that did not hold it apart), else None: what to store."""
        if not self._candles_changed:
            return None
        self._candles_changed = False
        return self.candle_state()

    def _read_candles(self, state: list[float], at: int) -> int:
        """Restore the candle indicators stored from ``state[at]`` on (``candle_state``); returns
        where they end."""
        for index, timeframe in enumerate(_TIMEFRAMES):
            length = state[at] if at < len(state) else None
            if length is None or not (0 < length <= _MAX_CANDLE_SNAPSHOT and length == int(length)):
                raise IncompatibleState("malformed", f"no {timeframe} candle indicators at value {at}")
            candle_state = state[at + 1:at + 1 + int(length)]
            self.candles[index] = CandleIndicators.restore(self.settings, candle_state, timeframe)
            at += 1 + int(length)
        return at

    @classmethod
    def from_state(cls, settings: AnalyticsSettings, state: list[float],
                   candle_state: list[float] | None = None) -> "SymbolTracker":
        """The tracker ``to_state`` and ``candle_state`` were taken from. Raises ``IncompatibleState``
        if the state has another layout version, was taken under other periods, or is malformed. A
        state of layouts 2 to 5 has no candle indicators: they start empty (warm-up again from the
        next final candle); layout 6 holds them within, layout 7 in ``candle_state``."""
        version = state[0] if state else None
        if version not in _HEADERS:
            raise IncompatibleState("layout_version", f"state layout {version!r}, expected {STATE_LAYOUT_VERSION}")
        header = _HEADERS[int(version)]
        if len(state) < header:
            raise IncompatibleState("malformed", "state is truncated")
        tracker = cls(settings)
        latest = state[1:1 + _LATEST_LEN]
        try:
            tracker.latest = tuple(latest[:-1]) + (int(latest[-1]),)
            tracker.revision = int(state[1 + _LATEST_LEN])
            if version >= 5:
                tracker.basis = int(state[2 + _LATEST_LEN])
            # Versions 2 and 3 stored the analysis after the latest bar behind the one before it.
            end = len(state) if version >= 4 else header + int(state[_V2_HEADER_LEN - 1])
            if version == 2:
                tracker.windows = [incomplete_window(int(latest[0]), m) for m in _MINUTES]
            else:
                start = header - _WINDOWS_LEN
                tracker.windows = [list(state[i:i + WINDOW_LEN]) for i in range(start, header, WINDOW_LEN)]
        except (ValueError, OverflowError):  # NaN or infinity where a count belongs
            raise IncompatibleState("malformed", "state header is not a bar and counts") from None
        if version == 6:
            header = tracker._read_candles(state, header)
        elif version == STATE_LAYOUT_VERSION:
            if not candle_state:
                raise IncompatibleState("malformed", "the candle indicators' state is missing")
            if tracker._read_candles(candle_state, 0) != len(candle_state):
                raise IncompatibleState("malformed", "the candle indicators' state has trailing values")
            tracker._candles_changed = False  # stored apart already
        before = state[header:end]
        tracker.analyzer = Analyzer.restore(settings, before)
        tracker.before = packed(before)
        ts_ms, o, h, l, c, volume = tracker.latest
        tracker.analyzer.update(Bar("", "", int(ts_ms), o, h, l, c, volume))  # only the numbers count
        return tracker


def restore_or_reset(settings: AnalyticsSettings, state: list[float], candle_state: list[float] | None = None
                     ) -> tuple[SymbolTracker, IncompatibleState | None]:
    """The tracker stored in ``state`` and ``candle_state``, or, if they no longer fit, a fresh one
    (its warm-up starts again) and the reason."""
    try:
        return SymbolTracker.from_state(settings, state, candle_state), None
    except IncompatibleState as err:
        return SymbolTracker(settings), err
