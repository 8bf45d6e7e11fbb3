"""Run the real streaming job against the real local services, and read what it wrote.

Each harness gets its own input and output streams (unique names) so tests never see each other's
records; OpenSearch indices are shared, so tests use symbols of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from opensearchpy import NotFoundError

from flink_job.config import load_config
from flink_job.core.rollups import ROLLUP_WINDOWS
from stack import resources
from stack.properties import local_property_groups
from stack.services import ROOT
from tests.bar_data import rollup_differences
from tests.flink_rest import FlinkRest, free_port
from tests.local_aws import opensearch_client


def unique_symbol(prefix: str) -> str:
    """A symbol no other test uses: matches the contract's ^[A-Z0-9.-]{1,12}$."""
    return (prefix + uuid.uuid4().hex[:6]).upper()[:12]


def properties_for(tmp_dir: Path, tag: str, overrides: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """The local properties (endpoints on the ports of the environment) with streams of this
    harness's own, plus ``overrides`` (group -> keys)."""
    groups = local_property_groups()
    for group in groups:
        if group["PropertyGroupId"] == "InputStream0":
            group["PropertyMap"]["stream.name"] = f"test_in_{tag}"
        if group["PropertyGroupId"] == "OutputStream0":
            group["PropertyMap"]["stream.name"] = f"test_out_{tag}"
    for name, keys in (overrides or {}).items():
        group = next((g for g in groups if g["PropertyGroupId"] == name), None)
        if group is None:
            group = {"PropertyGroupId": name, "PropertyMap": {}}
            groups.append(group)
        group["PropertyMap"].update(keys)
    path = tmp_dir / "application_properties.json"
    path.write_text(json.dumps(groups))
    return path


class JobHarness:
    def __init__(self, tmp_dir: Path, parallelism: int = 2, overrides: Mapping[str, Mapping[str, str]] | None = None):
        self.tag = uuid.uuid4().hex[:8]
        self.properties = properties_for(tmp_dir, self.tag, overrides)
        self.config = load_config(self.properties)
        self.checkpoints = tmp_dir / "checkpoints"
        self.log = tmp_dir / "job.log"
        self.parallelism = parallelism
        self.proc: subprocess.Popen | None = None
        self.kinesis = resources.kinesis_client(self.config.source)
        self.opensearch = self.config.opensearch.hosts.rstrip("/")

    def start(self, extra_args: Iterable[str] = (), *, command: Sequence[str] | None = None,
              cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        """Start the job; ``command`` replaces ``python -m flink_job.main`` (e.g. a packaged ``main.py``),
        run in ``cwd`` (default: the repository) with ``env`` (default: this process's)."""
        resources.ensure_all(self.config)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*(command or (sys.executable, "-m", "flink_job.main")), "--properties", str(self.properties),
             "--parallelism", str(self.parallelism), "--checkpoint-dir", str(self.checkpoints), *extra_args],
            cwd=cwd or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"the job exited ({self.proc and self.proc.returncode}); log: {self.log.read_text()[-3000:]}")

    # --- input -----------------------------------------------------------------------------------
    def put_raw(self, records: list[tuple[str, str]]) -> list[str]:
        """(partition key, text) pairs, in order, to the input stream; fails on any rejected entry.
        Batches stay within PutRecords' limits: 500 records, 5 MiB. Returns each record's id as the
        job names it (``stream/shard:sequence``, a dead letter's document id)."""
        ids: list[str] = []
        batch: list[dict] = []
        size = 0
        for key, data in records:
            entry = {"PartitionKey": (key or "-")[:256], "Data": data.encode()}
            entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
            if batch and (len(batch) == 500 or size + entry_size > 4 * 1024 * 1024):
                ids += self._put_batch(batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            ids += self._put_batch(batch)
        return ids

    def _put_batch(self, batch: list[dict]) -> list[str]:
        stream = self.config.source.stream_name
        response = self.kinesis.put_records(StreamName=stream, Records=batch)
        assert response["FailedRecordCount"] == 0, [r for r in response["Records"] if "ErrorCode" in r][:3]
        return [f"{stream}/{r['ShardId']}:{r['SequenceNumber']}" for r in response["Records"]]

    def put_bars(self, bars: list[dict]) -> None:
        self.put_raw([(b["symbol"], json.dumps(b)) for b in bars])

    # --- output ----------------------------------------------------------------------------------
    def read_output_stream(self) -> list[dict]:
        stream = self.config.sink.stream_name
        records = []
        for shard in self.kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                response = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                records.extend(json.loads(r["Data"]) for r in response["Records"])
                if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = response.get("NextShardIterator")
        return records

    def output_for(self, symbols: Iterable[str]) -> list[dict]:
        wanted = set(symbols)
        return [r for r in self.read_output_stream() if r.get("symbol") in wanted]

    def search(self, index: str, query: dict, size: int = 10000) -> list[dict]:
        client = opensearch_client(self.opensearch)
        try:
            client.indices.refresh(index=index)
            hits = client.search(index=index, body={"query": query, "size": size})["hits"]["hits"]
        except NotFoundError:
            return []
        # Ordered here: sorting on _id in the query is deprecated (it loads fielddata), and warns.
        return sorted((dict(hit["_source"], _id=hit["_id"]) for hit in hits), key=lambda doc: doc["_id"])

    def docs_for(self, index: str, symbols: Iterable[str]) -> list[dict]:
        return self.search(index, {"terms": {"symbol": list(symbols)}})


def assert_rollups_equal(harness: JobHarness, bars: dict[str, list[dict]], timeout_s: float = 60,
                         watch: JobHarness | None = None) -> None:
    """Every 5- and 15-minute window of each symbol's bars (as finally revised) is in OpenSearch, equal
    to the reference, and no other window is: waited for, since each window's last upsert may still
    be on its way. ``watch``: a harness whose local job must keep running meanwhile."""
    for name, minutes in ROLLUP_WINDOWS.items():
        def problems(name: str = name, minutes: int = minutes) -> list[str]:
            return rollup_differences(harness.docs_for(f"stock-bars-{name}", list(bars)), bars, minutes)

        try:
            wait_for(lambda: not problems(), timeout_s, f"{name} rollups equal to the reference", watch)
        except AssertionError:
            found = problems()
            raise AssertionError(f"stock-bars-{name}: {len(found)} differences, e.g. {found[:3]}") from None


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, harness: JobHarness | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if harness:
            harness.assert_running()
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def start_with_rest(harness: JobHarness, extra_args: Iterable[str] = (), env: Mapping[str, str] | None = None) -> FlinkRest:
    """Start the job with its REST API on a free port; return the API once the job runs."""
    port = free_port()
    harness.start(["--rest-port", str(port), *extra_args], env=env)
    rest = FlinkRest(port)
    wait_for(lambda: rest.running_job() is not None, 120, "the job to run", harness)
    return rest


def assert_no_restarts(rest: FlinkRest) -> None:
    """For tests that fail nothing on purpose: any restart of the job is a defect."""
    job = rest.running_job()
    traces = rest.failure_traces(job)
    assert traces == [], f"the job restarted {len(traces)} times; first: {traces[0][:1500] if traces else ''}"
