"""``make run``: the whole pipeline locally, live, until Ctrl-C.

Starts the local services, creates the streams and index templates, then runs the processes of
``PROCESSES`` (the Flink job on a local mini-cluster, the producer, the live dashboard, the alerts,
the hourly deletion of expired indices) and prints,
every few seconds, the job's state and restarts, which services answer and what arrived in OpenSearch.

One run per run directory: the run holds ``<run dir>/run.lock`` (see ``run_lock``) from start until it
has stopped everything, and a second run names it and exits. Every process it starts is marked with
the run directory (see ``processes``), so Ctrl-C, SIGTERM, SIGHUP and ``python -m stack.run --stop``
(``make stop``) end all of them, the job's JVM included, also after a run crashed or was killed.
Stopping does not depend on the run's output: what it prints also goes to ``<run dir>/run.log``, and
a closed pipe or terminal (``make run | tee`` and Ctrl-C, a closed window) neither interrupts stopping
nor, during the run, goes unnoticed: the run stops as if interrupted (see ``console``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import psutil

from flink_job.config import JobConfig, load_config
from lambda_kit.renamed import FETCHER as FETCHER_RENAMED
from stack import processes, resources, services, status
from stack.console import Console
from stack.properties import write_local_properties
from stack.run_lock import AlreadyRunning, RunLock
from stack.services import Ports, StackError, exit_code, free_port, run_dir, send_signal

STOP_WAIT_S = 120.0  # how long `make stop` lets a live run stop itself before killing it
ALERTS_TABLE = "stock_alerts"
RETENTION_EVERY_S = 3600
# What stops a run like Ctrl-C: `make stop` (SIGTERM), a closed terminal (SIGHUP), Ctrl-C itself.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class OutputClosed(Exception):
    """The run's standard output went away (its pipe's reader or its terminal): nobody watches it."""


@dataclass(frozen=True)
class RunContext:
    """What the processes of one run need to know."""

    ports: Ports
    config: JobConfig
    properties: Path
    flink_rest_port: int


@dataclass(frozen=True)
class Process:
    """A long-running process of ``make run``; the run ends when an ``essential`` one exits."""

    name: str
    command: Callable[[RunContext], list[str]]
    env: Callable[[RunContext], dict[str, str]] = lambda ctx: {}
    essential: bool = False


def job_command(ctx: RunContext) -> list[str]:
    return [sys.executable, "-m", "flink_job.main", "--properties", str(ctx.properties),
            "--checkpoint-dir", str(run_dir() / "checkpoints"), "--rest-port", str(ctx.flink_rest_port)]


# The fetcher's key variable and its old name, which the fetcher still reads in this release.
API_KEY_NAMES = ("AV_API_KEY", *(old for old, new in FETCHER_RENAMED.items() if new == "AV_API_KEY"))


def has_api_key() -> bool:
    """Whether an Alpha Vantage key is set: the run fetches live bars, else it replays the samples."""
    return any(os.environ.get(name, "").strip() for name in API_KEY_NAMES)


def producer_command(ctx: RunContext) -> list[str]:
    if has_api_key():
        return [sys.executable, "-m", "fetcher_lambda", "--every", "60", "--create-resources"]
    return [sys.executable, "-m", "fetcher_lambda", "--replay"]


def local_aws_env(ctx: RunContext) -> dict[str, str]:
    """The local Kinesis and DynamoDB, and the dummy credentials they accept."""
    return {
        "KINESIS_ENDPOINT_URL": ctx.ports.url("kinesis"),
        "DYNAMODB_ENDPOINT_URL": ctx.ports.url("dynamodb"),
        "AWS_REGION": ctx.config.source.region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }


def producer_env(ctx: RunContext) -> dict[str, str]:
    """The fetcher (or the replay): the job's input stream."""
    return {**local_aws_env(ctx), "BARS_STREAM_NAME": ctx.config.source.stream_name}


