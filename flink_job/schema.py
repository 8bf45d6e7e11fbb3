"""Field lists of the job's outputs, in one place: the Python rows, the Flink types and the SQL sinks
are all derived from them, so adding a field is a one-line change here (plus the index template).
"""

from __future__ import annotations

from pyflink.common import Types

from flink_job.core.candle_indicators import INDICATOR_NAMES
from flink_job.core.rollups import ROLLUP_WINDOWS, WINDOW_LEN

STRING, DOUBLE, LONG, BYTES, BOOLEAN = "STRING", "DOUBLE", "BIGINT", "BYTES", "BOOLEAN"

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
# The bar's candlestick patterns: TA-Lib function name -> its non-zero output (``patterns``).
PATTERNS_FIELD = ("patterns", f"MAP<{STRING}, {LONG}>")
SIGNAL_ITEM_FIELDS = [("type", STRING), ("direction", STRING), ("value", DOUBLE), ("detail", STRING),
                      ("timeframe", STRING)]
SIGNALS_SQL_TYPE = "ARRAY<ROW<" + ", ".join(f"`{n}` {t}" for n, t in SIGNAL_ITEM_FIELDS) + ">>"

# What the analysis operator emits. Every field of a row leaving Python costs a conversion on each
# side of the bridge, per bar, so the row is narrow: the enriched fields' numbers (DOUBLE) travel as
# one BYTES value of packed little-endian float64 (NaN for NULL), NUMBERS in order, followed by the
# symbol's open rollup windows with this bar (``rollups``, WINDOW_LEN values each, all NaN while
# incomplete); SQL takes each column from it with PACKED_DOUBLE_FUNCTION.
# Per rollup length, the packed numbers then hold the open window (WINDOW_LEN), the candle that closed
# with this bar (WINDOW_LEN, NaN when none closed) and that candle's indicators (CANDLE_INDICATORS).
NUMBERS = [name for name, sql_type in BAR_FIELDS + INDICATOR_FIELDS if sql_type == DOUBLE]
CANDLE_INDICATORS = list(INDICATOR_NAMES)
ROLLUP_BLOCK_LEN = 2 * WINDOW_LEN + len(CANDLE_INDICATORS)
ROLLUP_OFFSETS = {name: len(NUMBERS) + i * ROLLUP_BLOCK_LEN for i, name in enumerate(ROLLUP_WINDOWS)}
CLOSED_OFFSETS = {name: offset + WINDOW_LEN for name, offset in ROLLUP_OFFSETS.items()}
CANDLE_INDICATOR_OFFSETS = {name: offset + 2 * WINDOW_LEN for name, offset in ROLLUP_OFFSETS.items()}
PACKED_LEN = len(NUMBERS) + ROLLUP_BLOCK_LEN * len(ROLLUP_WINDOWS)
PACKED_FIELD = ("numbers", BYTES)
PACKED_DOUBLE_FUNCTION = ("packed_double", "stockanalytics.flink.PackedDouble")  # flink_job/src/main/java
# The signals and the patterns travel as one text each, empty on most bars: in thread mode PyFlink
# converts every ROW inside an ARRAY into one reused Row object (every element would equal the last),
# and every ARRAY or MAP field costs a conversion per element and per bar. Java functions of the job
# parse them in the SQL projection (SIGNALS_SQL, PATTERNS_SQL); ``encode_signals`` and
# ``encode_patterns`` write them.
SIGNALS_TEXT_FIELD = ("signals_text", STRING)
PATTERNS_TEXT_FIELD = ("patterns_text", STRING)
OPERATOR_FIELDS = ([(n, t) for n, t in BAR_FIELDS + INDICATOR_FIELDS if t != DOUBLE] + [PACKED_FIELD]
                   + [PATTERNS_TEXT_FIELD, SIGNALS_TEXT_FIELD])
SIGNAL_ROWS_FUNCTION = ("signal_rows", "stockanalytics.flink.SignalRows")  # flink_job/src/main/java
PATTERN_MAP_FUNCTION = ("pattern_map", "stockanalytics.flink.PatternMap")  # flink_job/src/main/java
SIGNALS_SQL = f"{SIGNAL_ROWS_FUNCTION[0]}(`{SIGNALS_TEXT_FIELD[0]}`)"
PATTERNS_SQL = f"{PATTERN_MAP_FUNCTION[0]}(`{PATTERNS_TEXT_FIELD[0]}`)"
_SIGNAL_SEPARATOR, _FIELD_SEPARATOR = "\x1e", "\x1f"
_JAVA_DOUBLES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def encode_signals(signals) -> str:
    """Signals (``signals.Signal``) as the text ``SignalRows`` parses: signals separated by U+001E,
    their type, direction, value, detail and timeframe by U+001F; None as an empty value."""
    if not signals:
        return ""
    return _SIGNAL_SEPARATOR.join(
        _FIELD_SEPARATOR.join((s.type, s.direction, "" if s.value is None else _java_double(s.value), s.detail,
                               s.timeframe))
        for s in signals)


