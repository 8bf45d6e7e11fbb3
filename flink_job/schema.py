"""Field lists of the job's outputs, in one place: the Python rows, the Flink types and the SQL sinks
are all derived from them, so adding a field is a one-line change here (plus the index template).
"""

from __future__ import annotations

from pyflink.common import Types

from flink_job.core.rollups import ROLLUP_WINDOWS, WINDOW_LEN

STRING, DOUBLE, LONG, BYTES = "STRING", "DOUBLE", "BIGINT", "BYTES"

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

# What the analysis operator emits. Every field of a row leaving Python costs a conversion on each
# side of the bridge, per bar, so the row is narrow: the enriched fields' numbers (DOUBLE) travel as
# one BYTES value of packed little-endian float64 (NaN for NULL), NUMBERS in order, followed by the
# symbol's open rollup windows with this bar (``rollups``, WINDOW_LEN values each, all NaN while
# incomplete); SQL takes each column from it with PACKED_DOUBLE_FUNCTION.
NUMBERS = [name for name, sql_type in BAR_FIELDS + INDICATOR_FIELDS if sql_type == DOUBLE]
ROLLUP_OFFSETS = {name: len(NUMBERS) + i * WINDOW_LEN for i, name in enumerate(ROLLUP_WINDOWS)}
PACKED_LEN = len(NUMBERS) + WINDOW_LEN * len(ROLLUP_WINDOWS)
PACKED_FIELD = ("numbers", BYTES)
PACKED_DOUBLE_FUNCTION = ("packed_double", "stockanalytics.flink.PackedDouble")  # flink_job/src/main/java
# The signals travel as four parallel arrays: in thread mode PyFlink converts every ROW inside an
# ARRAY into one reused Row object (every element would equal the last), so the `signals` rows are
# zipped on the Java side (ZIP_SIGNALS_SQL).
SIGNAL_ARRAY_FIELDS = [(f"signal_{name}s", f"ARRAY<{sql_type}>") for name, sql_type in SIGNAL_ITEM_FIELDS]
OPERATOR_FIELDS = ([(n, t) for n, t in BAR_FIELDS + INDICATOR_FIELDS if t != DOUBLE] + [PACKED_FIELD]
                   + SIGNAL_ARRAY_FIELDS)
ZIP_SIGNALS_FUNCTION = ("zip_signals", "stockanalytics.flink.ZipSignals")  # flink_job/src/main/java
ZIP_SIGNALS_SQL = f"{ZIP_SIGNALS_FUNCTION[0]}({', '.join(n for n, _ in SIGNAL_ARRAY_FIELDS)})"
# Internal, not published: the packed numbers, from whose windows ``rollups.rollup_query`` makes
# the rollup documents.
INTERNAL_FIELDS = [PACKED_FIELD]
ENRICHED_FIELDS = BAR_FIELDS + INDICATOR_FIELDS + [("signals", SIGNALS_SQL_TYPE)] + INTERNAL_FIELDS


def packed_double_sql(column: str, index: int) -> str:
    """The SQL for the ``index``-th float64 of a packed column: NULL where it is NaN."""
    return f"{PACKED_DOUBLE_FUNCTION[0]}(`{column}`, {index})"


def rollup_value_sql(window: str, index: int) -> str:
    """The SQL for value ``index`` (``rollups.START``, ...) of the open ``window`` (a ROLLUP_WINDOWS
    name) in the packed numbers: NULL while the window is incomplete."""
    return packed_double_sql(PACKED_FIELD[0], ROLLUP_OFFSETS[window] + index)


SIGNAL_FIELDS = [("symbol", STRING), ("ts", STRING)] + SIGNAL_ITEM_FIELDS
ROLLUP_FIELDS = [
    ("symbol", STRING), ("window_start", STRING), ("window_end", STRING), ("open", DOUBLE),
    ("high", DOUBLE), ("low", DOUBLE), ("close", DOUBLE), ("volume", LONG), ("avg_close", DOUBLE),
    ("vwap", DOUBLE), ("bar_count", LONG),
]
DLQ_FIELDS = [("record_id", STRING), ("raw", STRING), ("reason", STRING), ("detail", STRING),
              ("received_at", STRING)]

_FLINK_TYPES = {STRING: Types.STRING(), DOUBLE: Types.DOUBLE(), LONG: Types.LONG(),
                BYTES: Types.PRIMITIVE_ARRAY(Types.BYTE())}
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
