"""Kinesis puts in per-symbol order: a symbol's next bar goes out only after its previous one was accepted.

PutRecords keeps no order under failure: a 200 answer may mark single entries failed while later
ones of the same call are stored. If a symbol had two bars in that call and the older one failed,
its retry would land after the newer one, and the job would dead-letter it as ``late``. So every
PutRecords call carries at most one bar per symbol (partition key): the oldest one not yet accepted.
A symbol's next bar waits for the answer about the previous one, and calls batch across symbols
(up to 500 records and 5 MiB), so a run over many symbols makes about as many calls as its longest
symbol has new bars (one a minute in steady state).

One thread sends. Fetching threads hand a symbol's bars (oldest first) to ``submit`` and wait on
the returned future; whatever is submitted while a call is in flight goes into the next call.

A failed bar stays at the head of its symbol and is retried after a full-jitter exponential backoff
of its own, at most ``RetryPolicy.attempts`` times in a row; then that symbol stops for this run.
A whole call refused as throttled counts as a failure of each of its bars. A non-retryable error
(stream missing, access denied) stops the symbols of that call. A call starts only if it can end
(``call_s``, the client's connect and read timeouts) before the deadline minus the policy's margin;
past that, every unfinished symbol stops. Either way its future holds which bars were
accepted: always a prefix of them, so the cursor can move to the prefix's end.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .aws import error_code
from .deadline import Deadline
from .kinesis import (MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES, RETRYABLE_CALL_ERRORS, Entry,
                      PutResult, RetryPolicy, call_error_message)
from .logs import log_event, redact

logger = logging.getLogger("fetcher_lambda.sender")


@dataclass(eq=False)
class _Symbol:
    """One submission: its bars, how far they are accepted, and when its head may be sent again."""

    key: str
    entries: Sequence[Entry]
    future: Future
    result: PutResult
    position: int = 0
    failures: int = 0  # failed attempts of the current head in a row
    not_before: float = 0.0

    @property
    def head(self) -> Entry:
        return self.entries[self.position]


@dataclass
class SenderStats:
    calls: int = 0
    throttled_calls: int = 0
    failed_entries: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)


class OrderedSender:
    """Puts submitted bars to ``stream_name`` in per-key order until closed or the deadline is near."""

    def __init__(self, client: Any, stream_name: str, deadline: Deadline, policy: RetryPolicy = RetryPolicy(),
                 call_s: float = 0.0, rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.stream_name = stream_name
        self.deadline = deadline
        self.policy = policy
        self.stop_at = deadline.expires_at - policy.margin_s - call_s  # the last moment to start a call
        self.stats = SenderStats()
        self._rng = rng
        self._clock = clock
        self._waiting: dict[str, _Symbol] = {}  # insertion order = turn order
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="kinesis-sender", daemon=True)
        self._thread.start()

    def __enter__(self) -> "OrderedSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, key: str, entries: Sequence[Entry]) -> "Future[PutResult]":
        """Queue ``entries`` (oldest first) under partition key ``key``; one submission per key at a time."""
        for index, entry in enumerate(entries):
            if entry.size > MAX_RECORD_BYTES:
                raise ValueError(f"record {index} of {key} is {entry.size} bytes; Kinesis accepts at most "
                                 f"{MAX_RECORD_BYTES}")
        future: Future[PutResult] = Future()
        symbol = _Symbol(key, entries, future, PutResult(accepted=[False] * len(entries)))
        if not entries:
            future.set_result(symbol.result)
            return future
        with self._cond:
            if self._closing:
                raise RuntimeError("the sender is closed")
            if key in self._waiting:
                raise ValueError(f"{key} already has bars waiting: submit them together")
            self._waiting[key] = symbol
            self._cond.notify()
        return future

    def close(self) -> None:
        """Send what is waiting (within the deadline), then stop the sending thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    # ---- the sending thread ----

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._send(batch)
        except Exception as err:  # noqa: BLE001 - never leave a fetching thread waiting on a future
            detail = redact(f"{type(err).__name__}: {err}")[:300]
            log_event(logger, logging.ERROR, "sender_error", detail=detail)
            with self._cond:
                self._closing = True
                self._stop_all(f"the sender stopped: {detail}")

    def _next_batch(self) -> list[_Symbol] | None:
        """The heads due now, within the batch limits; None once closed and nothing waits."""
        with self._cond:
            while True:
                stop_at = self.stop_at
                now = self._clock()
                if now >= stop_at and self._waiting:
                    self._stop_all("deadline reached before every bar was accepted; the rest is sent next run")
                if not self._waiting:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                batch, size = [], 0
                for symbol in self._waiting.values():
                    if symbol.not_before > now:
                        continue
                    if len(batch) == MAX_BATCH_RECORDS or size + symbol.head.size > MAX_BATCH_BYTES:
                        break
                    batch.append(symbol)
                    size += symbol.head.size
                if batch:
                    return batch
                due = min(symbol.not_before for symbol in self._waiting.values())
                self._cond.wait(timeout=max(0.0, min(due, stop_at) - now))

    def _send(self, batch: list[_Symbol]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.stats.calls += 1
        for symbol in batch:
            symbol.result.calls += 1
        try:
            response = self.client.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": s.head.data, "PartitionKey": s.key} for s in batch],
            )
        except ClientError as err:
            code = error_code(err)
            with self._cond:
                if code not in RETRYABLE_CALL_ERRORS:
                    for symbol in batch:
                        self._stop(symbol, call_error_message(code, self.stream_name))
                    return
                self.stats.throttled_calls += 1
                for symbol in batch:
                    symbol.result.throttled_calls += 1
                    self._failed(symbol, code)
            return
        except BotoCoreError as err:  # connection trouble: the bars may be accepted on a retry
            with self._cond:
                for symbol in batch:
                    self._failed(symbol, type(err).__name__)
            return
        answers = response.get("Records", [])
        if len(answers) != len(batch):
            # An answer that does not line up cannot tell which bars were stored: none counts as stored.
            answers = [{"ErrorCode": "MismatchedResponse"}] * len(batch)
        with self._cond:
            for symbol, answer in zip(batch, answers):
                if answer.get("ErrorCode"):
                    self._failed(symbol, answer["ErrorCode"])
                else:
                    self._accepted(symbol)

    # ---- bookkeeping, under the lock ----

    def _accepted(self, symbol: _Symbol) -> None:
        symbol.result.accepted[symbol.position] = True
        symbol.position += 1
        symbol.failures, symbol.not_before = 0, 0.0
        del self._waiting[symbol.key]
        if symbol.position == len(symbol.entries):
            symbol.future.set_result(symbol.result)
        else:
            self._waiting[symbol.key] = symbol  # to the back of the turn order: no symbol starves

    def _failed(self, symbol: _Symbol, code: str) -> None:
        self.stats.failed_entries += 1
        self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
        symbol.result.last_error_codes = {code: 1}
        symbol.failures += 1
        if symbol.failures >= self.policy.attempts:
            self._stop(symbol, f"a bar still failing after {self.policy.attempts} attempts ({code}); "
                               "it and the later bars are sent again next run")
            return
        symbol.not_before = self._clock() + self.policy.delay(symbol.failures, self._rng)
        if symbol.not_before >= self.stop_at:
            self._stop(symbol, "deadline reached while retrying a failed bar; the rest is sent next run")
            return
        symbol.result.retried_entries += 1

    def _stop(self, symbol: _Symbol, error: str) -> None:
        symbol.result.error = error
        self._waiting.pop(symbol.key, None)
        symbol.future.set_result(symbol.result)

    def _stop_all(self, error: str) -> None:
        for symbol in list(self._waiting.values()):
            self._stop(symbol, error)
