"""One fetch run: for each symbol, fetch -> keep new bars -> claim -> put -> commit; then a summary.

The decisions (which bars are new, how far the cursor may move after a partial put, whether the
compact window lost touch with the cursor, the summary) are pure functions at the top; ``run`` and
``process_symbol`` are the shell that does I/O. Each symbol is isolated: whatever goes wrong with
one (a notice instead of data, a timeout, a DynamoDB error) is logged with the symbol and counted,
and the other symbols are processed. See ``cursor`` for the claim protocol.

Concurrency: symbols are processed by a pool of threads, every Alpha Vantage call paced by the
calls-per-minute budget (``call_budget``); their bars go to one ``sender.OrderedSender``, which
batches across symbols and keeps each symbol's bars in time order on the stream. A symbol starts
only while a call, its put and its cursor commit still fit before the deadline; the others are
skipped (``time_short``) with their cursors untouched, and the next run fetches them.

Before any of that, a live run asks ``market_hours`` whether the market can produce bars now: if
not, it makes no call and logs ``market_closed`` with the reason. With a daily cap
(``AV_CALLS_PER_DAY``), a symbol is fetched only at its call minutes (``quota``). When the last two
bars sent come back scaled (``rebasing``), the symbol's basis goes up and its whole series is sent
again at the new basis (bar contract v2, see ``contract``). Every live run writes its freshness
metrics (``metrics``).
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from . import market_hours, metrics, quota
from .alphavantage import AlphaVantageClient, FetchError, Series
from .call_budget import CallBudget
from .config import Settings
from .contract import Bar
from .cursor import CursorState, CursorStore, now_ms
from .deadline import Deadline
from .groups import Group
from .kinesis import Entry, PutResult, RetryPolicy
from .logs import log_event, redact
from .rebasing import rebase_factor
from .sender import OrderedSender

logger = logging.getLogger("fetcher_lambda.run")
CLAIM_ROUNDS = 3  # a lost claim re-reads the cursor; more losses in a row mean heavy contention
LEASE_EXTRA_MS = 5000  # covers clock differences between invocations
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# ---- pure core -------------------------------------------------------------------------------------

def select_new(bars: Sequence[Bar], cursor: str | None) -> tuple[list[Bar], int]:
    """Bars newer than the cursor (all when there is none), and how many were already sent."""
    new = [bar for bar in bars if cursor is None or bar.ts > cursor]
    return new, len(bars) - len(new)


def window_misses_cursor(bars: Sequence[Bar], cursor: str | None) -> bool:
    """True when even the oldest returned bar is newer than the cursor: bars between the cursor and
    the window may exist that this response does not contain."""
    return cursor is not None and bool(bars) and bars[0].ts > cursor


def accepted_prefix_end(bars: Sequence[Bar], accepted: Sequence[bool]) -> str | None:
    """``ts`` of the last bar of the longest accepted prefix: how far the cursor may safely move."""
    end = None
    for bar, ok in zip(bars, accepted):
        if not ok:
            break
        end = bar.ts
    return end


def recent_after(previous: Sequence[tuple[str, float]], sent: Sequence[Bar]) -> tuple[tuple[str, float], ...]:
    """The last two bars on the stream after ``sent`` followed ``previous``: (ts, close), oldest first."""
    return (*previous, *((bar.ts, bar.close) for bar in sent[-2:]))[-2:]


def bar_end(ts: str, interval_s: int) -> datetime:
    """When the bar starting at ``ts`` (contract format) ends."""
    start = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return start + timedelta(seconds=interval_s)


@dataclass
class SymbolResult:
    symbol: str
    status: str = "ok"  # ok | failed | skipped
    kind: str = ""  # why failed or skipped (a FetchError kind, "claimed_elsewhere", ...)
    bars_fetched: int = 0
    bars_sent: int = 0
    bars_skipped: int = 0  # already on the stream (not newer than the cursor)
    bars_invalid: int = 0
    api_calls: int = 0
    http_retries: int = 0
    put_records_retries: int = 0  # this symbol's bars sent again after a failure
    cursor: str | None = None
    cursor_read: bool = False  # its cursor item was read: its data age is known
    basis: int = 0
    rebase_factor: float | None = None
    detail: str = ""  # the notice's text, for failures logged once per run


@dataclass
class Summary:
    invocation_id: str
    mode: str
    group: str = "1/1"
    calls_per_minute: float = 0.0  # this invocation's share of the budget
    symbols_ok: int = 0
    symbols_failed: int = 0
    symbols_skipped: int = 0
    bars_fetched: int = 0
    bars_sent: int = 0
    bars_skipped: int = 0
    bars_invalid: int = 0
    api_calls: int = 0
    http_retries: int = 0
    put_records_calls: int = 0
    put_records_retries: int = 0
    duration_ms: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    market_closed: str = ""  # why no call was made (weekend, holiday: ..., before open, ...)
    entitlement_refused: int = 0
    rebased: dict[str, float] = field(default_factory=dict)  # symbol: factor
    max_data_age_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COUNTERS = ("bars_fetched", "bars_sent", "bars_skipped", "bars_invalid", "api_calls", "http_retries",
             "put_records_retries")


def summarize(invocation_id: str, mode: str, results: Sequence[SymbolResult], duration_ms: int,
              put_records_calls: int = 0) -> Summary:
    """The run's totals; PutRecords calls are the sender's (one call carries bars of many symbols)."""
    summary = Summary(invocation_id=invocation_id, mode=mode, duration_ms=duration_ms,
                      put_records_calls=put_records_calls)
    for result in results:
        for name in _COUNTERS:
            setattr(summary, name, getattr(summary, name) + getattr(result, name))
        if result.status == "ok":
            summary.symbols_ok += 1
        elif result.status == "failed":
            summary.symbols_failed += 1
            summary.failed[result.symbol] = result.kind
        else:
            summary.symbols_skipped += 1
            summary.skipped[result.symbol] = result.kind
        if result.kind == "entitlement_refused":
            summary.entitlement_refused += 1
        if result.rebase_factor is not None:
            summary.rebased[result.symbol] = round(result.rebase_factor, 6)
    return summary


# ---- I/O shell -------------------------------------------------------------------------------------

@dataclass
class Clients:
    """What a run talks to. Injected so tests can wrap the real clients (e.g. to force failures)."""

    kinesis: Any
    dynamodb: Any | None  # None only for backfill, which does not use the cursor


@dataclass(frozen=True)
class Invocation:
    """What every symbol's processing within one run shares."""

    settings: Settings
    av: AlphaVantageClient
    store: CursorStore | None  # None: backfill
    sender: OrderedSender
    finishers: ThreadPoolExecutor  # commit or release a symbol's cursor once its put is over
    deadline: Deadline
    owner: str
    month: str | None
    now: datetime  # this run's clock reading (market hours, call minutes, data ages)
    plan: quota.CallPlan | None = None  # the daily cap's call minutes; None: every run calls


