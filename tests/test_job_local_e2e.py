"""The streaming job in local mode, as an operator and as the fetcher's consumer see it.

One job (parallelism 2, a 2 s summary interval) serves the module, tests in file order:
1. one symbol only, so one analysis subtask has no bars: its rollups appear all the same (they
   wait for no other subtask), and the job's JSON log lines (start, summary) are in its output;
2. bars produced by the fetcher's own code, the replay and the live path on the fake Alpha Vantage
   API, go through the job: the contract between the two halves, with no hand-written record.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import date

import pytest

from fetcher_lambda import handler
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.pipeline import Clients
from fetcher_lambda.replay import load_bars, replay
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import parse_bar
from flink_job.core.symbol_state import SymbolTracker
from tests import fake_alphavantage as fake
from tests.bar_data import generate_bars
from tests.local_aws import DYNAMODB_URL, KINESIS_URL
from tests.pipeline_harness import (JobHarness, assert_no_restarts, assert_rollups_equal, start_with_rest, unique_symbol,
                                    wait_for)

COMPARED = ("open", "high", "low", "close", "volume", "interval", "source", "session", "sma_5", "sma_20",
            "ema_12", "macd", "rsi_14", "bb_upper", "vwap", "return_1", "trend")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    harness = JobHarness(tmp, parallelism=2, overrides={"Runtime": {"log.summary.interval": "2s"}})
    harness.flink_log_dir = tmp / "flink-log"  # the mini-cluster's own log, as Flink names it
    harness.flink_log_dir.mkdir()
    harness.rest = start_with_rest(harness, env={**os.environ, "FLINK_LOG_DIR": str(harness.flink_log_dir)})
    yield harness
    harness.stop()


def log_lines(job: JobHarness, event: str) -> list[dict]:
    """The job's JSON log lines of one event: the client's output and the mini-cluster's log."""
    found = []
    texts = [job.log.read_text(errors="replace")] + [p.read_text(errors="replace")
                                                     for p in job.flink_log_dir.glob("*.log")]
    for line in "\n".join(texts).splitlines():
        start = line.find('{"event":')
        if start >= 0:
            record = json.loads(line[start:])
            if record["event"] == event:
                found.append(record)
    return found


def test_one_symbol_rolls_up_past_an_idle_subtask_and_the_job_logs_json_lines(job):
    symbol = unique_symbol("IDLE")
    bars = [b.to_record() for b in generate_bars(31, days=(date(2024, 3, 12),), symbol=symbol)[:40]]
    job.put_raw([(symbol, json.dumps(b)) for b in bars]
                + [(symbol, '{"symbol": "' + symbol + '", "ts":'), (symbol, json.dumps(bars[3]))])  # not_json, late
    # Only one of the two analysis subtasks gets bars, and every window of the symbol appears.
    assert_rollups_equal(job, {symbol: bars}, timeout_s=90, watch=job)

    (start,) = log_lines(job, "job_start")
    assert start["level"] == "INFO" and start["mode"] == "local"
    assert start["versions"]["apache-flink"].startswith("1.20") and start["versions"]["python"].startswith("3.")
    config = start["config"]
    assert config["InputStream0"]["stream.name"] == job.config.source.stream_name
    assert config["InputStream0"]["aws.credentials.basic.secretkey"] == "***"
    assert config["Analytics"]["rsi_period"] == 14 and config["Runtime"]["log.summary.interval"] == "2000ms"

    def summed() -> dict:
        lines = log_lines(job, "summary")
        return {"accepted_bars": sum(s["accepted_bars"] for s in lines),
                "late_bars": sum(s["late_bars"] for s in lines),
                "by_reason": {r: sum(s["dead_letters_by_reason"].get(r, 0) for s in lines) for r in ("late", "not_json")}}

    # A subtask writes its summary on its first record after the interval. Closing records end the
    # intervals of the symbol's subtask and of the one that got the not-JSON record (keyed ''): a
    # newer bar, and JSON without a symbol (another reason than those counted here). They are sent
    # again until the summaries show the dead letters: a slow local Kinesis delivers in bursts, and
    # a closer that arrives within the interval closes nothing.
    for minute in range(30):
        job.put_raw([(symbol, json.dumps(dict(bars[-1], ts=f"2024-03-13T10:{minute:02d}:00Z"))),
                     (symbol, '{"no_symbol": true}')])
        try:
            wait_for(lambda: summed()["by_reason"] == {"late": 1, "not_json": 1}, 5, "dead letters in the summaries",
                     job)
            break
        except AssertionError:
            if minute == 29:
                raise
    wait_for(lambda: summed()["accepted_bars"] >= 40, 60, "summary lines covering the bars", job)
    assert summed()["late_bars"] == 1
    assert log_lines(job, "state_reset") == []
    assert_no_restarts(job.rest)


