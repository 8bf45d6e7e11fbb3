"""A run's output that outlives its reader: what ``make run`` prints goes to the terminal (or pipe) and
to ``<run dir>/run.log``, and a write that fails never stops the run from stopping.

The output of a run can go away while the run still has work to do: ``make run 2>&1 | tee run.log``
and Ctrl-C end ``tee`` together with the run, so the run's "stopping" lines hit a closed pipe
(``BrokenPipeError``); a closed terminal sends SIGHUP and then fails every write (``EIO``). Python
ignores SIGPIPE, so such a write raises; ``install`` wraps ``sys.stdout`` and ``sys.stderr`` so that
it does not: the failing stream's file descriptor is pointed at ``/dev/null`` (so Python's last flush at
exit finds nothing to fail on either), ``lost`` turns true, and ``run.log`` keeps every line.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import TextIO


class _Stream(io.TextIOBase):
    """``target`` (the original ``sys.stdout`` or ``sys.stderr``), copied to the run log, never raising."""

    def __init__(self, console: "Console", target: TextIO):
        super().__init__()
        self._console, self._target, self.lost = console, target, False

    def write(self, text: str) -> int:
        self._console.record(text)
        if not self.lost:
            try:
                self._target.write(text)
            except (OSError, ValueError):  # ValueError: the stream was closed
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._target.flush()
            except (OSError, ValueError):
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._target.fileno())
            os.close(devnull)
            self._target.flush()  # what was buffered for the closed reader goes to /dev/null
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return not self.lost and self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # the target's, for print()
        return self._target.encoding


class Console:
    """Stdout and stderr of this process, both also written to ``log`` (this run's output only: the run
    lock guarantees one run per run directory)."""

    def __init__(self, log: Path):
        self._log = open(log, "w", buffering=1, encoding="utf-8")
        self.stdout = _Stream(self, sys.stdout)
        self.stderr = _Stream(self, sys.stderr)

    def install(self) -> "Console":
        sys.stdout, sys.stderr = self.stdout, self.stderr
        return self

    @property
    def lost(self) -> bool:
        """Whether the run's standard output has gone (a closed pipe or terminal)."""
        return self.stdout.lost

    def record(self, text: str) -> None:
        try:
            self._log.write(text)
        except (OSError, ValueError):
            pass  # a full disk must not stop the run from stopping either
