"""Structured JSON log lines: one object per line, ``{"event": ..., "level": ..., ...}``."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"event": event, "level": logging.getLevelName(level), **fields},
                                     default=str, separators=(",", ":")))


class JsonLines(logging.Formatter):
    """Our records are JSON already; other libraries' records are wrapped into one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith("alerts") and message.startswith("{"):
            return message
        wrapped = {"event": "log", "level": record.levelname, "logger": record.name, "message": message}
        if record.exc_info:
            wrapped["exception"] = self.formatException(record.exc_info)
        return json.dumps(wrapped, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Levels, and a stderr handler only if none is installed (the Lambda runtime has its own)."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        root.addHandler(handler)
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
