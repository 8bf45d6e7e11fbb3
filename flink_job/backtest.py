"""Backtest / backfill: the streaming job's per-bar logic on a bounded file of bar records.

    python -m flink_job.backtest --input bars.jsonl --output enriched.jsonl \
        [--signals signals.jsonl] [--dlq dlq.jsonl] [--rollups candles.jsonl] [--parallelism N] \
        [--properties FILE]

Input is the public bar contract, one JSON object per line. The file is read by one reader, so its
per-symbol order is the processing order at any parallelism; the analysis (``pipeline.analyze``) is
the very operator the streaming job runs. Output is one enriched JSON line per accepted bar, each
symbol's lines in processing order. Dead letters go to ``--dlq`` (default: next to the output).
Periods and thresholds are the ``Analytics`` group of ``--properties`` (the streaming job's file
shape), else the defaults.

``--rollups`` writes one JSON line per final 5- or 15-minute candle with its indicators, as the job
writes them to ``stock-bars-5m`` / ``stock-bars-15m`` (``provisional`` false), each symbol's in the
order they close; their ``macd_cross`` and ``rsi_zone`` signals are in ``--signals`` with their
``timeframe``. A window still open at the end of the input is not final (a later input could
continue it) and has no line.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pyflink.table.expressions import col

from flink_job import tables
from flink_job.config import ConfigError, parse_analytics, read_property_groups
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.rollups import ROLLUP_WINDOWS
from flink_job.main import PUBLISHED_FIELDS, create_environment, final_candles_query, prepare_local_process
from flink_job.pipeline import SYMBOL_KEY_SQL, analyze
from flink_job.schema import DLQ_FIELDS, ROLLUP_FIELDS, SIGNAL_FIELDS, names

_PART = re.compile(r"^part-.*-(\d+)-(\d+)(\.\w+)?$")


def read_bar_lines(t_env, input_path: Path):
    """The file's lines as the analysis' input: (symbol key, raw, record_id); a file has no stable
    record id, so dead letters of a backtest carry an empty one (their raw text identifies them)."""
    t_env.execute_sql(tables.raw_lines_source("bars_file", input_path.resolve().as_uri()))
    return t_env.sql_query(f"SELECT {SYMBOL_KEY_SQL} AS symbol, `raw`, '' AS record_id FROM bars_file")


def concat_parts(directory: Path, target: Path) -> int:
    """Finished part files of a filesystem sink, in writing order, into one file. Returns lines."""
    parts = []
    # The sink creates its folder only when it gets a record: no folder, no lines.
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _PART.match(path.name)
        if match:
            parts.append((int(match.group(1)), int(match.group(2)), path))
    lines = 0
    with target.open("wb") as out:
        for _, _, path in sorted(parts):
            with path.open("rb") as part:
                for line in part:
                    out.write(line)
                    lines += 1
    return lines


def run_backtest(input_path: Path, output: Path, signals: Path | None, dlq: Path,
                 parallelism: int, settings: AnalyticsSettings, local: bool = True,
                 rollups: Path | None = None) -> dict[str, int]:
    """Run the analysis over ``input_path`` to its end; ``local`` starts a mini-cluster, otherwise the
    job goes to the cluster that ``flink run`` submits to (it shares this machine's files)."""
    if local:
        prepare_local_process()
    work = Path(tempfile.mkdtemp(prefix="backtest-"))
    try:
        t_env = create_environment(local=local, parallelism=parallelism, keep_restarting=False)
        analysis = analyze(t_env, read_bar_lines(t_env, input_path), settings)
        published = analysis.enriched.select(*(col(n) for n in names(PUBLISHED_FIELDS)))
        outputs = {"enriched": (published, PUBLISHED_FIELDS, output),
                   "dead_letters": (analysis.dead_letters, DLQ_FIELDS, dlq)}
        if signals:
            outputs["signals"] = (analysis.signals, SIGNAL_FIELDS, signals)
        if rollups:
            # The final candles as the job writes them to stock-bars-5m/15m, 5m and 15m in one file.
            t_env.create_temporary_view("enriched", analysis.enriched)
            final = " UNION ALL ".join(final_candles_query("enriched", name, minutes)
                                       for name, minutes in ROLLUP_WINDOWS.items())
            outputs["rollups"] = (t_env.sql_query(final), ROLLUP_FIELDS, rollups)
        statements = t_env.create_statement_set()
        for name, (table, fields, _) in outputs.items():
            # One writer per output: lines from each analysis subtask arrive in order, so per-symbol order holds.
            t_env.execute_sql(tables.json_file_sink(f"{name}_file", (work / name).as_uri(), fields, single_writer=True))
            statements.add_insert(f"{name}_file", table)
        statements.execute().wait()
        return {name: concat_parts(work / name, target) for name, (_, _, target) in outputs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_job.backtest", description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="bar records, one JSON per line")
    parser.add_argument("--output", type=Path, required=True, help="enriched records, one JSON per line")
    parser.add_argument("--signals", type=Path, help="signals, one JSON per line")
    parser.add_argument("--dlq", type=Path, help="dead letters (default: OUTPUT with .dlq.jsonl)")
    parser.add_argument("--rollups", type=Path,
                        help="final 5- and 15-minute candles with their indicators and signals, one JSON per line")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--cluster", action="store_true",
                        help="run on the cluster of `flink run` (which puts this job's files there) "
                             "instead of a local mini-cluster")
    parser.add_argument("--properties", type=Path,
                        help="a properties file shaped like Managed Flink's: its Analytics group sets the "
                             "periods and thresholds (other groups are ignored; default: the defaults)")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        parser.error(f"--input {args.input} is not a file")
    for out in (args.output, args.signals, args.dlq, args.rollups):
        if out and not out.resolve().parent.is_dir():
            parser.error(f"{out.resolve().parent} does not exist: create it first")
    dlq = args.dlq or args.output.with_suffix(".dlq.jsonl")
    try:
        settings = parse_analytics(read_property_groups(args.properties)) if args.properties else AnalyticsSettings()
    except ConfigError as err:
        parser.error(f"ConfigError: {err}")
    started = time.monotonic()
    counts = run_backtest(args.input, args.output, args.signals, dlq, args.parallelism, settings,
                          local=not args.cluster, rollups=args.rollups)
    elapsed = time.monotonic() - started
    with args.input.open("rb") as lines:
        bars = sum(1 for _ in lines)
    print(f"{counts['enriched']} enriched bars -> {args.output}; {counts['dead_letters']} dead letters -> {dlq}"
          + (f"; {counts['signals']} signals -> {args.signals}" if args.signals else "")
          + (f"; {counts['rollups']} final candles -> {args.rollups}" if args.rollups else "")
          + f"; {elapsed:.1f} s, {bars / elapsed:,.0f} input lines/s (incl. start-up)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
