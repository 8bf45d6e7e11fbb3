"""A standalone Flink cluster in the shape Managed Flink runs: ``python -m stack.cluster start|stop|status|submit``.

One JobManager and N TaskManagers, each its own JVM, started with the apache-flink distribution's own
scripts (``pyflink/bin/jobmanager.sh``, ``taskmanager.sh``, ``flink run``). What mirrors Managed Flink:
- the TaskManagers' Python is a venv holding apache-flink and its dependencies only
  (``.local/flink-runtime``): never this checkout, so the job's package must be shipped with the job;
- a job is submitted from the unpacked ``dist/flink-app.zip``, from its own folder, with the options of
  the ``kinesis.analytics.flink.run.options`` property group (``python``, ``jarfile``, ``pyFiles``,
  ``pyArchives``) and nothing else;
- properties are read from the managed path; ``FLINK_APPLICATION_PROPERTIES`` redirects it (tests only);
- RocksDB state, periodic checkpoints retained on cancel, and an unbounded fixed-delay restart strategy,
  so the tests read restarts from the REST API instead of having them hidden.

One cluster setting differs from a stock distribution: ``flink-python`` sits in ``lib/`` and ``pemja`` is
loaded parent-first. In thread mode, pemja loads libpython into the TaskManager JVM once; loaded again by
a second job's own class loader, it fails on JDK 17 (``NoSuchFieldException: loadedLibraryNames``), so a
job restored on a TaskManager that ran an earlier one could never start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from stack.services import ROOT, StackError, _pid_alive, marker_env, port_open, run_dir, send_signal

RUNTIME_VENV = ROOT / ".local" / "flink-runtime"
RUN_OPTIONS_GROUP = "kinesis.analytics.flink.run.options"
PROPERTIES_ENV = "FLINK_APPLICATION_PROPERTIES"
# The ``flink run`` flag of each run option Managed Flink documents for Python applications.
RUN_OPTION_FLAGS = {"python": "-py", "jarfile": "-j", "pyFiles": "-pyfs", "pyArchives": "-pyarch"}
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED"}
LOOPBACK = "127.0.0.1"


def runtime_python() -> Path:
    return RUNTIME_VENV / "bin" / "python"


def runtime_site_packages() -> Path:
    found = sorted(RUNTIME_VENV.glob("lib/python3*/site-packages"))
    if not found or not (found[0] / "pyflink").is_dir():
        raise StackError(f"the Flink runtime venv is missing at {RUNTIME_VENV}: run `make cluster-runtime`")
    return found[0]


def flink_home() -> Path:
    return runtime_site_packages() / "pyflink"


def run_option_args(run_options: dict[str, str]) -> list[str]:
    """``flink run`` arguments for a ``kinesis.analytics.flink.run.options`` group, in a stable order."""
    unknown = set(run_options) - set(RUN_OPTION_FLAGS)
    if unknown:
        raise StackError(f"{RUN_OPTIONS_GROUP}: unknown options {sorted(unknown)}; known: {sorted(RUN_OPTION_FLAGS)}")
    if "python" not in run_options:
        raise StackError(f"{RUN_OPTIONS_GROUP} lacks 'python', the entry script")
    return [arg for key, flag in RUN_OPTION_FLAGS.items() if key in run_options for arg in (flag, run_options[key])]


def read_run_options(properties: Path) -> dict[str, str]:
    groups = {g["PropertyGroupId"]: g["PropertyMap"] for g in json.loads(properties.read_text())}
    if RUN_OPTIONS_GROUP not in groups:
        raise StackError(f"{properties} has no {RUN_OPTIONS_GROUP} group: copy it from infra/cloudformation.yaml")
    return {k: str(v) for k, v in groups[RUN_OPTIONS_GROUP].items()}


@dataclass
class FlinkCluster:
    """A standalone cluster whose files live in ``home`` (default: the run directory's ``flink-cluster``)."""

    rest_port: int = int(os.environ.get("FLINK_REST_PORT", "8081"))
    rpc_port: int = int(os.environ.get("FLINK_RPC_PORT", "6123"))
    home: Path | None = None
    checkpoint_interval: str = "5s"

    def __post_init__(self) -> None:
        self.home = Path(self.home or run_dir() / "flink-cluster")

    # --- files -----------------------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.home / "savepoints"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def settings(self) -> dict[str, str]:
        python = str(runtime_python())
        return {
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": str(self.rpc_port),
            # Every listener on loopback only (RPC, blob server, data and metrics ports, REST), also
            # where `localhost` would resolve to an address of another interface.
            "jobmanager.bind-host": LOOPBACK,
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.bind-host": LOOPBACK,
            "taskmanager.host": "localhost",
            "taskmanager.numberOfTaskSlots": "1",
            "taskmanager.memory.process.size": "2048m",
            # Every job loads the connector jar in a class loader of its own, and thread mode keeps
            # some of a finished job's classes reachable: a TaskManager that runs job after job (a
            # session cluster, unlike an application's) outgrows Flink's 256 MB of metaspace.
            "taskmanager.memory.jvm-metaspace.size": "768m",
            "rest.address": "localhost",
            "rest.bind-address": LOOPBACK,
            "rest.port": str(self.rest_port),
            "parallelism.default": "1",
            # Managed Flink's defaults: RocksDB, checkpoints kept for restores, restarts without end.
            "state.backend.type": "rocksdb",
            "state.backend.incremental": "true",
            "state.checkpoints.dir": self.checkpoints.as_uri(),
            "state.savepoints.dir": self.savepoints.as_uri(),
            "execution.checkpointing.interval": self.checkpoint_interval,
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "2147483647",
            "restart-strategy.fixed-delay.delay": "10s",
            # A lost TaskManager is declared lost before the restart that follows its loss, so one
            # loss is one restart (Flink's default 50 s would make it one restart per 10 s waited).
            "heartbeat.interval": "2000",
            "heartbeat.timeout": "8000",
            # Bounded so the exception history of a crash-looping job stays readable.
            "web.exception-history-size": "64",
            # Python of the client (main.py) and of the workers: apache-flink only, never the checkout.
            "python.client.executable": python,
            "python.executable": python,
            # pemja once per JVM (see the module docstring): flink-python is in lib/ as well.
            "classloader.parent-first-patterns.additional": "pemja.",
        }

    def write_files(self) -> None:
        home = flink_home()
        for folder in (self.conf_dir, self.log_dir, self.checkpoints, self.savepoints, self.lib_dir):
            folder.mkdir(parents=True, exist_ok=True)
        defaults = (home / "conf" / "config.yaml").read_text()
        java_opts = next(line.split("all:", 1)[1].strip() for line in defaults.splitlines()
                         if line.strip().startswith("all:") and "--add-opens" in line)
        # A JVM crash report goes next to the logs, not into the working directory.
        java_opts += f" -XX:ErrorFile={self.log_dir / 'hs_err_pid%p.log'}"
        settings = {**self.settings(), "env.java.opts.all": java_opts}
        (self.conf_dir / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
            shutil.copyfile(home / "conf" / name, self.conf_dir / name)
        for jar in self.lib_dir.glob("*.jar"):
            jar.unlink()
        for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python*.jar")]:
            (self.lib_dir / jar.name).symlink_to(jar)

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    def script_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of the scripts and the JVMs they start: nothing of the checkout on any path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update({
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LIB_DIR": str(self.lib_dir),
            "FLINK_LOG_DIR": str(self.log_dir),
            "FLINK_PID_DIR": str(self.home),
            # Thread mode: the TaskManager's embedded Python imports pemja and pyflink from here.
            "PYTHONPATH": str(runtime_site_packages()),
            "PATH": f"{runtime_python().parent}{os.pathsep}{env.get('PATH', '')}",
            # The local Kinesis speaks JSON only; both AWS SDKs in the connector default to CBOR.
            "AWS_CBOR_DISABLE": "true",
            "AWS_CBOR_ENABLED": "false",
            # Marks every JVM as this run directory's, so `make stop` finds them without pid files.
            **marker_env("flink-cluster"),
        })
        env.update(extra or {})
        return env

    def _script(self, name: str, *args: str) -> None:
        result = subprocess.run(["bash", str(flink_home() / "bin" / name), *args], env=self.script_env(),
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise StackError(f"{name} {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")

    # --- lifecycle -------------------------------------------------------------------------------
    def pids(self, role: str) -> list[int]:
        """Live pids of ``standalonesession`` (the JobManager) or ``taskexecutor`` processes."""
        pids = []
        for pid_file in self.home.glob(f"flink-*-{role}.pid"):
            pids += [int(p) for p in pid_file.read_text().split() if p.strip().isdigit() and _pid_alive(int(p))]
        return pids

    def overview(self) -> dict | None:
        try:
            return requests.get(f"{self.base}/overview", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    def start(self, taskmanagers: int = 2, timeout_s: float = 120.0) -> str:
        if self.pids("standalonesession"):
            raise StackError(f"a Flink cluster is already running from {self.home}: `python -m stack.cluster stop`")
        for port in (self.rest_port, self.rpc_port):
            if port_open(port):
                raise StackError(f"port {port} is in use: stop what holds it, or set FLINK_REST_PORT / FLINK_RPC_PORT")
        self.write_files()
        self._script("jobmanager.sh", "start")
        for _ in range(taskmanagers):
            self._script("taskmanager.sh", "start")
        self.wait_for_taskmanagers(taskmanagers, timeout_s)
        return f"flink cluster: 1 JobManager, {taskmanagers} TaskManagers, REST {self.base} (logs {self.log_dir})"

    def wait_for_taskmanagers(self, count: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            overview = self.overview()
            if overview and overview.get("taskmanagers") == count:
                return
            if not self.pids("standalonesession"):
                raise StackError(f"the JobManager exited while starting; see {self.log_dir}")
            time.sleep(0.5)
        raise StackError(f"{count} TaskManagers not registered after {timeout_s:.0f}s; see {self.log_dir}")

    def add_taskmanager(self) -> None:
        self._script("taskmanager.sh", "start")

    def kill_taskmanager(self, pid: int) -> None:
        """A crash: SIGKILL, no chance to clean up."""
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> str:
        pids = self.pids("taskexecutor") + self.pids("standalonesession")
        if not pids:
            return "flink cluster: not running"
        for pid in pids:
            send_signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.2)
        for pid in pids:
            send_signal(pid, signal.SIGKILL)
        for pid_file in self.home.glob("flink-*.pid"):
            pid_file.unlink()
        return "flink cluster: stopped"

    # --- jobs ------------------------------------------------------------------------------------
    def submit(self, app_dir: Path, run_options: dict[str, str], properties: Path | None = None, *,
               parallelism: int | None = None, savepoint: str | None = None, log: Path | None = None,
               detached: bool = True, args: tuple[str, ...] = (), timeout_s: float = 300.0) -> str:
        """``flink run`` the unpacked application from its own folder; returns the job id. ``detached``
        returns once the job is submitted, like Managed Flink; otherwise once it has finished."""
        command = [str(flink_home() / "bin" / "flink"), "run", *(("--detached",) if detached else ()),
                   *(("-p", str(parallelism)) if parallelism else ()),
                   *(("-s", savepoint) if savepoint else ()), *run_option_args(run_options), *args]
        env = self.script_env({PROPERTIES_ENV: str(properties)} if properties else None)
        before = set(self.job_ids())
        result = subprocess.run(command, cwd=app_dir, env=env, capture_output=True, text=True, timeout=timeout_s)
        if log:
            log.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
        if result.returncode != 0:
            raise StackError(f"flink run failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        started = [j for j in self.job_ids() if j not in before]
        if len(started) != 1:
            raise StackError(f"flink run started {len(started)} jobs: {result.stdout.strip()[-1000:]}")
        return started[0]

    def _get(self, path: str) -> dict:
        response = requests.get(f"{self.base}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def job_ids(self) -> list[str]:
        return [j["id"] for j in self._get("/jobs")["jobs"]]

    def job(self, job_id: str) -> dict:
        return self._get(f"/jobs/{job_id}")

    def restarts(self, job_id: str) -> int:
        """How often the job restarted: Flink counts each failover of the whole job or a region."""
        metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(float(metrics[0]["value"])) if metrics else 0

    def metric_sum(self, job_id: str, name: str) -> float:
        """A user metric (e.g. the analysis operator's ``state_resets``) summed over every subtask."""
        total = 0.0
        for vertex in self.job(job_id)["vertices"]:
            path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            ids = [m["id"] for m in self._get(path) if m["id"].endswith(f".{name}")]
            if ids:
                total += sum(float(m["value"]) for m in self._get(f"{path}?get={','.join(ids)}"))
        return total

    def checkpoints_completed(self, job_id: str) -> int:
        return self._get(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]

    def failures(self, job_id: str) -> list[str]:
        entries = self._get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return [entry.get("exceptionName", "") + ": " + entry.get("stacktrace", "")[:300] for entry in entries]

    def stop_with_savepoint(self, job_id: str, timeout_s: float = 120.0) -> str:
        """Stop the job the way Managed Flink does on an update; returns the savepoint's path."""
        response = requests.post(f"{self.base}/jobs/{job_id}/stop",
                                 json={"targetDirectory": self.savepoints.as_uri(), "drain": False}, timeout=10)
        response.raise_for_status()
        trigger = response.json()["request-id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._get(f"/jobs/{job_id}/savepoints/{trigger}")
            if status["status"]["id"] == "COMPLETED":
                operation = status["operation"]
                if "failure-cause" in operation:
                    raise StackError(f"stop-with-savepoint failed: {operation['failure-cause'].get('stack-trace', '')[:2000]}")
                return operation["location"]
            time.sleep(0.5)
        raise StackError(f"stop-with-savepoint of {job_id} did not finish in {timeout_s:.0f}s")

    def cancel(self, job_id: str) -> None:
        requests.patch(f"{self.base}/jobs/{job_id}?mode=cancel", timeout=10).raise_for_status()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start a JobManager and TaskManagers")
    start.add_argument("--taskmanagers", type=int, default=2)
    sub.add_parser("stop", help="stop every JVM of the cluster")
    sub.add_parser("status", help="the cluster's TaskManagers, slots and jobs")
    submit = sub.add_parser("submit", help="run an unpacked flink-app.zip with its run options")
    submit.add_argument("app_dir", type=Path, help="the unpacked dist/flink-app.zip")
    submit.add_argument("--properties", type=Path, required=True,
                        help="the application's property groups (run options included), as Managed Flink writes them")
    submit.add_argument("--parallelism", type=int)
    submit.add_argument("--savepoint", help="restore from this savepoint or retained checkpoint")
    args = parser.parse_args(argv)
    cluster = FlinkCluster()
    try:
        if args.action == "start":
            print("flink cluster: starting ...", flush=True)
            print(cluster.start(args.taskmanagers), flush=True)
        elif args.action == "stop":
            print(cluster.stop(), flush=True)
        elif args.action == "status":
            overview = cluster.overview()
            print(json.dumps(overview, indent=2) if overview else "flink cluster: down")
        else:
            properties = args.properties.resolve()
            job = cluster.submit(args.app_dir.resolve(), read_run_options(properties), properties,
                                 parallelism=args.parallelism, savepoint=args.savepoint)
            print(f"job {job} submitted; {cluster.base}/#/job/running/{job}/overview")
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