FINISHING_THREADS = 4  # a finish is one DynamoDB write


def put_policy(settings: Settings) -> RetryPolicy:
    """Retries of a failed bar; the margin is what the safety margin leaves after the last call."""
    return RetryPolicy(attempts=settings.put_attempts, base_s=settings.put_backoff_base_s,
                       cap_s=settings.put_backoff_max_s,
                       margin_s=max(0.0, settings.safety_margin_s - settings.put_call_s))


def run(settings: Settings, clients: Clients, api_key: str, deadline: Deadline,
        invocation_id: str | None = None, month: str | None = None, group: Group = Group(),
        budget: CallBudget | None = None, clock: Clock = utc_now) -> Summary:
    """Fetch every symbol of ``group`` once and log one summary line. ``month`` = backfill mode.

    A live run first checks the market hours at ``clock()``: when closed, it makes no call, logs
    ``market_closed`` and counts the skip. Symbols are fetched by up to ``fetch_concurrency``
    threads, in list order, each API call paced by ``budget`` (default: a new one with the group's
    share of ``calls_per_minute``). A fetching thread hands the symbol's new bars to the one sender
    thread and moves on to the next symbol; when the sender is done with them, a finishing thread
    commits the cursor.
    """
    started = time.monotonic()
    invocation_id = invocation_id or str(uuid.uuid4())
    now = clock()
    decision = None if month else market_hours.decide(now, settings.extended_hours, settings.entitlement_lag_s)
    if decision is not None and not decision.open and not settings.ignore_market_hours:
        return _market_closed(settings, decision, now, invocation_id, group, started)
    plan = None  # with FETCHER_IGNORE_MARKET_HOURS outside the window, no daily plan applies: every run calls
    if decision is not None and decision.open and decision.window_start and decision.window_end:
        plan = quota.plan(settings.calls_per_day, len(settings.symbols), decision.window_start, decision.window_end)
    symbols = group.select(settings.symbols)
    budget = budget or CallBudget(group.share(settings.calls_per_minute))
    av = AlphaVantageClient(settings, api_key, deadline, budget)
    store = CursorStore(clients.dynamodb, settings.cursor_table) if not month else None
    finishers = ThreadPoolExecutor(max_workers=FINISHING_THREADS, thread_name_prefix="finish")
    sender = OrderedSender(clients.kinesis, settings.stream_name, deadline, put_policy(settings), settings.put_call_s)
    invocation = Invocation(settings, av, store, sender, finishers, deadline, invocation_id, month, now, plan)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(settings.fetch_concurrency, len(symbols))),
                                thread_name_prefix="fetch") as pool:
            results = list(pool.map(lambda symbol: _isolated(invocation, symbol), symbols))
    finally:
        sender.close()  # every put is over (accepted, given up, or stopped at the deadline) ...
        finishers.shutdown(wait=True)  # ... and then every cursor is committed or released
        av.close()
    _log_time_short(results, deadline)
    _log_entitlement_refused(results, settings)
    summary = summarize(invocation_id, "backfill" if month else "live", results,
                        int((time.monotonic() - started) * 1000), sender.stats.calls)
    summary.group, summary.calls_per_minute = str(group), budget.calls_per_minute
    if decision is not None:
        ages = data_ages(results, now, decision.session, settings.interval_s)
        summary.max_data_age_s = max(ages.values()) if ages else None
        metrics.write(metrics.invocation_documents(now, invocation_id, ages, summary.entitlement_refused))
    log_event(logger, logging.INFO, "fetch_summary", **summary.to_dict())
    return summary


