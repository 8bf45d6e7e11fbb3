"""Once per signal, and the cooldowns, in one DynamoDB table (partition key ``id``, TTL ``expires_at``).

Items:

- ``alert|IBM|2024-03-08T14:31:00Z|sma_cross``: one per signal that passed the rules. ``status`` is
  ``pending`` while one invocation holds it (``lease_owner``, ``lease_until``), then ``sent`` (with
  the alert's fields, for people and the local dashboard) or ``suppressed`` (cooldown).
- ``cooldown|IBM|sma_cross``: ``last_ms``, the bar time of the last alert of that symbol and signal
  (the type; for a candlestick pattern or a candle signal also its name or length, ``Alert.signal``).

Protocol per signal: claim the alert item with a conditional put (it must not exist, or be pending
under an expired lease: its owner died), take the cooldown with a conditional update, publish, then
mark it sent. A failed publish gives both back, so the record's retry can try again. Replays and
duplicates find the item and send nothing. If an invocation dies after publishing and before
marking, its lease expires and a retry sends again: at least once, never lost.

Every item carries ``expires_at`` (epoch seconds) ``ttl_s`` after it was written, longer than the
stream's retention, so no replay can outlive its item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from alerts.message import Alert

PENDING, SENT, SUPPRESSED = "pending", "sent", "suppressed"
MAX_RECENT = 500


def error_code(err: BaseException) -> str:
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _n(value: float | int) -> dict:
    return {"N": format(value, ".15g") if isinstance(value, float) else str(value)}


def _number_or_null(value: float | None) -> dict:
    return {"NULL": True} if value is None else _n(value)


@dataclass(frozen=True)
class AlertStore:
    client: Any
    table: str
    ttl_s: int = 7 * 86400
    lease_ms: int = 120_000

    def _expires(self, now_ms: int) -> dict:
        return _n(now_ms // 1000 + self.ttl_s)

    def _conditional(self, call, **kwargs) -> dict | None:
        """The call's response, or None when its condition did not hold."""
        from botocore.exceptions import ClientError

        try:
            return call(TableName=self.table, **kwargs)
        except ClientError as err:
            if error_code(err) == "ConditionalCheckFailedException":
                return None
            raise

    def claim(self, alert: Alert, owner: str, now_ms: int) -> bool:
        """Take the alert item; False if it was sent, suppressed, or is held by a live owner."""
        return self._conditional(
            self.client.put_item,
            Item={"id": {"S": f"alert|{alert.id}"}, "kind": {"S": "alert"}, "status": {"S": PENDING},
                  "lease_owner": {"S": owner}, "lease_until": _n(now_ms + self.lease_ms),
                  "expires_at": self._expires(now_ms)},
            ConditionExpression="attribute_not_exists(id) OR (#s = :pending AND lease_until < :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":pending": {"S": PENDING}, ":now": _n(now_ms)},
        ) is not None

    def release(self, alert: Alert, owner: str) -> None:
        """Give the claim back (nothing was sent), if we still hold it."""
        self._conditional(
            self.client.delete_item, Key={"id": {"S": f"alert|{alert.id}"}},
            ConditionExpression="lease_owner = :owner", ExpressionAttributeValues={":owner": {"S": owner}})

    def finish(self, alert: Alert, owner: str, status: str, now_ms: int) -> None:
        """Record the outcome with the alert's fields and drop the lease."""
        fields = {
            "#s": {"S": status}, "symbol": {"S": alert.symbol}, "ts": {"S": alert.ts},
            "signal_type": {"S": alert.type}, "direction": {"S": alert.direction},
            "signal_value": _number_or_null(alert.value), "detail": {"S": alert.detail},
            "close_price": _number_or_null(alert.close), "rule_name": {"S": alert.rule},
            "subject": {"S": alert.subject()}, "done_ms": _n(now_ms), "expires_at": self._expires(now_ms),
        }
        names = {"#s": "status"}
        values = {f":{k.lstrip('#')}": v for k, v in fields.items()}
        sets = ", ".join(f"{k} = :{k.lstrip('#')}" for k in fields)
        self._conditional(
            self.client.update_item, Key={"id": {"S": f"alert|{alert.id}"}},
            UpdateExpression=f"SET {sets} REMOVE lease_owner, lease_until",
            ConditionExpression="lease_owner = :owner", ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":owner": {"S": owner}})

    def take_cooldown(self, alert: Alert, cooldown_ms: int, now_ms: int) -> tuple[bool, int | None]:
        """(taken, the previous last_ms): taken if no alert of the symbol and type was sent in the
        ``cooldown_ms`` of bar time before this one."""
        response = self._conditional(
            self.client.update_item, Key={"id": {"S": f"cooldown|{alert.symbol}|{alert.signal}"}},
            UpdateExpression="SET last_ms = :ts, expires_at = :exp",
            ConditionExpression="attribute_not_exists(last_ms) OR last_ms <= :cutoff",
            ExpressionAttributeValues={":ts": _n(alert.ts_ms), ":exp": self._expires(now_ms),
                                       ":cutoff": _n(alert.ts_ms - cooldown_ms)},
            ReturnValues="UPDATED_OLD")
        if response is None:
            return False, None
        previous = response.get("Attributes", {}).get("last_ms")
        return True, int(previous["N"]) if previous else None

    def give_back_cooldown(self, alert: Alert, previous: int | None) -> None:
        """Undo ``take_cooldown`` after a failed publish, unless someone moved it since."""
        key = {"id": {"S": f"cooldown|{alert.symbol}|{alert.signal}"}}
        mine = {":mine": _n(alert.ts_ms)}
        if previous is None:
            self._conditional(self.client.delete_item, Key=key, ConditionExpression="last_ms = :mine",
                              ExpressionAttributeValues=mine)
        else:
            self._conditional(self.client.update_item, Key=key, UpdateExpression="SET last_ms = :prev",
                              ConditionExpression="last_ms = :mine",
                              ExpressionAttributeValues={**mine, ":prev": _n(previous)})

    def recent(self, limit: int = 50, since_ms: int | None = None) -> list[dict]:
        """Sent alerts, newest first (by when they were sent, then bar time). A scan: fine for the
        local dashboard, whose table holds a few days of alerts; not for a hot path."""
        condition = "kind = :alert AND #s = :sent"
        values = {":alert": {"S": "alert"}, ":sent": {"S": SENT}}
        if since_ms is not None:
            condition += " AND done_ms >= :since"
            values[":since"] = _n(since_ms)
        items: list[dict] = []
        kwargs = {"TableName": self.table, "FilterExpression": condition,
                  "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": values}
        for page in self.client.get_paginator("scan").paginate(**kwargs):
            items += [_plain(item) for item in page["Items"]]
        items.sort(key=lambda a: (a["sent_ms"], a["ts"], a["id"]), reverse=True)
        return items[:min(limit, MAX_RECENT)]


def _plain(item: dict) -> dict:
    def number(key: str) -> float | None:
        return float(item[key]["N"]) if "N" in item.get(key, {}) else None

    return {
        "id": item["id"]["S"].removeprefix("alert|"), "symbol": item["symbol"]["S"], "ts": item["ts"]["S"],
        "type": item["signal_type"]["S"], "direction": item["direction"]["S"], "value": number("signal_value"),
        "detail": item["detail"]["S"], "close": number("close_price"), "rule": item["rule_name"]["S"],
        "subject": item["subject"]["S"], "sent_ms": int(item["done_ms"]["N"]),
    }


def ensure_table(client: Any, table: str, timeout_s: float = 30.0) -> None:
    """Create the table (on demand, TTL on ``expires_at``) if it does not exist; wait until ACTIVE.
    Idempotent; for local runs and tests. In AWS the table belongs to the stack."""
    from botocore.exceptions import ClientError

    try:
        client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    except ClientError as err:
        if error_code(err) != "ResourceInUseException":
            raise
    end = time.monotonic() + timeout_s
    while client.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > end:
            raise TimeoutError(f"table {table} not ACTIVE after {timeout_s:.0f}s: check DynamoDB and its log")
        time.sleep(0.1)
