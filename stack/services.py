"""Start, check and stop the local stand-ins for the AWS services the pipeline uses.

One way to start each service, no Docker:
- Kinesis: kinesis-mock (npm ``kinesis-local``), plain HTTP.
- OpenSearch 2.x: the ``integ-test-zip`` distribution, run as an unprivileged user because
  OpenSearch refuses to run as root.
- DynamoDB (the fetcher's cursor table): dynalite (npm), a DynamoDB implementation on LevelDB.

Every service listens on 127.0.0.1 only: OpenSearch by its ``network.host``, the two Node.js services
through ``stack/loopback.cjs``, preloaded into them (kinesis-local has no bind option of its own).

Every service writes a pid file and a log under the run directory and carries the run directory in
its environment (``RUN_MARKER``), so it can be found without the pid file. ``start`` is idempotent (a
healthy service that is already ours is left alone), refuses a port that something else holds, and
waits until the service answers; ``stop`` ends the whole process group and waits for the port to be
free. Ports come from ``KINESIS_PORT``, ``OPENSEARCH_PORT``, ``DYNAMODB_PORT`` (``Ports``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import requests
from opensearchpy import TransportError

from stack.search import client

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "stack" / "node_modules"
# Preloaded into the Node.js services: their servers listen on loopback only.
LOOPBACK_PRELOAD = ROOT / "stack" / "loopback.cjs"
OPENSEARCH_VERSION = "2.19.6"
OPENSEARCH_USER = "stockflow"


class StackError(RuntimeError):
    """A local service could not be started or stopped; the message says what to do."""


# Every local endpoint's port, the variable that sets it, and its default: the one place they are named.
PORT_VARIABLES = {"kinesis": ("KINESIS_PORT", 4568), "opensearch": ("OPENSEARCH_PORT", 9200),
                  "dynamodb": ("DYNAMODB_PORT", 8000), "dashboard": ("DASHBOARD_PORT", 8050)}
# Set in the environment of every process the stack starts (and so inherited by their children, the
# JVMs among them): ``make stop`` finds a run's processes by it even when pid files are gone.
RUN_MARKER = "STOCK_ANALYTICS_RUN_DIR"
PROCESS_MARKER = "STOCK_ANALYTICS_PROCESS"


@dataclass(frozen=True)
class Ports:
    kinesis: int
    opensearch: int
    dynamodb: int
    dashboard: int = PORT_VARIABLES["dashboard"][1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Ports":
        """The ports from ``KINESIS_PORT``, ``OPENSEARCH_PORT``, ``DYNAMODB_PORT``, ``DASHBOARD_PORT``."""
        env = os.environ if environ is None else environ
        ports = {}
        for name, (variable, default) in PORT_VARIABLES.items():
            value = env.get(variable, str(default))
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise StackError(f"{variable}={value!r} is not a port number (1-65535)")
            ports[name] = int(value)
        return cls(**ports)

    def url(self, service: str) -> str:
        """The local base URL of ``service`` (a field name: kinesis, opensearch, dynamodb, dashboard)."""
        return f"http://127.0.0.1:{getattr(self, service)}"

    def as_env(self) -> dict[str, str]:
        """The variables that select these ports, for a child process."""
        return {variable: str(getattr(self, name)) for name, (variable, _) in PORT_VARIABLES.items()}


def run_dir() -> Path:
    """Where pid files, logs, the run lock and service data live (an absolute path).

    As root the directory must be usable by the unprivileged OpenSearch user, and the checkout may sit
    below a folder that user cannot enter (``/root``), so root uses a world-traversable system path.
    """
    if os.environ.get("STACK_RUN_DIR"):
        return Path(os.environ["STACK_RUN_DIR"]).resolve()
    if os.geteuid() == 0:
        return Path("/var/tmp/stock-analytics")
    return ROOT / ".local" / "run"


def marker_env(name: str) -> dict[str, str]:
    """The variables that mark a process (and its children) as ``name`` of this run directory's stack."""
    return {RUN_MARKER: str(run_dir()), PROCESS_MARKER: name}