def data_ages(results: Sequence[SymbolResult], now: datetime, session: market_hours.Session | None,
              interval_s: int) -> dict[str, float]:
    """Each read symbol's data age (see ``metrics``); none on a day without a session."""
    if session is None:
        return {}
    return {result.symbol: metrics.data_age_seconds(
                now, bar_end(result.cursor, interval_s) if result.cursor else None, session.open)
            for result in results if result.cursor_read}


def _market_closed(settings: Settings, decision: market_hours.Decision, now: datetime, invocation_id: str,
                   group: Group, started: float) -> Summary:
    """A run outside market hours: no call, one log line saying why, one skip counted."""
    window = None  # today's fetch window, on a day that has one
    if decision.window_start and decision.window_end:
        window = [decision.window_start.isoformat(), decision.window_end.isoformat()]
    log_event(logger, logging.INFO, "market_closed", invocation_id=invocation_id, group=str(group),
              reason=decision.reason, now_new_york=now.astimezone(market_hours.NEW_YORK).isoformat(),
              fetch_window=window, extended_hours=settings.extended_hours, entitlement=settings.entitlement)
    metrics.write(metrics.invocation_documents(now, invocation_id, {}, market_closed=True))
    return Summary(invocation_id=invocation_id, mode="live", group=str(group), market_closed=decision.reason,
                   duration_ms=int((time.monotonic() - started) * 1000))


