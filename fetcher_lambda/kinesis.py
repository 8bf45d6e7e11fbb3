"""Kinesis PutRecords: batching within the API limits, and retry of only the entries that failed.

PutRecords is not all-or-nothing: a 200 answer may mark single entries failed (throughput exceeded,
internal failure) while the others are stored. Re-sending the whole batch would duplicate the stored
ones, so only the failed entries are sent again, with exponential backoff and full jitter, bounded by
attempts and by the invocation deadline. A whole call refused as throttled counts as all its entries
failed.

Order: within a batch the records go in the order given (oldest bar first). An entry that is retried
lands after the entries of its batch that were accepted at the first try, so after a partial failure
a consumer may see that bar late. ``put_entries`` serves the replay of the sample data (a demo feed
sent many bars per symbol a second); the fetcher puts through ``sender.OrderedSender``, which keeps
each symbol's order by sending one bar per symbol per call.

If a batch still has failed entries when attempts or time run out, the later batches are not sent:
``PutResult.accepted`` then tells the caller exactly which entries are stored, so the cursor can move
past the accepted prefix only.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .aws import error_code, wait_until
from .deadline import Deadline

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
# Errors of a whole PutRecords call after which the same entries may succeed later.
RETRYABLE_CALL_ERRORS = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException",
    "InternalFailure", "InternalFailureException", "ServiceUnavailable", "ServiceUnavailableException",
    "KMSThrottlingException",
})


@dataclass(frozen=True)
class Entry:
    partition_key: str
    data: bytes

    @property
    def size(self) -> int:
        """What counts against the per-request limit: data plus partition key."""
        return len(self.data) + len(self.partition_key.encode())


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 0.1
    cap_s: float = 2.0
    margin_s: float = 1.0  # never start a backoff sleep that ends closer than this to the deadline

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        return rng() * min(self.cap_s, self.base_s * (2 ** (attempt - 1)))


@dataclass
class PutResult:
    accepted: list[bool]
    calls: int = 0
    retried_entries: int = 0
    throttled_calls: int = 0
    error: str | None = None
    last_error_codes: dict[str, int] = field(default_factory=dict)

    @property
    def all_accepted(self) -> bool:
        return all(self.accepted)

    @property
    def accepted_count(self) -> int:
        return sum(self.accepted)


def batches(entries: Sequence[Entry], max_records: int = MAX_BATCH_RECORDS,
            max_bytes: int = MAX_BATCH_BYTES) -> list[list[int]]:
    """Indices of ``entries`` split, in order, into batches within the record and byte limits."""
    result: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, entry in enumerate(entries):
        if entry.size > MAX_RECORD_BYTES:
            raise ValueError(f"record {index} is {entry.size} bytes; Kinesis accepts at most {MAX_RECORD_BYTES}")
        if current and (len(current) >= max_records or size + entry.size > max_bytes):
            result.append(current)
            current, size = [], 0
        current.append(index)
        size += entry.size
    if current:
        result.append(current)
    return result


def put_entries(client: Any, stream_name: str, entries: Sequence[Entry], deadline: Deadline,
                policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
                rng: Callable[[], float] = random.random) -> PutResult:
    """Put ``entries`` to the stream in order; returns which were accepted and what it took."""
    from botocore.exceptions import BotoCoreError, ClientError

    result = PutResult(accepted=[False] * len(entries))
    for batch in batches(entries):
        pending = list(batch)
        for attempt in range(1, policy.attempts + 1):
            if attempt > 1:
                delay = policy.delay(attempt - 1, rng)
                if deadline.remaining_s() < delay + policy.margin_s:
                    result.error = "deadline reached while retrying failed entries"
                    break
                sleep(delay)
                result.retried_entries += len(pending)
            result.calls += 1
            try:
                response = client.put_records(
                    StreamName=stream_name,
                    Records=[{"Data": entries[i].data, "PartitionKey": entries[i].partition_key} for i in pending],
                )
            except ClientError as err:
                code = error_code(err)
                if code not in RETRYABLE_CALL_ERRORS:
                    result.error = call_error_message(code, stream_name)
                    return result
                result.throttled_calls += 1
                result.last_error_codes = {code: len(pending)}
                continue
            except BotoCoreError as err:  # connection trouble: the entries may succeed on a retry
                result.last_error_codes = {type(err).__name__: len(pending)}
                continue
            still_failed, codes = _failed_entries(pending, response.get("Records", []))
            for index in set(pending) - set(still_failed):
                result.accepted[index] = True
            pending = still_failed
            result.last_error_codes = codes
            if not pending:
                break
        if pending:
            result.error = result.error or (
                f"{len(pending)} record(s) still failing after {policy.attempts} attempts "
                f"({result.last_error_codes}); they are sent again on the next run"
            )
            return result
    return result


def _failed_entries(pending: list[int], records: list[dict]) -> tuple[list[int], dict[str, int]]:
    """The entries a PutRecords answer marks failed (answer entries align with request entries)."""
    if len(records) != len(pending):
        # An answer that does not line up cannot tell which entries were stored: treat none as stored.
        return list(pending), {"MismatchedResponse": len(pending)}
    failed: list[int] = []
    codes: dict[str, int] = {}
    for index, record in zip(pending, records):
        code = record.get("ErrorCode")
        if code:
            failed.append(index)
            codes[code] = codes.get(code, 0) + 1
    return failed, codes


def call_error_message(code: str, stream_name: str) -> str:
    if code == "ResourceNotFoundException":
        return (f"stream {stream_name!r} does not exist: create it, or set BARS_STREAM_NAME "
                "(locally: python -m fetcher_lambda --create-resources ...)")
    if code in ("AccessDeniedException", "UnrecognizedClientException"):
        return f"not allowed to write to {stream_name!r} ({code}): check the role's kinesis:PutRecords permission"
    return f"PutRecords to {stream_name!r} failed with {code}"


def ensure_stream(client: Any, stream_name: str, shards: int = 1, timeout_s: float = 30.0) -> None:
    """Create the stream if it does not exist and wait until it is ACTIVE (local runs and tests)."""
    from botocore.exceptions import ClientError

    try:
        client.create_stream(StreamName=stream_name, ShardCount=shards)
    except ClientError as err:
        if error_code(err) != "ResourceInUseException":
            raise

    def active() -> bool:
        summary = client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    wait_until(active, timeout_s, f"stream {stream_name}")

