"""The packaged job on a standalone Flink cluster, the way Managed Flink runs it, and the pure model that
its outputs are compared with.

A ``ClusterApp`` is one application: the unpacked ``flink-app.zip`` in a folder outside the checkout,
the property groups Managed Flink would write (the template's run options and ``Analytics`` plus the
local streams of a ``JobHarness``), and the jobs submitted for it, one after another, as Managed Flink
does on each update or restore.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import parse_bar
from flink_job.core.symbol_state import SymbolTracker
from infra import package
from stack.cluster import RUN_OPTIONS_GROUP, FlinkCluster
from tests.bar_data import same, stream_record
from tests.cfn_template import load_template, property_groups
from tests.pipeline_harness import JobHarness, wait_for

COMPARED = ("close", "volume", "sma_5", "sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal",
            "rsi_14", "bb_upper", "bb_lower", "vwap", "volume_z_20", "trend", "signals")
# A fixed "now" for the model: the bars of the tests are in the past, never "in the future".
MODEL_NOW_MS = 1_900_000_000_000


def unzip(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    return target


@dataclass
class ClusterApp:
    cluster: FlinkCluster
    app_dir: Path
    harness: JobHarness
    run_options: dict[str, str]
    jobs: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, cluster: FlinkCluster, dist: Path, tmp_path: Path, *, execution_mode: str | None = None,
               analytics: dict[str, str] | None = None) -> "ClusterApp":
        app_dir = unzip(dist / package.FLINK_ZIP, tmp_path / "app")
        harness = JobHarness(tmp_path)
        template_groups = property_groups(load_template())
        app = cls(cluster, app_dir, harness, dict(template_groups[RUN_OPTIONS_GROUP]))
        app.write_properties(analytics=analytics or dict(template_groups.get("Analytics", {})),
                             execution_mode=execution_mode)
        return app

    def write_properties(self, *, analytics: dict[str, str] | None = None, execution_mode: str | None = None) -> None:
        """The file Managed Flink writes: every group of the application, the run options among them."""
        groups = {g["PropertyGroupId"]: g["PropertyMap"] for g in json.loads(self.harness.properties.read_text())}
        groups[RUN_OPTIONS_GROUP] = self.run_options
        if analytics is not None:
            groups["Analytics"] = analytics
        if execution_mode is not None:
            groups["Runtime"] = {"python.execution-mode": execution_mode}
        self.harness.properties.write_text(json.dumps(
            [{"PropertyGroupId": k, "PropertyMap": v} for k, v in groups.items()], indent=2))

    @property
    def job(self) -> str:
        return self.jobs[-1]

    def submit(self, parallelism: int = 1, savepoint: str | None = None) -> str:
        from stack import resources

        resources.ensure_all(self.harness.config)
        log = self.harness.log.with_name(f"flink-run-{len(self.jobs)}.log")
        self.jobs.append(self.cluster.submit(self.app_dir, self.run_options, self.harness.properties,
                                             parallelism=parallelism, savepoint=savepoint, log=log))
        wait_for(lambda: self.running(), 120, f"job {self.job} to run")
        return self.job

    def running(self) -> bool:
        job = self.cluster.job(self.job)
        if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise AssertionError(f"job {self.job} is {job['state']}: {self.cluster.failures(self.job)[:3]}")
        return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])

    def assert_restarts(self, expected: int, job: str | None = None) -> None:
        job = job or self.job
        restarts = self.cluster.restarts(job)
        assert restarts == expected, (f"job {job} restarted {restarts} times, expected {expected}: "
                                      f"{self.cluster.failures(job)[:3]}")

    def stop_with_savepoint(self) -> str:
        return self.cluster.stop_with_savepoint(self.job)

    def cancel(self) -> None:
        """End the application's jobs and delete its streams (the local Kinesis slows as they pile up)."""
        for job in self.jobs:
            if self.cluster.job(job)["state"] not in ("FAILED", "CANCELED", "FINISHED"):
                self.cluster.cancel(job)
        for stream in (self.harness.config.source, self.harness.config.sink):
            self.harness.kinesis.delete_stream(StreamName=stream.stream_name, EnforceConsumerDeletion=True)


# --- bars and the model ---------------------------------------------------------------------------
def split(bars: dict[str, list[dict]], at: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Each symbol's first ``at`` bars, and the rest."""
    return {s: b[:at] for s, b in bars.items()}, {s: b[at:] for s, b in bars.items()}


def model_records(bars: Iterable[dict], settings: AnalyticsSettings | None = None,
                  tracker: SymbolTracker | None = None) -> dict[str, dict]:
    """The enriched record of each bar by ``ts``, as the pure core computes it from one symbol's bars."""
    tracker = tracker or SymbolTracker(settings or AnalyticsSettings())
    out = {}
    for bar in bars:
        enriched = tracker.offer(parse_bar(json.dumps(bar), now_ms=MODEL_NOW_MS))[1]
        if enriched is not None:
            record = stream_record(tracker, enriched)
            out[bar["ts"]] = {k: record[k] for k in COMPARED}
    return out


def assert_records_equal(records: Iterable[dict], expected: dict[str, dict[str, dict]], what: str) -> None:
    """Each record equals the model's record for its (symbol, ts); every expected bar is present."""
    seen = set()
    for record in records:
        want = expected[record["symbol"]][record["ts"]]
        diff = {k: (record.get(k), v) for k, v in want.items() if not same(record.get(k), v)}
        assert not diff, f"{what}: {record['symbol']} {record['ts']} differs from the model: {diff}"
        seen.add((record["symbol"], record["ts"]))
    missing = {(s, ts) for s, by_ts in expected.items() for ts in by_ts} - seen
    assert not missing, f"{what}: {len(missing)} bars missing, e.g. {sorted(missing)[:3]}"
