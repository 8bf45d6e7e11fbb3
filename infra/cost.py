"""What the stack costs a month, itemised, from public on-demand prices in us-east-1. ``make deploy``
prints it before it creates anything.

    python -m infra.cost [--symbols IBM,AAPL | --symbol-count 1000] [--retention "stock-dlq=14"]
                         [--volume-gib 229] [--nodes 2] [--instance-type t3.small.search] [--stream-mode PROVISIONED]
                         [--shards 1] [--parallelism 1] [--parallelism-per-kpu 1] [--execution-mode process]
                         [--fetcher-memory 1024] [--fetcher-groups 2] [--calls-per-minute 1200]
                         [--extended-hours true] [--entitlement delayed] [--tunnel true]

Unset options are the template's defaults. The prices are the list prices of one date (``PRICES_AS_OF``),
without free tiers, savings plans or taxes; check them on AWS's pricing pages before relying on
them. Usage-based items follow from the symbol count with the assumptions named next to them: the
fixed items (KPUs, the domain, the endpoints, the streams) dominate below a few hundred symbols.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Mapping

from flink_job.core.index_lifecycle import RetentionError, parse_retention
from infra import capacity, sizing

PRICES_AS_OF = "2026-12"
REGION = "us-east-1"
# Public on-demand prices in us-east-1 as of PRICES_AS_OF (check them: AWS changes prices).
# Pages: "Amazon Managed Service for Apache Flink pricing", "Amazon OpenSearch Service pricing",
# "Amazon Kinesis Data Streams pricing", "AWS Lambda pricing", "Amazon DynamoDB pricing",
# "AWS PrivateLink pricing", "Amazon CloudWatch pricing", "AWS Secrets Manager pricing",
# "Amazon EventBridge pricing" (Scheduler), "Amazon EC2 On-Demand pricing", "Amazon EBS pricing".
PRICES: dict[str, float] = {
    "flink_kpu_hour": 0.11,
    "flink_running_storage_gb_month": 0.10,  # 50 GB per KPU
    "opensearch_gp3_gb_month": 0.122,
    "kinesis_on_demand_stream_hour": 0.04,
    "kinesis_on_demand_ingest_gb": 0.08,  # each record rounded up to 1 KB
    "kinesis_on_demand_retrieval_gb": 0.04,
    "kinesis_shard_hour": 0.015,
    "kinesis_put_payload_units_million": 0.014,  # a unit is up to 25 KB of one record
    "lambda_gb_second": 0.0000166667,  # x86
    "lambda_requests_million": 0.20,
    "dynamodb_write_request_units_million": 0.625,  # on-demand
    "dynamodb_read_request_units_million": 0.125,
    "vpc_interface_endpoint_zone_hour": 0.01,
    "vpc_endpoint_data_gb": 0.01,
    "cloudwatch_alarm_metric_month": 0.10,  # standard resolution
    "cloudwatch_custom_metric_month": 0.30,  # first 10,000 metrics; prorated by the hour
    "cloudwatch_logs_ingest_gb": 0.50,
    "cloudwatch_logs_storage_gb_month": 0.03,
    "secrets_manager_secret_month": 0.40,
    "scheduler_invocations_million": 1.00,
    "ec2_t4g_nano_hour": 0.0042,
    "ebs_gp3_gb_month": 0.08,
}
OPENSEARCH_INSTANCE_HOUR = {
    "t3.small.search": 0.036,
    "t3.medium.search": 0.073,
    "m6g.large.search": 0.128,
    "c6g.large.search": 0.113,
    "r6g.large.search": 0.167,
}
# The largest EBS volume a node of each type takes (Amazon OpenSearch Service quotas, EBS volume size).
OPENSEARCH_MAX_VOLUME_GIB = {
    "t3.small.search": 100,
    "t3.medium.search": 200,
    "m6g.large.search": 512,
    "c6g.large.search": 256,
    "r6g.large.search": 1024,
}

HOURS_PER_MONTH = 730
GIB = 1024 ** 3
TRADING_DAYS_PER_MONTH = sizing.TRADING_DAYS_PER_YEAR / 12  # 21
WEEKDAYS_PER_MONTH = 261 / 12  # the schedules fire on every weekday, holidays included
# Minutes a weekday the schedules fire (cron hours 4-20 or 9-16, New York) and minutes with bars.
SCHEDULE_MINUTES = {True: 17 * 60, False: 8 * 60}
MARKET_MINUTES = capacity.MARKET_MINUTES
VPC_INTERFACE_ENDPOINTS, ZONES = 4, 2  # kinesis-streams, monitoring, logs, secretsmanager
FLINK_STORAGE_GB_PER_KPU = 50
BYTES_IN, BYTES_OUT = 170, 650  # a bar on stock_stream_data, an enriched record on stock_sma_stream
# The fetcher (README, The fetcher): ~20 ms of CPU per symbol at one vCPU (1,769 MB), a call's
# latency and the puts on top, its calls spaced to the plan's rate, at most its 55 s timeout; an
# invocation outside market hours makes no call. Three DynamoDB calls per fetched symbol: a
# consistent read (1 read unit) and two conditional updates (1 write unit each).
FETCHER_CPU_S_PER_SYMBOL, FETCHER_OVERHEAD_S, FETCHER_TIMEOUT_S, CLOSED_INVOCATION_S = 0.020, 0.5, 55.0, 0.1
FULL_VCPU_MB = 1769
# Log bytes (estimates): a fetched symbol's lines and its data-age metric record; an invocation's
# own lines and Lambda's START/END/REPORT; the job's and the loader's lines a month.
LOG_BYTES_PER_FETCHED_SYMBOL, LOG_BYTES_PER_INVOCATION, OTHER_LOG_BYTES_MONTH = 600, 1500, 50 * 1024 ** 2
# The fetcher's metrics (namespace StockAnalytics/Fetcher): DataAgeSeconds per symbol, and
# MaxDataAgeSeconds, EntitlementRefused and MarketClosedSkips. Custom metrics are prorated by the
# hour they are sent in: those of the session hours only, except MarketClosedSkips.
FETCHER_METRICS_BEYOND_SYMBOLS = 3
# The alerts function (alerts/): one invocation per market minute with signals (~0.2 s at 256 MB),
# and an assumed 2 alerts a symbol-day passing the rules' cooldowns, 3 write units each.
ALERTS_SECONDS, ALERTS_MEMORY_MB, ALERTS_PER_SYMBOL_DAY, ALERT_WRITE_UNITS = 0.2, 256, 2, 3


@dataclass(frozen=True)
class Config:
    """The settings that drive the bill (defaults: the template's)."""

    symbols: int = 4
    retention: Mapping[str, int] = field(default_factory=lambda: parse_retention(""))
    volume_gib: float = 10
    nodes: int = 1
    instance_type: str = "t3.small.search"
    stream_mode: str = "ON_DEMAND"
    shards: int = 1
    parallelism: int = 1
    parallelism_per_kpu: int = 1
    execution_mode: str = "process"
    fetcher_memory_mb: int = 256
    fetcher_groups: int = 1
    calls_per_minute: float = 5
    extended_hours: bool = True
    entitlement: str = "delayed"
    tunnel: bool = False
    alarms: int = 10  # CloudWatch alarms in the template, one metric each


@dataclass(frozen=True)
class Item:
    service: str
    what: str
    monthly_usd: float


@dataclass(frozen=True)
class Estimate:
    config: Config
    items: tuple[Item, ...]
    notes: tuple[str, ...]

    @property
    def total(self) -> float:
        return sum(i.monthly_usd for i in self.items)

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.service] = totals.get(item.service, 0.0) + item.monthly_usd
        return totals


