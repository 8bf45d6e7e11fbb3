"""One fetcher invocation as a new Lambda container would run it: ``bench.fetcher_invoke`` in a fresh
process with the function's environment, against a stream and cursor table of its own on the local
Kinesis and DynamoDB. Shared by the fetcher benchmark (``fetcher``) and its scale run
(``fetcher_scale``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from fetcher_lambda.cursor import ensure_table
from fetcher_lambda.kinesis import ensure_stream
from stack.services import ROOT
from tests.fake_alphavantage import TEST_API_KEY, FakeAlphaVantage
from tests.local_aws import DYNAMODB_URL, KINESIS_URL, local_client


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    env = {**os.environ, "SYMBOLS": ",".join(symbols), "AV_BASE_URL": server.url,
           "AV_API_KEY": TEST_API_KEY, "BARS_STREAM_NAME": stream, "CURSOR_TABLE_NAME": table,
           "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
           "FETCHER_IGNORE_MARKET_HOURS": "true", **settings}  # the served bars are of a past day
    env.pop("AV_SECRET_ARN", None)
    env.pop("ALPHAVANTAGE_SECRET_ARN", None)  # its old name, still read in this release
    out = subprocess.run([sys.executable, "-m", "bench.fetcher_invoke", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"fetcher invocation failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])  # after the function's metric (EMF) lines
