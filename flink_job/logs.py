"""Structured JSON log lines of the job, in the fetcher's style: one JSON object per line.

``{"event": "job_start", "level": "INFO", "logger": "flink_job", ...}``. Where they go:
- in the process that runs ``main`` (the start line, a configuration error): stderr;
- inside the job (the operator's lines): Flink's own log, through the JVM's SLF4J logger
  ``flink_job`` (``use_flink_log``), because in thread mode Python runs inside the TaskManager's JVM
  and its stderr is not the TaskManager's log (a local mini-cluster's JVM does not even read it).
  On Managed Flink that log is what the application's CloudWatch logging option ships; locally it
  is the mini-cluster's log file in ``FLINK_LOG_DIR``. In process mode Flink's Python worker
  forwards Python logging to the same log.

Events: ``job_start`` (mode, versions, configuration without secrets), ``config_error``,
``state_restored`` (symbols restored since the last line, state layout version), ``state_reset``
(one per symbol whose state no longer fits, with the reason), ``summary`` (at most once a
minute: dead letters by reason, late, duplicate and revised bars) and, when the job restarts,
``opensearch_writes_blocked`` or ``opensearch_blocks_unknown`` (``write_blocks``).
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


_flink_logger: Any = None  # the JVM's SLF4J logger, once use_flink_log found one


def use_flink_log() -> bool:
    """Send this process's job lines to Flink's log, if Python runs embedded in Flink's JVM (thread
    mode); otherwise keep Python logging. Returns whether Flink's log is used."""
    global _flink_logger
    try:
        from pemja import findClass  # only importable inside the JVM
        _flink_logger = findClass("org.slf4j.LoggerFactory").getLogger(LOGGER_NAME)
    except Exception:  # noqa: BLE001 - any failure means: not embedded, keep Python logging
        _flink_logger = None
    return _flink_logger is not None


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> str:
    """Write one JSON line ``{"event": event, "level": ..., **fields}``; returns the line."""
    line = json.dumps({"event": event, "level": logging.getLevelName(level), "logger": LOGGER_NAME, **fields},
                      default=str, separators=(",", ":"))
    if _flink_logger is None or not _log_to_flink(level, line):
        job_logger().log(level, line)
    return line


def _log_to_flink(level: int, line: str) -> bool:
    """One line to Flink's log; False if the JVM refused it (a log line never fails the job)."""
    # SLF4J's methods are overloaded, and a call from Python picks among same-arity overloads in no
    # fixed order: ("{}", line) fits only (String format, Object argument), and the line, being an
    # argument, is never read for placeholders.
    log = _flink_logger.error if level >= logging.ERROR else (
        _flink_logger.warn if level >= logging.WARNING else _flink_logger.info)
    try:
        log("{}", line)
    except Exception:  # noqa: BLE001 - the JVM refusing a line must not fail the job: Python logs it
        return False
    return True
