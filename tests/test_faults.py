"""Breaking things on purpose, on the real local services: bad input, a sink outage, a job crash.

Each test runs a job of its own (own streams, own REST port) and checks outputs against the pure
model (``parse_bar`` + ``SymbolTracker``), so a lost, duplicated or wrongly restored bar shows up.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time

import pytest
from opensearchpy import NotFoundError

from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import RAW_LIMIT_BYTES, InvalidBar, clip_utf8, parse_bar
from flink_job.core.symbol_state import SymbolTracker
from stack.services import all_services
from tests.bar_data import interleave, series
from tests.flink_rest import FlinkRest, free_port
from tests.local_aws import opensearch_client
from tests.pipeline_harness import JobHarness, assert_no_restarts, start_with_rest, unique_symbol, wait_for

# The real job in a local mini-cluster against the local services.
pytestmark = [pytest.mark.jvm, pytest.mark.services]

COMPARED = ("close", "volume", "sma_5", "sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal",
            "rsi_14", "bb_upper", "bb_lower", "vwap", "volume_z_20", "trend")


def start_job(tmp_path, **kwargs) -> tuple[JobHarness, FlinkRest]:
    harness = JobHarness(tmp_path, **kwargs)
    return harness, start_with_rest(harness)


def count(harness: JobHarness, index: str, query: dict) -> int:
    client = opensearch_client(harness.opensearch, timeout_s=10)
    try:
        client.indices.refresh(index=index)
        return client.count(index=index, body={"query": query})["count"]
    except NotFoundError:
        return 0


def model_records(bars: list[dict]) -> dict[str, dict]:
    tracker = SymbolTracker(AnalyticsSettings())
    out = {}
    for bar in bars:
        record = tracker.offer(parse_bar(json.dumps(bar), now_ms=1_900_000_000_000))[1].to_record()
        out[bar["ts"]] = {k: record[k] for k in COMPARED}
    return out


def assert_documents_match_model(harness: JobHarness, bars: dict[str, list[dict]]) -> None:
    """Exactly one document per bar, under its id, and each equal to the pure model."""
    for symbol, series_ in bars.items():
        docs = harness.docs_for("stock-indicators", [symbol])
        assert sorted(d["_id"] for d in docs) == sorted(f"{symbol}|{b['ts']}" for b in series_), symbol
        expected = model_records(series_)
        for doc in docs:
            for key, want in expected[doc["ts"]].items():
                got = doc[key]
                assert got == want or (isinstance(want, float) and math.isclose(got, want, rel_tol=1e-12)), \
                    (symbol, doc["ts"], key, got, want)


# --- fuzz -----------------------------------------------------------------------------------------
def reason_of(raw: str) -> str:
    try:
        parse_bar(raw, now_ms=int(time.time() * 1000))
    except InvalidBar as err:
        return err.reason
    raise AssertionError(f"a valid bar among the bad records: {raw[:200]}")


def bad_records(rng: random.Random, template: dict, n: int) -> list[str]:
    """``n`` records, each invalid in one of many ways (checked against ``parse_bar``), the last
    ones ~1 MB, one of them multi-byte UTF-8."""
    fields = ["symbol", "ts", "open", "high", "low", "close", "volume"]

    def mutate(**changes) -> str:
        return json.dumps({**template, **changes})

    makers = [
        lambda: json.dumps(template)[:rng.randint(1, 60)],                                  # truncated
        lambda: mutate(**{rng.choice(fields[2:]): rng.choice(["12.5", [1], {"v": 1}, True, None])}),
        lambda: mutate(**{rng.choice(fields[2:]): rng.choice([math.nan, math.inf, -math.inf])}),
        lambda: mutate(open=rng.choice([0, -1.5]), low=rng.choice([0, -2.0])),
        lambda: mutate(high=rng.choice([1e300, 1e12]), close=1e11),
        lambda: json.dumps(template).replace('"volume": ', '"volume": 1' + "0" * rng.randint(20, 400) + ", \"x\": "),
        lambda: mutate(ts=f"{rng.randint(2030, 9999)}-01-01T00:00:00Z"),
        lambda: mutate(ts=rng.choice(["yesterday", "2024-13-01T00:00:00Z", "2024-03-08 14:31:00", 1709908260])),
        lambda: mutate(symbol=rng.choice(["ÅÄÖ", "💹", "a" * 13, "X" * 5000, "", " IBM"])),
        lambda: mutate(high=template["low"] / 2),
        lambda: mutate(open=template["high"] * 2),
        lambda: mutate(volume=rng.choice([-1, 2.5, "100"])),
        lambda: "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 200))),
        lambda: mutate(close="overflow").replace('"overflow"', "1e999999"),              # parses as inf
    ]
    records = [rng.choice(makers)() for _ in range(n - 4)]
    records += [json.dumps({"symbol": template["symbol"], "pad": "x" * 1_000_000}),    # ~1 MB each
                "{" + " " * 999_990 + "}", "[" * 999_990,
                json.dumps({"symbol": template["symbol"], "pad": "é€💹" * 100_000}, ensure_ascii=False)]
    return records


def test_fuzzed_bad_input_is_dead_lettered_and_good_bars_indexed_once(tmp_path):
    harness, rest = start_job(tmp_path, parallelism=2)
    try:
        rng = random.Random(20240308)
        symbols = [unique_symbol(f"FZ{i}") for i in range(20)]
        good = series(symbols, 500)
        template = next(iter(good.values()))[0]
        bad = [(rng.choice(symbols), raw) for raw in bad_records(rng, template, 10_000)]
        mixed = [(b["symbol"], json.dumps(b)) for b in interleave(good)]
        for record in bad:
            mixed.insert(rng.randrange(len(mixed) + 1), record)
        ids = dict(zip(harness.put_raw(mixed), mixed))
        bad_texts = {raw for _, raw in bad}
        # The model: each bad record's reason from parse_bar, under the id Kinesis gave it.
        expected_dlq = {record_id: reason_of(raw) for record_id, (_, raw) in ids.items() if raw in bad_texts}
        assert len(expected_dlq) == 10_000

        dlq_query = {"prefix": {"record_id": f"{harness.config.source.stream_name}/"}}
        good_ids = {f"{b['symbol']}|{b['ts']}" for series_ in good.values() for b in series_}
        wait_for(lambda: count(harness, "stock-indicators", {"terms": {"symbol": symbols}}) >= len(good_ids)
                 and count(harness, "stock-dlq", dlq_query) >= len(expected_dlq), 300, "all records", harness)
        dead = {d["_id"]: d for d in harness.search("stock-dlq", dlq_query)}
        assert {i: d["reason"] for i, d in dead.items()} == expected_dlq
        for record_id, doc in dead.items():  # each keeps the first 10 KB of its record, in UTF-8
            assert doc["raw"] == clip_utf8(ids[record_id][1]) and len(doc["raw"].encode()) <= RAW_LIMIT_BYTES
        assert any(len(ids[i][1].encode()) > RAW_LIMIT_BYTES and "💹" in doc["raw"] for i, doc in dead.items())
        assert_documents_match_model(harness, good)
        assert count(harness, "stock-indicators", {"terms": {"symbol": symbols}}) == len(good_ids)
        # Upserts hide a repeated write in OpenSearch; the output stream does not.
        out = harness.output_for(symbols)
        assert sorted(f"{r['symbol']}|{r['ts']}" for r in out) == sorted(good_ids), "each bar once on the stream"
        assert_no_restarts(rest)
    finally:
        harness.stop()


# --- sink outage ----------------------------------------------------------------------------------
def sink_failures(rest: FlinkRest, job_id: str) -> tuple[int, int]:
    """(restarts, of which the OpenSearch sink's failed bulk requests). The connector has no error
    metric: a bulk request that fails after its backoff fails the job, which restarts from its
    latest checkpoint, so the job's exception history is where the outage shows."""
    traces = rest.failure_traces(job_id)
    return len(traces), sum("Complete bulk has failed" in t and "opensearch" in t.lower() for t in traces)


def test_an_opensearch_outage_loses_nothing_and_every_document_equals_the_model(tmp_path):
    harness, rest = start_job(tmp_path, parallelism=1)
    opensearch = all_services()["opensearch"]
    symbols = [unique_symbol("OUT"), unique_symbol("OUT")]
    bars = series(symbols, 400, seed=5)
    flow = interleave(bars)
    stop = threading.Event()

    def produce() -> None:  # ~40 s of steady traffic, bounded by the series' length
        for start in range(0, len(flow), 20):
            if stop.is_set():
                return
            harness.put_bars(flow[start:start + 20])
            time.sleep(1)

    producer = threading.Thread(target=produce, daemon=True)
    try:
        producer.start()
        time.sleep(8)
        job = rest.running_job()
        assert sink_failures(rest, job) == (0, 0), "failures before the outage"
        opensearch.stop()
        time.sleep(30)
        # The outage reached the sink: its writes failed and the job restarted because of them.
        restarts, of_the_sink = sink_failures(rest, job)
        assert of_the_sink >= 1, f"no failed OpenSearch write during the outage ({restarts} restarts)"
        opensearch.start()
        producer.join(timeout=120)
        wait_for(lambda: count(harness, "stock-indicators", {"terms": {"symbol": symbols}}) >= len(flow), 240,
                 "every bar after the outage", harness)
        # Nothing lost, nothing extra: exactly the bars' ids, each document equal to the model.
        assert_documents_match_model(harness, bars)
        restarts, of_the_sink = sink_failures(rest, rest.running_job())
        assert restarts == of_the_sink >= 1, "every restart was the sink's, during the outage"
    finally:
        stop.set()
        if not opensearch.healthy(opensearch.port):
            opensearch.start()
        harness.stop()


# --- crash and restore ----------------------------------------------------------------------------
def test_a_job_restored_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path):
    harness, rest = start_job(tmp_path, parallelism=2)
    symbols = [unique_symbol("CR"), unique_symbol("CR"), unique_symbol("CR")]
    bars = series(symbols, 300, seed=9)
    first = {s: b[:150] for s, b in bars.items()}
    second = {s: b[150:] for s, b in bars.items()}
    try:
        harness.put_bars(interleave(first))
        wait_for(lambda: count(harness, "stock-indicators", {"terms": {"symbol": symbols}}) >= 450, 120,
                 "the first half", harness)
        job = rest.running_job()
        done, _ = rest.completed_checkpoints(job)
        wait_for(lambda: rest.completed_checkpoints(job)[0] >= done + 1, 60, "a checkpoint after the first half")
        _, checkpoint = rest.completed_checkpoints(job)
        harness.kill()

        harness.put_bars(interleave(second))
        port = free_port()
        harness.start(["--rest-port", str(port), "--restore-from", checkpoint.removeprefix("file:")])
        wait_for(lambda: count(harness, "stock-indicators", {"terms": {"symbol": symbols}}) >= 900, 180,
                 "the second half after the restore", harness)
        restored = FlinkRest(port)
        assert restored.restored_from(restored.running_job()) == checkpoint
        assert_documents_match_model(harness, bars)
        assert_no_restarts(restored)
    finally:
        harness.stop()
