"""``make run``: one at a time, nothing orphaned (also when its output is gone), nothing listening
beyond loopback, a progress line that says what is down, and its own ports and run directory apart
from the test suite's (the suite runs on ``make test``'s)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests
from opensearchpy import NotFoundError

from stack import processes, services, status
from stack.run_lock import RunLock
from stack.services import ROOT, Ports, all_services, port_open
from tests.flink_rest import FlinkRest
from tests.listeners import listeners, not_on_loopback
from tests.local_aws import OPENSEARCH_URL, PORTS as SUITE_PORTS, opensearch_client, spare_port
from tests.pipeline_harness import unique_symbol

RUN_TIMEOUT_S = 300  # services, job and first enriched bars, on a busy 2-core machine


def stack_env(run_dir: Path, ports: Ports | None = None) -> dict[str, str]:
    env = {**os.environ, "STACK_RUN_DIR": str(run_dir)}
    return {**env, **ports.as_env()} if ports else env


def stack_run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stack.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_dir():
    """A run directory the unprivileged OpenSearch user can enter (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="stock-run-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    leftovers = processes.marked(path)
    processes.end(leftovers, timeout_s=5)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftovers, f"the test left processes behind: {leftovers}"


# --- the lock ------------------------------------------------------------------------------------
HOLD_LOCK = """
import sys, time
from pathlib import Path
from stack.run_lock import RunLock
lock = RunLock(Path(sys.argv[1]) / "run.lock")
lock.acquire(role="run")
lock.update(state=sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("state,says", [("running", "is already running"), ("stopping", "is still stopping")])
def test_a_second_run_names_the_first_and_exits(run_dir, state, says):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir), state], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        info = json.loads((run_dir / "run.lock").read_text())
        second = stack_run(stack_env(run_dir))
        assert second.returncode == 1
        assert says in second.stderr and f"pid {holder.pid}" in second.stderr
        assert info["started_at"] in second.stderr
        assert not list(run_dir.glob("*.pid")), "the refused run must start nothing"
    finally:
        holder.kill()  # a crash: the kernel releases the lock with the process
        holder.wait()
    lock = RunLock(run_dir / "run.lock")
    lock.acquire()
    lock.release()


# --- make stop -----------------------------------------------------------------------------------
# A child in a session of its own, like a JVM that left its parent's process group, and a grandchild.
TREE = ["sh", "-c", "setsid sleep 600 & sleep 600 & wait"]


def test_stop_ends_every_process_of_a_crashed_run_and_no_other(run_dir, monkeypatch):
    other_dir = Path(tempfile.mkdtemp(prefix="stock-run-other-", dir="/var/tmp"))
    monkeypatch.setenv("STACK_RUN_DIR", str(other_dir))
    other = processes.spawn("job", TREE)
    monkeypatch.setenv("STACK_RUN_DIR", str(run_dir))
    ours = [processes.spawn(name, TREE) for name in ("job", "producer")]
    try:
        time.sleep(0.5)
        tree = processes.marked(run_dir)
        assert len(tree) == 2 * 3, [p.cmdline() for p in tree]  # per tree: sh and its two sleeps
        for path in run_dir.glob("*.pid"):
            path.unlink()  # what a crash or a second run once left: no pid files to go by

        stopped = stack_run(stack_env(run_dir), "--stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "job: stopped" in stopped.stdout and "producer: stopped" in stopped.stdout
        for proc in ours:
            proc.wait(timeout=5)
        assert processes.marked(run_dir) == []
        assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in tree)
        assert len(processes.marked(other_dir)) == 3, "another run directory's processes are not ours"
    finally:
        processes.end(processes.marked(other_dir), timeout_s=5)
        other.wait(timeout=5)
        shutil.rmtree(other_dir, ignore_errors=True)


# --- the progress line ---------------------------------------------------------------------------
@pytest.mark.services  # reads the suite's own OpenSearch
def test_the_progress_line_says_what_is_down_instead_of_counting_zero():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        closed, busy = spare_port(), silent.getsockname()[1]
        down = all_services(Ports(kinesis=closed, opensearch=closed, dynamodb=closed))
        line = status.progress_line(status.job_status(closed), {n: down[n] for n in ("kinesis", "opensearch")},
                                    f"http://127.0.0.1:{closed}")
        assert "job starting" in line and "kinesis DOWN" in line and "opensearch DOWN" in line
        assert "no counts: OpenSearch DOWN" in line and "=0" not in line

        hung = all_services(Ports(kinesis=busy, opensearch=busy, dynamodb=busy))
        assert status.service_state(hung["kinesis"]) == "not answering"

    up = all_services(SUITE_PORTS)
    line = status.progress_line("job running", {"opensearch": up["opensearch"]}, OPENSEARCH_URL)
    assert "opensearch up" in line and re.search(r"stock-indicators=\d+ stock-signals=\d+ stock-dlq=\d+", line)


# --- ports ---------------------------------------------------------------------------------------
def make_dry_run(target: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT") and k != "STACK_RUN_DIR"}
    result = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_test_has_ports_and_a_run_directory_of_its_own():
    start = next(line for line in make_dry_run("test").splitlines() if "stack.services start" in line)
    env = dict(re.findall(r"(\w+)=(\S+)", start))
    test_ports = Ports.from_env(env)
    run_ports = Ports.from_env({})  # `make run` as a user types it
    assert "KINESIS_PORT=" not in make_dry_run("run")

    def taken(ports: Ports) -> set[int]:  # with the companions the services open
        return {*vars(ports).values(), ports.kinesis + 1000, ports.opensearch + 100}

    assert not taken(test_ports) & taken(run_ports)
    default_dir = subprocess.run([sys.executable, "-c", "from stack.services import run_dir; print(run_dir())"],
                                 cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "STACK_RUN_DIR"},
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert env["STACK_RUN_DIR"] != default_dir


# --- the whole run -------------------------------------------------------------------------------
def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen, timeout_s: float) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text())
        if match:
            return match
        assert proc.poll() is None, f"make run exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.mark.services
@pytest.mark.jvm  # a whole `make run`: services of its own, the job, and the suite's OpenSearch
def test_make_run_beside_the_suite_then_crashed_is_stopped_whole(run_dir):
    """A run on its own ports: every component uses them, the suite's services are untouched, a second
    run is refused, and after the run is killed `make stop` ends all it left, the job's JVM included."""
    ports = Ports(kinesis=spare_port(1000), opensearch=spare_port(100), dynamodb=spare_port(),
                  dashboard=spare_port())
    assert not {*vars(ports).values()} & {*vars(SUITE_PORTS).values()}
    suite_before = suite_count()
    env = stack_env(run_dir, ports)
    log = run_dir / "make-run.out"
    with open(log, "w") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "stack.run"], cwd=ROOT, env=env,
                                      stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_line(log, r"job running, 0 restarts .* stock-indicators=[1-9]", supervisor, RUN_TIMEOUT_S)

        # The job's properties, the producer and the dashboard all followed the ports.
        symbols = requests.get(f"{ports.url('dashboard')}/api/symbols", timeout=10).json()["symbols"]
        assert "IBM" in [s["symbol"] for s in symbols]
        info = json.loads((run_dir / "run.lock").read_text())
        assert info["pid"] == supervisor.pid and info["ports"] == vars(ports)
        rest = FlinkRest(info["flink_rest_port"])
        job = rest.running_job()
        assert job and rest.failures(job) == []  # expected restarts: 0
        # The suite's OpenSearch got nothing from the run (nothing else writes there meanwhile), and
        # what the suite writes does not reach the run's.
        assert suite_count() == suite_before, "the run wrote into the test suite's OpenSearch"
        run_before = count(ports.url("opensearch"))
        symbol = unique_symbol("ISO")
        suite, doc = opensearch_client(), {"index": "stock-indicators-2024.03", "id": f"{symbol}|2024-03-08T14:30:00Z"}
        suite.index(**doc, body={"symbol": symbol, "ts": "2024-03-08T14:30:00Z"}, refresh=True)
        suite.delete(**doc)
        assert count(ports.url("opensearch"), symbol) == 0
        assert count(ports.url("opensearch")) >= run_before

        second = stack_run(env)
        assert second.returncode == 1 and f"pid {supervisor.pid}" in second.stderr

        supervisor.kill()  # a crash: nothing of the run gets to clean up
        supervisor.wait()
        left = {processes.name_of(p): p for p in processes.marked(run_dir)}
        # (the producer may have finished replaying the sample data already)
        assert {"job", "dashboard", "kinesis", "dynamodb", "opensearch"} <= set(left)
        jvms = [p for p in processes.marked(run_dir, ["job"]) if p.name() == "java"]
        assert jvms, "the job's JVM carries the run's marker"

        stopped = stack_run(env, "--stop", timeout=180)
        assert stopped.returncode == 0, stopped.stderr
        assert processes.marked(run_dir) == []
        assert not any(port_open(port) for port in vars(ports).values())
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=180)
        processes.end(processes.marked(run_dir), timeout_s=10)


