"""Structured JSON log lines, and redaction of secrets from every line.

Every line is one JSON object in the log message (``{"event": ..., "level": ..., **fields}``), so it
reads the same under the Lambda runtime's own handler, in CloudWatch Logs Insights, in a terminal and
in pytest's log capture. Lines of other libraries are wrapped into one object by ``JsonLines``.

Secrets: a key passed as a query parameter (Alpha Vantage takes ``apikey=`` in the URL) is in every
request URL, and urllib3 writes request URLs into its own records (a warning on every retry, debug
lines per request). ``RedactFilter`` rewrites those records on the HTTP loggers themselves, before
any handler (ours, the Lambda runtime's, or a test's) sees them; ``register_secret`` adds a value
(a key read from Secrets Manager) that is then removed wherever it appears. The AWS SDK's loggers
never go below WARNING: their DEBUG lines print whole responses, secret values included.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from typing import IO, Any

# ``name=value`` query parameters whose value is a credential.
_SECRET_PARAMETER = re.compile(r"(?i)\b(apikey|api_key|access_token|token|password)=[^&\s'\"]+")
_known_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Loggers of the HTTP stack that write request URLs.
URL_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
               "urllib3.util.retry", "requests")
# AWS SDK loggers: at DEBUG they print whole request/response bodies, Secrets Manager values included.
SDK_LOGGERS = ("botocore", "boto3")
# Marks a record whose message is already one of our JSON lines (set by ``log_event``).
JSON_LINE = "json_line"


def register_secret(value: str) -> None:
    """Remember a secret so that ``redact`` removes it wherever it appears, not only in URLs."""
    if value:
        with _secrets_lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """``text`` without the value of any credential query parameter and without any registered secret."""
    text = _SECRET_PARAMETER.sub(r"\1=***", text)
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
    logger.log(level, redact(line), extra={JSON_LINE: True})


class JsonLines(logging.Formatter):
    """Our records are already JSON lines; records of other libraries are wrapped into one."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if getattr(record, JSON_LINE, False):
            return message
        wrapped: dict[str, Any] = {"event": "log", "level": record.levelname, "logger": record.name,
                                   "message": message}
        if record.exc_info:
            wrapped["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(wrapped, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: IO[str] | None = None,
                      quiet: tuple[str, ...] = SDK_LOGGERS) -> None:
    """Set levels and redaction; give the root logger a JSON handler only if it has none.

    Under Lambda the runtime has already installed its handler on the root logger (it adds the
    request id); we keep it and only set levels. Locally we add a stderr handler. The ``quiet``
    loggers (at least the AWS SDK's) never go below WARNING, whatever ``level`` says.
    """
    install_redaction()
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonLines())
        handler.addFilter(_REDACT_FILTER)
        root.addHandler(handler)
    for name in {*SDK_LOGGERS, *quiet}:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