class CostError(ValueError):
    """A setting the estimate cannot price; the message names it."""


def kpus(config: Config) -> int:
    """Processing KPUs Managed Flink allocates (Parallelism / ParallelismPerKPU, rounded up)."""
    return math.ceil(config.parallelism / config.parallelism_per_kpu)


def fetcher_invocation_seconds(symbols: int, calls_per_minute: float, memory_mb: int) -> float:
    """Duration of one market-hours invocation over ``symbols`` at ``calls_per_minute``."""
    if symbols == 0:
        return CLOSED_INVOCATION_S
    spaced = (min(symbols, calls_per_minute) - 1) * 60.0 / calls_per_minute
    cpu = min(symbols, calls_per_minute) * FETCHER_CPU_S_PER_SYMBOL * FULL_VCPU_MB / memory_mb
    return min(FETCHER_TIMEOUT_S, FETCHER_OVERHEAD_S + max(spaced, cpu))


def estimate(config: Config) -> Estimate:
    """The monthly bill of a stack running all month (the Flink application never stopped)."""
    if config.instance_type not in OPENSEARCH_INSTANCE_HOUR:
        raise CostError(f"OpenSearchInstanceType {config.instance_type!r} has no price in infra/cost.py "
                        f"(known: {', '.join(OPENSEARCH_INSTANCE_HOUR)}): add its hourly price there")
    p = PRICES
    n = config.symbols
    items: list[Item] = []
    notes: list[str] = []

    def add(service: str, what: str, usd: float) -> None:
        items.append(Item(service, what, usd))

    # Managed Flink: the processing KPUs plus one for orchestration, and 50 GB of running storage per KPU.
    processing = kpus(config)
    add("Managed Flink", f"{processing + 1} KPU ({processing} + 1 orchestration) x {HOURS_PER_MONTH} h",
        (processing + 1) * HOURS_PER_MONTH * p["flink_kpu_hour"])
    add("Managed Flink", f"running storage {processing} x {FLINK_STORAGE_GB_PER_KPU} GB",
        processing * FLINK_STORAGE_GB_PER_KPU * p["flink_running_storage_gb_month"])
    needed = capacity.capacity(n, config.execution_mode, config.extended_hours)
    if needed.kpus > processing:
        notes.append(f"{n} symbols in {config.execution_mode} mode need {needed.kpus} KPUs in real time; "
                     f"raise Parallelism (the estimate counts {processing})")

    # OpenSearch: instances and their gp3 volumes.
    add("OpenSearch", f"{config.nodes} x {config.instance_type} x {HOURS_PER_MONTH} h",
        config.nodes * HOURS_PER_MONTH * OPENSEARCH_INSTANCE_HOUR[config.instance_type])
    add("OpenSearch", f"gp3 {config.nodes} x {config.volume_gib:g} GiB",
        config.nodes * config.volume_gib * p["opensearch_gp3_gb_month"])
    fit = sizing.check(n, config.volume_gib, config.nodes, config.retention)
    if not fit.fits:
        notes.append(f"{n} symbols need OpenSearchVolumeSize={sizing.smallest_volume_gib(n, config.nodes, config.retention)} "
                     f"for their retention; the estimate prices {config.volume_gib:g} GiB")
    if config.volume_gib > OPENSEARCH_MAX_VOLUME_GIB[config.instance_type]:
        notes.append(f"{config.instance_type} takes at most {OPENSEARCH_MAX_VOLUME_GIB[config.instance_type]} GiB "
                     f"a node: choose a larger OpenSearchInstanceType or more nodes")

    # Kinesis: two streams, one record per bar each.
    bars = n * MARKET_MINUTES[config.extended_hours] * TRADING_DAYS_PER_MONTH
    if config.stream_mode == "ON_DEMAND":
        add("Kinesis", f"2 on-demand streams x {HOURS_PER_MONTH} h", 2 * HOURS_PER_MONTH * p["kinesis_on_demand_stream_hour"])
        add("Kinesis", f"ingest {2 * bars:,.0f} records (1 KB each, rounded up)",
            2 * bars * 1024 / GIB * p["kinesis_on_demand_ingest_gb"])
        add("Kinesis", "retrieval: the job reads the input, the alerts the output",
            bars * (BYTES_IN + BYTES_OUT) / GIB * p["kinesis_on_demand_retrieval_gb"])
    elif config.stream_mode == "PROVISIONED":
        add("Kinesis", f"2 streams x {config.shards} shards x {HOURS_PER_MONTH} h",
            2 * config.shards * HOURS_PER_MONTH * p["kinesis_shard_hour"])
        add("Kinesis", f"PUT payload units {2 * bars:,.0f}", 2 * bars / 1e6 * p["kinesis_put_payload_units_million"])
    else:
        raise CostError(f"StreamMode must be ON_DEMAND or PROVISIONED; got {config.stream_mode!r}")

    # The fetcher: every schedule fires every minute of its weekday hours; in market minutes each
    # group fetches its share of the symbols, as many as its share of the calls allows.
    groups = config.fetcher_groups
    per_group = math.ceil(n / groups)
    share = config.calls_per_minute / groups
    fired = SCHEDULE_MINUTES[config.extended_hours] * WEEKDAYS_PER_MONTH * groups
    market = MARKET_MINUTES[config.extended_hours] * TRADING_DAYS_PER_MONTH * groups
    busy_s = fetcher_invocation_seconds(per_group, share, config.fetcher_memory_mb)
    seconds = market * busy_s + (fired - market) * CLOSED_INVOCATION_S
    add("Lambda", f"fetcher {fired:,.0f} invocations ({busy_s:.1f} s at {config.fetcher_memory_mb} MB in market hours)",
        seconds * config.fetcher_memory_mb / 1024 * p["lambda_gb_second"] + fired / 1e6 * p["lambda_requests_million"])
    alert_calls = MARKET_MINUTES[config.extended_hours] * TRADING_DAYS_PER_MONTH
    add("Lambda", f"alerts {alert_calls:,.0f} invocations",
        alert_calls * ALERTS_SECONDS * ALERTS_MEMORY_MB / 1024 * p["lambda_gb_second"]
        + alert_calls / 1e6 * p["lambda_requests_million"])
    add("EventBridge Scheduler", f"{fired:,.0f} invocations", fired / 1e6 * p["scheduler_invocations_million"])

    # DynamoDB on demand: the cursor of every fetched symbol, and the alerts' once-only records.
    fetched = market * min(per_group, share)
    alerts = n * ALERTS_PER_SYMBOL_DAY * TRADING_DAYS_PER_MONTH
    add("DynamoDB", f"cursor: {fetched:,.0f} fetches x (1 read + 2 writes)",
        fetched * (p["dynamodb_read_request_units_million"] + 2 * p["dynamodb_write_request_units_million"]) / 1e6)
    add("DynamoDB", f"alerts: ~{alerts:,.0f} alerts x {ALERT_WRITE_UNITS} writes",
        alerts * ALERT_WRITE_UNITS * p["dynamodb_write_request_units_million"] / 1e6)

    # The VPC's interface endpoints, per zone and hour, and the job's stream traffic through them.
    add("VPC endpoints", f"{VPC_INTERFACE_ENDPOINTS} interface endpoints x {ZONES} zones x {HOURS_PER_MONTH} h",
        VPC_INTERFACE_ENDPOINTS * ZONES * HOURS_PER_MONTH * p["vpc_interface_endpoint_zone_hour"])
    add("VPC endpoints", "data processed (the job's stream traffic)",
        bars * (BYTES_IN + BYTES_OUT) / GIB * p["vpc_endpoint_data_gb"])

    # CloudWatch: alarms, the fetcher's metrics (one per symbol), logs.
    alarms = config.alarms - (1 if config.entitlement == "historical" else 0)
    add("CloudWatch", f"{alarms} alarms", alarms * p["cloudwatch_alarm_metric_month"])
    session_hours = math.ceil(MARKET_MINUTES[config.extended_hours] / 60) * TRADING_DAYS_PER_MONTH
    metric_hours = (n + FETCHER_METRICS_BEYOND_SYMBOLS - 1) * session_hours + SCHEDULE_MINUTES[config.extended_hours] / 60 * WEEKDAYS_PER_MONTH
    add("CloudWatch", f"fetcher metrics: {n + FETCHER_METRICS_BEYOND_SYMBOLS} custom metrics in session hours",
        metric_hours / HOURS_PER_MONTH * p["cloudwatch_custom_metric_month"])
    log_gb = (fetched * LOG_BYTES_PER_FETCHED_SYMBOL + fired * LOG_BYTES_PER_INVOCATION + OTHER_LOG_BYTES_MONTH) / GIB
    add("CloudWatch", f"logs: {log_gb:.2f} GB ingested, 30 days kept",
        log_gb * (p["cloudwatch_logs_ingest_gb"] + p["cloudwatch_logs_storage_gb_month"]))

    add("Secrets Manager", "2 secrets (the API key, the OpenSearch master user)", 2 * p["secrets_manager_secret_month"])
    if config.tunnel:
        add("EC2", f"tunnel host t4g.nano x {HOURS_PER_MONTH} h + 8 GB gp3",
            HOURS_PER_MONTH * p["ec2_t4g_nano_hour"] + 8 * p["ebs_gp3_gb_month"])
    return Estimate(config, tuple(items), tuple(notes))


