"""SQL DDL for every table the job reads or writes: one builder per kind of table.

Options are assembled from the typed config, never from conditional SQL fragments.
"""

from __future__ import annotations

from flink_job.config import OpenSearchConfig, StreamConfig
from flink_job.core.index_lifecycle import PERIOD_CHARS, Family

# The sink column that names a record's index (``<family>-<period>``). The connector writes every
# column into the document, so it is stored, but not indexed (see the index templates).
INDEX_PERIOD = "index_period"


def with_options(options: dict[str, str]) -> str:
    """The body of a WITH clause: every key and value a quoted SQL string literal."""
    def quote(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return ",\n  ".join(f"{quote(k)} = {quote(v)}" for k, v in options.items())


def columns(fields: list[tuple[str, str]]) -> str:
    """A column list from (name, SQL type) pairs, names quoted."""
    return ",\n  ".join(f"`{name}` {sql_type}" for name, sql_type in fields)


def _kinesis_options(stream: StreamConfig) -> dict[str, str]:
    return {"connector": "kinesis", "stream": stream.stream_name}


def kinesis_source(table: str, stream: StreamConfig) -> str:
    """Raw records plus their shard and sequence number: a stable id for dead letters."""
    options = {
        **_kinesis_options(stream),
        "scan.stream.initpos": stream.init_position,
        # 200 ms: a Kinesis shard serves at most 5 GetRecords calls a second. The local stack, which
        # has no such limit, polls every 100 ms (stack/application_properties.json).
        "scan.shard.getrecords.intervalmillis": "200",
        **stream.connector_options,
        "format": "raw",
    }
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  `raw` STRING,
  `shard_id` VARCHAR(128) NOT NULL METADATA FROM 'shard-id' VIRTUAL,
  `seq` VARCHAR(128) NOT NULL METADATA FROM 'sequence-number' VIRTUAL
) WITH (
  {with_options(options)}
)"""


def kinesis_sink(table: str, stream: StreamConfig, fields: list[tuple[str, str]]) -> str:
    """JSON records partitioned by symbol, so per-symbol order survives into the output stream."""
    options = {
        **_kinesis_options(stream),
        **{k: v for k, v in stream.connector_options.items() if k.startswith("aws.")},
        "format": "json",
        "json.encode.decimal-as-plain-number": "true",
        # HTTP/2 needs TLS; the local Kinesis speaks plain HTTP/1.1 and so does every proxy.
        "sink.http-client.protocol.version": "HTTP1_1",
        # Send a partial batch after 200 ms rather than the default 5 s: this is a real-time feed.
        "sink.flush-buffer.timeout": "200",
    }
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  {columns(fields)}
) PARTITIONED BY (`symbol`) WITH (
  {with_options(options)}
)"""


def index_period_sql(family: Family) -> str:
    """SQL for the ``INDEX_PERIOD`` column: ``Family.period_of`` of the record's own time field."""
    return (f"REPLACE(SUBSTRING(`{family.time_field}` FROM 1 FOR {PERIOD_CHARS[family.granularity]}), "
            f"'-', '.') AS `{INDEX_PERIOD}`")


def opensearch_sink(table: str, family: Family, fields: list[tuple[str, str]], key: list[str],
                    config: OpenSearchConfig) -> str:
    """Upserts by primary key into the family's index of the record's period (the connector's
    dynamic index): the document id is the key's values joined by '|' and the period comes from the
    record's own time, so a replayed or revised record overwrites its document instead of adding one.
    Rows carry ``fields`` then ``INDEX_PERIOD`` (``index_period_sql``)."""
    options = {
        "connector": "opensearch-2",
        "hosts": config.hosts,
        "index": f"{family.name}-{{{INDEX_PERIOD}}}",
        "document-id.key-delimiter": "|",
        "sink.bulk-flush.interval": config.flush_interval,
        "sink.bulk-flush.max-actions": str(config.flush_max_actions),
        # Retries bulk items OpenSearch rejects as too many (HTTP 429): a full write queue, and the
        # flood-stage disk block, which OpenSearch answers with 429 (up to ~8 min in all). Any other
        # failure (a refused connection, a write block set by hand: 403) fails the job, which
        # restarts from its last checkpoint and writes the same documents again.
        "sink.bulk-flush.backoff.strategy": "EXPONENTIAL",
        "sink.bulk-flush.backoff.max-retries": "10",
        "sink.bulk-flush.backoff.delay": "500ms",
    }
    if config.username:
        options.update({"username": config.username, "password": config.password or ""})
    keys = ", ".join(f"`{k}`" for k in key)
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  {columns([*fields, (INDEX_PERIOD, "STRING")])},
  PRIMARY KEY ({keys}) NOT ENFORCED
) WITH (
  {with_options(options)}
)"""


def json_file_sink(table: str, path: str, fields: list[tuple[str, str]], single_writer: bool = False) -> str:
    """JSON lines under ``path`` (a folder URI). ``single_writer``: one writer, so lines from each
    upstream subtask keep their order (the backtest's per-symbol order)."""
    options = {"connector": "filesystem", "path": path, "format": "json",
               "json.encode.decimal-as-plain-number": "true"}
    if single_writer:
        options["sink.parallelism"] = "1"
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  {columns(fields)}
) WITH (
  {with_options(options)}
)"""


def raw_lines_source(table: str, path: str) -> str:
    """Whole lines of a file as ``raw``: one file is one split, so one reader reads it in order."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  `raw` STRING
) WITH (
  {with_options({"connector": "filesystem", "path": path, "format": "raw"})}
)"""


def blackhole_sink(table: str, fields: list[tuple[str, str]]) -> str:
    """Discards rows: for measuring a pipeline without the cost of its outputs."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  {columns(fields)}
) WITH (
  {with_options({"connector": "blackhole"})}
)"""
