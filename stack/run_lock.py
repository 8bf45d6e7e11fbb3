"""One ``make run`` per run directory: an exclusive ``flock`` on ``<run dir>/run.lock``.

The holder keeps the file open for its whole life, stopping included, and writes who it is into it
(pid, start time, state, the ports and the Flink REST port). The kernel releases the lock when the
holder exits in any way, a crash or SIGKILL included, so a stale lock never blocks the next run. The
file descriptor is not inherited by the processes the run starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stack.services import StackError


class AlreadyRunning(StackError):
    """Another process holds the lock; ``holder`` is what it wrote about itself (may be empty)."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(describe(path, holder))


def describe(path: Path, holder: dict) -> str:
    pid = holder.get("pid", "?")
    since = holder.get("started_at", "an unknown time")
    if holder.get("role") == "stop":
        return f"`make stop` (pid {pid}) is ending the processes of {path.parent}; try again when it is done"
    if holder.get("state") == "stopping":
        return (f"the `make run` in {path.parent} (pid {pid}, running since {since}) is still stopping; "
                "wait for it to finish, then start again")
    return (f"`make run` is already running in {path.parent}: pid {pid}, since {since}. Stop it with "
            "Ctrl-C in its terminal or `make stop`; a second pipeline needs its own STACK_RUN_DIR and ports")


@dataclass
class RunLock:
    path: Path

    def __post_init__(self) -> None:
        self._file = None
        self._info: dict = {}

    def acquire(self, wait_s: float = 0.0, **info) -> None:
        """Take the lock, waiting up to ``wait_s``; raises ``AlreadyRunning`` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise AlreadyRunning(self.path, self.holder()) from None
                time.sleep(0.2)
        self._file = handle
        self.update(pid=os.getpid(), started_at=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
                    state="running", **info)

    def update(self, **info) -> None:
        """Rewrite what the holder says about itself (e.g. ``state="stopping"``)."""
        assert self._file is not None, "update() needs the lock"
        self._info.update(info)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(self._info) + "\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def holder(self) -> dict:
        """What the current holder wrote ({} if nobody holds the lock or it has not written yet)."""
        if not self.held_elsewhere():
            return {}
        for _ in range(5):  # the holder truncates and rewrites: a read may fall in between
            try:
                text = self.path.read_text()
                return json.loads(text) if text.strip() else {}
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        return {}

    def held_elsewhere(self) -> bool:
        """Whether another open file (of this or another process) holds the lock now."""
        if self._file is not None:
            return False
        try:
            handle = open(self.path)
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