def model(records: list[dict]) -> dict[str, dict]:
    trackers: dict[str, SymbolTracker] = {}
    out = {}
    for record in records:
        bar = parse_bar(json.dumps(record), now_ms=1_900_000_000_000)
        enriched = trackers.setdefault(bar.symbol, SymbolTracker(AnalyticsSettings())).offer(bar)[1]
        out[f"{bar.symbol}|{bar.ts}"] = {k: enriched.to_record()[k] for k in COMPARED}
    return out


def input_records(job: JobHarness, symbols: set[str]) -> list[dict]:
    """The job's input stream, in order: the JSON records of ``symbols`` (the stream also holds
    other tests' records, some of them not JSON)."""
    stream = job.config.source.stream_name
    (shard,) = job.kinesis.list_shards(StreamName=stream)["Shards"]
    iterator = job.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    while iterator:
        page = job.kinesis.get_records(ShardIterator=iterator, Limit=10000)
        for record in page["Records"]:
            try:
                decoded = json.loads(record["Data"])
            except ValueError:
                continue
            if isinstance(decoded, dict) and decoded.get("symbol") in symbols:
                records.append(decoded)
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
        iterator = page.get("NextShardIterator")
    return records


def test_bars_from_the_fetchers_replay_and_live_path_go_through_the_job(job, av_settings, fake_alphavantage,
                                                                       cursor_table, fetcher_clients_factory):
    stream = job.config.source.stream_name
    # The replay: the shipped sample set's first 90 IBM bars, under a symbol of this test's own.
    replayed = unique_symbol("RPL")
    sample = [replace(b, symbol=replayed) for b in load_bars() if b.symbol == "IBM"][:90]
    replay(job.kinesis, stream, sample, speed=0, progress=lambda _: None)
    # The live path: one fetch run of the Lambda's code against the fake API.
    live = unique_symbol("LIVE")
    fake_alphavantage.set_series(live, fake.minute_rows("2024-03-11 09:30", 60, price=50.0))
    kinesis, dynamodb = fetcher_clients_factory()
    settings = replace(av_settings, symbols=(live,), stream_name=stream, cursor_table=cursor_table,
                       kinesis_endpoint_url=KINESIS_URL, dynamodb_endpoint_url=DYNAMODB_URL)
    result = handler.invoke(settings, Clients(kinesis=kinesis, dynamodb=dynamodb), Deadline.after(20), None, None)
    assert result.bars_sent == 60

    # What the fetcher put on the stream, exactly, is what the job analyses.
    sent = input_records(job, {replayed, live})
    assert len(sent) == 150 and {r["symbol"] for r in sent} == {replayed, live}
    expected = model(sent)
    wait_for(lambda: len(job.docs_for("stock-indicators", [replayed, live])) >= len(expected), 120,
             "every fetched bar in stock-indicators", job)
    docs = {d["_id"]: d for d in job.docs_for("stock-indicators", [replayed, live])}
    assert sorted(docs) == sorted(expected)
    for doc_id, want in expected.items():
        assert {k: docs[doc_id][k] for k in COMPARED} == want, doc_id
    ours = job.search("stock-dlq", {"prefix": {"record_id": f"{stream}/"}})
    assert [d for d in ours if replayed in d["raw"] or live in d["raw"]] == [], "a fetched bar was dead-lettered"
    assert_no_restarts(job.rest)
