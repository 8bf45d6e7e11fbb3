"""The alerts' JSON log lines: ``lambda_kit.logs``, shared with the fetcher (redaction included).

Kept as a module so the alerts' imports read ``alerts.logs``; urllib3 stays at WARNING or above,
as the AWS SDK's loggers do: the alerts make no request whose lines are worth a debug run.
"""

from __future__ import annotations

from typing import IO

from lambda_kit.logs import SDK_LOGGERS, JsonLines, log_event, redact, register_secret
from lambda_kit.logs import configure_logging as _configure_logging

__all__ = ["JsonLines", "configure_logging", "log_event", "redact", "register_secret"]


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Levels, redaction, and a stderr handler only if none is installed (the Lambda runtime has its own)."""
    _configure_logging(level, stream, quiet=(*SDK_LOGGERS, "urllib3"))