def render(estimate: Estimate) -> str:
    """The itemised estimate as text, with the date of the prices."""
    c = estimate.config
    lines = [f"monthly cost estimate: {c.symbols} symbols, {c.execution_mode} mode, {c.nodes} x {c.instance_type}, "
             f"{c.stream_mode.lower()} streams ({REGION} on-demand prices as of {PRICES_AS_OF}; check them):"]
    width = max(len(f"{i.service}: {i.what}") for i in estimate.items)
    for item in estimate.items:
        lines.append(f"  {f'{item.service}: {item.what}':<{width}}  ${item.monthly_usd:>9,.2f}")
    lines.append(f"  {'total':<{width}}  ${estimate.total:>9,.2f}")
    flink = sum(i.monthly_usd for i in estimate.items if i.service == "Managed Flink")
    lines.append(f"  (a stopped Flink application saves ${flink:,.2f}; deleting the stack saves all)")
    lines += [f"note: {note}" for note in estimate.notes]
    return "\n".join(lines)


# The README's table (Deploy to AWS, Cost): the defaults, and 100 and 1,000 symbols on plans and
# domains that carry them (a premium key's rate; the volume the retention needs; two nodes in two
# zones and a larger instance type for 1,000, as a t3.small.search takes at most 100 GiB).
SCENARIOS = {
    "defaults (4 symbols)": Config(),
    "100 symbols": Config(symbols=100, calls_per_minute=150, volume_gib=sizing.smallest_volume_gib(100, 1, parse_retention(""))),
    "1,000 symbols": Config(symbols=1000, calls_per_minute=1200, fetcher_memory_mb=1024, fetcher_groups=2, nodes=2,
                            instance_type="m6g.large.search",
                            volume_gib=sizing.smallest_volume_gib(1000, 2, parse_retention(""))),
}


