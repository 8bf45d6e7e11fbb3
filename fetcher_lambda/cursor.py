"""Per-symbol cursor in DynamoDB: which bars are already on the stream, and who is sending the next ones.

Table: partition key ``symbol`` (S). Item attributes:

- ``cursor``: ``ts`` of the newest bar known to be on the stream (absent before the first send);
- ``lease_owner``, ``lease_until`` (epoch ms), ``lease_to``: a claim on the range (cursor, lease_to]
  by one invocation while it sends that range;
- ``basis``: the symbol's price basis number (bar contract v2; absent = 0), and ``recent``: the last
  two bars sent, as ``[{"ts": S, "close": N}, ...]`` oldest first (absent in items written before
  v2, which stay readable: they read as basis 0 with nothing to compare);
- ``lease_basis``: while leased, the basis the holder is sending;
- ``updated_at``: for people reading the table.

Protocol, per symbol and invocation (``owner`` = the Lambda request id):

1. Read the item (strongly consistent). If another owner holds an unexpired lease, skip the symbol:
   that invocation is sending, and no Alpha Vantage call is spent.
2. Fetch; keep the bars with ``ts > cursor`` (all of them on the first run).
3. Claim, conditionally: ``cursor`` is still the value read in 1 (or still absent) AND there is no
   unexpired lease. The cursor comparison is a compare-and-swap: two invocations that read the same
   cursor cannot both win, and one that read a stale cursor fails and re-reads instead of sending a
   range that overlaps what another invocation already sent. The loser re-reads: if the winner holds
   the lease, it skips; if the winner already committed, it filters again against the new cursor.
4. Put the bars to Kinesis (only failed entries are retried).
5. Commit, conditionally on still holding the lease and on ``cursor`` being absent or older than the
   new value (it never moves backwards): ``cursor := newest sent ts`` and the lease is removed.
   If some bars could not be put, the cursor moves only to the end of the accepted prefix of the
   oldest-first list, and the lease is released; the rest is sent by the next run.

Every claim also requires the basis read in 1, so a range is never sent at a basis another invocation
has just replaced. A re-basing claim (``rebase_to``) takes the range from the start of the re-sent
series; its commit sets the new basis and may move the cursor backwards (to the end of an accepted
prefix of the re-sent series).

So concurrent invocations send every bar once: only the lease holder sends a range, and the next
range starts where the committed cursor ends.

The lease lasts as long as the invocation can live (its remaining time plus a margin): the Lambda
runtime kills an invocation at its timeout, so a live holder's lease never expires under it.

If the Lambda dies between claim and commit (timeout, crash, out of memory), the cursor has not moved
and the lease expires at most one function timeout later; the first run after that claims the same
range again and sends it. Bars the dead invocation had already put are then on the stream twice:
at-least-once, never lost. Consumers can drop repeats by (symbol, ts), which identifies a bar.

If runs are missed (throttling, outage, a disabled schedule), nothing is lost while the bars are
still in Alpha Vantage's window: the next run sends everything newer than the cursor. The compact
window is the latest 100 bars, so when it no longer reaches back to the cursor the run refetches with
``outputsize=full`` (about a month of bars); gaps older than that need a ``--month`` backfill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .aws import error_code, wait_until

_LEASE_FREE = "(attribute_not_exists(lease_until) OR lease_until < :now)"


@dataclass(frozen=True)
class CursorState:
    cursor: str | None = None
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    lease_to: str | None = None
    basis: int = 0
    recent: tuple[tuple[str, float], ...] = ()  # (ts, close) of the last bars sent, oldest first

    def leased_by_other(self, owner: str, now_ms: int) -> bool:
        return (self.lease_owner is not None and self.lease_owner != owner
                and self.lease_until_ms is not None and self.lease_until_ms >= now_ms)


def now_ms() -> int:
    return int(time.time() * 1000)


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CursorStore:
    """Conditional reads and writes of the cursor items. All writes return False when their
    condition does not hold (someone else got there first) and raise on any other error."""

    def __init__(self, client: Any, table: str):
        self.client = client
        self.table = table

    def read(self, symbol: str) -> CursorState:
        item = self.client.get_item(TableName=self.table, Key={"symbol": {"S": symbol}},
                                    ConsistentRead=True).get("Item", {})
        return CursorState(
            cursor=item.get("cursor", {}).get("S"),
            lease_owner=item.get("lease_owner", {}).get("S"),
            lease_until_ms=int(item["lease_until"]["N"]) if "lease_until" in item else None,
            lease_to=item.get("lease_to", {}).get("S"),
            basis=int(item["basis"]["N"]) if "basis" in item else 0,
            recent=tuple((entry["M"]["ts"]["S"], float(entry["M"]["close"]["N"]))
                         for entry in item.get("recent", {}).get("L", [])),
        )

    def claim(self, symbol: str, expected: str | None, upto: str, owner: str, lease_until_ms: int,
              expected_basis: int = 0, rebase_to: int | None = None) -> bool:
        """Take the lease on (expected, upto] if the cursor is still ``expected``, the basis still
        ``expected_basis`` and no lease is live. ``rebase_to``: the lease re-sends a whole series at
        that basis, so ``upto`` need not be after the cursor."""
        if rebase_to is None and expected is not None and upto <= expected:
            raise ValueError(f"claim for {symbol} must move forward: {upto} <= {expected}")
        values = {":owner": {"S": owner}, ":until": {"N": str(lease_until_ms)}, ":to": {"S": upto},
                  ":now": {"N": str(now_ms())}, ":t": {"S": _iso_now()}, ":eb": {"N": str(expected_basis)},
                  ":lb": {"N": str(expected_basis if rebase_to is None else rebase_to)}}
        if expected is None:
            cursor_condition = "attribute_not_exists(#c)"
        else:
            cursor_condition = "#c = :expected"
            values[":expected"] = {"S": expected}
        # Items written before bar contract v2 have no basis: that is basis 0.
        basis_condition = "(attribute_not_exists(basis) OR basis = :eb)" if expected_basis == 0 else "basis = :eb"
        return self._update(
            symbol,
            update="SET lease_owner = :owner, lease_until = :until, lease_to = :to, lease_basis = :lb, "
                   "updated_at = :t",
            condition=f"{cursor_condition} AND {basis_condition} AND {_LEASE_FREE}",
            values=values, names={"#c": "cursor"},
        )

    def commit(self, symbol: str, owner: str, new_cursor: str, recent: tuple[tuple[str, float], ...] = (),
               basis: int | None = None, rebase: bool = False) -> bool:
        """Move the cursor to ``new_cursor``, remember the last bars sent (``recent``) and drop the
        lease, if we still hold it and the cursor moves forward (a ``rebase`` may move it back, and
        sets ``basis``)."""
        values = {":owner": {"S": owner}, ":new": {"S": new_cursor}, ":t": {"S": _iso_now()},
                  ":recent": {"L": [{"M": {"ts": {"S": ts}, "close": {"N": repr(float(close))}}}
                                    for ts, close in recent[-2:]]}}
        update = "SET #c = :new, recent = :recent, updated_at = :t"
        if basis is not None:
            update += ", basis = :basis"
            values[":basis"] = {"N": str(basis)}
        condition = "lease_owner = :owner"
        if not rebase:
            condition += " AND (attribute_not_exists(#c) OR #c < :new)"
        return self._update(
            symbol, update=f"{update} REMOVE lease_owner, lease_until, lease_to, lease_basis",
            condition=condition, values=values, names={"#c": "cursor"},
        )

    def release(self, symbol: str, owner: str) -> bool:
        """Drop our lease without moving the cursor (nothing was sent)."""
        return self._update(
            symbol, update="SET updated_at = :t REMOVE lease_owner, lease_until, lease_to, lease_basis",
            condition="lease_owner = :owner",
            values={":owner": {"S": owner}, ":t": {"S": _iso_now()}},
        )

    def _update(self, symbol: str, update: str, condition: str, values: dict,
                names: dict | None = None) -> bool:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {
            "TableName": self.table, "Key": {"symbol": {"S": symbol}}, "UpdateExpression": update,
            "ConditionExpression": condition, "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            self.client.update_item(**kwargs)
        except ClientError as err:
            if error_code(err) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def ensure_table(client: Any, table: str, timeout_s: float = 30.0) -> None:
    """Create the cursor table (on-demand capacity) if it does not exist, and wait until ACTIVE.

    Idempotent; used by local runs and tests. In AWS the table belongs to the deployment.
    """
    from botocore.exceptions import ClientError

    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as err:
        if error_code(err) != "ResourceInUseException":
            raise
    wait_until(lambda: client.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE",
               timeout_s, f"table {table}")
