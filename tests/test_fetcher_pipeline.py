"""Fetch runs against the real local Kinesis and DynamoDB, with the fake Alpha Vantage API."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda import apikey, handler
from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.config import ConfigError
from fetcher_lambda.cursor import CursorStore, now_ms
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.logs import JsonLines, configure_logging
from fetcher_lambda.pipeline import Clients
from tests.log_lines import events
from tests import fake_alphavantage as fake
from tests.local_aws import DYNAMODB_URL, KINESIS_URL
from tests.fake_alphavantage import TEST_API_KEY as KEY
from tests.fake_alphavantage import Reply
from tests.kinesis_faults import FailEntries, ThrottleCalls, first_attempts_of

NY = ZoneInfo("America/New_York")
CONTRACT_FIELDS = {"symbol", "ts", "open", "high", "low", "close", "volume", "interval", "source"}


class LambdaContext:
    """The parts of the Lambda context object the handler uses."""

    def __init__(self, remaining_ms: int, request_id: str = "test-request"):
        self._end = time.monotonic() + remaining_ms / 1000
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self._end - time.monotonic()) * 1000)


def utc(rows) -> list[str]:
    return [to_utc(row.local_ts, NY) for row in rows]


def run_once(settings, clients, seconds: float = 20.0, owner: str | None = None, month: str | None = None):
    return handler.invoke(settings, clients, Deadline.after(seconds), owner, month)


def by_symbol(records) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, record in records:
        assert key == record["symbol"], "partition key must be the symbol"
        out.setdefault(key, []).append(record["ts"])
    return out




@pytest.fixture
def clients(fetcher_clients_factory) -> Clients:
    kinesis, dynamodb = fetcher_clients_factory()
    return Clients(kinesis=kinesis, dynamodb=dynamodb)


def test_bars_arrive_once_in_order_then_only_new_ones(fake_alphavantage, fetcher_settings, clients,
                                                      read_stream, caplog):
    caplog.set_level(logging.INFO)
    ibm = fake.minute_rows("2024-03-08 15:50", 10) + fake.minute_rows("2024-03-11 09:30", 10)  # DST between
    aapl = fake.minute_rows("2024-03-11 04:00", 15, price=170.0)  # pre-market bars
    fake_alphavantage.set_series("IBM", ibm)
    fake_alphavantage.set_series("AAPL", aapl)
    settings = replace(fetcher_settings, symbols=("IBM", "AAPL"))

    first = run_once(settings, clients)
    records = read_stream(settings.stream_name)
    assert by_symbol(records) == {"IBM": utc(ibm), "AAPL": utc(aapl)}
    assert "2024-03-08T20:50:00Z" in utc(ibm) and "2024-03-11T13:30:00Z" in utc(ibm)
    assert all(set(record) == CONTRACT_FIELDS for _, record in records)
    assert next(record for key, record in records if key == "IBM") == {"symbol": "IBM", "ts": "2024-03-08T20:50:00Z", "open": 100.0, "high": 100.03,
                             "low": 99.98, "close": 100.01, "volume": 1000, "interval": "1min",
                             "source": "alphavantage"}
    assert (first.symbols_ok, first.bars_fetched, first.bars_sent, first.api_calls) == (2, 35, 35, 2)
    # One bar per symbol per call, batched across symbols: as many calls as the longest symbol has bars,
    # more only if the second symbol's bars were handed over after the first one's had started.
    assert 20 <= first.put_records_calls <= 35 and first.put_records_retries == 0
    summaries = events(caplog, "fetch_summary")
    assert len(summaries) == 1 and summaries[0]["bars_sent"] == 35 and summaries[0]["symbols_ok"] == 2

    second = run_once(settings, clients)
    assert (second.bars_sent, second.bars_skipped, second.put_records_calls) == (0, 35, 0)
    assert len(read_stream(settings.stream_name)) == 35

    newer = fake.minute_rows("2024-03-11 09:40", 3, price=101.0)
    fake_alphavantage.add_rows("IBM", newer)
    third = run_once(settings, clients)
    assert third.bars_sent == 3 and third.bars_skipped == 35
    assert by_symbol(read_stream(settings.stream_name))["IBM"] == utc(ibm) + utc(newer)
    assert CursorStore(clients.dynamodb, settings.cursor_table).read("IBM").cursor == utc(newer)[-1]


def test_concurrent_invocations_send_each_bar_once(fake_alphavantage, fetcher_settings, fetcher_clients_factory,
                                                   read_stream):
    symbols = ("IBM", "AAPL", "MSFT")
    settings = replace(fetcher_settings, symbols=symbols)
    expected: Counter = Counter()
    for symbol in symbols:
        rows = fake.minute_rows("2024-03-08 10:00", 30)
        # A slow API makes both invocations read the same cursor before either claims.
        fake_alphavantage.set_series(symbol, rows, delay_s=0.2)
        expected.update((symbol, ts) for ts in utc(rows))
    clients = [Clients(*fetcher_clients_factory()) for _ in range(2)]
    for round_number in range(3):
        if round_number:
            for symbol in symbols:
                rows = fake.minute_rows(f"2024-03-08 1{round_number}:00", 5)
                fake_alphavantage.add_rows(symbol, rows)
                expected.update((symbol, ts) for ts in utc(rows))
        barrier = threading.Barrier(2)
        summaries = [None, None]

        def invoke(i: int, barrier: threading.Barrier, summaries: list, round_number: int) -> None:
            barrier.wait()
            summaries[i] = run_once(settings, clients[i], owner=f"round{round_number}-invocation{i}")

        threads = [threading.Thread(target=invoke, args=(i, barrier, summaries, round_number)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert all(summaries), "an invocation did not finish"
        assert sum(s.symbols_failed for s in summaries) == 0
        seen = Counter((record["symbol"], record["ts"]) for _, record in read_stream(settings.stream_name))
        assert seen == expected, f"round {round_number}: duplicates {[k for k, n in seen.items() if n > 1][:5]}"
        assert sum(s.bars_sent for s in summaries) == (90 if round_number == 0 else 15)


def test_partial_put_failure_retries_the_failed_bar_before_any_newer_one(fake_alphavantage, fetcher_settings,
                                                                         fetcher_clients_factory, read_stream):
    rows = fake.minute_rows("2024-03-08 10:00", 10)
    fake_alphavantage.set_series("IBM", rows)
    expected = utc(rows)
    kinesis, dynamodb = fetcher_clients_factory()
    faults = FailEntries(kinesis, first_attempts_of({expected[1], expected[3], expected[4]}))

    summary = run_once(fetcher_settings, Clients(kinesis, dynamodb))
    # A symbol's next bar goes out only once the previous one is accepted.
    assert faults.requests == [[ts] for ts in expected[:2] + expected[1:4] + expected[3:5] + expected[4:]]
    stored = [record["ts"] for _, record in read_stream(fetcher_settings.stream_name)]
    assert stored == expected  # in time order: no loss, no duplicate, nothing late
    assert (summary.symbols_ok, summary.bars_sent, summary.put_records_calls, summary.put_records_retries) == \
        (1, 10, 13, 3)
    assert CursorStore(dynamodb, fetcher_settings.cursor_table).read("IBM").cursor == expected[-1]


def test_throttled_put_call_is_retried(fake_alphavantage, fetcher_settings, fetcher_clients_factory, read_stream):
    rows = fake.minute_rows("2024-03-08 10:00", 5)
    fake_alphavantage.set_series("IBM", rows)
    kinesis, dynamodb = fetcher_clients_factory()
    throttle = ThrottleCalls(kinesis, count=2)
    summary = run_once(fetcher_settings, Clients(kinesis, dynamodb))
    assert throttle.refused == 2 and summary.put_records_calls == 7 and summary.bars_sent == 5
    assert [record["ts"] for _, record in read_stream(fetcher_settings.stream_name)] == utc(rows)


def test_exhausted_put_moves_cursor_to_accepted_prefix_and_next_run_completes(
        fake_alphavantage, fetcher_settings, fetcher_clients_factory, read_stream, caplog):
    caplog.set_level(logging.INFO)
    rows = fake.minute_rows("2024-03-08 10:00", 10)
    fake_alphavantage.set_series("IBM", rows)
    expected = utc(rows)
    kinesis, dynamodb = fetcher_clients_factory()
    faults = FailEntries(kinesis, lambda call, ts: ts == expected[5])  # never accepted
    settings = replace(fetcher_settings, put_attempts=2)

    failed = run_once(settings, Clients(kinesis, dynamodb))
    assert failed.symbols_failed == 1 and failed.failed == {"IBM": "put_failed"} and failed.bars_sent == 5
    assert expected[6] not in {ts for call in faults.requests for ts in call}, "nothing after the stuck bar"
    store = CursorStore(dynamodb, settings.cursor_table)
    state = store.read("IBM")
    assert state.cursor == expected[4] and state.lease_owner is None  # prefix committed, lease released
    assert events(caplog, "put_failed")[0]["symbol"] == "IBM"

    healed = run_once(settings, Clients(*fetcher_clients_factory()))
    assert healed.bars_sent == 5 and store.read("IBM").cursor == expected[-1]
    # The next run continues where the accepted prefix ends: every bar once, in time order.
    assert [record["ts"] for _, record in read_stream(settings.stream_name)] == expected


def test_failing_symbols_do_not_block_the_others(fake_alphavantage, fetcher_settings, clients, read_stream, caplog):
    caplog.set_level(logging.INFO)
    good = fake.minute_rows("2024-03-08 10:00", 4)
    for symbol in ("IBM", "AAPL", "MSFT", "SPY", "QQQ", "DIA", "TSLA"):
        fake_alphavantage.set_series(symbol, good)
    fake_alphavantage.queue("AAPL", fake.RATE_LIMIT)
    fake_alphavantage.queue("MSFT", fake.MALFORMED_JSON)
    fake_alphavantage.queue("SPY", *[Reply(fake.RATE_LIMIT, delay_s=1.5)] * 3)
    fake_alphavantage.queue("QQQ", fake.MISSING_SERIES)
    fake_alphavantage.queue("TSLA", fake.DEMO_KEY)
    settings = replace(fetcher_settings, symbols=("AAPL", "IBM", "MSFT", "SPY", "QQQ", "TSLA", "DIA", "NOPE"))

    summary = run_once(settings, clients)
    assert summary.failed == {"AAPL": "rate_limit", "MSFT": "malformed_json", "SPY": "timeout",
                              "QQQ": "missing_series", "TSLA": "demo_key", "NOPE": "api_error"}
    assert summary.symbols_ok == 2 and summary.bars_sent == 8
    assert by_symbol(read_stream(settings.stream_name)) == {"IBM": utc(good), "DIA": utc(good)}
    warnings = {(w["symbol"], w["kind"]) for w in events(caplog, "symbol_not_data")}
    assert ("AAPL", "rate_limit") in warnings and ("NOPE", "api_error") in warnings and len(warnings) == 6
    assert all(w["hint"] for w in events(caplog, "symbol_not_data"))
    store = CursorStore(clients.dynamodb, settings.cursor_table)
    assert store.read("AAPL").cursor is None and store.read("IBM").cursor == utc(good)[-1]


def test_api_key_never_appears_in_logs(fake_alphavantage, fetcher_settings, clients, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    # urllib3's own level too: another component's logging set-up earlier in the session may have
    # raised it, and its retry and request lines are what this test needs to see redacted.
    caplog.set_level(logging.DEBUG, logger="urllib3")
    ours = io.StringIO()
    handler_ = logging.StreamHandler(ours)
    handler_.setFormatter(JsonLines())
    logging.getLogger().addHandler(handler_)
    try:
        fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 10:00", 3))
        fake_alphavantage.queue("IBM", Reply("boom", status=500), Reply(fake.NOTE, delay_s=1.0))
        fake_alphavantage.queue("AAPL", *[Reply("down", status=503)] * 3)
        fake_alphavantage.queue("MSFT", fake.ERROR_MESSAGE)
        settings = replace(fetcher_settings, symbols=("IBM", "AAPL", "MSFT"), log_level="DEBUG")
        configure_logging(settings.log_level)
        summary = run_once(settings, clients)
    finally:
        logging.getLogger().removeHandler(handler_)
    assert summary.http_retries >= 4 and summary.symbols_ok == 1
    out, err = capfd.readouterr()
    everything = caplog.text + ours.getvalue() + out + err + json.dumps(summary.to_dict())
    # urllib3's retry warnings and request lines are there, redacted.
    assert "Retrying" in everything and "GET /query?" in everything and "apikey=***" in everything
    assert KEY not in everything


def test_short_remaining_time_skips_symbols_with_a_warning(fake_alphavantage, fetcher_settings, clients, caplog):
    caplog.set_level(logging.INFO)
    fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 10:00", 3))
    settings = replace(fetcher_settings, symbols=("IBM", "AAPL"))
    deadline = Deadline.from_context(LambdaContext(remaining_ms=800), fallback_s=60)
    summary = handler.invoke(settings, clients, deadline)
    assert summary.skipped == {"IBM": "time_short", "AAPL": "time_short"} and summary.api_calls == 0
    assert events(caplog, "time_short")[0]["symbols"] == ["IBM", "AAPL"]
    assert fake_alphavantage.calls() == []


def test_lease_of_a_dead_invocation_blocks_until_it_expires_then_the_range_is_resent(
        fake_alphavantage, fetcher_settings, clients, read_stream):
    rows = fake.minute_rows("2024-03-08 10:00", 5)
    fake_alphavantage.set_series("IBM", rows)
    store = CursorStore(clients.dynamodb, fetcher_settings.cursor_table)
    # An invocation claimed the range, maybe put some of it, and died before its commit.
    assert store.claim("IBM", None, utc(rows)[-1], "dead-invocation", now_ms() + 60_000)

    blocked = run_once(fetcher_settings, clients)
    assert blocked.skipped == {"IBM": "claimed_elsewhere"} and blocked.api_calls == 0
    assert read_stream(fetcher_settings.stream_name) == []

    clients.dynamodb.update_item(  # time passes: the lease runs out
        TableName=fetcher_settings.cursor_table, Key={"symbol": {"S": "IBM"}},
        UpdateExpression="SET lease_until = :past", ExpressionAttributeValues={":past": {"N": str(now_ms() - 1)}})
    resumed = run_once(fetcher_settings, clients)
    assert resumed.bars_sent == 5
    state = store.read("IBM")
    assert state.cursor == utc(rows)[-1] and state.lease_owner is None
    assert not store.commit("IBM", "dead-invocation", utc(rows)[-1])  # the dead one cannot move it any more


def test_claim_is_a_compare_and_swap(local_dynamodb, cursor_table):
    store = CursorStore(local_dynamodb, cursor_table)
    assert store.claim("IBM", None, "2024-03-08T15:00:00Z", "a", now_ms() + 60_000)
    assert not store.claim("IBM", None, "2024-03-08T15:00:00Z", "b", now_ms() + 60_000)  # lease held
    assert store.commit("IBM", "a", "2024-03-08T15:00:00Z")
    assert not store.claim("IBM", None, "2024-03-08T15:05:00Z", "b", now_ms() + 60_000)  # stale cursor
    assert store.claim("IBM", "2024-03-08T15:00:00Z", "2024-03-08T15:05:00Z", "b", now_ms() + 60_000)
    assert not store.commit("IBM", "a", "2024-03-08T15:05:00Z")  # not the holder
    assert store.release("IBM", "b") and store.read("IBM").cursor == "2024-03-08T15:00:00Z"
    with pytest.raises(ValueError):
        store.claim("IBM", "2024-03-08T15:00:00Z", "2024-03-08T14:00:00Z", "c", now_ms())


def test_missed_runs_catch_up_with_a_full_fetch(fake_alphavantage, fetcher_settings, clients, read_stream, caplog):
    caplog.set_level(logging.INFO)
    first_rows = fake.minute_rows("2024-03-08 09:30", 5)
    fake_alphavantage.set_series("IBM", first_rows)
    run_once(fetcher_settings, clients)
    missed = fake.minute_rows("2024-03-08 09:35", 150)  # more than the compact window of 100
    fake_alphavantage.add_rows("IBM", missed)

    summary = run_once(fetcher_settings, clients)
    assert summary.api_calls == 2 and summary.bars_sent == 150
    assert [c["outputsize"] for c in fake_alphavantage.calls("IBM")] == ["compact", "compact", "full"]
    assert by_symbol(read_stream(fetcher_settings.stream_name))["IBM"] == utc(first_rows) + utc(missed)
    assert events(caplog, "catch_up") and not events(caplog, "possible_gap")

    fake_alphavantage.add_rows("IBM", fake.minute_rows("2024-03-08 12:05", 120))
    without = run_once(replace(fetcher_settings, catch_up=False), clients)
    assert without.bars_sent == 100 and events(caplog, "possible_gap")[0]["symbol"] == "IBM"


def test_backfill_month_ignores_the_cursor(fake_alphavantage, fetcher_settings, fetcher_clients_factory,
                                          read_stream, local_dynamodb):
    february = fake.minute_rows("2024-02-29 15:58", 2)
    march = fake.minute_rows("2024-03-01 09:30", 4)
    fake_alphavantage.set_series("IBM", february + march)
    kinesis, _ = fetcher_clients_factory()
    summary = run_once(fetcher_settings, Clients(kinesis, None), month="2024-03")
    assert summary.mode == "backfill" and summary.bars_sent == 4
    assert fake_alphavantage.calls("IBM")[0]["month"] == "2024-03"
    assert by_symbol(read_stream(fetcher_settings.stream_name)) == {"IBM": utc(march)}
    assert "Item" not in local_dynamodb.get_item(TableName=fetcher_settings.cursor_table,
                                                 Key={"symbol": {"S": "IBM"}})


def test_lambda_handler_end_to_end(fake_alphavantage, kinesis_stream, cursor_table, read_stream, monkeypatch):
    rows = fake.minute_rows("2024-03-11 09:30", 6)
    fake_alphavantage.set_series("IBM", rows)
    fake_alphavantage.set_series("SPY", rows)
    for name, value in {
        "SYMBOLS": "IBM,SPY", "AV_BASE_URL": fake_alphavantage.url, "AV_API_KEY": KEY,
        "BARS_STREAM_NAME": kinesis_stream, "CURSOR_TABLE_NAME": cursor_table, "KINESIS_ENDPOINT_URL": KINESIS_URL,
        "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local", "AV_READ_TIMEOUT_SECONDS": "2", "AV_CONNECT_TIMEOUT_SECONDS": "1",
        "AV_CALLS_PER_MINUTE": "6000", "FETCHER_IGNORE_MARKET_HOURS": "true",  # bars of a past day
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AV_SECRET_ARN", "ALPHAVANTAGE_SECRET_ARN"):  # the new name and the old one, still read
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(handler, "_container", None)

    result = handler.lambda_handler({"source": "aws.events"}, LambdaContext(30_000, "req-1"))
    assert result["invocation_id"] == "req-1" and result["bars_sent"] == 12 and result["symbols_ok"] == 2
    assert json.dumps(result)  # the return value is JSON-serialisable for the Lambda runtime
    again = handler.lambda_handler({}, LambdaContext(30_000, "req-2"))
    assert again["bars_sent"] == 0 and again["bars_skipped"] == 12
    assert by_symbol(read_stream(kinesis_stream)) == {"IBM": utc(rows), "SPY": utc(rows)}

    # A group's schedule passes its group in the input: the second of two gets the second half.
    newer = fake.minute_rows("2024-03-11 09:36", 2)
    fake_alphavantage.add_rows("IBM", newer)
    fake_alphavantage.add_rows("SPY", newer)
    calls_before = len(fake_alphavantage.calls())
    second_half = handler.lambda_handler({"group": 2, "groups": 2}, LambdaContext(30_000, "req-3"))
    assert second_half["group"] == "2/2" and second_half["calls_per_minute"] == 3000
    assert [call["symbol"] for call in fake_alphavantage.calls()[calls_before:]] == ["SPY"]
    assert by_symbol(read_stream(kinesis_stream))["SPY"] == utc(rows) + utc(newer)
    with pytest.raises(ConfigError, match="group"):
        handler.lambda_handler({"group": 3, "groups": 2}, LambdaContext(30_000, "req-4"))


def test_secret_is_fetched_once_per_container(monkeypatch):
    from fetcher_lambda.config import Settings

    class SecretsManager:
        calls = 0

        def get_secret_value(self, SecretId: str) -> dict:  # noqa: N803 - boto3's parameter name
            SecretsManager.calls += 1
            return {"SecretString": json.dumps({"ALPHAVANTAGE_API_KEY": "from-secret"})}

    apikey.clear_cache()
    settings = Settings(secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:av")
    try:
        assert apikey.resolve_api_key(settings, SecretsManager) == "from-secret"
        assert apikey.resolve_api_key(settings, SecretsManager) == "from-secret"
        assert SecretsManager.calls == 1
    finally:
        apikey.clear_cache()
    with pytest.raises(apikey.ConfigError, match="AV_API_KEY"):
        apikey.resolve_api_key(Settings())
