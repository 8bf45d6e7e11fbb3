"""AWS Lambda entry point: ``fetcher_lambda.handler.lambda_handler`` (EventBridge Scheduler, every
minute of the session hours in New York time; the run itself decides holidays and exact bounds).

Per container (kept between invocations): the settings parsed from the environment, the boto3 clients,
the API key from Secrets Manager and the calls-per-minute budget (so consecutive invocations continue
its spacing). Per invocation: a deadline from the context, the symbol group named by the input
(``groups``), and one run of ``pipeline.run`` over that group's symbols. The local entry point
(``python -m fetcher_lambda``) calls the same ``invoke``.

The module imports no boto3 at load time (see ``aws``), so the cold start stays short.
"""

from __future__ import annotations

import threading
from typing import Any

from .apikey import resolve_api_key
from .call_budget import CallBudget
from .config import Settings
from .deadline import Deadline
from .groups import Group
from .logs import configure_logging
from .pipeline import Clients, Clock, Summary, run, utc_now

_container: tuple[Settings, Clients] | None = None
_container_lock = threading.Lock()
_budgets: dict[float, CallBudget] = {}  # per calls-per-minute share: one per container and group count


def default_clients(settings: Settings, with_cursor: bool = True) -> Clients:
    from .aws import dynamodb_client, kinesis_client

    # One connection per fetching thread, so none waits for the pool.
    pool = settings.fetch_concurrency + 2
    return Clients(kinesis=kinesis_client(settings, pool, bounded=True),
                   dynamodb=dynamodb_client(settings, pool) if with_cursor else None)


def container_budget(calls_per_minute: float) -> CallBudget:
    """The budget that this process's runs at this rate share (created on first use)."""
    with _container_lock:
        return _budgets.setdefault(calls_per_minute, CallBudget(calls_per_minute))


def invoke(settings: Settings, clients: Clients, deadline: Deadline, invocation_id: str | None = None,
           month: str | None = None, group: Group = Group(), clock: Clock = utc_now) -> Summary:
    """One fetch run over ``group``'s symbols (live, or a backfill of ``month`` = ``YYYY-MM``);
    ``clock`` is what market hours, call minutes and data ages are decided on."""
    return run(settings, clients, resolve_api_key(settings), deadline, invocation_id=invocation_id, month=month,
               group=group, budget=container_budget(group.share(settings.calls_per_minute)), clock=clock)


def _container_state() -> tuple[Settings, Clients]:
    global _container
    with _container_lock:
        if _container is None:
            settings = Settings.from_env()
            configure_logging(settings.log_level)
            _container = (settings, default_clients(settings))
        return _container


def lambda_handler(event: Any, context: Any) -> dict:
    """Fetch the SYMBOLS of the input's group (all of them without one) once; the returned summary
    is also logged as one JSON line.

    Failures of single symbols are reported in the summary, not raised: a raised error would make
    the asynchronous EventBridge invocation retry, spending Alpha Vantage calls on the same minute.
    Configuration errors (no key, bad settings, a bad group in the input) do raise, so they show as
    function errors.
    """
    settings, clients = _container_state()
    group = Group.from_event(event)
    deadline = Deadline.from_context(context, settings.local_budget_s)
    return invoke(settings, clients, deadline, getattr(context, "aws_request_id", None), group=group).to_dict()
