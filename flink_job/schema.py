"""Field lists of the job's outputs, in one place: the Python rows, the Flink types and the SQL sinks
are all derived from them, so adding a field is a one-line change here (plus the index template).
"""

from __future__ import annotations

from pyflink.common import Types

from flink_job.rollups import ROLLUP_WINDOWS

STRING, DOUBLE, LONG = "STRING", "DOUBLE", "BIGINT"

BAR_FIELDS = [
    ("symbol", STRING), ("ts", STRING), ("open", DOUBLE), ("high", DOUBLE), ("low", DOUBLE),
    ("close", DOUBLE), ("volume", LONG), ("interval", STRING), ("source", STRING),
]
INDICATOR_FIELDS = [
    ("sma_5", DOUBLE), ("sma_20", DOUBLE), ("sma_50", DOUBLE), ("ema_12", DOUBLE), ("ema_26", DOUBLE),
    ("macd", DOUBLE), ("macd_signal", DOUBLE), ("macd_hist", DOUBLE), ("rsi_14", DOUBLE),
    ("bb_upper", DOUBLE), ("bb_middle", DOUBLE), ("bb_lower", DOUBLE), ("vwap", DOUBLE),
    ("session", STRING), ("return_1", DOUBLE), ("volume_z_20", DOUBLE), ("trend", STRING),
]
SIGNAL_ITEM_FIELDS = [("type", STRING), ("direction", STRING), ("value", DOUBLE), ("detail", STRING)]
SIGNALS_SQL_TYPE = "ARRAY<ROW<" + ", ".join(f"`{n}` {t}" for n, t in SIGNAL_ITEM_FIELDS) + ">>"

# Internal, not published: the symbol's open rollup windows with this bar, one float array per
# window length (``rollups``), NULL while incomplete; ``rollups.rollup_query`` makes their documents.
INTERNAL_FIELDS = [(f"rollup_{name}", "ARRAY<DOUBLE>") for name in ROLLUP_WINDOWS]
ENRICHED_FIELDS = BAR_FIELDS + INDICATOR_FIELDS + [("signals", SIGNALS_SQL_TYPE)] + INTERNAL_FIELDS
# What the analysis operator emits: the enriched fields with the signals as four parallel arrays. In
# thread mode PyFlink converts every ROW inside an ARRAY into one reused Row object (every element
# would equal the last), so `signals` is zipped from these on the Java side (ZIP_SIGNALS_SQL).
SIGNAL_ARRAY_FIELDS = [(f"signal_{name}s", f"ARRAY<{sql_type}>") for name, sql_type in SIGNAL_ITEM_FIELDS]
OPERATOR_FIELDS = BAR_FIELDS + INDICATOR_FIELDS + SIGNAL_ARRAY_FIELDS + INTERNAL_FIELDS
ZIP_SIGNALS_FUNCTION = ("zip_signals", "stockanalytics.flink.ZipSignals")  # flink_job/src/main/java
ZIP_SIGNALS_SQL = f"{ZIP_SIGNALS_FUNCTION[0]}({', '.join(n for n, _ in SIGNAL_ARRAY_FIELDS)})"
SIGNAL_FIELDS = [("symbol", STRING), ("ts", STRING)] + SIGNAL_ITEM_FIELDS
ROLLUP_FIELDS = [
    ("symbol", STRING), ("window_start", STRING), ("window_end", STRING), ("open", DOUBLE),
    ("high", DOUBLE), ("low", DOUBLE), ("close", DOUBLE), ("volume", LONG), ("avg_close", DOUBLE),
    ("vwap", DOUBLE), ("bar_count", LONG),
]
DLQ_FIELDS = [("record_id", STRING), ("raw", STRING), ("reason", STRING), ("detail", STRING),
              ("received_at", STRING)]

_FLINK_TYPES = {STRING: Types.STRING(), DOUBLE: Types.DOUBLE(), LONG: Types.LONG()}
SIGNAL_ITEM_TYPE = Types.ROW_NAMED([n for n, _ in SIGNAL_ITEM_FIELDS],
                                   [_FLINK_TYPES[t] for _, t in SIGNAL_ITEM_FIELDS])


def _flink_type(sql_type: str):
    if sql_type == SIGNALS_SQL_TYPE:
        return Types.OBJECT_ARRAY(SIGNAL_ITEM_TYPE)
    if sql_type.startswith("ARRAY<"):
        return Types.BASIC_ARRAY(_FLINK_TYPES[sql_type[len("ARRAY<"):-1]])
    return _FLINK_TYPES[sql_type]


def row_type(fields: list[tuple[str, str]]):
    """The Flink row type for a field list, for data crossing from Python into Java."""
    return Types.ROW_NAMED([n for n, _ in fields], [_flink_type(t) for _, t in fields])


def names(fields: list[tuple[str, str]]) -> list[str]:
    return [n for n, _ in fields]


# What the keyed operator receives: the partition key, the record text and a record id: the
# Kinesis stream, shard and sequence number (a dead letter's document id), or '' in backtests,
# where a file line has no stable id and a dead letter is known by its raw text.
INPUT_FIELDS = [("symbol", STRING), ("raw", STRING), ("record_id", STRING)]
