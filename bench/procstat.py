"""CPU time of process trees from /proc (Linux): what a run cost, not only how long it took.

Wall time on a shared 2-core machine moves with everything else running; CPU seconds of the
processes under test move much less, and they say how many cores a pipeline really keeps busy.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2:].split()


def _processes() -> list[tuple[int, int, int, float]]:
    """(pid, ppid, process group, CPU seconds of user + system) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
            # After the name: state, ppid, pgrp, ... utime is field 14 and stime 15 of the full line.
            out.append((int(entry), int(fields[1]), int(fields[2]),
                        (int(fields[11]) + int(fields[12])) / _TICKS))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and all its live descendants."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    cpu = {pid: seconds for pid, _, _, seconds in procs}
    for pid, ppid, _, _ in procs:
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in process group ``pgid`` (a service or a job session)."""
    return sum(seconds for _, _, group, seconds in _processes() if group == pgid)