def alerts_env(ctx: RunContext) -> dict[str, str]:
    """The alerts runner (and the dashboard's alerts feed): the enriched stream and the local
    DynamoDB; ``ALERTS_WEBHOOK_URL`` and ``ALERTS_RULES`` pass through from the environment."""
    return {**local_aws_env(ctx), "ENRICHED_STREAM_NAME": ctx.config.sink.stream_name,
            "ALERTS_TABLE_NAME": ALERTS_TABLE}


def alerts_command(ctx: RunContext) -> list[str]:
    return [sys.executable, "-m", "alerts", "--create-table"]


def dashboard_command(ctx: RunContext) -> list[str]:
    return [sys.executable, "-m", "dashboards.live.server", "--port", str(ctx.ports.dashboard),
            "--opensearch", ctx.ports.url("opensearch"), "--alerts-table", ALERTS_TABLE,
            "--dynamodb", ctx.ports.url("dynamodb")]


def retention_command(ctx: RunContext) -> list[str]:
    """The local stand-in for ISM: deletes expired indices now and every hour (``RETENTION_DAYS``
    passes through from the environment). The shipped sample data is from March 2024, long past any
    retention: a replay only logs what would go, so the demo keeps its data."""
    command = [sys.executable, "-m", "stack.retention", "--every", str(RETENTION_EVERY_S)]
    return command if has_api_key() else [*command, "--dry-run"]


# Started in this order, stopped in this order (the job first, so it stops writing before the rest).
PROCESSES = (
    Process("job", job_command, essential=True),
    Process("producer", producer_command, producer_env),
    Process("dashboard", dashboard_command, alerts_env),
    Process("alerts", alerts_command, alerts_env),
    Process("retention", retention_command),
)


def start_processes(ctx: RunContext) -> dict[str, subprocess.Popen]:
    return {p.name: processes.spawn(p.name, p.command(ctx), {**ctx.ports.as_env(), **p.env(ctx)})
            for p in PROCESSES}


def stop_all(directory: Path) -> None:
    """End every process marked with ``directory``: the table's in its order, then the services.

    A process that cannot be ended is reported and the rest are still ended."""
    names = [p.name for p in PROCESSES]
    for name in names:
        _end(directory, name, processes.marked(directory, [name]))
    rest = processes.marked(directory)
    for name in dict.fromkeys(processes.name_of(p) for p in rest):
        _end(directory, name, [p for p in rest if processes.name_of(p) == name])


def _end(directory: Path, name: str, found: list[psutil.Process]) -> None:
    try:
        (directory / f"{name}.pid").unlink(missing_ok=True)
        if found:
            processes.end(found)
            print(f"{name}: stopped (pid {', '.join(str(p.pid) for p in found)})", flush=True)
    except (OSError, psutil.Error) as err:
        print(f"{name}: could not be stopped ({err}); `make stop` tries again", file=sys.stderr, flush=True)


def show_progress(ctx: RunContext, procs: dict[str, subprocess.Popen], console: Console) -> None:
    checked = services.all_services(ctx.ports)
    checked = {name: checked[name] for name in ("kinesis", "opensearch")}
    job_seen = False
    while True:
        if console.lost:
            raise OutputClosed()
        finished = {}
        for process in PROCESSES:
            code = procs[process.name].poll()
            if code is None:
                continue
            if process.essential:
                raise StackError(f"{process.name} exited with code {code}; see {run_dir() / process.name}.log")
            finished[process.name] = "finished" if code == 0 else f"exited with code {code} (see its log)"
        job = status.job_status(ctx.flink_rest_port)
        if job.state == "starting" and job_seen:
            job = status.JobStatus("not answering on its REST API")
        job_seen = job_seen or job.state != "starting"
        print(status.progress_line(job, checked, ctx.ports.url("opensearch"), finished), flush=True)
        time.sleep(5)


