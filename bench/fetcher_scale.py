"""How many symbols one fetcher invocation handles: ``lambda_handler`` in a fresh process with a
55 s deadline, against the fake Alpha Vantage API answering each call in 300 ms (a real socket, in
this process) under a 1,200 calls/minute budget, and the local Kinesis and DynamoDB.

Steady state, as every minute after the first: each symbol's cursor is one bar behind its series,
so every symbol sends one new bar. More symbols are offered than one invocation can fetch; the
figure is how many it completes (``symbols_ok``). The budget is checked where Alpha Vantage would
check it, at the server: the arrival time of every request is recorded there.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import services
from bench.fetcher_container import fresh_resources, log, run_container
from bench.fetcher_invoke import TIMEOUT_S
from bench.stats import summary
from fetcher_lambda.alphavantage import resolve_zone, to_utc
from tests.fake_alphavantage import COMPACT_BARS, FakeAlphaVantage, max_in_flight, max_in_window, minute_rows

NEEDS = ("kinesis", "dynamodb")
TARGET_SYMBOLS = 800


@dataclass(frozen=True)
class Options:
    symbols: int = 1100  # offered; more than 55 s at 1,200 calls a minute can take
    calls_per_minute: int = 1200
    latency_s: float = 0.3
    concurrency: int = 16
    reps: int = 3


def _seed_cursors(dynamodb, table: str, cursors: dict[str, str]) -> None:
    """Each symbol's cursor, as a previous run would have left it (25 items per batch write)."""
    items = [{"PutRequest": {"Item": {"symbol": {"S": s}, "cursor": {"S": ts}}}} for s, ts in cursors.items()]
    for start in range(0, len(items), 25):
        pending = {table: items[start:start + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def _budget_check(server: FakeAlphaVantage, calls_per_minute: int, since: int) -> dict:
    timings = sorted(server.timings[since:], key=lambda t: t.arrived)
    arrivals = [t.arrived for t in timings]
    interval = 60 / calls_per_minute
    # How much earlier than the budget's spacing the tightest pair of calls came (0: never).
    early = max((arrivals[i] + (j - i) * interval - arrivals[j]
                 for i in range(len(arrivals)) for j in range(i + 1, min(len(arrivals), i + 50))), default=0.0)
    return {"calls_at_server": len(timings), "max_calls_in_any_60s": max_in_window(timings, 60.0),
            "max_calls_in_any_1s": max_in_window(timings, 1.0), "max_in_flight": max_in_flight(timings),
            "earliest_vs_spacing_s": max(0.0, early),
            "span_s": arrivals[-1] - arrivals[0] if arrivals else 0.0}


def _invoke(server: FakeAlphaVantage, symbols: list[str], opts: Options) -> dict:
    zone = resolve_zone("US/Eastern")
    second_last = minute_rows("2024-03-08 09:30", COMPACT_BARS)[-2]
    since = len(server.timings)
    with fresh_resources("bench-scale") as (stream, table, dynamodb):
        _seed_cursors(dynamodb, table, {symbol: to_utc(second_last.local_ts, zone) for symbol in symbols})
        result = run_container(server, symbols, stream, table, {
            "AV_CALLS_PER_MINUTE": str(opts.calls_per_minute), "FETCHER_CONCURRENCY": str(opts.concurrency),
            "LOG_LEVEL": "WARNING"}, "--cold-only")
    result["server"] = _budget_check(server, opts.calls_per_minute, since)
    return result


def run(opts: Options) -> dict:
    symbols = [f"SC{i:04d}" for i in range(opts.symbols)]
    server = FakeAlphaVantage(latency_s=opts.latency_s).start()
    for number, symbol in enumerate(symbols):
        server.set_series(symbol, minute_rows("2024-03-08 09:30", COMPACT_BARS, price=20.0 + number / 10))
    try:
        invocations = []
        for rep in range(opts.reps):
            invocation = services.with_services(NEEDS, "fetcher scale", lambda: _invoke(server, symbols, opts))
            invocations.append(invocation)
            cold, checked = invocation["cold"], invocation["server"]
            log(f"fetcher scale: rep {rep + 1}/{opts.reps}: {cold['symbols_ok']} symbols in "
                f"{invocation['cold_invocation_s']:.1f} s, {checked['calls_at_server']} calls, "
                f"at most {checked['max_calls_in_any_60s']} in any 60 s (budget {opts.calls_per_minute}), "
                f"{checked['max_in_flight']} in flight at most")
    finally:
        server.stop()
    ok = [i["cold"]["symbols_ok"] for i in invocations]
    over = max(i["server"]["max_calls_in_any_60s"] for i in invocations) > opts.calls_per_minute
    return {
        "options": opts.__dict__, "timeout_s": TIMEOUT_S, "target_symbols": TARGET_SYMBOLS,
        "symbols_ok": summary(ok),
        "symbols_failed": max(i["cold"]["symbols_failed"] for i in invocations),
        "invocation_s": summary([i["cold_invocation_s"] for i in invocations]),
        "cpu_s": summary([i["cold_cpu_s"] for i in invocations]),
        "max_rss_mib": summary([i["max_rss_mib"] for i in invocations]),
        "put_records_calls": summary([i["cold"]["put_records_calls"] for i in invocations]),
        "max_calls_in_any_60s": max(i["server"]["max_calls_in_any_60s"] for i in invocations),
        "max_calls_in_any_1s": max(i["server"]["max_calls_in_any_1s"] for i in invocations),
        "earliest_vs_spacing_s": max(i["server"]["earliest_vs_spacing_s"] for i in invocations),
        "max_in_flight": summary([i["server"]["max_in_flight"] for i in invocations]),
        "over_budget": over,
        "meets_target": min(ok) >= TARGET_SYMBOLS and not over
        and max(i["cold_invocation_s"] for i in invocations) < TIMEOUT_S,
        "invocations": invocations,
    }
