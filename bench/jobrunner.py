"""One timed pipeline run in this process (one JVM): ``python -m bench.jobrunner VARIANT ...``.

What is timed, so that JVM start-up and planning do not count as processing:
- ``gateway_s``: starting the JVM (PyFlink's gateway), done first and on its own;
- ``setup_s``: environment, DDL and Python-side planning, up to ``StatementSet.execute()``;
- ``submit_s``: ``execute()`` itself (optimisation, job graph, mini-cluster start, submission);
- ``run_s``: from the job's submission to its end (``TableResult.wait()`` returning): the execution;
- ``net_runtime_s``: Flink's own figure for the same job (``JobExecutionResult.getNetRuntime``);
- ``post_s``: what the caller does after the job (the backtest concatenates its part files);
- ``cpu_run_s``: CPU seconds of this process and the JVM during ``run_s`` (thread mode runs the
  Python operator inside the JVM, so this is the whole job).

``execute`` and ``wait`` are wrapped rather than timed at the call site because the product's
``run_backtest`` calls them itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pyflink.java_gateway import get_gateway
from pyflink.table import StatementSet, TableResult

from bench import pipelines
from bench.procstat import tree_cpu_seconds
from flink_job import backtest
from flink_job.main import prepare_local_process


class JobClock:
    """Marks the moments of one job's life by wrapping ``StatementSet.execute``/``TableResult.wait``."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.net_runtime_s: float | None = None

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()
        self.cpu[name] = tree_cpu_seconds(os.getpid())

    def install(self) -> None:
        execute, wait = StatementSet.execute, TableResult.wait
        clock = self

        def timed_execute(statements: StatementSet) -> TableResult:
            clock.mark("submit")
            result = execute(statements)
            clock.mark("submitted")
            return result

        def timed_wait(result: TableResult, timeout_ms: int | None = None):
            out = wait(result, timeout_ms)
            clock.mark("finished")
            try:
                job = result.get_job_client().get_job_execution_result().result()
                clock.net_runtime_s = job.get_net_runtime() / 1000
            except Exception:  # noqa: BLE001 - an informative extra: the wall-clock marks are the measurement
                pass
            return out

        StatementSet.execute, TableResult.wait = timed_execute, timed_wait

    def phases(self) -> dict[str, float]:
        m = self.marks
        return {
            "gateway_s": m["gateway"] - m["start"],
            "setup_s": m["submit"] - m["gateway"],
            "submit_s": m["submitted"] - m["submit"],
            "run_s": m["finished"] - m["submitted"],
            "post_s": m["done"] - m["finished"],
            "cpu_run_s": self.cpu["finished"] - self.cpu["submitted"],
            "net_runtime_s": self.net_runtime_s,
        }


def count_lines(directory: Path) -> int:
    """Lines in the finished part files of a filesystem sink."""
    total = 0
    for path in directory.glob("part-*"):
        with path.open("rb") as part:
            total += sum(1 for _ in part)
    return total


def _tolerate_empty_outputs() -> None:
    """``run_backtest`` fails after the job when an output got no records (its sink never creates
    the directory), e.g. dead letters of a clean input: count a missing directory as zero lines.
    Only the step after the timed job is affected."""
    concat = backtest.concat_parts

    def concat_parts(directory: Path, target: Path) -> int:
        if directory.is_dir():
            return concat(directory, target)
        target.write_bytes(b"")
        return 0

    backtest.concat_parts = concat_parts


def run(variant: str, input_path: Path, out_dir: Path, signals: bool) -> dict:
    clock = JobClock()
    clock.mark("start")
    prepare_local_process()  # before the JVM starts: it inherits this environment
    get_gateway()
    clock.mark("gateway")
    clock.install()
    _tolerate_empty_outputs()
    built = pipelines.VARIANTS[variant](input_path, out_dir, signals)
    outputs = built  # the backtest ran itself and returned its line counts
    if isinstance(built, StatementSet):
        built.execute().wait()
        outputs = {}
    clock.mark("done")
    if (out_dir / "records").is_dir():
        outputs = {"records": count_lines(out_dir / "records")}
    result = {"variant": variant, **clock.phases(), "outputs": outputs}
    if (out_dir / pipelines.OPERATOR_TIME).exists():
        result["operator_time"] = json.loads((out_dir / pipelines.OPERATOR_TIME).read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobrunner", description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(pipelines.VARIANTS))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True, help="where to write the timings (JSON)")
    parser.add_argument("--signals", action="store_true", help="also write signals (backtest variants)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(run(args.variant, args.input, args.out_dir, args.signals)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
