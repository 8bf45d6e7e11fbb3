"""The shared local services, as the benchmarks need them: started when down, and one retry of a
measurement that a service outage broke (other work on the machine may stop and restart them)."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

import requests
from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy import TransportError

from stack.services import all_services

T = TypeVar("T")
# What an outage of a service looks like from here (a job that lost its services also exits).
OUTAGES = (requests.RequestException, TransportError, BotoCoreError, ClientError, AssertionError, TimeoutError,
           ConnectionError)


def ensure(names: tuple[str, ...]) -> None:
    """Start whichever of ``names`` is down (idempotent)."""
    services = all_services()
    for name in sorted(names):
        print(services[name].start(), file=sys.stderr, flush=True)


def with_services(names: tuple[str, ...], what: str, measure: Callable[[], T], attempts: int = 2) -> T:
    """``measure()`` with its services up; once more if a service outage broke it."""
    for attempt in range(1, attempts + 1):
        ensure(names)
        try:
            return measure()
        except OUTAGES as err:
            if attempt == attempts:
                raise
            print(f"{what}: attempt {attempt} failed ({type(err).__name__}: {str(err)[:200]}); retrying",
                  file=sys.stderr, flush=True)
    raise AssertionError("unreachable")
