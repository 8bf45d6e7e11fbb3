"""The pipelines the throughput benchmark compares, all on the same bounded file of bar records.

- ``backtest``: the product itself, ``flink_job.backtest.run_backtest`` (enriched, signals and dead
  letters to JSON files).
- ``backtest_p2``: the same at parallelism 2 (not in the default set): scaling within one JVM.
- ``analyze_blackhole``: the same operator (``pipeline.analyze``) with blackhole sinks: what the
  JSON file sinks cost; it also times its own ``process_element`` inside the job.
- ``sql_sma20``: Flink SQL alone, one moving average: the ceiling of the JVM without Python.
- ``passthrough`` / ``passthrough_blackhole``: the cheapest Python keyed operator the product's
  structure allows (same source, key, state type and thread mode, no analysis): the floor for any
  per-bar Python logic.
- ``passthrough_state3k`` / ``passthrough_wide``: the pass-through plus one of ``AnalyzeBars``'s
  Flink-side costs (its per-bar state write; its wide output row), to attribute the gap.
- ``analyze_blackhole_process`` / ``passthrough_blackhole_process``: the blackhole pair in process
  mode (the Python worker a process of its own, records over gRPC), the job's fallback mode.

Every builder returns the statement set to execute, or runs the product's own entry point; the
timing is the runner's business (``jobrunner``).
"""

from __future__ import annotations

from pathlib import Path

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import StatementSet, StreamTableEnvironment, Table
from pyflink.table.expressions import col

from bench.timed_operator import TimedAnalyzeBars
from flink_job import tables
from flink_job.backtest import read_bar_lines, run_backtest
from flink_job.core.analyzer import AnalyticsSettings, Enriched
from flink_job.core.signals import Signal
from flink_job.main import PUBLISHED_FIELDS, create_environment, prepare_local_process
from flink_job.operators import enriched_row
from flink_job.pipeline import analyze
from flink_job.schema import (
    BAR_FIELDS, DLQ_FIELDS, ENRICHED_FIELDS, INPUT_FIELDS, OPERATOR_FIELDS, SIGNAL_FIELDS, names,
    row_type,
)

# What AnalyzeBars writes to its keyed state per bar on the benchmark input (``profile_path``
# measures it: SymbolTracker.to_state(), ~235 float64 values, plus the candle indicators' ~104
# every fifth bar).
ANALYZER_STATE_BYTES = 2_050
OPERATOR_TIME = "operator-time.json"  # written by the timed operator when it closes


class PassThrough(KeyedProcessFunction):
    """Per record: read and update a small keyed value (the state type ``AnalyzeBars`` uses), then
    emit the record unchanged.

    Ablations switch on one of ``AnalyzeBars``'s costs at a time, without its analysis:
    ``state_bytes`` writes a value of the size ``AnalyzeBars`` writes per bar, ``wide_row`` emits a
    row shaped like its enriched output instead of the record.
    """

    def __init__(self, state_bytes: int = 8, wide_row: Row | None = None):
        self.padding = bytes(max(0, state_bytes - 8))
        self.wide_row = wide_row

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("seen", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context):
        stored = self.state.value()
        seen = int.from_bytes(stored[:8], "little") + 1 if stored else 1
        self.state.update(seen.to_bytes(8, "little") + self.padding)
        yield value if self.wide_row is None else self.wide_row


def environment(execution_mode: str = "thread") -> StreamTableEnvironment:
    """The backtest's environment: thread mode unless told, parallelism 1, no restarts."""
    prepare_local_process()
    return create_environment(local=True, parallelism=1, keep_restarting=False, execution_mode=execution_mode)


def raw_records(t_env: StreamTableEnvironment, input_path: Path) -> Table:
    """The backtest's source and key extraction: (symbol, raw, record_id) rows, one reader."""
    return read_bar_lines(t_env, input_path)


def _blackhole(t_env: StreamTableEnvironment, table: str, fields: list[tuple[str, str]]) -> str:
    t_env.execute_sql(tables.blackhole_sink(table, fields))
    return table


def _json_files(t_env: StreamTableEnvironment, table: str, fields: list[tuple[str, str]], directory: Path) -> str:
    # The backtest's writer: JSON, one writer per output.
    t_env.execute_sql(tables.json_file_sink(table, directory.resolve().as_uri(), fields, single_writer=True))
    return table


def backtest(input_path: Path, out_dir: Path, signals: bool, parallelism: int = 1) -> dict[str, int]:
    return run_backtest(input_path, out_dir / "enriched.jsonl", out_dir / "signals.jsonl" if signals else None,
                        out_dir / "dlq.jsonl", parallelism, AnalyticsSettings())


