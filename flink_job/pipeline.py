"""The analysis pipeline, independent of where bars come from and where results go.

records (symbol key, raw text, record id) → key by symbol → ``AnalyzeBars`` → three tables:
enriched bars, signals, dead letters. Sources and sinks are the callers' business (``main`` for
Kinesis and OpenSearch, ``backtest`` for files), so both run exactly the same per-bar logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Types
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment, Table

from flink_job.config import OpenSearchConfig
from flink_job.core.activity import DEFAULT_SUMMARY_INTERVAL_MS
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.operators import DLQ_TAG, AnalyzeBars
from flink_job.schema import (
    ENRICHED_FIELDS, NUMBERS, OPERATOR_FIELDS, PACKED_DOUBLE_FUNCTION, PACKED_FIELD, PATTERN_MAP_FUNCTION,
    PATTERNS_FIELD, PATTERNS_SQL, SIGNAL_ITEM_FIELDS, SIGNAL_KEY_SQL, SIGNAL_ROWS_FUNCTION, SIGNALS_SQL, names,
    packed_double_sql, row_type,
)

# JSON_VALUE yields NULL for text that is not JSON or lacks a symbol; such records still reach the
# operator (under the empty key) so that they are dead-lettered with a reason, never dropped.
SYMBOL_KEY_SQL = "COALESCE(JSON_VALUE(`raw`, '$.symbol'), '')"


@dataclass(frozen=True)
class Analysis:
    enriched: Table
    signals: Table
    dead_letters: Table


def analyze(t_env: StreamTableEnvironment, records: Table, settings: AnalyticsSettings,
            summary_interval_ms: int = DEFAULT_SUMMARY_INTERVAL_MS, operator: AnalyzeBars | None = None,
            source_threads: bool = False, opensearch: OpenSearchConfig | None = None) -> Analysis:
    """``records`` has columns (symbol, raw, record_id) in per-symbol processing order;
    ``source_threads`` says that their source emits from threads of its own (see below);
    ``summary_interval_ms`` paces the operator's summary log lines. ``operator`` replaces the
    default ``AnalyzeBars(settings, summary_interval_ms, opensearch)``, e.g. with an instrumented
    subclass; ``opensearch``: where the job writes, asked for write blocks when the job restarts."""
    stream = t_env.to_data_stream(records)
    if source_threads:
        # The legacy Kinesis source emits from threads of its own, and everything chained to it runs
        # there, the Python key selector included. A failover then tears the embedded interpreter
        # down while such a thread is still inside it (a SIGSEGV in take_gil that kills the
        # TaskManager). A chain of its own runs all Python on the task's own thread.
        # (A DataStream from a table has no start_new_chain: its transformation is set directly.)
        jvm = get_gateway().jvm
        stream._j_data_stream.getTransformation().setChainingStrategy(
            jvm.org.apache.flink.streaming.api.operators.ChainingStrategy.HEAD)
    enriched = (
        stream
        .key_by(lambda row: row[0], key_type=Types.STRING())
        .process(operator or AnalyzeBars(settings, summary_interval_ms, opensearch),
                 output_type=row_type(OPERATOR_FIELDS))
        .name("analyze-bars")
        .uid("analyze-bars")
    )
    # The operator's packed numbers, signals and patterns texts become columns (see
    # schema.OPERATOR_FIELDS), and the signal rows come from the enriched rows' `signals`.
    for function in (PACKED_DOUBLE_FUNCTION, SIGNAL_ROWS_FUNCTION, PATTERN_MAP_FUNCTION):
        t_env.create_java_temporary_system_function(*function)
    enriched_table = t_env.sql_query(f"SELECT {_enriched_columns()} FROM {t_env.from_data_stream(enriched)}")
    items = ", ".join(f"`{name}`" for name in names(SIGNAL_ITEM_FIELDS))
    return Analysis(
        enriched=enriched_table,
        signals=t_env.sql_query(f"SELECT symbol, ts, {items}, {SIGNAL_KEY_SQL} AS `signal` FROM {enriched_table} "
                                f"CROSS JOIN UNNEST(`signals`) AS s ({items})"),
        dead_letters=t_env.from_data_stream(enriched.get_side_output(DLQ_TAG)),
    )


def _enriched_columns() -> str:
    """SQL for ``ENRICHED_FIELDS`` from a row of ``OPERATOR_FIELDS``."""
    def column(name: str) -> str:
        if name == "signals":
            return f"{SIGNALS_SQL} AS `signals`"
        if name == PATTERNS_FIELD[0]:
            return f"{PATTERNS_SQL} AS `{name}`"
        if name in NUMBERS:
            return f"{packed_double_sql(PACKED_FIELD[0], NUMBERS.index(name))} AS `{name}`"
        return f"`{name}`"
    return ", ".join(column(name) for name in names(ENRICHED_FIELDS))
