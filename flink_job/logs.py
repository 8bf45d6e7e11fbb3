"""Structured JSON log lines of the job, in the fetcher's style: one JSON object per line.

``{"event": "job_start", "level": "INFO", "logger": "flink_job", ...}``. The lines go to stderr,
in the client process (``main``) and in the TaskManager where the operator runs (thread mode
embeds Python in its JVM, so its stderr is the TaskManager's). On Managed Flink the application's
CloudWatch logging option collects both; locally they are in the job's own output.

Events: ``job_start`` (mode, versions, configuration without secrets), ``config_error``,
``state_restored`` (symbols restored since the last line, state layout version), ``state_reset``
(one per symbol whose state no longer fits, with the reason) and ``summary`` (at most once a
minute: dead letters by reason, late, duplicate and revised bars).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

LOGGER_NAME = "flink_job"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def job_logger() -> logging.Logger:
    """The job's logger, with a stderr handler of its own (idempotent) so that the lines appear
    whatever logging the host process (PyFlink, Flink's Python runner) has set up."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_flink_job", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler._flink_job = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line per event, not a second copy through the root logger
    return logger


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> str:
    """Write one JSON line ``{"event": event, "level": ..., **fields}``; returns the line."""
    line = json.dumps({"event": event, "level": logging.getLevelName(level), "logger": LOGGER_NAME, **fields},
                      default=str, separators=(",", ":"))
    job_logger().log(level, line)
    return line
