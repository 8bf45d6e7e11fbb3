"""``make run``: the whole pipeline locally, live, until Ctrl-C.

Starts the local services, creates the streams and index templates, then runs the producer (replay of
the shipped sample data by default, the live Alpha Vantage API when ``ALPHAVANTAGE_API_KEY`` is set) and
the Flink job on a local mini-cluster, and prints what arrives in OpenSearch. Ctrl-C stops everything.
``python -m stack.run --stop`` ends what a previous run left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from flink_job.config import load_config
from stack import resources, services
from stack.services import ROOT, StackError, run_dir

PROPERTIES = ROOT / "stack" / "application_properties.json"
PROCESSES = ("job", "producer", "dashboard", "alerts")
DASHBOARD_PORT = os.environ.get("DASHBOARD_PORT", "8050")
ALERTS_TABLE = "stock_alerts"


def _pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def producer_command() -> list[str]:
    if os.environ.get("ALPHAVANTAGE_API_KEY"):
        return [sys.executable, "-m", "fetcher_lambda", "--every", "60", "--create-resources"]
    return [sys.executable, "-m", "fetcher_lambda", "--replay"]


def producer_env(config) -> dict[str, str]:
    ports = services.Ports.from_env()
    return {
        "STREAM_NAME": config.source.stream_name,
        "KINESIS_ENDPOINT_URL": config.source.endpoint or "",
        "DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{ports.dynamodb}",
        "AWS_REGION": config.source.region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }


def alerts_env(config) -> dict[str, str]:
    """The alerts runner (and the dashboard's alerts feed): the enriched stream and the local
    DynamoDB; ``ALERT_WEBHOOK_URL`` and ``ALERT_RULES`` pass through from the environment."""
    return {**producer_env(config), "STREAM_NAME": config.sink.stream_name,
            "KINESIS_ENDPOINT_URL": config.sink.endpoint or "", "ALERTS_TABLE": ALERTS_TABLE}


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(run_dir() / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _pid_file(name).write_text(str(proc.pid))
    return proc


def stop_processes() -> None:
    for name in PROCESSES:
        try:
            pid = int(_pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.killpg(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _pid_file(name).unlink(missing_ok=True)
        print(f"{name}: stopped")


def count(base: str, index: str) -> int:
    try:
        return requests.get(f"{base}/{index}/_count", timeout=2).json().get("count", 0)
    except (requests.RequestException, ValueError):
        return 0


def show_progress(base: str, procs: dict[str, subprocess.Popen]) -> None:
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None and name == "job":
                raise StackError(f"the Flink job exited with code {proc.returncode}; see {run_dir() / 'job.log'}")
        counts = {i: count(base, i) for i in ("stock-indicators", "stock-signals", "stock-dlq")}
        print(time.strftime("%H:%M:%S"), "  ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
        time.sleep(5)


def run() -> None:
    config = load_config(PROPERTIES)
    for name, service in services.all_services().items():
        print(f"{name}: starting ...", flush=True)
        print(service.start(), flush=True)
    resources.ensure_all(config)
    base = config.opensearch.hosts.rstrip("/")
    procs = {
        "job": spawn("job", [sys.executable, "-m", "flink_job.main", "--properties", str(PROPERTIES),
                             "--checkpoint-dir", str(run_dir() / "checkpoints")]),
        "producer": spawn("producer", producer_command(), producer_env(config)),
        "dashboard": spawn("dashboard", [sys.executable, "-m", "dashboards.live.server",
                                         "--port", DASHBOARD_PORT, "--opensearch", base,
                                         "--alerts-table", ALERTS_TABLE,
                                         "--dynamodb", alerts_env(config)["DYNAMODB_ENDPOINT_URL"]],
                           alerts_env(config)),
        "alerts": spawn("alerts", [sys.executable, "-m", "alerts", "--create-table"], alerts_env(config)),
    }
    print(f"""
The pipeline is running (logs in {run_dir()}).
  Live dashboard:        http://127.0.0.1:{DASHBOARD_PORT}/
  Latest enriched bars:  curl -s '{base}/stock-indicators/_search?size=5&sort=ts:desc&pretty'
  Signals:               curl -s '{base}/stock-signals/_search?size=5&sort=ts:desc&pretty'
  Dead letters:          curl -s '{base}/stock-dlq/_search?pretty'
  Enriched stream:       Kinesis '{config.sink.stream_name}' at {config.sink.endpoint}
  Alerts:                in the dashboard; {run_dir() / 'alerts.log'}; POSTed to ALERT_WEBHOOK_URL if set
Press Ctrl-C to stop.
""", flush=True)
    show_progress(base, procs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop the job and producer of a previous run")
    args = parser.parse_args(argv)
    run_dir().mkdir(parents=True, exist_ok=True)
    if args.stop:
        stop_processes()
        return 0
    try:
        run()
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        stop_processes()
        for service in services.all_services().values():
            print(service.stop(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
