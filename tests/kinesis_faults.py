"""Fault injection for a real boto3 Kinesis client, via botocore's event hooks.

The client still talks to the real local Kinesis; the hooks only change what it sends or reports:

- ``FailEntries`` removes chosen entries from a PutRecords request *before* it is sent (so Kinesis
  never stores them) and splices failed entries (``ErrorCode``) back into the answer at their
  positions: exactly what a partial failure looks like to the caller.
- ``ThrottleCalls`` answers the first N PutRecords calls with ProvisionedThroughputExceededException
  without sending them.

``first_attempts_of`` and ``every_nth_attempt`` are predicates for ``FailEntries``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterable

from botocore.awsrequest import AWSResponse

THROUGHPUT = "ProvisionedThroughputExceededException"


def _ts_of(records: list[dict]) -> list[str]:
    return [json.loads(record["Data"])["ts"] for record in records]


def first_attempts_of(timestamps: Iterable[str], times: int = 1) -> Callable[[int, str], bool]:
    """Fail each of ``timestamps`` the first ``times`` times it is sent."""
    wanted, seen = set(timestamps), Counter()

    def should_fail(_call: int, ts: str) -> bool:
        if ts not in wanted:
            return False
        seen[ts] += 1
        return seen[ts] <= times

    return should_fail


def every_nth_attempt(n: int) -> Callable[[int, str], bool]:
    """Fail every ``n``-th entry sent, counted over all calls: partial failures all along the run."""
    sent = [0]

    def should_fail(_call: int, _ts: str) -> bool:
        sent[0] += 1
        return sent[0] % n == 0

    return should_fail


class FailEntries:
    """Fail the entries for which ``should_fail(call_number, ts)`` is true (call_number from 1).

    A call whose entries all fail is answered without being sent (PutRecords takes no empty request).
    """

    def __init__(self, client: Any, should_fail: Callable[[int, str], bool], code: str = THROUGHPUT):
        self.should_fail = should_fail
        self.code = code
        self.requests: list[list[str]] = []  # ts of the entries of each PutRecords call, as asked
        client.meta.events.register("provide-client-params.kinesis.PutRecords", self._before)
        client.meta.events.register("before-call.kinesis.PutRecords", self._all_failed)
        client.meta.events.register("after-call.kinesis.PutRecords", self._after)

    def _failed_entry(self) -> dict:
        return {"ErrorCode": self.code, "ErrorMessage": "Rate exceeded for shard"}

    def _before(self, params: dict, context: dict, **_: Any) -> None:
        records = params["Records"]
        timestamps = _ts_of(records)
        self.requests.append(timestamps)
        call = len(self.requests)
        dropped = [i for i, ts in enumerate(timestamps) if self.should_fail(call, ts)]
        if len(dropped) == len(records):
            context["all_failed"] = len(records)
        elif dropped:
            context["failed_positions"] = dropped
            params["Records"] = [r for i, r in enumerate(records) if i not in set(dropped)]

    def _all_failed(self, context: dict, **_: Any):
        count = context.get("all_failed")
        if not count:
            return None
        return AWSResponse("http://kinesis.local/", 200, {}, None), {
            "FailedRecordCount": count, "Records": [self._failed_entry() for _ in range(count)],
            "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _after(self, parsed: dict, context: dict, **_: Any) -> None:
        positions = context.get("failed_positions")
        if not positions:
            return
        entries = list(parsed.get("Records", []))
        for position in positions:
            entries.insert(position, self._failed_entry())
        parsed["Records"] = entries
        parsed["FailedRecordCount"] = parsed.get("FailedRecordCount", 0) + len(positions)


class ThrottleCalls:
    """Refuse the first ``count`` PutRecords calls as throttled, without sending them."""

    def __init__(self, client: Any, count: int = 1):
        self.remaining = count
        self.refused = 0
        client.meta.events.register("before-call.kinesis.PutRecords", self._before)

    def _before(self, **_: Any):
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        self.refused += 1
        response = AWSResponse("http://kinesis.local/", 400, {}, None)
        return response, {"Error": {"Code": THROUGHPUT, "Message": "Rate exceeded for stream"},
                          "ResponseMetadata": {"HTTPStatusCode": 400}}
