"""The structured log lines a test captured (``caplog``), read back as JSON."""

from __future__ import annotations

import json


def events(caplog, name: str, logger: str = "fetcher_lambda") -> list[dict]:
    """The JSON lines named ``name`` that loggers under ``logger`` wrote, in order."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name.startswith(logger) and message.startswith("{"):
            line = json.loads(message)
            if line["event"] == name:
                found.append(line)
    return found
