"""The data lifecycle end to end, with the real job on the real local services: a write block on the
index loses nothing, and what a symbol-day of bars costs on disk with the real mappings.

Each test writes bars of a month no other test uses, so the indices it blocks or measures hold its
own documents only.
"""

from __future__ import annotations

import json
import time
from datetime import date

import pytest
from opensearchpy import helpers
from flink_job.core.index_lifecycle import BY_NAME, FAMILIES
from infra.sizing import BYTES_PER_DOCUMENT
from tests.bar_data import generate_bars, interleave
from tests.local_aws import opensearch_client
from tests.pipeline_harness import JobHarness, assert_no_restarts, start_with_rest, unique_symbol, wait_for
from tests.test_faults import assert_documents_match_model, count

# The real job in a local mini-cluster against the local services.
pytestmark = [pytest.mark.jvm, pytest.mark.services]

INDICATORS = BY_NAME["stock-indicators"]
# Longer than the block: the one restart the block causes starts after the block is lifted.
RESTART_DELAY_S = 45
BLOCK_S = 30


def bars_of(symbols: list[str], days: tuple[date, ...], seed: int) -> dict[str, list[dict]]:
    return {s: [b.to_record() for b in generate_bars(seed + i, days=days, symbol=s)] for i, s in enumerate(symbols)}


def write_block(base: str, index: str, blocked: bool) -> None:
    opensearch_client(base).indices.put_settings(index=index, body={"index.blocks.write": blocked or None})


def test_a_write_blocked_index_loses_nothing_and_costs_exactly_one_restart(tmp_path):
    harness = JobHarness(tmp_path, parallelism=1)
    rest = start_with_rest(harness, ["--restart-delay", f"{RESTART_DELAY_S}s"])
    symbols = [unique_symbol("BLK"), unique_symbol("BLK")]
    bars = {s: b[:300] for s, b in bars_of(symbols, (date(2019, 5, 6),), seed=21).items()}
    flow = interleave(bars)
    index = INDICATORS.index_for(flow[0]["ts"])
    assert index == "stock-indicators-2019.05"
    base = harness.opensearch
    try:
        harness.put_bars(flow[:100])
        wait_for(lambda: count(harness, index, {"terms": {"symbol": symbols}}) >= 100, 120, "the first bars", harness)
        job = rest.running_job()
        assert_no_restarts(rest)

        write_block(base, index, True)
        blocked_at = time.monotonic()
        # Bars keep flowing while the index refuses writes.
        for start in range(100, len(flow), 50):
            harness.put_bars(flow[start:start + 50])
            time.sleep(2)
        wait_for(lambda: len(rest.failure_traces(job)) >= 1, BLOCK_S, "the blocked write to fail the job")
        time.sleep(max(0.0, BLOCK_S - (time.monotonic() - blocked_at)))
        write_block(base, index, False)

        wait_for(lambda: count(harness, index, {"terms": {"symbol": symbols}}) >= len(flow), RESTART_DELAY_S + 180,
                 "every bar after the block", harness)
        assert_documents_match_model(harness, bars)
        # Expected restarts: exactly 1. The first bulk request refused by the block (HTTP 403: a
        # write block is not retried by the sink's backoff, which retries only 429) fails the job;
        # its next attempt starts RESTART_DELAY_S later, after the block was lifted, and replays
        # from the last checkpoint, so the refused documents are written then, under the same ids.
        traces = rest.failure_traces(rest.running_job())
        assert len(traces) == 1, f"{len(traces)} restarts: {[t[:300] for t in traces]}"
        assert "cluster_block_exception" in traces[0] and "index write (api)" in traces[0], traces[0][:2000]
    finally:
        write_block(base, index, False)
        harness.stop()


