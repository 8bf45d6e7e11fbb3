"""The fetcher: one Lambda invocation for N symbols against the fake Alpha Vantage API (a real
socket, in this process) and the local Kinesis and DynamoDB (a stream and a cursor table of its own
per repetition, so every cold invocation finds no cursor and sends every bar), with a budget of
1,200 calls a minute; then how many symbols one invocation handles (``fetcher_scale``).

The invocation runs in a fresh process (``fetcher_invoke``), as a new Lambda container would: its
wall time, API calls, PutRecords calls and peak RSS are that process's. The cold import time of
``fetcher_lambda.handler`` is measured on its own, in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from bench import services
from bench.fetcher_invoke import TIMEOUT_S
from bench.stats import summary
from fetcher_lambda.cursor import ensure_table
from fetcher_lambda.kinesis import ensure_stream
from stack.services import ROOT
from tests.fake_alphavantage import COMPACT_BARS, TEST_API_KEY, FakeAlphaVantage, minute_rows
from tests.local_aws import DYNAMODB_URL, KINESIS_URL, local_client

NEEDS = ("kinesis", "dynamodb")
_IMPORT_PROBE = ("import time; t = time.perf_counter(); import {module}; "
                 "print(time.perf_counter() - t)")


@dataclass(frozen=True)
class Options:
    symbols: int = 100
    reps: int = 3
    import_reps: int = 5
    calls_per_minute: int = 1200


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def import_seconds(module: str, reps: int) -> dict:
    """Cold import of ``module`` in ``reps`` fresh interpreters (the interpreter's own start excluded)."""
    times = []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(module=module)], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=120)
        times.append(float(out.stdout.strip()))
    return summary(times)


def _serve(symbols: list[str]) -> FakeAlphaVantage:
    server = FakeAlphaVantage().start()
    for number, symbol in enumerate(symbols):
        server.set_series(symbol, minute_rows("2024-03-08 09:30", COMPACT_BARS, price=50.0 + number))
    return server


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].rstrip("/")


@contextmanager
def fresh_resources(prefix: str) -> Iterator[tuple[str, str, Any]]:
    """A new stream and cursor table (names, and a DynamoDB client), removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    stream, table = f"{prefix}-bars-{tag}", f"{prefix}-cursor-{tag}"
    kinesis, dynamodb = local_client("kinesis"), local_client("dynamodb")
    ensure_stream(kinesis, stream)
    ensure_table(dynamodb, table)
    try:
        yield stream, table, dynamodb
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        dynamodb.delete_table(TableName=table)


def run_container(server: FakeAlphaVantage, symbols: list[str], stream: str, table: str,
                  settings: dict[str, str], *args: str) -> dict:
    """``bench.fetcher_invoke`` in a fresh process (a new container) with the function's environment."""
    env = {**os.environ, "SYMBOLS": ",".join(symbols), "ALPHAVANTAGE_BASE_URL": server.url,
           "ALPHAVANTAGE_API_KEY": TEST_API_KEY, "STREAM_NAME": stream, "CURSOR_TABLE": table,
           "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
           "IGNORE_MARKET_HOURS": "true", **settings}  # the served bars are of a past day
    env.pop("ALPHAVANTAGE_SECRET_ARN", None)
    out = subprocess.run([sys.executable, "-m", "bench.fetcher_invoke", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"fetcher invocation failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])  # after the function's metric (EMF) lines


def _invoke(server: FakeAlphaVantage, symbols: list[str], calls_per_minute: int) -> dict:
    """One fresh container against a new stream and cursor table; the resources are removed after."""
    calls_before = len(server.calls())
    with fresh_resources("bench") as (stream, table, _):
        result = run_container(server, symbols, stream, table, {"AV_CALLS_PER_MINUTE": str(calls_per_minute)})
    result["api_requests_served_both"] = len(server.calls()) - calls_before
    names = {_port(server.url): "alphavantage", _port(KINESIS_URL): "kinesis", _port(DYNAMODB_URL): "dynamodb"}
    for key in ("cold_waits", "warm_waits"):
        result[key] = {names.get(port, port): wait for port, wait in result[key].items()}
    return result


def run(opts: Options) -> dict:
    from bench import fetcher_scale  # it builds on this module

    symbols = [f"BF{i:04d}" for i in range(opts.symbols)]
    server = _serve(symbols)
    try:
        invocations = []
        for rep in range(opts.reps):
            invocations.append(services.with_services(NEEDS, "fetcher",
                                                       lambda: _invoke(server, symbols, opts.calls_per_minute)))
            cold = invocations[-1]
            log(f"fetcher: rep {rep + 1}/{opts.reps}: cold invocation {cold['cold_invocation_s']:.2f} s, "
                f"{cold['cold']['bars_sent']} bars sent, {cold['max_rss_mib']:.0f} MiB peak RSS")
    finally:
        server.stop()
    first = invocations[0]
    return {
        "options": opts.__dict__,
        "cold_invocation_s": summary([i["cold_invocation_s"] for i in invocations]),
        "warm_invocation_s": summary([i["warm_invocation_s"] for i in invocations]),
        "cold_waits_s": {service: summary([i["cold_waits"].get(service, {}).get("seconds", 0.0) for i in invocations])
                         for service in ("alphavantage", "kinesis", "dynamodb")},
        "run_duration_s": summary([i["cold"]["duration_ms"] / 1000 for i in invocations]),
        "max_rss_mib": summary([i["max_rss_mib"] for i in invocations]),
        "max_rss_after_import_mib": summary([i["max_rss_after_import_mib"] for i in invocations]),
        "api_calls": first["cold"]["api_calls"],
        "api_requests_served_cold_and_warm": first["api_requests_served_both"],
        "put_records_calls": first["cold"]["put_records_calls"], "bars_sent": first["cold"]["bars_sent"],
        "warm_api_calls": first["warm"]["api_calls"], "warm_put_records_calls": first["warm"]["put_records_calls"],
        "symbols_failed": max(i["cold"]["symbols_failed"] for i in invocations),
        "symbols_skipped": max(i["cold"]["symbols_skipped"] for i in invocations),
        "timeout_s": TIMEOUT_S,
        "import_handler_s": import_seconds("fetcher_lambda.handler", opts.import_reps),
        "import_boto3_s": import_seconds("boto3", opts.import_reps),
        "invocations": invocations,
        "scale": fetcher_scale.run(fetcher_scale.Options(reps=opts.reps, calls_per_minute=opts.calls_per_minute)),
    }
