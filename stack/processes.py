"""Start the processes of a local run so that they can always be found again, and end them.

Every process is started in a session of its own with the run directory and its name in its
environment (``services.RUN_MARKER``/``PROCESS_MARKER``). Children inherit the environment, the
Flink job's JVM among them, so ``marked`` finds a run's whole process tree by reading environments,
even after the run that started it crashed and its pid files are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable

import psutil

from stack.services import PROCESS_MARKER, RUN_MARKER, ROOT, marker_env, run_dir


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` as ``name`` of this run: own session, log and pid file in the run directory."""
    log = open(run_dir() / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **marker_env(name), **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    (run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc


def marked(directory: Path, names: Iterable[str] | None = None) -> list[psutil.Process]:
    """Every live process marked with ``directory`` (and, if given, one of ``names``), oldest first.

    Processes of other users whose environment cannot be read are not ours; this process and its
    ancestors are never included."""
    wanted = set(names) if names is not None else None
    mark = str(directory.resolve())
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in own:
            continue
        try:
            env = proc.environ()
            if env.get(RUN_MARKER) != mark:
                continue
            if wanted is not None and env.get(PROCESS_MARKER) not in wanted:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return sorted(found, key=_create_time)


def _create_time(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return 0.0


def name_of(proc: psutil.Process) -> str:
    try:
        return proc.environ().get(PROCESS_MARKER, "?")
    except psutil.Error:
        return "?"


def end(procs: list[psutil.Process], timeout_s: float = 20.0) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL after ``timeout_s``: each process and, where it leads one, its process
    group (which also reaches a descendant that cleared its environment). Returns those ended."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if _alive(p)]
        if not alive:
            break
        for proc in alive:
            _signal(proc, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            psutil.wait_procs(alive, timeout=0.2)  # also reaps those that are our children
    return procs


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has ended; only its parent has yet to collect it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
    except (PermissionError, psutil.AccessDenied):
        pass  # not ours to end (another user's process): left for its owner