def start(lock: RunLock) -> RunContext:
    ports = Ports.from_env()
    leftovers = processes.marked(run_dir(), [p.name for p in PROCESSES])
    if leftovers:
        print(f"ending {len(leftovers)} processes an earlier run left behind", flush=True)
        processes.end(leftovers)
    properties = write_local_properties(run_dir() / "application_properties.json", ports)
    ctx = RunContext(ports, load_config(properties), properties, free_port())
    lock.update(ports=asdict(ports), flink_rest_port=ctx.flink_rest_port)
    for name, service in services.all_services(ports).items():
        print(f"{name}: starting ...", flush=True)
        print(service.start(), flush=True)
    resources.ensure_all(ctx.config)
    return ctx


def run(lock: RunLock, console: Console) -> None:
    ctx = start(lock)
    procs = start_processes(ctx)
    base = ctx.ports.url("opensearch")
    print(f"""
The pipeline is running (logs in {run_dir()}).
  Live dashboard:        {ctx.ports.url("dashboard")}/
  Latest enriched bars:  curl -s '{base}/stock-indicators/_search?size=5&sort=ts:desc&pretty'
  Signals:               curl -s '{base}/stock-signals/_search?size=5&sort=ts:desc&pretty'
  Dead letters:          curl -s '{base}/stock-dlq/_search?pretty'
  Enriched stream:       Kinesis '{ctx.config.sink.stream_name}' at {ctx.config.sink.endpoint}
  Alerts:                in the dashboard; {run_dir() / 'alerts.log'}; POSTed to ALERTS_WEBHOOK_URL if set
  Flink REST API:        http://127.0.0.1:{ctx.flink_rest_port}/jobs/overview
Press Ctrl-C to stop.
""", flush=True)
    show_progress(ctx, procs, console)


def _stop_requested(signum: int, frame: object) -> None:
    """The first stop signal interrupts the run; from then on stopping runs to its end, and signals
    that follow (a second Ctrl-C, make's SIGTERM, the terminal's SIGHUP) are ignored."""
    _ignore_stop_signals()
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def run_once() -> int:
    """The whole run under the lock; stops everything it started however it ends, whatever happened
    to its output."""
    lock = RunLock(run_dir() / "run.lock")
    lock.acquire(role="run")  # AlreadyRunning names the holder
    console = Console(run_dir() / "run.log").install()
    # SIGINT too: a shell starts a background job with SIGINT ignored, and Python then leaves it so.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_requested)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's default; a closed pipe is an error, not death
    code = 0
    try:
        run(lock, console)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except OutputClosed:
        print("the run's output was closed: stopping ...", flush=True)  # still in run.log
    except StackError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        code = 1
    finally:
        _ignore_stop_signals()
        try:
            lock.update(state="stopping")
        finally:
            stop_all(run_dir())
            lock.release()
            print("stopped", flush=True)
    return code


def stop_run() -> int:
    """``make stop``: ask a live run to stop (killing it if it does not), then end whatever is left."""
    lock = RunLock(run_dir() / "run.lock")
    holder = lock.holder()
    pid = holder.get("pid")
    if pid and holder.get("role") == "run":
        print(f"asking the running `make run` (pid {pid}) to stop ...", flush=True)
        send_signal(pid, signal.SIGTERM)
    try:
        lock.acquire(wait_s=STOP_WAIT_S, role="stop")
    except AlreadyRunning:
        if pid:
            print(f"pid {pid} did not stop within {STOP_WAIT_S:.0f}s: killing it", flush=True)
            send_signal(pid, signal.SIGKILL)
        lock.acquire(wait_s=10, role="stop")
    try:
        stop_all(run_dir())
    finally:
        lock.release()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true",
                        help="stop a running run, and everything a previous run left behind")
    args = parser.parse_args(argv)
    run_dir().mkdir(parents=True, exist_ok=True)
    return exit_code(stop_run if args.stop else run_once)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
