"""Many symbols in one invocation: the calls-per-minute budget as the fake API's socket sees it,
real concurrency, per-symbol order on the real local Kinesis, and a clean stop at the deadline."""

from __future__ import annotations

import time
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.call_budget import CallBudget
from fetcher_lambda.config import ConfigError
from fetcher_lambda.cursor import CursorStore
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.groups import Group
from fetcher_lambda.pipeline import Clients, run
from tests import fake_alphavantage as fake
from tests.fake_alphavantage import TEST_API_KEY, max_in_flight
from tests.kinesis_faults import FailEntries

NY = ZoneInfo("America/New_York")
JITTER_S = 0.15  # a slot to its arrival at the server: thread wake-up, connect, send; on a busy machine


def utc(rows) -> list[str]:
    return [to_utc(row.local_ts, NY) for row in rows]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# ---- pure -------------------------------------------------------------------------------------------

def test_budget_spaces_slots_evenly_and_refuses_late_ones():
    clock = FakeClock()
    budget = CallBudget(120, clock=clock, sleep=clock.sleep)  # one slot every 0.5 s
    assert [budget.reserve() for _ in range(3)] == [100.0, 100.5, 101.0]
    assert budget.reserve(latest=101.2) is None and budget.next_slot() == 101.5  # refused: nothing taken
    clock.now = 105.0  # idle time is not saved up into a burst
    assert budget.acquire() and clock.now == 105.0 and budget.next_slot() == 105.5
    assert budget.acquire() and clock.now == 105.5
    with pytest.raises(ValueError):
        CallBudget(0)


def test_groups_split_the_list_and_the_budget():
    symbols = tuple(f"S{i}" for i in range(10))
    groups = [Group(number, 3) for number in (1, 2, 3)]
    slices = [group.select(symbols) for group in groups]
    assert [len(s) for s in slices] == [3, 3, 4] and sum(slices, ()) == symbols
    assert Group(2, 3).share(1200) == 400 and str(Group(2, 3)) == "2/3"
    assert Group.from_event({"group": 2, "groups": 3}) == Group(2, 3)
    assert Group.from_event({}) == Group() == Group.from_event({"source": "aws.events"})
    assert Group().select(symbols) == symbols and Group(1, 12).select(symbols) == ()  # more groups than symbols
    for bad in ({"group": 4, "groups": 3}, {"group": "1", "groups": 2}, {"groups": 2}, {"group": True, "groups": 1}):
        with pytest.raises(ConfigError, match="group"):
            Group.from_event(bad)


# ---- against the fake API's socket and the local Kinesis and DynamoDB --------------------------------

def serve(fake_api, symbols: list[str], bars: int) -> dict[str, list[str]]:
    expected = {}
    for number, symbol in enumerate(symbols):
        rows = fake.minute_rows("2024-03-08 10:00", bars, price=50.0 + number)
        fake_api.set_series(symbol, rows)
        expected[symbol] = utc(rows)
    return expected


def stream_by_symbol(records) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, record in records:
        out.setdefault(record["symbol"], []).append(record["ts"])
    return out


def test_calls_keep_the_budget_run_concurrently_and_keep_each_symbols_order(
        fake_alphavantage, fetcher_settings, fetcher_clients_factory, read_stream):
    fake_alphavantage.latency_s = 0.3
    symbols = [f"C{i:03d}" for i in range(40)]
    expected = serve(fake_alphavantage, symbols, bars=3)
    calls_per_minute = 600  # one call every 0.1 s: 40 calls take 3.9 s at least
    # A read timeout well above the 0.3 s replies: a retried call would be a second arrival.
    settings = replace(fetcher_settings, symbols=tuple(symbols), calls_per_minute=calls_per_minute,
                       fetch_concurrency=8, read_timeout_s=2.0)

    summary = run(settings, Clients(*fetcher_clients_factory()), TEST_API_KEY, Deadline.after(30))
    assert summary.symbols_ok == 40 and summary.api_calls == 40 and summary.bars_sent == 120

    timings = sorted(fake_alphavantage.timings, key=lambda t: t.arrived)
    assert len(timings) == 40
    interval = 60 / calls_per_minute
    arrivals = [t.arrived for t in timings]
    # Call j comes at least (j - i) intervals after call i: no 60 s window holds more than the budget.
    tightest = min(arrivals[j] - arrivals[i] - (j - i) * interval
                   for i in range(len(arrivals)) for j in range(i + 1, len(arrivals)))
    assert tightest >= -JITTER_S, f"calls {-tightest:.3f} s closer than the budget allows"
    # 0.3 s per call at 10 calls a second: about three calls are in flight at any time.
    assert max_in_flight(timings) >= 2, "the calls did not overlap"
    assert stream_by_symbol(read_stream(settings.stream_name)) == expected