def _dollars(usd: float) -> str:
    return "<$1" if usd < 0.5 else f"${usd:,.0f}"


def scenario_table(alarms: int) -> str:
    """The scenarios as a Markdown table, one row per service (whole dollars)."""
    estimates = {name: estimate(replace(config, alarms=alarms)) for name, config in SCENARIOS.items()}
    services = list(dict.fromkeys(i.service for e in estimates.values() for i in e.items))
    lines = ["| per month | " + " | ".join(estimates) + " |", "|---|" + "---:|" * len(estimates)]
    for service in services:
        lines.append(f"| {service} | " + " | ".join(_dollars(e.by_service().get(service, 0.0)) for e in estimates.values())
                     + " |")
    lines.append("| **total** | " + " | ".join(f"**${e.total:,.0f}**" for e in estimates.values()) + " |")
    return "\n".join(lines)


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise CostError(f"expected true or false; got {text!r}")
    return text == "true"


def config_from_settings(settings: Mapping[str, str], alarms: int) -> Config:
    """A ``Config`` from the deploy settings (template parameter names), empty ones taking the template's default."""
    def value(parameter: str) -> str:
        return settings.get(parameter) or sizing.template_default(parameter)

    def number(parameter: str) -> float:
        try:
            return float(value(parameter))
        except ValueError:
            raise CostError(f"{parameter} must be a number; got {value(parameter)!r}") from None

    try:
        retention = parse_retention(settings.get("RetentionDays", ""))
    except RetentionError as err:
        raise CostError(f"RetentionDays: {err}") from None
    count = settings.get("SymbolCount")
    symbols = int(count) if count else len(value("Symbols").split(","))
    return Config(
        symbols=symbols, retention=retention, volume_gib=number("OpenSearchVolumeSize"),
        nodes=int(number("OpenSearchInstanceCount")), instance_type=value("OpenSearchInstanceType"),
        stream_mode=value("StreamMode"), shards=int(number("ShardCount")), parallelism=int(number("Parallelism")),
        parallelism_per_kpu=int(number("ParallelismPerKPU")), execution_mode=value("PythonExecutionMode"),
        fetcher_memory_mb=int(number("FetcherMemorySize")), fetcher_groups=int(number("FetcherGroups")),
        calls_per_minute=number("AlphaVantageCallsPerMinute"), extended_hours=_flag(value("ExtendedHours")),
        entitlement=value("AvEntitlement"), tunnel=_flag(value("DashboardsTunnel")), alarms=alarms)


