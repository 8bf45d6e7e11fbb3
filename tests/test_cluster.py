"""The packaged application on a standalone Flink cluster, run the way Managed Flink runs it.

One cluster serves the module: a JobManager and two TaskManagers, each its own JVM, whose Python has
apache-flink only. Every job is ``flink run`` from the unpacked ``flink-app.zip``, outside the
checkout, with exactly the run options of ``infra/cloudformation.yaml``, reading its properties from
the managed path (redirected by ``FLINK_APPLICATION_PROPERTIES``). Jobs follow one another on the same
TaskManagers, as an update or a restore does on Managed Flink, so every test after the first also
proves that a new job starts on TaskManagers that ran an earlier one.

Each test states the restarts it expects, read from the REST API: zero unless the test causes a
failure. Outputs are compared with the pure model (``SymbolTracker``), on Kinesis and in OpenSearch.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import psutil
import pytest

from flink_job.config import parse_analytics
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.symbol_state import SymbolTracker
from stack.cluster import FlinkCluster, runtime_site_packages
from tests.bar_data import interleave, series
from tests.cluster_harness import ClusterApp, assert_records_equal, model_records, split
from tests.flink_rest import free_port
from tests.listeners import listeners, not_on_loopback
from tests.pipeline_harness import assert_rollups_equal, unique_symbol, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> FlinkCluster:
    try:
        runtime_site_packages()
    except Exception as err:  # noqa: BLE001 - a clear skip reason instead of an error per test
        pytest.fail(f"{err}")
    cluster = FlinkCluster(rest_port=free_port(), rpc_port=free_port(), home=tmp_path_factory.mktemp("cluster"),
                           checkpoint_interval="2s")
    cluster.start(taskmanagers=2)
    yield cluster
    cluster.stop()


def analytics_settings(group: dict[str, str]) -> AnalyticsSettings:
    return parse_analytics({"Analytics": group})


def count_indexed(app: ClusterApp, symbols: list[str]) -> int:
    return len(app.harness.docs_for("stock-indicators", symbols))


def expected_for(bars: dict[str, list[dict]], settings: AnalyticsSettings | None = None) -> dict[str, dict]:
    return {s: model_records(b, settings) for s, b in bars.items()}


def assert_outputs_equal_model(app: ClusterApp, bars: dict[str, list[dict]], expected: dict[str, dict]) -> None:
    """OpenSearch holds each bar once, equal to the model; the stream holds each at least once, equal."""
    symbols = list(bars)
    total = sum(len(b) for b in bars.values())
    wait_for(lambda: count_indexed(app, symbols) >= total, 180, f"{total} bars in stock-indicators")
    docs = app.harness.docs_for("stock-indicators", symbols)
    assert sorted(d["_id"] for d in docs) == sorted(f"{s}|{b['ts']}" for s, bs in bars.items() for b in bs)
    assert_records_equal(docs, expected, "stock-indicators")
    wait_for(lambda: len({(r["symbol"], r["ts"]) for r in app.harness.output_for(symbols)}) >= total, 60,
             "every bar on stock_sma_stream")
    assert_records_equal(app.harness.output_for(symbols), expected, "stock_sma_stream")


def taskmanager_pythonpath(cluster: FlinkCluster) -> list[list[str]]:
    paths = []
    for pid in cluster.pids("taskexecutor"):
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
        paths.append(environ.get("PYTHONPATH", "").split(os.pathsep))
    return paths


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_packaged_app_runs_on_the_cluster_into_every_output(cluster, packaged_dist, tmp_path, mode):
    app = ClusterApp.create(cluster, packaged_dist, tmp_path, execution_mode=mode)
    assert not str(app.app_dir).startswith(str(ROOT)), "the application must run outside the checkout"
    # The workers' Python: apache-flink only; the job's package reaches them through pyFiles.
    for path in taskmanager_pythonpath(cluster):
        assert path == [str(runtime_site_packages())], path

    symbols = [unique_symbol("CLA"), unique_symbol("CLB")]
    bars = series(symbols, 90, seed=3)
    late, bad = bars[symbols[0]][10], '{"symbol": "' + symbols[0] + '", "ts": '
    try:
        app.submit(parallelism=1)
        # The second symbol streams first; the first is then backfilled on the same subtask, 90
        # minutes behind it: its rollups must not depend on how far ahead the other symbol is.
        records = [(b["symbol"], json.dumps(b)) for b in bars[symbols[1]] + bars[symbols[0]]]
        middle = len(bars[symbols[1]]) + 45  # the backfill is half done: its bar 10 is late
        records[middle:middle] = [(symbols[0], json.dumps(late)), (symbols[0], bad)]
        app.harness.put_raw(records)

        expected = expected_for(bars)
        assert_outputs_equal_model(app, bars, expected)

        want_signals = sorted((s, ts, sig["type"], sig["direction"]) for s, by_ts in expected.items()
                              for ts, rec in by_ts.items() for sig in rec["signals"])
        assert want_signals, "the series should raise some signals"
        wait_for(lambda: len(app.harness.docs_for("stock-signals", symbols)) >= len(want_signals), 60, "signals")
        assert sorted((d["symbol"], d["ts"], d["type"], d["direction"])
                      for d in app.harness.docs_for("stock-signals", symbols)) == want_signals

        ours = {"prefix": {"record_id": f"{app.harness.config.source.stream_name}/"}}
        wait_for(lambda: len(app.harness.search("stock-dlq", ours)) >= 2, 60, "dead letters")
        assert Counter(d["reason"] for d in app.harness.search("stock-dlq", ours)) == {"late": 1, "not_json": 1}

        # Every window of both symbols, though the backfilled one lags the other by a day.
        assert_rollups_equal(app.harness, bars)
        app.assert_restarts(0)

        # The socket table: the JVMs and their Python workers listen on loopback only. Process mode's
        # exception: the gRPC servers a TaskManager opens for its Python workers, which Beam (inside
        # flink-python) binds to every interface, with no setting to change it.
        jvms = [psutil.Process(pid) for pid in cluster.pids("standalonesession") + cluster.pids("taskexecutor")]
        assert {cluster.rest_port, cluster.rpc_port} <= {port for *_, port in listeners(jvms)}
        exposed = not_on_loopback(jvms)
        if mode == "thread":
            assert exposed == []
        else:
            assert {pid for _, pid, *_ in exposed} <= set(cluster.pids("taskexecutor")), exposed
    finally:
        app.cancel()


def test_stop_with_savepoint_rescales_1_2_1_and_no_symbol_restarts_its_warm_up(cluster, packaged_dist, tmp_path):
    app = ClusterApp.create(cluster, packaged_dist, tmp_path)
    symbols = [unique_symbol("RS") for _ in range(4)]
    bars = series(symbols, 150, seed=11)
    thirds = [{s: b[i * 50:(i + 1) * 50] for s, b in bars.items()} for i in range(3)]
    expected = expected_for(bars)
    try:
        for part, parallelism in zip(thirds, (1, 2, 1)):
            savepoint = app.stop_with_savepoint() if app.jobs else None
            app.submit(parallelism=parallelism, savepoint=savepoint)
            if savepoint:
                assert app.cluster.job(app.job)["vertices"][0]["parallelism"] == parallelism
            done = count_indexed(app, symbols)
            app.harness.put_bars(interleave(part))
            wait_for(lambda done=done: count_indexed(app, symbols) >= done + 50 * len(symbols), 180,
                     f"bars at parallelism {parallelism}")
            app.assert_restarts(0)
        # Equal to an uninterrupted run: a warm-up restarted by a restore would leave indicators None.
        assert_outputs_equal_model(app, bars, expected)
    finally:
        app.cancel()


def test_a_killed_taskmanager_recovers_from_the_last_checkpoint(cluster, packaged_dist, tmp_path):
    app = ClusterApp.create(cluster, packaged_dist, tmp_path)
    symbols = [unique_symbol("TMK") for _ in range(4)]
    bars = series(symbols, 120, seed=23)
    halves = split(bars, 60)
    try:
        app.submit(parallelism=2)
        app.harness.put_bars(interleave(halves[0]))
        wait_for(lambda: count_indexed(app, symbols) >= 60 * len(symbols), 180, "the first half")
        checkpoints = app.cluster.checkpoints_completed(app.job)
        wait_for(lambda: app.cluster.checkpoints_completed(app.job) > checkpoints, 60, "a checkpoint after it")
        app.harness.put_bars(interleave(halves[1]))
        victim, *survivors = app.cluster.pids("taskexecutor")  # both run tasks of the job
        # Managed Flink replaces a lost TaskManager. Here the replacement is registered before the
        # kill: the restart comes 10 s after the failure, and a TaskManager JVM on a busy 2-core
        # machine took up to 15 s to register; slot requests that find no free slot then fail at
        # once, which would add a second restart that says nothing about recovery.
        app.cluster.add_taskmanager()
        app.cluster.wait_for_taskmanagers(3)
        app.cluster.kill_taskmanager(victim)

        def recovered() -> bool:
            # The failover cancels the surviving TaskManager's tasks: it must live through that.
            assert set(survivors) <= set(app.cluster.pids("taskexecutor")), \
                f"a TaskManager died in the failover; see {app.cluster.log_dir}"
            return app.running() and app.cluster.restarts(app.job) >= 1

        wait_for(recovered, 180, "the job to recover")
        assert_outputs_equal_model(app, bars, expected_for(bars))
        # One failure (the lost TaskManager) restarts the job once; a slot request that times out while
        # the replacement registers would show here as a further restart.
        app.assert_restarts(1)
    finally:
        app.cancel()


def test_a_restart_with_changed_thresholds_continues(cluster, packaged_dist, tmp_path):
    before = {"rsi_upper": "70", "rsi_lower": "30", "volume_spike_z": "3.0", "price_anomaly_z": "4.0"}
    after = {"rsi_upper": "60", "rsi_lower": "40", "volume_spike_z": "2.0", "price_anomaly_z": "3.0"}
    app = ClusterApp.create(cluster, packaged_dist, tmp_path, analytics=before)
    symbols = [unique_symbol("THR"), unique_symbol("THR")]
    bars = series(symbols, 160, seed=31)
    first, second = split(bars, 80)
    old, new = analytics_settings(before), analytics_settings(after)
    try:
        app.submit()
        app.harness.put_bars(interleave(first))
        wait_for(lambda: count_indexed(app, symbols) >= 160, 180, "the first part")
        savepoint = app.stop_with_savepoint()
        app.write_properties(analytics=after)
        app.submit(savepoint=savepoint)
        app.harness.put_bars(interleave(second))
        # The model: the state built under the old thresholds goes on under the new ones.
        expected = {}
        for s in symbols:
            tracker = SymbolTracker(old)
            expected[s] = model_records(first[s], tracker=tracker)
            tracker = SymbolTracker.from_state(new, tracker.to_state(), tracker.candle_state())  # as the restore reads it
            expected[s].update(model_records(second[s], tracker=tracker))
        assert_outputs_equal_model(app, bars, expected)
        assert expected != expected_for(bars, old), "the new thresholds should change some signals"
        app.assert_restarts(0)
    finally:
        app.cancel()


def test_a_restart_with_changed_periods_restarts_the_warm_up_instead_of_crash_looping(cluster, packaged_dist,
                                                                                      tmp_path):
    before = {"sma_mid_period": "20"}
    after = {"sma_mid_period": "10"}
    app = ClusterApp.create(cluster, packaged_dist, tmp_path, analytics=before)
    symbols = [unique_symbol("PER"), unique_symbol("PER")]
    bars = series(symbols, 120, seed=41)
    first, second = split(bars, 60)
    try:
        app.submit()
        app.harness.put_bars(interleave(first))
        wait_for(lambda: count_indexed(app, symbols) >= 120, 180, "the first part")
        savepoint = app.stop_with_savepoint()
        app.write_properties(analytics=after)
        app.submit(savepoint=savepoint)
        app.harness.put_bars(interleave(second))
        # Each symbol's saved state no longer fits: its warm-up starts again at its next bar.
        expected = {s: {**model_records(first[s], analytics_settings(before)),
                        **model_records(second[s], analytics_settings(after))} for s in symbols}
        assert_outputs_equal_model(app, bars, expected)
        # The REST API serves metrics as the JobManager last fetched them (every 10 s by default).
        wait_for(lambda: app.cluster.metric_sum(app.job, "state_resets") >= len(symbols), 60, "state_resets")
        assert app.cluster.metric_sum(app.job, "state_resets") == len(symbols)
        # A failover before the first checkpoint after the restore would reset again: none is expected.
        app.assert_restarts(0)
        resets = [json.loads(line[line.index("{"):]) for f in app.cluster.log_dir.glob("*taskexecutor*.log")
                  for line in f.read_text(errors="replace").splitlines() if '"state_reset"' in line]
        assert sorted(r["symbol"] for r in resets if r["symbol"] in symbols) == sorted(symbols), resets
    finally:
        app.cancel()