def test_invocation_stops_before_the_deadline_with_correct_cursors_then_the_next_run_completes(
        fake_alphavantage, fetcher_settings, fetcher_clients_factory, read_stream):
    fake_alphavantage.latency_s = 0.3
    symbols = [f"D{i:03d}" for i in range(30)]
    expected = serve(fake_alphavantage, symbols, bars=4)
    # Two calls a second, and 4.5 s in which a call may start: most symbols wait for the next run.
    settings = replace(fetcher_settings, symbols=tuple(symbols), calls_per_minute=120, fetch_concurrency=4,
                       safety_margin_s=1.0, put_attempts=10_000, read_timeout_s=2.0)
    d000 = fake.minute_rows("2024-03-08 11:00", 4)  # bar times of its own, so only its put gets stuck
    fake_alphavantage.set_series("D000", d000)
    expected["D000"] = utc(d000)
    kinesis, dynamodb = fetcher_clients_factory()
    stuck = expected["D000"][2]  # never accepted: the first symbol's put is still retrying at the deadline
    faults = FailEntries(kinesis, lambda _call, ts: ts == stuck)
    deadline = Deadline.after(8.0)

    summary = run(settings, Clients(kinesis, dynamodb), TEST_API_KEY, deadline)
    assert deadline.remaining_s() > 0, "the run outlived its deadline"
    assert summary.failed == {"D000": "put_failed"} and sum(call.count(stuck) for call in faults.requests) > 2
    skipped = {symbol for symbol, kind in summary.skipped.items() if kind == "time_short"}
    assert skipped and set(summary.skipped) == skipped and summary.symbols_ok == 30 - 1 - len(skipped)
    assert summary.api_calls == 30 - len(skipped) == len(fake_alphavantage.timings)
    # Every call started while it could still finish: a connect, the shortest read, the margin.
    latest_start = deadline.expires_at - settings.min_symbol_time_s
    assert max(t.arrived for t in fake_alphavantage.timings) <= latest_start + JITTER_S

    store = CursorStore(dynamodb, settings.cursor_table)
    sent = stream_by_symbol(read_stream(settings.stream_name))
    assert sent["D000"] == expected["D000"][:2] and store.read("D000").cursor == expected["D000"][1]
    for symbol in symbols[1:]:
        state = store.read(symbol)
        assert state.lease_owner is None, f"{symbol}: lease left behind"
        if symbol in skipped:
            assert state.cursor is None and symbol not in sent
        else:
            assert state.cursor == expected[symbol][-1] and sent[symbol] == expected[symbol]

    healed = run(replace(settings, calls_per_minute=6000), Clients(*fetcher_clients_factory()), TEST_API_KEY,
                 Deadline.after(30))
    assert healed.symbols_ok == 30 and healed.bars_sent == 2 + 4 * len(skipped)
    assert stream_by_symbol(read_stream(settings.stream_name)) == expected  # each bar once, in order
    assert all(store.read(symbol).cursor == expected[symbol][-1] for symbol in symbols)


def test_time_short_symbols_spend_no_call(fake_alphavantage, fetcher_settings, fetcher_clients_factory):
    serve(fake_alphavantage, ["E1", "E2", "E3"], bars=2)
    settings = replace(fetcher_settings, symbols=("E1", "E2", "E3"), calls_per_minute=6)  # a call every 10 s
    started = time.monotonic()
    summary = run(settings, Clients(*fetcher_clients_factory()), TEST_API_KEY, Deadline.after(5))
    # The three start together and race for the one slot: one wins, the others do not wait.
    (fetched,) = [t.symbol for t in fake_alphavantage.timings]
    assert summary.symbols_ok == 1 and summary.skipped == {s: "time_short" for s in ("E1", "E2", "E3") if s != fetched}
    assert time.monotonic() - started < 5, "a skipped symbol waited for a slot it could not use"


def test_sender_starts_no_call_that_could_end_after_the_deadline(local_kinesis, kinesis_stream, read_stream):
    from fetcher_lambda.kinesis import Entry, RetryPolicy
    from fetcher_lambda.sender import OrderedSender

    bars = [Entry("IBM", b'{"n": 1}'), Entry("IBM", b'{"n": 2}')]
    # 3 s left, but a call may take 2.5 s and 1 s is kept for the cursors: no call may start.
    with OrderedSender(local_kinesis, kinesis_stream, Deadline.after(3), RetryPolicy(margin_s=1.0), call_s=2.5) as late:
        put = late.submit("IBM", bars).result(timeout=5)
    assert late.stats.calls == 0 and put.accepted == [False, False] and "deadline" in put.error
    with OrderedSender(local_kinesis, kinesis_stream, Deadline.after(10), RetryPolicy(margin_s=1.0), call_s=2.5) as sender:
        put = sender.submit("IBM", bars).result(timeout=10)
    assert sender.stats.calls == 2 and put.all_accepted and len(read_stream(kinesis_stream)) == 2
