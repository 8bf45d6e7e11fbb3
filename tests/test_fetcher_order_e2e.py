"""Per-symbol order end to end: the fetcher puts through a Kinesis client that fails entries and
throttles calls, the real job reads the stream, and no bar is late.

Real parts: the fake Alpha Vantage API on a socket, the local Kinesis and DynamoDB, the job on a
local mini-cluster (run under the shared Flink lock), OpenSearch. Expected job restarts: zero.
"""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda import handler
from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.cursor import CursorStore
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.pipeline import Clients
from tests import fake_alphavantage as fake
from tests.flink_rest import FlinkRest, free_port
from tests.kinesis_faults import FailEntries, ThrottleCalls, every_nth_attempt
from tests.local_aws import KINESIS_URL
from tests.pipeline_harness import JobHarness, unique_symbol, wait_for

NY = ZoneInfo("America/New_York")
BARS = 60


@pytest.fixture
def job(tmp_path):
    harness = JobHarness(tmp_path, parallelism=1)
    port = free_port()
    harness.start(["--rest-port", str(port)])
    rest = FlinkRest(port)
    wait_for(lambda: rest.running_job() is not None, 180, "the job to run", harness)
    yield harness, rest
    harness.stop()


def test_partial_failures_and_throttling_leave_no_bar_late(job, fake_alphavantage, fetcher_settings,
                                                          fetcher_clients_factory, read_stream):
    harness, rest = job
    job_id = rest.running_job()
    symbols = [unique_symbol(f"ORD{i}") for i in range(4)]
    expected = {}
    for number, symbol in enumerate(symbols):
        rows = fake.minute_rows("2024-03-08 10:00", BARS, price=40.0 + number, step=0.03 * (number + 1))
        fake_alphavantage.set_series(symbol, rows)
        expected[symbol] = [to_utc(row.local_ts, NY) for row in rows]
    stream = harness.config.source.stream_name
    settings = replace(fetcher_settings, symbols=tuple(symbols), stream_name=stream, kinesis_endpoint_url=KINESIS_URL,
                       put_attempts=20)
    kinesis, dynamodb = fetcher_clients_factory()
    # Every third entry sent fails (partial failures all along), and two whole calls are throttled.
    faults = FailEntries(kinesis, every_nth_attempt(3))
    throttle = ThrottleCalls(kinesis, count=2)

    summary = handler.invoke(settings, Clients(kinesis, dynamodb), Deadline.after(120))
    assert summary.symbols_ok == 4 and summary.bars_sent == 4 * BARS, summary
    assert summary.put_records_retries > BARS and throttle.refused == 2 and len(faults.requests) > BARS
    on_stream: dict[str, list[str]] = {}
    for _, record in read_stream(stream):
        on_stream.setdefault(record["symbol"], []).append(record["ts"])
    assert on_stream == expected, "each symbol's bars on the stream once, in time order"
    store = CursorStore(dynamodb, settings.cursor_table)
    assert all(store.read(symbol).cursor == expected[symbol][-1] for symbol in symbols)

    wait_for(lambda: len(harness.docs_for("stock-indicators", symbols)) >= 4 * BARS, 180,
             "every bar in stock-indicators", harness)
    docs = harness.docs_for("stock-indicators", symbols)
    assert sorted((d["symbol"], d["ts"]) for d in docs) == sorted((s, ts) for s, tss in expected.items() for ts in tss)
    assert all(d["sma_20"] is not None for d in docs if d["ts"] >= expected[d["symbol"]][19]), "bars analysed in order"
    wait_for(lambda: len(harness.output_for(symbols)) >= 4 * BARS, 60, "every bar on the output stream", harness)
    dead = harness.search("stock-dlq", {"prefix": {"record_id": f"{stream}/"}})
    assert [d["reason"] for d in dead] == [], "no dead letter at all, in particular none `late`"
    assert rest.failures(job_id) == [], "expected zero job restarts"
