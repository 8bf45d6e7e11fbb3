"""The job's one stateful Python operator: parse, validate and analyse each bar, per symbol.

Thin by design: the bar contract lives in ``bars``, the stream semantics in ``symbol_state`` and the
maths in ``analyzer``. This class only moves rows and state in and out of Flink.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from operator import attrgetter
from struct import Struct

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_job.config import OpenSearchConfig
from flink_job.core.activity import DEFAULT_SUMMARY_INTERVAL_MS, Activity
from flink_job.core.analyzer import AnalyticsSettings, Enriched
from flink_job.core.bars import InvalidBar, clip_utf8, format_ts, parse_keyed
from flink_job.core.index_lifecycle import FAMILIES
from flink_job.core.rollups import WINDOW_LEN
from flink_job.core.slots import packed, unpacked
from flink_job.core.symbol_state import STATE_LAYOUT_VERSION, ClosedCandle, Outcome, SymbolTracker, restore_or_reset
from flink_job.logs import log_event, use_flink_log
from flink_job.schema import (
    CANDLE_INDICATORS, DLQ_FIELDS, NUMBERS, OPERATOR_FIELDS, PACKED_FIELD, PACKED_LEN, encode_patterns,
    encode_signals, names, row_type,
)
from flink_job.write_blocks import report_write_blocks

DLQ_TAG = OutputTag("dlq", row_type(DLQ_FIELDS))
COUNTERS = ("dead_letters", "late_bars", "duplicate_bars", "revised_bars", "state_resets", "rebased_symbols")


def dead_letter(record_id: str, raw: str, reason: str, detail: str, now_ms: int) -> Row:
    return Row(record_id, clip_utf8(raw), reason, detail, format_ts(now_ms))


class AnalyzeBars(KeyedProcessFunction):
    """Keyed by symbol. Emits one enriched row per applied or revised bar, immediately, with its
    signals (``pipeline`` makes the signal rows from them).

    Side output: one dead letter per rejected record (``DLQ_TAG``: invalid input, a late bar or a bar
    of an older price basis).
    Metrics: the ``COUNTERS``. Log lines (``logs``): a ``state_reset`` per symbol whose stored state
    no longer fits, and at most once per ``summary_interval_ms`` a ``summary`` (and
    ``state_restored`` after a restore).
    """

    def __init__(self, settings: AnalyticsSettings, summary_interval_ms: int = DEFAULT_SUMMARY_INTERVAL_MS,
                 opensearch: OpenSearchConfig | None = None):
        self.settings = settings
        self.summary_interval_ms = summary_interval_ms
        self.opensearch = opensearch  # asked for write blocks when the job restarts (``write_blocks``)

    def open(self, runtime_context: RuntimeContext):
        # The state is SymbolTracker.state_bytes(), to_state() as packed float64 bytes: a fixed,
        # documented layout, not a pickled object graph. (Thread mode pickles every non-basic state
        # type, and its array converter fails on empty state, so raw bytes are both the safe and the
        # fastest choice.)
        self.state = runtime_context.get_state(
            ValueStateDescriptor("symbol_state", Types.PICKLED_BYTE_ARRAY())
        )
        # The candle indicators change once per candle, not with every bar: kept apart, written only
        # when they change (``SymbolTracker.take_candle_state``).
        self.candle_state = runtime_context.get_state(
            ValueStateDescriptor("candle_state", Types.PICKLED_BYTE_ARRAY())
        )
        # Trackers mirror the keyed state of this subtask: every change is written through to the
        # state, and a restore or rescale creates a new operator instance with an empty cache, which
        # reads each symbol's state on its first record.
        self.trackers: dict[str, SymbolTracker] = {}
        group = runtime_context.get_metrics_group()
        self.counters = {name: group.counter(name) for name in COUNTERS}
        self.activity = Activity(int(time.time() * 1000), self.summary_interval_ms)
        use_flink_log()
        attempt = runtime_context.get_attempt_number()
        if self.opensearch is not None and attempt > 0 and runtime_context.get_index_of_this_subtask() == 0:
            # One line per restart of the job, not one per subtask.
            report_write_blocks(self.opensearch, [f.name for f in FAMILIES], attempt)

    def close(self):
        self._log_activity(int(time.time() * 1000))

    def _log_activity(self, now_ms: int) -> None:
        for event, fields in self.activity.take(now_ms, STATE_LAYOUT_VERSION):
            log_event(event, **fields)

    def _reject(self, record_id: str, raw: str, reason: str, detail: str, now_ms: int):
        self.counters["dead_letters"].inc()
        self.activity.dead_letters[reason] += 1
        return DLQ_TAG, dead_letter(record_id, raw, reason, detail, now_ms)

    def _tracker(self, symbol: str) -> SymbolTracker:
        stored = self.state.value()
        if not stored:
            return SymbolTracker(self.settings)
        candles = self.candle_state.value()
        tracker, reset = restore_or_reset(self.settings, unpacked(stored), unpacked(candles) if candles else None)
        if reset is None:
            self.activity.restored_symbol(symbol)
        else:
            # Logged once per symbol: the fresh tracker is cached and its state written with this bar.
            self.counters["state_resets"].inc()
            self.activity.state_resets += 1
            log_event("state_reset", logging.WARNING, symbol=symbol, reason=reset.reason, detail=reset.detail,
                      layout_version=STATE_LAYOUT_VERSION, action="warm-up starts again")
        return tracker

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context):
        symbol, raw, record_id = value
        now_ms = int(time.time() * 1000)
        if self.activity.due(now_ms):
            self._log_activity(now_ms)
        try:
            bar = parse_keyed(raw, symbol, now_ms)
        except InvalidBar as err:
            yield self._reject(record_id, raw, err.reason, err.detail, now_ms)
            return
        tracker = self.trackers.get(symbol)
        if tracker is None:
            tracker = self.trackers[symbol] = self._tracker(symbol)
        outcome, enriched = tracker.offer(bar)
        if outcome is Outcome.LATE:
            self.counters["late_bars"].inc()
            self.activity.late_bars += 1
            yield self._reject(record_id, raw, "late", "older than the symbol's latest bar", now_ms)
            return
        if outcome is Outcome.DUPLICATE:
            self.counters["duplicate_bars"].inc()
            self.activity.duplicate_bars += 1
            return
        if outcome is Outcome.STALE_BASIS:
            yield self._reject(record_id, raw, "stale_basis",
                               f"price basis {bar.basis} is older than the symbol's {tracker.basis}", now_ms)
            return
        self.activity.accepted_bars += 1
        if outcome is Outcome.REVISED:
            self.counters["revised_bars"].inc()
            self.activity.revised_bars += 1
        elif outcome is Outcome.REBASED:
            self.counters["rebased_symbols"].inc()
            log_event("rebased", symbol=symbol, basis=bar.basis, first_ts=bar.ts,
                      action="the symbol's analysis restarts from this bar at the new price basis")
        self.state.update(tracker.state_bytes())
        candles = tracker.take_candle_state()
        if candles is not None:
            self.candle_state.update(packed(candles))
        yield enriched_row(enriched, tracker.rollups(), tracker.closed_candles())


# The fields that cross as they are, before the packed numbers (schema.OPERATOR_FIELDS).
_PLAIN_FIELDS = attrgetter(*names(OPERATOR_FIELDS[:OPERATOR_FIELDS.index(PACKED_FIELD)]))
_NUMBERS = attrgetter(*NUMBERS)
_PACK = Struct(f"<{PACKED_LEN}d").pack
_INCOMPLETE = (math.nan,) * WINDOW_LEN
_NOT_CLOSED = (math.nan,) * (WINDOW_LEN + len(CANDLE_INDICATORS))


def enriched_row(enriched: Enriched, rollups: Sequence[list[float] | None],
                 closed: Sequence[ClosedCandle | None] = ()) -> Row:
    """A row of ``OPERATOR_FIELDS``: the plain fields, then packed (see ``schema``) the numbers and,
    per rollup length, the symbol's open window and the candle that closed with this bar and its
    indicators; the patterns and the signals (the candles' too) as one text each."""
    numbers = [math.nan if v is None else v for v in _NUMBERS(enriched)]
    signals = enriched.signals
    for i, window in enumerate(rollups):
        numbers += _INCOMPLETE if window is None else window
        candle = closed[i] if closed else None
        if candle is None:
            numbers += _NOT_CLOSED
        else:
            numbers += candle.window
            numbers += [math.nan if v is None else v for v in candle.reading[:len(CANDLE_INDICATORS)]]
            signals += candle.reading.signals
    return Row(*_PLAIN_FIELDS(enriched), _PACK(*numbers), encode_patterns(enriched.patterns), encode_signals(signals))
