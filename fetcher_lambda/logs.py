"""The fetcher's JSON log lines and redaction: ``lambda_kit.logs``, shared with the alerts.

Alpha Vantage takes its key as a query parameter, so every request URL carries it; the redaction
(``install_redaction`` on urllib3's loggers, ``register_secret`` for the key read from Secrets
Manager) keeps it out of every line. Kept as a module so the fetcher's imports read ``.logs``.
"""

from lambda_kit.logs import (SDK_LOGGERS, URL_LOGGERS, JsonLines, RedactFilter, configure_logging,
                             install_redaction, log_event, redact, register_secret)

__all__ = ["SDK_LOGGERS", "URL_LOGGERS", "JsonLines", "RedactFilter", "configure_logging",
           "install_redaction", "log_event", "redact", "register_secret"]
