"""The monthly cost estimate (``infra/cost.py``) against figures computed by hand from the price
list, and the KPUs each execution mode needs (``infra/capacity.py``) against the benchmark run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from infra import capacity, cost

ROOT = Path(__file__).resolve().parent.parent
GIB = 2 ** 30


def test_the_defaults_cost_what_the_price_list_says():
    estimate = cost.estimate(cost.Config())
    services = estimate.by_service()
    # 1 processing KPU + 1 for orchestration, all month, and 50 GB of running storage.
    assert services["Managed Flink"] == pytest.approx(2 * 730 * 0.11 + 50 * 0.10)  # 165.60
    # One t3.small.search and its 10 GiB of gp3.
    assert services["OpenSearch"] == pytest.approx(730 * 0.036 + 10 * 0.122)  # 27.50
    # Two on-demand streams; 4 symbols x 960 bars x 21 trading days, each bar a record on each
    # stream (1 KB billed), read once from each (170 + 650 bytes).
    bars = 4 * 960 * 21
    assert services["Kinesis"] == pytest.approx(2 * 730 * 0.04 + 2 * bars * 1024 / GIB * 0.08 + bars * 820 / GIB * 0.04)
    # Four interface endpoints in two zones.
    assert services["VPC endpoints"] == pytest.approx(4 * 2 * 730 * 0.01 + bars * 820 / GIB * 0.01)
    assert services["Secrets Manager"] == pytest.approx(0.80)
    # The fetcher: 17 h x 60 invocations on 261/12 weekdays; in the 960 market minutes of 21 days
    # each takes 3 x 12 s (4 calls spaced at 5 a minute) + 0.5 s, the rest 0.1 s; 256 MB.
    fired, market = 1020 * 261 / 12, 960 * 21
    fetcher = (market * 36.5 + (fired - market) * 0.1) * 0.25 * 0.0000166667 + fired * 0.20 / 1e6
    alerts = market * 0.2 * 0.25 * 0.0000166667 + market * 0.20 / 1e6
    assert services["Lambda"] == pytest.approx(fetcher + alerts)
    assert services["EventBridge Scheduler"] == pytest.approx(fired / 1e6)
    # Cursor: a read and two writes per symbol fetched; alerts: 2 a symbol-day, 3 writes each.
    assert services["DynamoDB"] == pytest.approx(market * 4 * (0.125 + 2 * 0.625) / 1e6 + 4 * 2 * 21 * 3 * 0.625 / 1e6)
    # 10 alarms; 4 + 2 metrics in 16 session hours of 21 days, MarketClosedSkips in the schedule's 17 h.
    metric_hours = 6 * 16 * 21 + 17 * 261 / 12
    logs = (market * 4 * 600 + fired * 1500 + 50 * 2 ** 20) / GIB * 0.53
    assert services["CloudWatch"] == pytest.approx(10 * 0.10 + metric_hours / 730 * 0.30 + logs)
    assert estimate.total == pytest.approx(sum(services.values()))
    assert 310 < estimate.total < 320 and not estimate.notes


def test_a_larger_configuration_prices_each_of_its_settings():
    config = cost.Config(symbols=1000, nodes=2, instance_type="m6g.large.search", volume_gib=181, parallelism=2,
                         stream_mode="PROVISIONED", shards=1, calls_per_minute=1200, fetcher_memory_mb=1024,
                         fetcher_groups=2, entitlement="historical", tunnel=True)
    services = cost.estimate(config).by_service()
    assert services["Managed Flink"] == pytest.approx(3 * 730 * 0.11 + 2 * 50 * 0.10)  # 250.90
    assert services["OpenSearch"] == pytest.approx(2 * 730 * 0.128 + 2 * 181 * 0.122)  # 231.04
    bars = 1000 * 960 * 21
    assert services["Kinesis"] == pytest.approx(2 * 1 * 730 * 0.015 + 2 * bars * 0.014 / 1e6)  # 22.46
    assert services["EC2"] == pytest.approx(730 * 0.0042 + 8 * 0.08)  # 3.71
    # Two groups of 500 symbols at 600 calls a minute each: 499 x 0.1 s + 0.5 s, at 1 GB.
    assert cost.fetcher_invocation_seconds(500, 600, 1024) == pytest.approx(50.4)
    # No stale-data alarm for a historical plan: 9 alarms.
    cloudwatch = [i for i in cost.estimate(config).items if i.what.endswith("alarms")]
    assert [i.monthly_usd for i in cloudwatch] == [pytest.approx(0.90)]


def test_the_fetchers_per_symbol_metrics_grow_with_the_symbols():
    small, large = (cost.estimate(cost.Config(symbols=n)).items for n in (4, 1000))
    metric = {n: next(i.monthly_usd for i in items if "custom metrics" in i.what)
              for n, items in ((4, small), (1000, large))}
    # DataAgeSeconds per symbol, prorated to the hours it is sent in: ~$0.14 a symbol-month.
    assert metric[1000] - metric[4] == pytest.approx(996 * 16 * 21 / 730 * 0.30)


def test_the_estimate_says_what_the_configuration_lacks():
    notes = cost.estimate(cost.Config(symbols=1000, volume_gib=229)).notes
    assert any("t3.small.search takes at most 100 GiB" in n for n in notes)
    notes = cost.estimate(cost.Config(symbols=1000)).notes
    assert any("OpenSearchVolumeSize=229" in n for n in notes)
    notes = cost.estimate(cost.Config(symbols=100_000, execution_mode="process")).notes
    assert any("need 5 KPUs" in n for n in notes)
    with pytest.raises(cost.CostError, match="OpenSearchInstanceType 'x9.huge.search' has no price"):
        cost.estimate(cost.Config(instance_type="x9.huge.search"))


def test_command_line_prints_the_itemised_estimate_from_the_template_defaults(capsys):
    assert cost.main([]) == 0
    out = capsys.readouterr().out
    assert "4 symbols, process mode, 1 x t3.small.search" in out and "as of 2026-12" in out
    (total,) = [line for line in out.splitlines() if line.strip().startswith("total")]
    assert total.endswith(f"{cost.estimate(cost.Config()).total:,.2f}")
    assert cost.main(["--symbols", "A,B,C", "--tunnel", "true", "--stream-mode", "PROVISIONED"]) == 0
    out = capsys.readouterr().out
    assert "3 symbols" in out and "tunnel host" in out and "2 streams x 1 shards" in out
    assert cost.main(["--instance-type", "x9.huge.search"]) == 2
    assert "add its hourly price there" in capsys.readouterr().err
    assert cost.main(["--retention", "stock-dlq=0"]) == 2
    assert cost.template_alarms() == 10


def test_the_readme_table_is_the_estimators():
    readme = (ROOT / "README.md").read_text()
    assert cost.scenario_table(cost.template_alarms()) in readme, "run python -m infra.cost --scenarios"
    assert f"as of {cost.PRICES_AS_OF}" in readme


def test_capacity_uses_the_measured_per_bar_cost():
    run = json.loads((ROOT / capacity.BENCH_RUN).read_text())["throughput"]["variants"]
    assert capacity.CPU_US_PER_BAR["thread"] == pytest.approx(run["analyze_blackhole"]["net_cpu_us_per_bar"]["median"], abs=1)
    assert capacity.CPU_US_PER_BAR["process"] == pytest.approx(
        run["analyze_blackhole_process"]["net_cpu_us_per_bar"]["median"], abs=1)
    # Process mode costs 2.3x thread mode per bar.
    assert capacity.bars_per_kpu_second("thread") / capacity.bars_per_kpu_second("process") == pytest.approx(2.26, abs=0.01)


def test_kpus_needed_per_symbol_count_and_mode():
    # 1,000 symbols: 16.7 bars/s, 2.2% of one KPU in process mode; a trading day's bars in 21 min.
    one = capacity.capacity(1000, "process")
    assert one.kpus == 1 and one.busy_share == pytest.approx(1000 / 60 / (1e6 / 1323))
    assert one.catch_up_day_s == pytest.approx(1000 * 960 * 1323e-6)
    # 100,000 symbols: 1,667 bars/s over KPUs kept at most half busy.
    assert capacity.capacity(100_000, "process").kpus == math.ceil(100_000 / 60 / (1e6 / 1323 / 2)) == 5
    assert capacity.capacity(100_000, "thread").kpus == math.ceil(100_000 / 60 / (1e6 / 585 / 2)) == 2
    with pytest.raises(ValueError, match="execution mode must be one of thread, process"):
        capacity.capacity(10, "fast")