def _java_double(value: float) -> str:
    text = repr(float(value))
    return _JAVA_DOUBLES.get(text, text)


def encode_patterns(patterns: dict[str, int]) -> str:
    """Patterns (TA-Lib name -> output) as the text ``PatternMap`` parses: NAME=VALUE pairs
    separated by ``;``."""
    return ";".join(f"{name}={value}" for name, value in patterns.items()) if patterns else ""


# Internal, not published: the packed numbers, from whose windows ``rollups.rollup_query`` makes
# the rollup documents.
INTERNAL_FIELDS = [PACKED_FIELD]
ENRICHED_FIELDS = BAR_FIELDS + INDICATOR_FIELDS + [PATTERNS_FIELD, ("signals", SIGNALS_SQL_TYPE)] + INTERNAL_FIELDS


def packed_double_sql(column: str, index: int) -> str:
    """The SQL for the ``index``-th float64 of a packed column: NULL where it is NaN."""
    return f"{PACKED_DOUBLE_FUNCTION[0]}(`{column}`, {index})"


def rollup_value_sql(window: str, index: int) -> str:
    """The SQL for value ``index`` (``rollups.START``, ...) of the open ``window`` (a ROLLUP_WINDOWS
    name) in the packed numbers: NULL while the window is incomplete."""
    return packed_double_sql(PACKED_FIELD[0], ROLLUP_OFFSETS[window] + index)


def closed_value_sql(window: str, index: int) -> str:
    """As ``rollup_value_sql``, for the candle of length ``window`` that closed with the bar: NULL
    when none did."""
    return packed_double_sql(PACKED_FIELD[0], CLOSED_OFFSETS[window] + index)


def candle_indicator_sql(window: str, name: str) -> str:
    """The SQL for indicator ``name`` of the candle of length ``window`` that closed with the bar."""
    return packed_double_sql(PACKED_FIELD[0], CANDLE_INDICATOR_OFFSETS[window] + CANDLE_INDICATORS.index(name))


# ``signal`` tells a bar's signals apart in the document id: the type for a 1-minute signal (as
# before there were others), then the pattern's name or the candle length (SIGNAL_KEY_SQL).
SIGNAL_FIELDS = [("symbol", STRING), ("ts", STRING)] + SIGNAL_ITEM_FIELDS + [("signal", STRING)]
SIGNAL_KEY_SQL = ("CASE WHEN `type` = 'candle_pattern' THEN CONCAT(`type`, ':', `detail`) "
                  "WHEN `timeframe` <> '1m' THEN CONCAT(`type`, ':', `timeframe`) ELSE `type` END")
# ``provisional``: the open candle, still growing, without indicators; false once final, with them.
ROLLUP_FIELDS = [
    ("symbol", STRING), ("window_start", STRING), ("window_end", STRING), ("open", DOUBLE),
    ("high", DOUBLE), ("low", DOUBLE), ("close", DOUBLE), ("volume", LONG), ("avg_close", DOUBLE),
    ("vwap", DOUBLE), ("bar_count", LONG), ("timeframe", STRING), ("provisional", BOOLEAN),
] + [(name, DOUBLE) for name in CANDLE_INDICATORS]
DLQ_FIELDS = [("record_id", STRING), ("raw", STRING), ("reason", STRING), ("detail", STRING),
              ("received_at", STRING)]

_FLINK_TYPES = {STRING: Types.STRING(), DOUBLE: Types.DOUBLE(), LONG: Types.LONG(),
                BYTES: Types.PRIMITIVE_ARRAY(Types.BYTE())}
SIGNAL_ITEM_TYPE = Types.ROW_NAMED([n for n, _ in SIGNAL_ITEM_FIELDS],
                                   [_FLINK_TYPES[t] for _, t in SIGNAL_ITEM_FIELDS])


def _flink_type(sql_type: str):
    if sql_type == SIGNALS_SQL_TYPE:
        return Types.OBJECT_ARRAY(SIGNAL_ITEM_TYPE)
    if sql_type == PATTERNS_FIELD[1]:
        return Types.MAP(Types.STRING(), Types.LONG())
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