def store_bytes(base: str, indices: list[str], timeout_s: float = 180) -> tuple[dict[str, int], list[dict]]:
    """Bytes of each index's segments once merged into one, as the data settles on disk (the store
    size, and the segment list until the next refresh, also count the segments a merge replaced),
    and the segment rows they were read from.

    Settled also means without the old versions of updated documents: a rollup is upserted with
    every bar, and OpenSearch keeps replaced versions as soft deletes for its retention lease (12 h
    by default) before a merge may drop them. The lease is shortened here so that they go now."""
    joined = ",".join(indices)
    client = opensearch_client(base, timeout_s=300)
    client.indices.put_settings(index=joined, body={"index.soft_deletes.retention_lease.period": "1s"})
    deadline = time.monotonic() + timeout_s
    while True:
        client.indices.forcemerge(index=joined, max_num_segments=1)
        client.indices.refresh(index=joined)
        rows = [r for r in client.cat.segments(index=joined, format="json", bytes="b") if r["searchable"] == "true"]
        if all(r["docs.deleted"] == "0" for r in rows):
            break
        assert time.monotonic() < deadline, f"replaced document versions still on disk after {timeout_s:.0f}s: {rows}"
        time.sleep(5)
    sizes = dict.fromkeys(indices, 0)
    for row in rows:
        sizes[row["index"]] += int(row["size"])
    return sizes, rows


def mean_source_bytes(base: str, index: str) -> float:
    """Mean length of the documents' JSON as the job wrote them: what the bytes on disk compress."""
    hits = list(helpers.scan(opensearch_client(base), index=index, query={"query": {"match_all": {}}}))
    return sum(len(json.dumps(h["_source"], separators=(",", ":"))) for h in hits) / max(1, len(hits))


def test_storage_per_symbol_day_through_the_real_job_fits_the_sizing(tmp_path):
    """One trading day (04:00-20:00 New York, as Alpha Vantage's extended hours) of 2 symbols
    through the job: bytes on disk per document of each family, against the figures the
    deploy-time sizing check uses (``infra/sizing.py``), which must neither under- nor overstate
    them by much. (Per document: the synthetic day's gaps leave some rollup windows empty.)"""
    day = (date(2018, 7, 10),)
    names = {f.name: f.index_for(f"{day[0].isoformat()}T15:00:00Z") for f in FAMILIES}
    harness = JobHarness(tmp_path, parallelism=1)
    base = harness.opensearch
    # Indices of this test's own month: start them empty, so only this run's documents are measured.
    opensearch_client(base).indices.delete(index=",".join(names.values()), ignore_unavailable=True)
    rest = start_with_rest(harness)
    symbols = [unique_symbol("SIZ") for _ in range(2)]
    bars = bars_of(symbols, day, seed=31)
    flow = interleave(bars)  # as many bars of each symbol as the shortest series has
    total = len(flow)
    try:
        harness.put_bars(flow)
        # The local Kinesis slows with every record in the output stream: a day of bars takes minutes.
        wait_for(lambda: count(harness, names["stock-indicators"], {"match_all": {}}) >= total, 600,
                 "every bar", harness)
        # Rollups close with the watermark: wait until their counts stop growing.
        settled: list[tuple[int, int]] = []

        def rollups_settled() -> bool:
            settled.append(tuple(count(harness, names[f], {"match_all": {}}) for f in ("stock-bars-5m", "stock-bars-15m")))
            return len(settled) > 5 and settled[-1] == settled[-6] and min(settled[-1]) > 0

        wait_for(rollups_settled, 120, "the rollups", harness)
        assert_no_restarts(rest)  # expected restarts: 0
    finally:
        harness.stop()
    families = ("stock-indicators", "stock-signals", "stock-bars-5m", "stock-bars-15m")
    sizes, segments = store_bytes(base, [names[f] for f in families])
    documents = {f: count(harness, names[f], {"match_all": {}}) for f in families}
    per_document = {f: sizes[names[f]] / documents[f] for f in families}
    per_symbol_day = {f: sizes[names[f]] / len(symbols) for f in families}
    json_bytes = {f: mean_source_bytes(base, names[f]) for f in families}
    print(f"\n{total} bars of {len(symbols)} symbols ({total / len(symbols):.0f} a symbol-day); documents: {documents}; "
          f"bytes per document: {per_document} (JSON: {json_bytes}); bytes per symbol-day: {per_symbol_day}")
    for family, measured in per_document.items():
        assert 0.5 * BYTES_PER_DOCUMENT[family] <= measured <= BYTES_PER_DOCUMENT[family], (
            family, measured, f"JSON {json_bytes[family]:.0f} bytes a document",
            [r for r in segments if r["index"] == names[family]])
