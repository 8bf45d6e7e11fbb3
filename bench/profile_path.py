"""Where the per-bar Python time goes, outside Flink: the operator's code path stage by stage.

``AnalyzeBars.process_element`` is run as is, with a stand-in for Flink's keyed state and metrics,
so the profile is of the product's own code. Stages are timed separately over the same bars (in
chunks, so memory stays flat):

  json.loads → parse_bar (JSON + validation) → SymbolTracker.offer (snapshot before + Analyzer.update)
  → state_bytes (the keyed state write) → rollups + the enriched row

and the whole ``process_element`` once plainly (µs/bar) and once under cProfile (top functions).
Flink adds to this the conversion of rows between Java and Python, the state backend, the
side outputs and the sinks: ``report`` compares the two.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import time
from itertools import islice
from pathlib import Path

from pyflink.common import Row

from bench.bardata import bars_file
from bench.pipelines import PassThrough
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import parse_bar
from flink_job.core.slots import packed
from flink_job.core.symbol_state import SymbolTracker
from flink_job.main import PUBLISHED_FIELDS
from flink_job.operators import AnalyzeBars, enriched_row
from flink_job.schema import names

CHUNK = 10_000
PUBLISHED_NAMES = names(PUBLISHED_FIELDS)


class KeyedStateStandIn:
    """The keyed state of one operator: a ValueState per descriptor and key; the driver sets ``key``
    before each element, as Flink does. ``bytes_written`` counts every update's bytes."""

    def __init__(self) -> None:
        self.key = ""
        self.values: dict[tuple[str, str], bytes] = {}
        self.bytes_written = 0

    def value_state(self, name: str) -> "_ValueStateStandIn":
        return _ValueStateStandIn(self, name)


class _ValueStateStandIn:
    def __init__(self, states: KeyedStateStandIn, name: str) -> None:
        self.states, self.name = states, name

    def value(self):
        return self.states.values.get((self.name, self.states.key))

    def update(self, value) -> None:
        self.states.values[(self.name, self.states.key)] = value
        self.states.bytes_written += len(value)


class _Counter:
    def inc(self, n: int = 1) -> None:
        pass


class RuntimeContextStandIn:
    def __init__(self) -> None:
        self.state = KeyedStateStandIn()

    def get_state(self, descriptor):
        return self.state.value_state(descriptor.get_name())

    def get_metrics_group(self):
        return self

    def counter(self, name: str) -> _Counter:
        return _Counter()

    def get_attempt_number(self) -> int:  # a first attempt: no question to OpenSearch
        return 0


def open_operator(operator) -> KeyedStateStandIn:
    context = RuntimeContextStandIn()
    operator.open(context)
    return context.state


def drive(operator, state: KeyedStateStandIn, rows: list[Row]) -> int:
    """Feed rows through ``process_element`` as Flink would; returns the number of outputs."""
    emitted = 0
    for row in rows:
        state.key = row[0]
        for _ in operator.process_element(row, None):
            emitted += 1
    return emitted


def _timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def published_json(record: dict) -> str:
    """The enriched record as the Kinesis sink writes it (compact JSON of the published fields)."""
    return json.dumps({name: record.get(name) for name in PUBLISHED_NAMES}, separators=(",", ":"))


def _stage_pass(lines: list[str], trackers: dict, settings: AnalyticsSettings,
                now_ms: int) -> tuple[dict[str, float], list[int]]:
    """One chunk through each stage separately: seconds per stage, and sizes of some published records."""
    spent = {}
    spent["json.loads"], _ = _timed(lambda: [json.loads(line) for line in lines])
    spent["parse_bar (json + validation)"], bars = _timed(lambda: [parse_bar(line, now_ms) for line in lines])

    def offer():
        out = []
        for b in bars:  # a tracker per new symbol only (setdefault would build one per bar)
            tracker = trackers.get(b.symbol) or trackers.setdefault(b.symbol, SymbolTracker(settings))
            out.append(tracker.offer(b)[1])
        return out

    spent["SymbolTracker.offer (snapshot + update)"], enriched = _timed(offer)
    spent["  of which the packed snapshot"], _ = _timed(lambda: [packed(trackers[b.symbol].analyzer.slots) for b in bars])
    spent["state_bytes (header + the snapshot)"], _ = _timed(
        lambda: [trackers[b.symbol].state_bytes() for b in bars])

    def rows():
        for e in enriched:
            tracker = trackers[e.symbol]
            enriched_row(e, tracker.rollups(), tracker.closed_candles())

    spent["rollups + enriched row (packed numbers, pattern and signal texts)"], _ = _timed(rows)
    return spent, [len(published_json(e.to_record())) for e in enriched[::50]]


def _rows(lines: list[str]) -> list[Row]:
    return [Row(json.loads(line)["symbol"], line, "") for line in lines]


def _top_functions(profile: cProfile.Profile, bars: int, limit: int = 20) -> list[dict]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(path).name}:{line}({name})", "calls_per_bar": calls / bars,
                     "tottime_us_per_bar": 1e6 * tottime / bars, "cumtime_us_per_bar": 1e6 * cumtime / bars})
    return sorted(rows, key=lambda r: r["tottime_us_per_bar"], reverse=True)[:limit]


def run(source_bars: int, symbols: int, bars: int, seed: int = 1) -> dict:
    path = bars_file(source_bars, symbols, seed)
    with path.open() as f:
        lines = list(islice(f, bars))
    bars = len(lines)
    settings = AnalyticsSettings()
    now_ms = int(time.time() * 1000)

    spent: dict[str, float] = {}
    trackers: dict = {}
    sizes: list[int] = []
    for start in range(0, bars, CHUNK):
        chunk_spent, chunk_sizes = _stage_pass(lines[start:start + CHUNK], trackers, settings, now_ms)
        for stage, seconds in chunk_spent.items():
            spent[stage] = spent.get(stage, 0.0) + seconds
        sizes += chunk_sizes

    rows = _rows(lines)
    operator = AnalyzeBars(settings)
    state = open_operator(operator)
    operator_s, emitted = _timed(drive, operator, state, rows)
    state_bytes = state.bytes_written / bars

    passthrough = PassThrough()
    passthrough_s, _ = _timed(drive, passthrough, open_operator(passthrough), rows)

    profiled = AnalyzeBars(settings)
    profiled_state = open_operator(profiled)
    profile = cProfile.Profile()
    profile.runcall(drive, profiled, profiled_state, rows)

    return {
        "bars": bars, "symbols": symbols,
        "stages_us_per_bar": {stage: 1e6 * seconds / bars for stage, seconds in spent.items()},
        "process_element_us_per_bar": 1e6 * operator_s / bars,
        "passthrough_process_element_us_per_bar": 1e6 * passthrough_s / bars,
        "outputs_per_bar": emitted / bars,
        "state_bytes_per_update": state_bytes,
        "bar_bytes": sum(map(len, lines)) / bars,
        "enriched_bytes": sum(sizes) / len(sizes),
        "cprofile_top": _top_functions(profile, bars),
    }
