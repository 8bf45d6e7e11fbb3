"""AWS Lambda entry point: ``fetcher_lambda.handler.lambda_handler`` (EventBridge, every minute).

Per container (kept between invocations): the settings parsed from the environment, the boto3 clients
and the API key from Secrets Manager. Per invocation: a deadline from the context, and one run of
``pipeline.run`` over all symbols. The local entry point (``python -m fetcher_lambda``) calls the same
``invoke``.

The module imports no boto3 at load time (see ``aws``), so the cold start stays short.
"""

from __future__ import annotations

import threading
from typing import Any

from .apikey import resolve_api_key
from .config import Settings
from .deadline import Deadline
from .logs import configure_logging
from .pipeline import Clients, Summary, run

_container: tuple[Settings, Clients] | None = None
_container_lock = threading.Lock()


def default_clients(settings: Settings, with_cursor: bool = True) -> Clients:
    from .aws import dynamodb_client, kinesis_client

    return Clients(kinesis=kinesis_client(settings), dynamodb=dynamodb_client(settings) if with_cursor else None)


def invoke(settings: Settings, clients: Clients, deadline: Deadline, invocation_id: str | None = None,
           month: str | None = None) -> Summary:
    """One fetch run (live, or a backfill of ``month`` = ``YYYY-MM``)."""
    return run(settings, clients, resolve_api_key(settings), deadline, invocation_id=invocation_id, month=month)


def _container_state() -> tuple[Settings, Clients]:
    global _container
    with _container_lock:
        if _container is None:
            settings = Settings.from_env()
            configure_logging(settings.log_level)
            _container = (settings, default_clients(settings))
        return _container


def lambda_handler(event: Any, context: Any) -> dict:
    """Fetch all SYMBOLS once; the returned summary is also logged as one JSON line.

    Failures of single symbols are reported in the summary, not raised: a raised error would make
    the asynchronous EventBridge invocation retry, spending Alpha Vantage calls on the same minute.
    Configuration errors (no key, bad settings) do raise, so they show as function errors.
    """
    settings, clients = _container_state()
    deadline = Deadline.from_context(context, settings.local_budget_s)
    return invoke(settings, clients, deadline, getattr(context, "aws_request_id", None)).to_dict()