def read_until(proc: subprocess.Popen, pattern: str, timeout_s: float) -> str:
    """What ``proc`` wrote to its stdout pipe until a line matches ``pattern`` (never blocking past it)."""
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 1 << 16)
            seen += chunk
            if re.search(pattern, seen.decode(errors="replace")):
                return seen.decode(errors="replace")
            if chunk:
                continue
        assert proc.poll() is None, f"make run exited ({proc.returncode}):\n{seen.decode()[-3000:]}"
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s:.0f}s:\n{seen.decode()[-3000:]}")


@pytest.mark.services
@pytest.mark.jvm  # a whole `make run`: services of its own and the job
def test_a_piped_run_listens_on_loopback_only_and_stops_whole_when_its_pipe_is_gone(run_dir):
    """``make run 2>&1 | tee run.log``, then Ctrl-C: the terminal's SIGINT ends tee with the run, so
    every line the run prints while stopping meets a closed pipe. The run still stops everything it
    started, and says so in its run directory. Before that, the socket table: no process of the run
    (nor of the suite's services) accepts connections from beyond this machine."""
    ports = Ports(kinesis=spare_port(1000), opensearch=spare_port(100), dynamodb=spare_port(),
                  dashboard=spare_port())
    supervisor = subprocess.Popen([sys.executable, "-m", "stack.run"], cwd=ROOT, env=stack_env(run_dir, ports),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        read_until(supervisor, r"job running, 0 restarts", RUN_TIMEOUT_S)

        ours = processes.marked(run_dir)
        rest_port = json.loads((run_dir / "run.lock").read_text())["flink_rest_port"]
        opened = {port for *_, port in listeners(ours)}
        # The check sees the run's servers (a table read wrongly would pass with nothing in it) ...
        assert {ports.kinesis, ports.kinesis + 1000, ports.dynamodb, ports.opensearch, ports.dashboard,
                rest_port} <= opened, sorted(listeners(ours))
        # ... and none of them, nor the job's JVM or Python, listens on a wildcard or another interface.
        assert not_on_loopback(ours) == []
        assert not_on_loopback(processes.marked(services.run_dir())) == [], "the suite's services (make test)"

        supervisor.stdout.close()  # tee is gone
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=180) == 0
        assert processes.marked(run_dir) == []
        assert not any(port_open(port) for port in (*vars(ports).values(), rest_port))
        log = (run_dir / "run.log").read_text()
        assert "stopping ..." in log
        for name in ("job", "dashboard", "alerts", "retention", "kinesis", "dynamodb", "opensearch"):
            assert f"{name}: stopped" in log, log[-3000:]
        assert log.rstrip().endswith("stopped")
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=180)
        processes.end(processes.marked(run_dir), timeout_s=10)


def count(base: str, symbol: str | None = None) -> int:
    query = {"query": {"term": {"symbol": symbol}}} if symbol else None
    client = opensearch_client(base, timeout_s=10)
    try:
        client.indices.refresh(index="stock-indicators")
        return client.count(index="stock-indicators", body=query)["count"]
    except NotFoundError:
        return 0


def suite_count() -> int:
    return count(OPENSEARCH_URL)
