"""Structured JSON log lines, and redaction of the Alpha Vantage key.

Every log line of the fetcher is one JSON object in the log message (``{"event": ..., ...}``), so it
reads the same under the Lambda runtime's own handler, in CloudWatch Logs Insights, in a terminal and
in pytest's log capture.

Alpha Vantage takes its key as a query parameter, so any URL of a request carries it, and urllib3
writes request URLs into its own log records (a warning on every retry, debug lines per request).
``RedactFilter`` rewrites those records on the urllib3 loggers themselves, before any handler (ours,
the Lambda runtime's, or a test's) sees them; error messages built by the fetcher go through
``redact`` too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from typing import IO, Any

_KEY_IN_URL = re.compile(r"(?i)(apikey=)[^&\s'\"]+")
_known_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Loggers of the HTTP stack that write request URLs.
URL_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
               "urllib3.util.retry", "requests")
# AWS SDK loggers: at DEBUG they print whole request/response bodies, Secrets Manager values included.
SDK_LOGGERS = ("botocore", "boto3")


def register_secret(value: str) -> None:
    """Remember a secret so that ``redact`` removes it wherever it appears, not only in URLs."""
    if value:
        with _secrets_lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """``text`` without any ``apikey=...`` value and without any registered secret."""
    text = _KEY_IN_URL.sub(r"\1***", text)
    for secret in tuple(_known_secrets):
        text = text.replace(secret, "***")
    return text


class RedactFilter(logging.Filter):
    """Rewrites a record's message with ``redact`` (always lets the record through)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        redacted = redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


_REDACT_FILTER = RedactFilter()


def install_redaction() -> None:
    """Attach the redaction filter to the loggers that write URLs (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT_FILTER not in logger.filters:
            logger.addFilter(_REDACT_FILTER)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log one JSON line ``{"event": event, "level": ..., **fields}`` (redacted)."""
    if not logger.isEnabledFor(level):
        return
    line = json.dumps({"event": event, "level": logging.getLevelName(level), **fields},
                      default=str, separators=(",", ":"))
    logger.log(level, redact(line))


class JsonLineFormatter(logging.Formatter):
    """Our records are already JSON lines; records of other libraries are wrapped into one."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if message.startswith("{") and record.name.startswith("fetcher_lambda"):
            return message
        wrapped: dict[str, Any] = {"event": "log", "level": record.levelname, "logger": record.name,
                                   "message": message}
        if record.exc_info:
            wrapped["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(wrapped, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Set levels and redaction; give the root logger a JSON handler only if it has none.

    Under Lambda the runtime has already installed its handler on the root logger (it adds the
    request id); we keep it and only set levels. Locally we add a stderr handler.
    """
    install_redaction()
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        handler.addFilter(_REDACT_FILTER)
        root.addHandler(handler)
    for name in SDK_LOGGERS:
        # Never below WARNING, whatever LOG_LEVEL says: their DEBUG lines would show the secret.
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
