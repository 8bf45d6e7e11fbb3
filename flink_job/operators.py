"""The job's one stateful Python operator: parse, validate and analyse each bar, per symbol.

Thin by design: the bar contract lives in ``bars``, the stream semantics in ``symbol_state`` and the
maths in ``analyzer``. This class only moves rows and state in and out of Flink.
"""

from __future__ import annotations

import time
from array import array

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_job.analyzer import AnalyticsSettings
from flink_job.bars import InvalidBar, format_ts, parse_bar
from flink_job.schema import BAR_FIELDS, DLQ_FIELDS, INDICATOR_FIELDS, SIGNAL_FIELDS, names, row_type
from flink_job.symbol_state import Outcome, SymbolTracker

RAW_LIMIT = 10 * 1024  # a dead letter keeps the first 10 KB of the record

SIGNALS_TAG = OutputTag("signals", row_type(SIGNAL_FIELDS))
DLQ_TAG = OutputTag("dlq", row_type(DLQ_FIELDS))
_RECORD_FIELDS = names(BAR_FIELDS + INDICATOR_FIELDS)


def dead_letter(record_id: str, raw: str, reason: str, detail: str, now_ms: int) -> Row:
    return Row(record_id, raw[:RAW_LIMIT], reason, detail, format_ts(now_ms))


class AnalyzeBars(KeyedProcessFunction):
    """Keyed by symbol. Emits one enriched row per applied or revised bar, immediately.

    Side outputs: one row per signal (``SIGNALS_TAG``) and one dead letter per rejected record
    (``DLQ_TAG``: invalid input or a late bar).
    """

    def __init__(self, settings: AnalyticsSettings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        # The state is SymbolTracker.to_state() as packed float64 bytes: a fixed, documented layout,
        # not a pickled object graph. (Thread mode pickles every non-basic state type, and its array
        # converter fails on empty state, so raw bytes are both the safe and the fastest choice.)
        self.state = runtime_context.get_state(
            ValueStateDescriptor("symbol_state", Types.PICKLED_BYTE_ARRAY())
        )
        # Trackers mirror the keyed state of this subtask: every change is written through to the
        # state, and a restore or rescale creates a new operator instance with an empty cache.
        self.trackers: dict[str, SymbolTracker] = {}
        group = runtime_context.get_metrics_group()
        self.counters = {name: group.counter(name) for name in ("dead_letters", "late_bars",
                                                                "duplicate_bars", "revised_bars")}

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context):
        symbol, raw, record_id = value[0], value[1], value[2]
        now_ms = int(time.time() * 1000)
        try:
            bar = parse_bar(raw, now_ms)
            if bar.symbol != symbol:
                raise InvalidBar("ambiguous_symbol", "the record names more than one symbol")
        except InvalidBar as err:
            self.counters["dead_letters"].inc()
            yield DLQ_TAG, dead_letter(record_id, raw, err.reason, err.detail, now_ms)
            return
        tracker = self.trackers.get(symbol)
        if tracker is None:
            stored = self.state.value()
            tracker = (SymbolTracker.from_state(self.settings, array("d", stored)) if stored
                       else SymbolTracker(self.settings))
            self.trackers[symbol] = tracker
        outcome, enriched = tracker.offer(bar)
        if outcome is Outcome.LATE:
            self.counters["late_bars"].inc()
            self.counters["dead_letters"].inc()
            yield DLQ_TAG, dead_letter(record_id, raw, "late", "older than the symbol's latest bar", now_ms)
            return
        if outcome is Outcome.DUPLICATE:
            self.counters["duplicate_bars"].inc()
            return
        if outcome is Outcome.REVISED:
            self.counters["revised_bars"].inc()
        self.state.update(array("d", tracker.to_state()).tobytes())
        record = enriched.to_record()
        signals = [Row(s.type, s.direction, s.value, s.detail) for s in enriched.signals]
        for s in signals:
            yield SIGNALS_TAG, Row(bar.symbol, bar.ts, *s)
        yield enriched_row(record, signals, bar.ts_ms, tracker.revision)


def enriched_row(record: dict, signals: list[Row], ts_ms: int, version: int) -> Row:
    return Row(*(record.get(name) for name in _RECORD_FIELDS), signals, ts_ms, version)
