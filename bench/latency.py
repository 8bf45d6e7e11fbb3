"""End-to-end latency on the local stack: PutRecords returned → the enriched bar is searchable.

The streaming job runs as in the tests (``tests.pipeline_harness.JobHarness``: the real entry point,
streams of its own). Once a warm-up bar is searchable, a producer puts one bar for each of N symbols
every interval (one PutRecords call per round) and notes when each call returned; a poller asks
``stock-indicators`` every few tens of milliseconds which of those bars are searchable and notes
when each first is. Both clocks are this process's monotonic clock. Nothing here calls ``_refresh``:
visibility is what the index's own refresh gives a user. (Other clients of the shared local index
may refresh it, which can only make bars visible earlier.)

The settings that bound the latency, each tried through this module only:
- the source polls each shard every 100 ms (``flink_job/tables.py``, fixed in code);
- the OpenSearch sink flushes every ``bulk.flush.interval`` (``OpenSearch0`` property group);
- the index makes new documents searchable every ``refresh_interval`` (index template).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import opensearch, services
from bench.procstat import group_cpu_seconds
from bench.stats import percentile
from flink_job.config import load_config
from flink_job.core.bars import format_ts
from stack import resources
from stack.services import all_services
from tests.pipeline_harness import JobHarness

TARGET_P50_S, TARGET_P99_S = 1.0, 2.0
NEEDS = ("kinesis", "opensearch")


@dataclass(frozen=True)
class Setting:
    """One combination of the tunable bounds."""

    flush_interval: str = "200ms"  # OpenSearch0 bulk.flush.interval
    refresh_interval: str = "1s"  # stock-indicators refresh_interval

    @property
    def name(self) -> str:
        return f"flush {self.flush_interval}, refresh {self.refresh_interval}"


DEFAULT = Setting()
# Tried when the default misses the target (or with --sweep): refresh first, it is the larger bound.
CANDIDATES = (Setting(refresh_interval="500ms"), Setting("100ms", "500ms"), Setting("100ms", "250ms"))


@dataclass(frozen=True)
class Options:
    symbols: int = 100
    rounds: int = 25  # measured rounds, one bar per symbol each
    warmup_rounds: int = 3  # sent first and not counted: the job's first seconds are not its steady state
    batches: int = 10  # PutRecords calls per round
    interval_s: float = 1.0
    poll_s: float = 0.05
    parallelism: int = 1
    sweep: bool = False
    start_timeout_s: float = 240.0
    drain_timeout_s: float = 30.0
    settings: tuple[Setting, ...] = field(default=(DEFAULT,))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bar(symbol: str, ts_ms: int, price: float) -> dict:
    return {"symbol": symbol, "ts": format_ts(ts_ms), "open": price, "high": price + 0.02, "low": price - 0.02,
            "close": price + 0.01, "volume": 1000, "interval": "1min", "source": "alphavantage"}


def doc_id(bar: dict) -> str:
    return f"{bar['symbol']}|{bar['ts']}"  # the job's document id


class Producer(threading.Thread):
    """One bar per symbol per round; each round's symbols go in a few PutRecords calls at random
    (seeded) moments within the round. A fixed schedule would lock onto the index's periodic
    refresh and measure one phase of it; random moments sample the whole refresh cycle. Each symbol
    is in the same call of every round, so its bars still arrive in order."""

    def __init__(self, harness: JobHarness, symbols: list[str], rounds: int, batches: int, interval_s: float,
                 base_ms: int, seed: int = 1):
        super().__init__(name="bench-producer", daemon=True)
        self.kinesis = resources.kinesis_client(harness.config.source)
        self.stream = harness.config.source.stream_name
        self.base_ms = base_ms
        groups = [symbols[i::batches] for i in range(batches)]
        rng = random.Random(seed)
        self.schedule = sorted((number + rng.random(), number, group)
                               for number in range(rounds) for group in groups)
        self.interval_s = interval_s
        self.lock = threading.Lock()
        self.put_at: dict[str, tuple[int, float]] = {}  # doc id -> (round, PutRecords returned)
        self.failed = 0
        self.error: BaseException | None = None

    def round_ts(self, number: int) -> int:
        return self.base_ms + number * 60_000

    def run(self) -> None:
        try:
            start = time.monotonic()
            for at, number, group in self.schedule:
                time.sleep(max(0.0, start + at * self.interval_s - time.monotonic()))
                bars = [_bar(s, self.round_ts(number), 100.0 + number * 0.01) for s in group]
                response = self.kinesis.put_records(StreamName=self.stream, Records=[
                    {"PartitionKey": b["symbol"], "Data": json.dumps(b).encode()} for b in bars])
                returned = time.monotonic()
                with self.lock:
                    for bar, entry in zip(bars, response["Records"]):
                        if "ErrorCode" in entry:
                            self.failed += 1
                        else:
                            self.put_at[doc_id(bar)] = (number, returned)
        except BaseException as err:  # noqa: BLE001 - re-raised by the poller
            self.error = err

    def snapshot(self) -> dict[str, tuple[int, float]]:
        with self.lock:
            return dict(self.put_at)


def _poll(poller: opensearch.Poller, producer: Producer, poll_s: float, drain_timeout_s: float,
          harness: JobHarness) -> tuple[dict[str, float], dict]:
    """First-visible time of every put bar, until all are seen or the drain timeout passes."""
    # Bounded even if the producer hangs: its schedule's length plus the drain time and a margin.
    hard_deadline = time.monotonic() + producer.schedule[-1][0] * producer.interval_s + drain_timeout_s + 60
    seen: dict[str, float] = {}
    polls, poll_time = 0, 0.0
    drain_deadline = None
    while True:
        tick = time.monotonic()
        put = producer.snapshot()
        unseen = [number for key, (number, _) in put.items() if key not in seen]
        since = producer.round_ts(min(unseen) if unseen else max((n for n, _ in put.values()), default=-1) + 1)
        ids = poller.visible_ids(since)
        now = time.monotonic()
        polls, poll_time = polls + 1, poll_time + (now - tick)
        for key in ids:
            if key in put and key not in seen:
                seen[key] = now  # conservative: searchable at the latest when the answer arrived
        if not producer.is_alive():
            if producer.error:
                raise producer.error
            drain_deadline = drain_deadline or now + drain_timeout_s
            if len(seen) == len(producer.put_at) or now > drain_deadline:
                break
        elif now > hard_deadline:
            raise TimeoutError("the producer did not finish its schedule in time")
        elif polls % 20 == 0:
            harness.assert_running()
        time.sleep(max(0.0, tick + poll_s - time.monotonic()))
    return seen, {"polls": polls, "mean_poll_s": poll_time / max(1, polls)}


def _configure(harness: JobHarness, setting: Setting) -> None:
    """The harness's properties file with this setting's flush interval (the harness reads its
    config from the file, so both the job and the harness see the same values)."""
    groups = json.loads(harness.properties.read_text())
    for group in groups:
        if group["PropertyGroupId"] == "OpenSearch0":
            group["PropertyMap"]["bulk.flush.interval"] = setting.flush_interval
    harness.properties.write_text(json.dumps(groups))
    harness.config = load_config(harness.properties)


def _wait_visible(harness: JobHarness, poller: opensearch.Poller, bar: dict, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        harness.assert_running()
        if doc_id(bar) in poller.visible_ids(0):
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"the warm-up bar was not searchable after {timeout_s:.0f}s; job log {harness.log}")


def _cpu(pgids: dict[str, int | None]) -> dict[str, float]:
    return {name: group_cpu_seconds(pgid) if pgid else 0.0 for name, pgid in pgids.items()}


def _measure(harness: JobHarness, setting: Setting, opts: Options, base_url: str, base_ms: int) -> dict:
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"L{tag}{i:03d}" for i in range(opts.symbols)]
    warm = _bar(f"LW{tag}", base_ms, 100.0)
    harness.start()
    try:
        harness.put_bars([warm])
        startup_s = _wait_visible(harness, opensearch.Poller(base_url, [warm["symbol"]]), warm, opts.start_timeout_s)
        services = all_services()
        pgids = {"job": harness.proc.pid, "opensearch": services["opensearch"].pid(),
                 "kinesis": services["kinesis"].pid()}
        cpu_before, counters_before = _cpu(pgids), opensearch.index_counters(base_url, base_ms)
        producer = Producer(harness, symbols, opts.warmup_rounds + opts.rounds, opts.batches, opts.interval_s,
                            base_ms)
        started = time.monotonic()
        producer.start()
        seen, polling = _poll(opensearch.Poller(base_url, symbols), producer, opts.poll_s, opts.drain_timeout_s,
                              harness)
        elapsed = time.monotonic() - started
        cpu_after, counters_after = _cpu(pgids), opensearch.index_counters(base_url, base_ms)
    finally:
        harness.stop()
        opensearch.delete_symbols(base_url, symbols + [warm["symbol"]])  # best effort
    return _result(setting, opts, producer, seen, polling, startup_s, elapsed,
                   {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
                   {k: counters_after[k] - counters_before[k] for k in counters_after})


def _base_ms() -> int:
    """Bar times: whole minutes two days back, well inside the contract's window. The job writes
    them to the index of their own month, not this month's: the one whose refresh is set and
    counted. (A run's rounds span under half an hour of bar time from here.)"""
    return int(time.time() // 60 * 60_000) - 2 * 86_400_000


def _result(setting: Setting, opts: Options, producer: Producer, seen: dict[str, float], polling: dict,
            startup_s: float, elapsed_s: float, cpu: dict[str, float], counters: dict[str, int]) -> dict:
    measured = {k: v for k, v in producer.put_at.items() if v[0] >= opts.warmup_rounds}
    latencies = [seen[k] - returned for k, (_, returned) in measured.items() if k in seen]
    sent = len(measured)
    out = {
        "setting": {"flush_interval": setting.flush_interval, "refresh_interval": setting.refresh_interval,
                    "source_poll_interval": "100ms"},
        "bars_measured": sent, "bars_seen": len(latencies), "bars_missing": sent - len(latencies),
        "put_failures": producer.failed, "job_startup_s": startup_s, "elapsed_s": elapsed_s,
        "cpu_s": cpu, "index_counters": counters, **polling,
    }
    if latencies:
        out.update({f"p{p}_s": percentile(latencies, p) for p in (50, 95, 99)})
        out.update(max_s=max(latencies), mean_s=sum(latencies) / len(latencies))
        out["meets_target"] = (out["p50_s"] <= TARGET_P50_S and out["p99_s"] <= TARGET_P99_S
                               and out["bars_missing"] == 0)
    return out


def run_setting(setting: Setting, opts: Options) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    harness = JobHarness(work, parallelism=opts.parallelism)
    try:
        _configure(harness, setting)
        base_ms = _base_ms()
        with opensearch.refresh_interval(harness.opensearch, setting.refresh_interval, base_ms):
            result = _measure(harness, setting, opts, harness.opensearch, base_ms)
    except BaseException:
        log(f"latency: kept {work} (job log) for inspection")
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        _delete_streams(harness)
    log(f"latency: {setting.name}: p50 {result.get('p50_s', float('nan')):.3f} s, "
        f"p99 {result.get('p99_s', float('nan')):.3f} s over {result['bars_seen']} bars "
        f"({result['bars_missing']} missing)")
    return result


def _delete_streams(harness: JobHarness) -> None:
    for stream in (harness.config.source, harness.config.sink):
        try:
            harness.kinesis.delete_stream(StreamName=stream.stream_name, EnforceConsumerDeletion=True)
        except Exception:  # noqa: BLE001 - the streams are unique to this run: a leftover harms nothing
            pass


def run(opts: Options) -> dict:
    def measure(setting: Setting) -> dict:
        return services.with_services(NEEDS, f"latency ({setting.name})", lambda: run_setting(setting, opts))

    results = [measure(s) for s in opts.settings]
    if opts.sweep or not all(r.get("meets_target") for r in results):
        tried = set(opts.settings)
        results += [measure(s) for s in CANDIDATES if s not in tried]
    return {"options": {**{k: v for k, v in opts.__dict__.items() if k != "settings"}},
            "targets": {"p50_s": TARGET_P50_S, "p99_s": TARGET_P99_S}, "runs": results}


def parse_setting(text: str) -> Setting:
    """``FLUSH/REFRESH``, e.g. ``100ms/500ms``."""
    flush, _, refresh = text.partition("/")
    return replace(DEFAULT, flush_interval=flush or DEFAULT.flush_interval,
                   refresh_interval=refresh or DEFAULT.refresh_interval)