def _log_entitlement_refused(results: Sequence[SymbolResult], settings: Settings) -> None:
    """One warning per run, not per symbol: the plan refuses every symbol alike."""
    refused = [result for result in results if result.kind == "entitlement_refused"]
    if refused:
        log_event(logger, logging.WARNING, "entitlement_refused", entitlement=settings.entitlement,
                  symbols=[result.symbol for result in refused], detail=refused[0].detail,
                  hint=FetchError("entitlement_refused").hint)


def _log_time_short(results: Sequence[SymbolResult], deadline: Deadline) -> None:
    short = [result.symbol for result in results if result.kind == "time_short"]
    if short:
        log_event(logger, logging.WARNING, "time_short", symbols=short, remaining_s=round(deadline.remaining_s(), 2),
                  hint="the symbols at the end of the list wait: raise AV_CALLS_PER_MINUTE to the plan's "
                       "budget, or split SYMBOLS into more groups (FetcherGroups)")


def _isolated(invocation: Invocation, symbol: str) -> SymbolResult:
    """``process_symbol`` with every failure turned into a logged, counted result."""
    result = SymbolResult(symbol)
    if invocation.deadline.remaining_s() < invocation.settings.min_symbol_time_s:
        result.status, result.kind = "skipped", "time_short"
        return result
    try:
        process_symbol(invocation, symbol, result)
    except Exception as err:  # noqa: BLE001 - isolation boundary: one symbol never stops the others
        _record_failure(result, err)
    return result


def _record_failure(result: SymbolResult, err: Exception) -> None:
    symbol = result.symbol
    if isinstance(err, FetchError) and err.kind == "time_short":
        result.status, result.kind = "skipped", err.kind  # no call was made: the symbol waits for next run
    elif isinstance(err, FetchError) and err.kind == "entitlement_refused":
        result.status, result.kind, result.detail = "failed", err.kind, err.detail  # logged once per run
    elif isinstance(err, FetchError):
        result.status, result.kind = "failed", err.kind
        log_event(logger, logging.WARNING, "symbol_not_data", symbol=symbol, kind=err.kind,
                  detail=err.detail, hint=err.hint)
    else:
        result.status, result.kind = "failed", type(err).__name__
        log_event(logger, logging.ERROR, "symbol_error", symbol=symbol, kind=type(err).__name__,
                  detail=redact(str(err))[:500],
                  trace=redact("".join(traceback.format_exception(err, chain=False)))[-2000:])


@dataclass(frozen=True)
class Batch:
    """Bars handed to the sender for one symbol, and what their commit needs to know."""

    bars: list[Bar]
    basis: int = 0
    previous_recent: tuple[tuple[str, float], ...] = ()  # the last bars on the stream before these
    rebase: bool = False  # a re-sent series at a new basis: its commit sets the basis


def process_symbol(invocation: Invocation, symbol: str, result: SymbolResult) -> None:
    """Fetch and claim the symbol's new bars and hand them to the sender; ``_finish`` follows the put."""
    av, store, owner = invocation.av, invocation.store, invocation.owner
    if store is None:  # backfill: the month as Alpha Vantage returns it, cursor neither read nor moved
        series = av.fetch(symbol, month=invocation.month, tally=result)
        _count_fetch(result, series, symbol)
        _send(invocation, Batch(list(series.bars)), result)
        return
    state = store.read(symbol)
    result.cursor, result.cursor_read, result.basis = state.cursor, True, state.basis
    if state.leased_by_other(owner, now_ms()):
        _skip_claimed(result, state)  # that invocation is sending: spend no API call
        return
    plan = invocation.plan
    if plan is not None and not plan.due(invocation.now):
        result.status, result.kind = "skipped", "not_call_minute"  # AV_CALLS_PER_DAY: a later minute calls
        return
    # Calls further apart than a compact window reaches ask for the full series at once.
    outputsize = "full" if plan is not None and not plan.reaches else None
    series, full = _fetch_reaching_cursor(invocation.settings, av, symbol, state.cursor, result, outputsize)
    _count_fetch(result, series, symbol)
    factor = rebase_factor(state.recent, series.bars)
    if factor is not None:
        _rebase(invocation, state, series if full else None, factor, result)
        return
    new, state = _claim_new_bars(invocation, series, state, result)
    if new:
        _send_claimed(invocation, Batch(new, state.basis, state.recent), result)


