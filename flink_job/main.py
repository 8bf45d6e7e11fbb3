"""Real-time stock analytics: the streaming job (Managed Flink entry point, and local mode).

Steps, in order (each a function below):
1. environment: thread-mode PyFlink; locally also the connector jar, checkpoints and parallelism;
2. config: Managed Flink's property groups, or the same shape from a local file (``--properties``);
3. source: Kinesis ``stock_stream_data``, raw records keyed by their JSON ``symbol``;
4. analysis: the per-symbol operator (indicators, signals, dead letters) from ``pipeline``;
5. sinks: Kinesis ``stock_sma_stream`` and the OpenSearch indices;
6. insert: one statement set, so every sink runs in one job (the first INSERT would otherwise start it).

Nothing happens at import; ``python -m flink_job.main --properties FILE`` runs it locally on a
mini-cluster (``python -m stack.properties`` writes FILE for the local ports), and Managed Flink runs
``main.py`` without arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import sysconfig
from functools import partial
from importlib import metadata
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StatementSet, StreamTableEnvironment

from flink_job import tables
from flink_job.config import ConfigError, JobConfig, describe, load_config, managed_properties_path
from flink_job.core.index_lifecycle import BY_NAME as FAMILIES
from flink_job.core.rollups import ROLLUP_WINDOWS, rollup_query
from flink_job.logs import log_event
from flink_job.pipeline import SYMBOL_KEY_SQL, Analysis, analyze
from flink_job.schema import (
    CANDLE_INDICATORS, DLQ_FIELDS, ENRICHED_FIELDS, INTERNAL_FIELDS, ROLLUP_FIELDS, SIGNAL_FIELDS,
    candle_indicator_sql, closed_value_sql, names, rollup_value_sql,
)

JAR_NAME = "pyflink-dependencies.jar"
LOOPBACK = "127.0.0.1"
PUBLISHED_FIELDS = [f for f in ENRICHED_FIELDS if f not in INTERNAL_FIELDS]


def find_connector_jar() -> Path:
    """The uber-jar next to the job: ``lib/`` in the Managed Flink zip, ``target/`` in the repo."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lib" / JAR_NAME, here.parent / "lib" / JAR_NAME, here / "target" / JAR_NAME):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{JAR_NAME} not found next to {here}: run `make jar` first")


