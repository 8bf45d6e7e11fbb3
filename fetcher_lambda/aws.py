"""boto3 clients for the fetcher, created lazily.

boto3 takes longer to import than the whole rest of the handler, so it is imported here on first use
instead of at module load: the Lambda's cold start (INIT) stays short and local modes that do not
touch AWS (parsing, sample generation) never pay for it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .config import Settings


# The Kinesis client makes one attempt of at most this long (connect + read): the sender retries
# failed bars itself, and must know how long a call it starts can take (``Settings.put_call_s``).
KINESIS_CONNECT_S, KINESIS_READ_S = 1.0, 3.0
KINESIS_CALL_S = KINESIS_CONNECT_S + KINESIS_READ_S


def client(service: str, settings: Settings, endpoint_url: str | None = None, max_pool_connections: int = 10,
           connect_timeout: float = 3, read_timeout: float = 10, max_attempts: int = 3) -> Any:
    """A client with short timeouts and botocore's standard retry mode.

    A session per client: boto3's default session is not safe to share between threads, and tests
    run invocations concurrently. A client itself is thread-safe; ``max_pool_connections`` should
    be the number of threads using it.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout, read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        user_agent_extra="stock-analytics-fetcher", max_pool_connections=max_pool_connections,
    )
    return boto3.session.Session().client(service, region_name=settings.region,
                                          endpoint_url=endpoint_url, config=config)


def kinesis_client(settings: Settings, max_pool_connections: int = 10, bounded: bool = False) -> Any:
    """``bounded``: one attempt per call of at most ``KINESIS_CALL_S`` (the fetch runs' sender, which
    retries failed bars itself and must finish before the deadline)."""
    if not bounded:
        return client("kinesis", settings, settings.kinesis_endpoint_url, max_pool_connections)
    return client("kinesis", settings, settings.kinesis_endpoint_url, max_pool_connections,
                  connect_timeout=KINESIS_CONNECT_S, read_timeout=KINESIS_READ_S, max_attempts=1)


def dynamodb_client(settings: Settings, max_pool_connections: int = 10) -> Any:
    return client("dynamodb", settings, settings.dynamodb_endpoint_url, max_pool_connections)


def error_code(err: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for anything else)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``ready`` every 0.1 s (boto3 waiters poll every 5-20 s, too slow for local services)."""
    end = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s: check the service and its log")
        time.sleep(0.1)