def send_signal(pid: int, sig: int) -> None:
    """Signal ``pid`` if it still exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Service:
    """A local server process: how to launch it and how to tell it is ready."""

    name: str
    port: int
    healthy: Callable[[int], bool]
    start_timeout_s: float = 60.0

    @property
    def pid_file(self) -> Path:
        return run_dir() / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return run_dir() / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def launch(self) -> subprocess.Popen:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> str:
        if self.pid() is not None and self.healthy(self.port):
            return f"{self.name}: already running on port {self.port}"
        if port_open(self.port):
            raise StackError(
                f"{self.name}: port {self.port} is already in use by another process. "
                f"Stop it, or choose another port with {self.name.upper()}_PORT=..."
            )
        run_dir().mkdir(parents=True, exist_ok=True)
        proc = self.launch()
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{self.name}: exited with code {proc.returncode} while starting; see {self.log_file}"
                )
            if self.healthy(self.port):
                return f"{self.name}: started on port {self.port} (log {self.log_file})"
            time.sleep(0.5)
        self.stop()
        raise StackError(
            f"{self.name}: not healthy after {self.start_timeout_s:.0f}s; see {self.log_file}"
        )

    def stop(self, timeout_s: float = 30.0) -> str:
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return f"{self.name}: not running"
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and (_pid_alive(pid) or port_open(self.port)):
                _reap(pid)
                time.sleep(0.2)
            if not _pid_alive(pid) and not port_open(self.port):
                break
        if port_open(self.port):
            raise StackError(f"{self.name}: port {self.port} still in use after stop")
        return f"{self.name}: stopped"

    def _popen(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
               user: str | None = None) -> subprocess.Popen:
        log = open(self.log_file, "ab")
        preexec = _drop_privileges(user) if user else None
        return subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, **marker_env(self.name), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec,
        )


def _reap(pid: int) -> None:
    """Collect a child that has exited so it does not linger as a zombie that still 'exists'."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _drop_privileges(user: str) -> Callable[[], None]:
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.initgroups(user, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


def _http_ok(url: str, **kwargs) -> bool:
    try:
        return requests.request(kwargs.pop("method", "GET"), url, timeout=2, **kwargs).status_code < 500
    except requests.RequestException:
        return False


def _opensearch_ok(port: int) -> bool:
    """OpenSearch answers its cluster health without a server error (waiting a second for yellow)."""
    try:
        # request_timeout given, ``timeout`` is the query's (the client takes it for its own otherwise).
        client(f"http://127.0.0.1:{port}").cluster.health(wait_for_status="yellow", timeout="1s", request_timeout=2)
        return True
    except TransportError as err:  # a status, or "N/A" when nothing answered (its ConnectionError)
        return isinstance(err.status_code, int) and err.status_code < 500


def _aws_json_ok(port: int, target: str, content_type: str) -> bool:
    return _http_ok(
        f"http://127.0.0.1:{port}/",
        method="POST",
        data="{}",
        headers={
            "X-Amz-Target": target,
            "Content-Type": content_type,
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/x/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        },
    )


class Kinesis(Service):
    def __init__(self, port: int):
        super().__init__(
            "kinesis", port,
            lambda p: _aws_json_ok(p, "Kinesis_20131202.ListStreams", "application/x-amz-json-1.1"),
        )

    def launch(self) -> subprocess.Popen:
        pkg = NODE_MODULES / "kinesis-local"
        if not (pkg / "main.js").exists():
            raise StackError("kinesis-local is not installed: run `make setup` first")
        env = {
            "KINESIS_MOCK_PLAIN_PORT": str(self.port),
            # The TLS listener is unused but always opened: keep it next to the plain one.
            "KINESIS_MOCK_TLS_PORT": str(self.port + 1000),
            "CREATE_STREAM_DURATION": "100ms",
            # An account's default is 50 shards; the suite's jobs each create streams of their own.
            "SHARD_LIMIT": "2000",
            "LOG_LEVEL": "WARN",
        }
        return self._popen(["node", "--require", str(LOOPBACK_PRELOAD), "main.js"], cwd=pkg, env=env)


class DynamoDB(Service):
    def __init__(self, port: int):
        super().__init__(
            "dynamodb", port,
            lambda p: _aws_json_ok(p, "DynamoDB_20120810.ListTables", "application/x-amz-json-1.0"),
        )

    def launch(self) -> subprocess.Popen:
        cli = NODE_MODULES / "dynalite" / "cli.js"
        if not cli.exists():
            raise StackError("dynalite is not installed: run `make setup` first")
        data = run_dir() / "dynamodb-data"
        shutil.rmtree(data, ignore_errors=True)  # a fresh table space per start, like DynamoDB Local -inMemory
        return self._popen(["node", "--require", str(LOOPBACK_PRELOAD), str(cli), "--host", "127.0.0.1",
                            "--port", str(self.port), "--path", str(data)], cwd=ROOT)


def opensearch_dist() -> Path:
    return ROOT / ".local" / f"opensearch-{OPENSEARCH_VERSION}"


class OpenSearch(Service):
    def __init__(self, port: int):
        super().__init__(
            "opensearch", port,
            _opensearch_ok,
            start_timeout_s=180.0,
        )

    @property
    def home(self) -> Path:
        return run_dir() / f"opensearch-{OPENSEARCH_VERSION}"

    def launch(self) -> subprocess.Popen:
        dist = opensearch_dist()
        if not (dist / "bin" / "opensearch").exists():
            raise StackError(f"OpenSearch is not unpacked at {dist}: run `make setup` first")
        user = _service_user()
        home = self.home
        if not home.exists():
            # A private copy the service user owns: OpenSearch writes into its config and data folders.
            shutil.copytree(dist, home, symlinks=True)
        conf = home / "config"
        (conf / "opensearch.yml").write_text(
            "cluster.name: stock-analytics-local\n"
            "node.name: local\n"
            "discovery.type: single-node\n"
            "network.host: 127.0.0.1\n"
            f"http.port: {self.port}\n"
            f"transport.port: {self.port + 100}\n"
            f"path.data: {home / 'data'}\n"
            f"path.logs: {home / 'logs'}\n"
            # A developer's disk may be fuller than OpenSearch's 85/90% watermarks: never go read-only.
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "action.auto_create_index: true\n"
        )
        if user:
            _chown_tree(run_dir(), user)
        env = {
            "OPENSEARCH_JAVA_OPTS": os.environ.get("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m"),
            "OPENSEARCH_PATH_CONF": str(conf),
            "OPENSEARCH_JAVA_HOME": os.environ.get("JAVA_HOME", _java_home()),
        }
        return self._popen([str(home / "bin" / "opensearch")], cwd=home, env=env, user=user)


def _java_home() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found: install a JDK 11 or 17")
    return str(Path(java).resolve().parent.parent)


def _service_user() -> str | None:
    """The unprivileged user OpenSearch runs as when we are root (created on first use)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OPENSEARCH_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OPENSEARCH_USER],
            check=True,
        )
    return OPENSEARCH_USER


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        if not os.access(parent, os.X_OK):
            raise StackError(f"{parent} is not traversable; set STACK_RUN_DIR to a world-readable folder")
    subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(path)], check=True)


def all_services(ports: Ports | None = None) -> dict[str, Service]:
    ports = ports or Ports.from_env()
    return {
        "kinesis": Kinesis(ports.kinesis),
        "dynamodb": DynamoDB(ports.dynamodb),
        "opensearch": OpenSearch(ports.opensearch),
    }


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stack.services", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("names", nargs="*", help="services (default: all)")
    args = parser.parse_args(argv)
    return exit_code(lambda: _act(args.action, args.names))


def _act(action: str, names: list[str]) -> None:
    services = all_services()
    for name in names or list(services):
        service = services[name]
        if action == "start":
            print(f"{name}: starting ...", flush=True)
            print(service.start(), flush=True)
        elif action == "stop":
            print(service.stop(), flush=True)
        else:
            state = "healthy" if service.healthy(service.port) else "down"
            print(f"{name}: {state} on port {service.port}")


def exit_code(command: Callable[[], int | None]) -> int:
    """Run a command-line action: a ``StackError`` becomes one line on stderr and exit code 1."""
    try:
        return command() or 0
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