def backtest_p2(input_path: Path, out_dir: Path, signals: bool) -> dict[str, int]:
    """Parallelism 2 in one mini-cluster: thread mode runs every Python subtask of a JVM in one
    interpreter, so this shows how far Python operators in one TaskManager scale."""
    return backtest(input_path, out_dir, signals, parallelism=2)


def analyze_blackhole(input_path: Path, out_dir: Path, signals: bool, execution_mode: str = "thread") -> StatementSet:
    """The product's analysis; its operator also measures the time inside its ``process_element``
    (``timed_operator``, well under 1 µs per bar of its own)."""
    report = str((out_dir / OPERATOR_TIME).resolve())
    t_env = environment(execution_mode)
    settings = AnalyticsSettings()
    analysis = analyze(t_env, raw_records(t_env, input_path), settings,
                       operator=TimedAnalyzeBars(settings, report))
    statements = t_env.create_statement_set()
    statements.add_insert(_blackhole(t_env, "enriched_sink", PUBLISHED_FIELDS),
                          analysis.enriched.select(*(col(n) for n in names(PUBLISHED_FIELDS))))
    statements.add_insert(_blackhole(t_env, "dlq_sink", DLQ_FIELDS), analysis.dead_letters)
    if signals:
        statements.add_insert(_blackhole(t_env, "signals_sink", SIGNAL_FIELDS), analysis.signals)
    return statements


def sql_sma20(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    t_env = environment()
    options = {"connector": "filesystem", "path": input_path.resolve().as_uri(), "format": "json"}
    t_env.execute_sql(f"CREATE TABLE bars_json ({tables.columns(BAR_FIELDS)}, proctime AS PROCTIME()) "
                      f"WITH ({tables.with_options(options)})")
    sink = _blackhole(t_env, "sma_sink", [("symbol", "STRING"), ("ts", "STRING"), ("sma_20", "DOUBLE")])
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""INSERT INTO {sink} SELECT symbol, ts, AVG(`close`) OVER (
  PARTITION BY symbol ORDER BY proctime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) FROM bars_json""")
    return statements


def _passthrough(input_path: Path, to_files: Path | None, operator: PassThrough | None = None,
                 fields: list[tuple[str, str]] = INPUT_FIELDS, execution_mode: str = "thread") -> StatementSet:
    t_env = environment(execution_mode)
    stream = (
        t_env.to_data_stream(raw_records(t_env, input_path))
        .key_by(lambda row: row[0], key_type=Types.STRING())
        .process(operator or PassThrough(), output_type=row_type(fields))
        .name("passthrough")
    )
    sink = (_json_files(t_env, "records_file", fields, to_files) if to_files
            else _blackhole(t_env, "records_sink", fields))
    statements = t_env.create_statement_set()
    statements.add_insert(sink, t_env.from_data_stream(stream))
    return statements


def passthrough(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return _passthrough(input_path, out_dir / "records")


def passthrough_blackhole(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return _passthrough(input_path, None)


def analyze_blackhole_process(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return analyze_blackhole(input_path, out_dir, signals, execution_mode="process")


def passthrough_blackhole_process(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return _passthrough(input_path, None, execution_mode="process")


def passthrough_state3k(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return _passthrough(input_path, None, PassThrough(state_bytes=ANALYZER_STATE_BYTES))


def passthrough_wide(input_path: Path, out_dir: Path, signals: bool) -> StatementSet:
    return _passthrough(input_path, None, PassThrough(wide_row=sample_enriched_row()), OPERATOR_FIELDS)


def sample_enriched_row() -> Row:
    """An enriched row as ``AnalyzeBars`` emits it, all indicators set, one signal."""
    values = {name: 1.0 for name, sql_type in ENRICHED_FIELDS if sql_type == "DOUBLE"}
    values.update(symbol="BN0000", ts="2024-03-04T14:30:00Z", ts_ms=1709562600000, volume=1000,
                  interval="1min", source="alphavantage", session="regular", trend="up",
                  return_z_20=1.0, trend_slope=1.0, patterns={"CDLDOJI": 100},
                  signals=(Signal("volume_spike", "up", 3.5, "volume z-score 3.50"),))
    window = [1709562600000.0, 1.0, 1.0, 1.0, 1.0, 100.0, 3.0, 300.0, 3.0]
    return enriched_row(Enriched(**values), [window, window])


VARIANTS = {
    "backtest": backtest,
    "backtest_p2": backtest_p2,
    "analyze_blackhole": analyze_blackhole,
    "sql_sma20": sql_sma20,
    "passthrough": passthrough,
    "passthrough_blackhole": passthrough_blackhole,
    "passthrough_state3k": passthrough_state3k,
    "passthrough_wide": passthrough_wide,
    "analyze_blackhole_process": analyze_blackhole_process,
    "passthrough_blackhole_process": passthrough_blackhole_process,
}