def prepare_local_process() -> None:
    """Environment the local mini-cluster's JVM inherits: set before PyFlink starts it."""
    # The local Kinesis speaks JSON only; both AWS SDKs in the connector default to CBOR.
    os.environ.setdefault("AWS_CBOR_DISABLE", "true")
    os.environ.setdefault("AWS_CBOR_ENABLED", "false")
    # Thread mode embeds CPython in the JVM: it finds pemja and this project only via PYTHONPATH.
    paths = [sysconfig.get_paths()["purelib"], str(Path(__file__).resolve().parent.parent)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    # PyFlink would otherwise serve the mini-cluster's Python workers from this process, on a gRPC port
    # open on every interface ([::]); the JVM starts them itself instead, as a cluster does (thread
    # mode has none).
    os.environ.setdefault("_python_worker_execution_mode", "process")


def create_environment(local: bool, parallelism: int | None = None, checkpoint_dir: str | None = None,
                       keep_restarting: bool = True, rest_port: int | None = None,
                       restore_from: str | None = None, execution_mode: str = "thread",
                       restart_delay: str = "2s") -> StreamTableEnvironment:
    conf = Configuration()
    # Thread mode runs Python in the TaskManager's JVM (no gRPC hop per record): ~4x the throughput
    # of process mode for a per-record keyed operator. Process mode is the fallback (Runtime group).
    conf.set_string("python.execution-mode", execution_mode)
    if not keep_restarting:
        # A bounded run (a backtest) fails fast instead of retrying, locally and on a cluster alike.
        conf.set_string("restart-strategy.type", "none")
    # Rollup window bounds are written as UTC.
    conf.set_string("table.local-time-zone", "UTC")
    if local:
        conf.set_string("pipeline.jars", find_connector_jar().as_uri())
        conf.set_string("python.executable", sys.executable)
        conf.set_string("execution.checkpointing.interval", "10s")
        # Every listener of the mini-cluster on loopback only: the REST API, the blob server (the
        # JobManager's bind host) and the TaskManager's ports.
        for key in ("rest.address", "rest.bind-address", "jobmanager.bind-host", "taskmanager.bind-host",
                    "taskmanager.host"):
            conf.set_string(key, LOOPBACK)
        if keep_restarting:
            # A live job rides out outages of its services, as on Managed Flink; tests count restarts.
            conf.set_string("restart-strategy.type", "fixed-delay")
            conf.set_string("restart-strategy.fixed-delay.attempts", "1000000")
            conf.set_string("restart-strategy.fixed-delay.delay", restart_delay)
        if checkpoint_dir:
            conf.set_string("state.checkpoints.dir", Path(checkpoint_dir).resolve().as_uri())
            conf.set_string("execution.checkpointing.externalized-checkpoint-retention",
                            "RETAIN_ON_CANCELLATION")
        if rest_port is not None:
            # The mini-cluster's REST API: job state, restarts, checkpoints (and their paths).
            conf.set_string("rest.port", str(rest_port))
        if restore_from:
            conf.set_string("execution.savepoint.path", Path(restore_from).resolve().as_uri())
    env = local_environment(conf) if local else StreamExecutionEnvironment.get_execution_environment(conf)
    if parallelism:
        env.set_parallelism(parallelism)
    return StreamTableEnvironment.create(env)


def local_environment(conf: Configuration) -> StreamExecutionEnvironment:
    """A mini-cluster environment whose class loader sees ``pipeline.jars``.

    PyFlink's own local environment keeps the JVM's application class loader, which lacks the jar, and
    the job graph is built with it: the code generated around the job's Java functions
    (``schema.SIGNAL_ROWS_FUNCTION``, ``schema.PACKED_DOUBLE_FUNCTION``, ...) then does not compile. ``flink run -j`` has no such problem."""
    conf.set_string("execution.target", "local")
    conf.set_string("execution.attached", "true")
    jvm = get_gateway().jvm
    class_loader = jvm.Thread.currentThread().getContextClassLoader()  # has pipeline.jars (set above)
    return StreamExecutionEnvironment(
        jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment(conf._j_configuration, class_loader))


# OpenSearch sinks: table, index family, columns, document id key.
OPENSEARCH_SINKS = (
    ("indicators_index", "stock-indicators", PUBLISHED_FIELDS, ["symbol", "ts"]),
    ("signals_index", "stock-signals", SIGNAL_FIELDS, ["symbol", "ts", "signal"]),
    ("dlq_index", "stock-dlq", DLQ_FIELDS, ["record_id"]),
    *((f"bars_{name}_index", f"stock-bars-{name}", ROLLUP_FIELDS, ["symbol", "window_start"])
      for name in ROLLUP_WINDOWS),
)


def declare_tables(t_env: StreamTableEnvironment, config: JobConfig) -> None:
    os_config = config.opensearch
    for ddl in (
        tables.kinesis_source("bars_in", config.source),
        tables.kinesis_sink("enriched_out", config.sink, PUBLISHED_FIELDS),
        *(tables.opensearch_sink(table, FAMILIES[family], fields, key, os_config)
          for table, family, fields, key in OPENSEARCH_SINKS),
    ):
        t_env.execute_sql(ddl)


def read_records(t_env: StreamTableEnvironment, config: JobConfig):
    # record_id = stream/shard:sequence, unique across streams: the dead letters' document id.
    stream = config.source.stream_name.replace("'", "''")
    return t_env.sql_query(
        f"SELECT {SYMBOL_KEY_SQL} AS symbol, `raw`, CONCAT('{stream}/', shard_id, ':', seq) AS record_id "
        "FROM bars_in"
    )


def insert_all(t_env: StreamTableEnvironment, analysis: Analysis) -> StatementSet:
    t_env.create_temporary_view("enriched", analysis.enriched)
    t_env.create_temporary_view("signals", analysis.signals)
    t_env.create_temporary_view("dead_letters", analysis.dead_letters)
    published = ", ".join(f"`{n}`" for n in names(PUBLISHED_FIELDS))
    rollups = {f"bars_{name}_index": candles_query("enriched", name, minutes) for name, minutes in ROLLUP_WINDOWS.items()}
    queries = {
        "indicators_index": f"SELECT {published} FROM enriched",
        "signals_index": "SELECT * FROM signals",
        "dlq_index": "SELECT * FROM dead_letters",
        **rollups,
    }
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO enriched_out SELECT {published} FROM enriched")
    for table, family, fields, _ in OPENSEARCH_SINKS:
        # Each row's index comes from its own time: the family's period column goes last.
        columns = ", ".join(f"`{n}`" for n in names(fields))
        statements.add_insert_sql(f"INSERT INTO {table} SELECT {columns}, "
                                  f"{tables.index_period_sql(FAMILIES[family])} FROM ({queries[table]})")
    return statements


def final_candles_query(view: str, name: str, minutes: int) -> str:
    """The ``name`` candle that closed with each row's bar, with its indicators (rows without one
    give none)."""
    return rollup_query(view, partial(closed_value_sql, name), minutes, name,
                        {i: candle_indicator_sql(name, i) for i in CANDLE_INDICATORS})


def candles_query(view: str, name: str, minutes: int) -> str:
    """The ``name`` candles of each row: the open one (provisional, no indicators) and the one that
    closed with the bar, with its indicators. One query, so both reach the sink in the rows' order:
    a window's final document always follows its last provisional one."""
    open_candle = rollup_query(view, partial(rollup_value_sql, name), minutes, name,
                               dict.fromkeys(CANDLE_INDICATORS))
    return f"{final_candles_query(view, name, minutes)}\nUNION ALL{open_candle}"


def run(config: JobConfig, local: bool, parallelism: int | None = None, checkpoint_dir: str | None = None,
        rest_port: int | None = None, restore_from: str | None = None, restart_delay: str = "2s") -> None:
    t_env = create_environment(local, parallelism, checkpoint_dir, rest_port=rest_port, restore_from=restore_from,
                               execution_mode=config.runtime.execution_mode, restart_delay=restart_delay)
    declare_tables(t_env, config)
    analysis = analyze(t_env, read_records(t_env, config), config.analytics, config.runtime.summary_interval_ms,
                       source_threads=True, opensearch=config.opensearch)
    result = insert_all(t_env, analysis).execute()
    if local:
        # A local mini-cluster lives as long as this process: block until the job ends or Ctrl-C.
        result.wait()


def versions() -> dict[str, str]:
    """Python and the installed Flink packages, for the start line."""
    found = {"python": platform.python_version()}
    for package in ("apache-flink", "apache-flink-libraries"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Real-time stock analytics Flink job")
    parser.add_argument("--properties", type=Path,
                        help="local mode: a properties file shaped like Managed Flink's")
    parser.add_argument("--parallelism", type=int)
    parser.add_argument("--checkpoint-dir", help="local mode: where checkpoints are kept")
    parser.add_argument("--rest-port", type=int, help="local mode: port of the Flink REST API")
    parser.add_argument("--restore-from", help="local mode: a retained checkpoint or savepoint to resume from")
    parser.add_argument("--restart-delay", default="2s",
                        help="local mode: pause before each restart after a failure (default 2s)")
    args = parser.parse_args(argv)
    local = args.properties is not None
    path = args.properties if local else managed_properties_path()
    try:
        config = load_config(path)
    except ConfigError as err:
        # One line an operator can act on, before any Flink environment exists.
        log_event("config_error", logging.ERROR, properties=str(path), error=f"ConfigError: {err}")
        sys.exit(2)
    log_event("job_start", mode="local" if local else "managed", properties=str(path), versions=versions(),
              parallelism=args.parallelism, restore_from=args.restore_from, config=describe(config))
    if local:
        prepare_local_process()
    run(config, local, args.parallelism, args.checkpoint_dir, args.rest_port, args.restore_from, args.restart_delay)


if __name__ == "__main__":
    main()