def template_alarms() -> int:
    """CloudWatch alarms the template defines (AlertTopic's subscription aside, each watches one metric)."""
    return len(re.findall(r"^    Type: AWS::CloudWatch::Alarm$", sizing.TEMPLATE.read_text(), re.MULTILINE))


OPTIONS = {  # command-line option -> template parameter
    "symbols": "Symbols", "symbol_count": "SymbolCount", "retention": "RetentionDays",
    "volume_gib": "OpenSearchVolumeSize", "nodes": "OpenSearchInstanceCount", "instance_type": "OpenSearchInstanceType",
    "stream_mode": "StreamMode", "shards": "ShardCount", "parallelism": "Parallelism",
    "parallelism_per_kpu": "ParallelismPerKPU", "execution_mode": "PythonExecutionMode",
    "fetcher_memory": "FetcherMemorySize", "fetcher_groups": "FetcherGroups",
    "calls_per_minute": "AlphaVantageCallsPerMinute", "extended_hours": "ExtendedHours",
    "entitlement": "AvEntitlement", "tunnel": "DashboardsTunnel",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Monthly cost of the stack, itemised (us-east-1 on-demand prices)")
    for option, parameter in OPTIONS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", default="", help=f"the {parameter} setting")
    parser.add_argument("--scenarios", action="store_true", help="print the README's table instead")
    args = parser.parse_args(argv)
    if args.scenarios:
        print(scenario_table(template_alarms()))
        return 0
    try:
        config = config_from_settings({OPTIONS[k]: v for k, v in vars(args).items() if k in OPTIONS}, template_alarms())
        print(render(estimate(config)))
    except (CostError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