def _send_claimed(invocation: Invocation, batch: Batch, result: SymbolResult) -> None:
    try:
        _send(invocation, batch, result)
    except Exception:
        # Nothing was handed over: free the range now rather than at lease expiry, so the next run sends it.
        assert invocation.store is not None
        _release_quietly(invocation.store, result.symbol, invocation.owner)
        raise


def _rebase(invocation: Invocation, state: CursorState, full: Series | None, factor: float,
            result: SymbolResult) -> None:
    """Alpha Vantage re-based the symbol: send its whole series again, oldest first, at basis + 1."""
    symbol, store = result.symbol, invocation.store
    assert store is not None
    if full is None:
        full = invocation.av.fetch(symbol, outputsize="full", tally=result)
        _count_fetch(result, full, symbol)
    bars = list(full.bars)
    if not bars:
        return
    new_basis = state.basis + 1
    if not store.claim(symbol, state.cursor, bars[-1].ts, invocation.owner, _lease_until(invocation),
                       expected_basis=state.basis, rebase_to=new_basis):
        # Another invocation moved the cursor or the basis: the next run compares against its bars.
        result.status, result.kind = "skipped", "claim_contention"
        log_event(logger, logging.WARNING, "rebase_claim_lost", symbol=symbol, basis=state.basis)
        return
    result.rebase_factor, result.basis = factor, new_basis
    log_event(logger, logging.WARNING, "rebased", symbol=symbol, factor=round(factor, 6),
              previous_basis=state.basis, basis=new_basis, cursor=state.cursor, resent_from=bars[0].ts,
              resent_to=bars[-1].ts, bars=len(bars), recent_sent=[list(entry) for entry in state.recent])
    result.bars_skipped = 0
    _send_claimed(invocation, Batch(bars, new_basis, (), rebase=True), result)


def _send(invocation: Invocation, batch: Batch, result: SymbolResult) -> None:
    """Hand the bars to the sender; once it is done with them, ``_finish`` runs on a finishing thread."""
    entries = [Entry(result.symbol, bar.to_bytes(batch.basis)) for bar in batch.bars]
    put = invocation.sender.submit(result.symbol, entries)
    put.add_done_callback(lambda done: invocation.finishers.submit(_finish, invocation, batch, done.result(), result))


def _finish(invocation: Invocation, batch: Batch, put: PutResult, result: SymbolResult) -> None:
    """Count the put, and move the cursor to the end of the accepted prefix (or release the claim)."""
    bars = batch.bars
    try:
        result.bars_sent += put.accepted_count
        result.put_records_retries += put.retried_entries
        if put.error:
            result.status, result.kind = "failed", "put_failed"
            log_event(logger, logging.WARNING, "put_failed", symbol=result.symbol, accepted=put.accepted_count,
                      total=len(bars), detail=put.error, error_codes=put.last_error_codes)
        store = invocation.store
        if store is None:
            return
        end = bars[-1].ts if put.all_accepted else accepted_prefix_end(bars, put.accepted)
        if end is not None:
            sent = [bar for bar in bars if bar.ts <= end]
            _commit(store, result.symbol, invocation.owner, end, result,
                    recent_after(batch.previous_recent, sent), batch.basis if batch.rebase else None, batch.rebase)
        else:
            store.release(result.symbol, invocation.owner)
    except Exception as err:  # noqa: BLE001 - a finishing thread's failure is this symbol's, like any other
        _record_failure(result, err)


def _fetch_reaching_cursor(settings: Settings, av: AlphaVantageClient, symbol: str, cursor: str | None,
                           result: SymbolResult, outputsize: str | None = None) -> tuple[Series, bool]:
    """The compact window, or the full series when the window starts after the cursor (missed runs);
    and whether it is the full series."""
    series = av.fetch(symbol, outputsize=outputsize, tally=result)
    full = (outputsize or settings.outputsize) == "full"
    if settings.catch_up and not full and window_misses_cursor(series.bars, cursor):
        log_event(logger, logging.INFO, "catch_up", symbol=symbol, cursor=cursor, oldest_returned=series.bars[0].ts)
        try:
            series, full = av.fetch(symbol, outputsize="full", tally=result), True
        except FetchError as err:
            if err.kind != "time_short":
                raise
            # No call left for the full series: send the compact window now, the gap stays logged.
    if window_misses_cursor(series.bars, cursor):
        log_event(logger, logging.WARNING, "possible_gap", symbol=symbol, cursor=cursor,
                  oldest_returned=series.bars[0].ts,
                  hint="bars between the cursor and the window may be missing: backfill with --month YYYY-MM")
    return series, full


def _lease_until(invocation: Invocation) -> int:
    # The lease outlives this invocation (the runtime kills it at the deadline) by a margin.
    return invocation.deadline.wall_clock_ms() + int(invocation.settings.safety_margin_s * 1000) + LEASE_EXTRA_MS


def _claim_new_bars(invocation: Invocation, series: Series, state: CursorState,
                    result: SymbolResult) -> tuple[list[Bar], CursorState]:
    """The bars this invocation now holds the lease for (empty: nothing new, or someone else's),
    and the cursor state they follow."""
    symbol, store, owner = result.symbol, invocation.store, invocation.owner
    assert store is not None
    for _ in range(CLAIM_ROUNDS):
        new, already_sent = select_new(series.bars, state.cursor)
        result.bars_skipped, result.cursor, result.basis = already_sent, state.cursor, state.basis
        if not new:
            return [], state
        if store.claim(symbol, state.cursor, new[-1].ts, owner, _lease_until(invocation),
                       expected_basis=state.basis):
            return new, state
        state = store.read(symbol)  # lost the compare-and-swap: see who won
        if state.leased_by_other(owner, now_ms()):
            _skip_claimed(result, state)
            return [], state
    result.status, result.kind = "skipped", "claim_contention"
    log_event(logger, logging.WARNING, "claim_contention", symbol=symbol, rounds=CLAIM_ROUNDS)
    return [], state


def _release_quietly(store: CursorStore, symbol: str, owner: str) -> None:
    try:
        store.release(symbol, owner)
    except Exception as err:  # noqa: BLE001 - the lease then simply expires; the original error is what matters
        log_event(logger, logging.WARNING, "release_failed", symbol=symbol, detail=redact(str(err))[:300])


def _count_fetch(result: SymbolResult, series: Series, symbol: str) -> None:
    result.bars_fetched = len(series.bars)
    result.bars_invalid = series.invalid
    if series.invalid:
        log_event(logger, logging.WARNING, "invalid_bars", symbol=symbol, count=series.invalid,
                  example=series.invalid_example)


def _skip_claimed(result: SymbolResult, state: CursorState) -> None:
    result.status, result.kind, result.cursor = "skipped", "claimed_elsewhere", state.cursor
    log_event(logger, logging.INFO, "claimed_elsewhere", symbol=result.symbol, cursor=state.cursor,
              lease_owner=state.lease_owner, lease_until_ms=state.lease_until_ms)


def _commit(store: CursorStore, symbol: str, owner: str, new_cursor: str, result: SymbolResult,
            recent: tuple[tuple[str, float], ...] = (), basis: int | None = None, rebase: bool = False) -> None:
    if store.commit(symbol, owner, new_cursor, recent, basis, rebase):
        result.cursor = new_cursor
        return
    # Only possible if our lease expired and another invocation took the range: the bars may be
    # on the stream twice; the cursor is theirs to move.
    result.status, result.kind = "failed", "lease_lost"
    log_event(logger, logging.ERROR, "lease_lost", symbol=symbol, cursor_wanted=new_cursor,
              hint="the invocation outlived its lease: check the function timeout and clock")
