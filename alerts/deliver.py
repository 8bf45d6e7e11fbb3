"""The batch loop shared by the Lambda and the local runner: Kinesis records in, alerts out.

Per record, in stream order: parse it (a malformed record is logged with its reason and skipped),
match each signal against the rules, and send each match at most once (``store``). A delivery that
fails after its retries stops the batch at that record and reports it as the first batch item
failure: the event source mapping then retries from there, and what was already sent is not sent
again. The event has the Lambda's Kinesis shape; ``local`` builds the same from GetRecords.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from alerts.logs import log_event
from alerts.message import Alert
from alerts.publish import DeliveryError, Publisher
from alerts.records import Malformed, SignalRecord, parse_record
from alerts.rules import Rule, RuleSet
from alerts.store import SENT, SUPPRESSED, AlertStore

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class BatchResult:
    failures: list[str] = field(default_factory=list)  # sequence numbers, first failed record first
    counts: Counter = field(default_factory=Counter)

    def response(self) -> dict:
        """The Lambda's answer with ReportBatchItemFailures on."""
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failures]}


@dataclass
class AlertPipeline:
    rules: RuleSet
    store: AlertStore
    publisher: Publisher
    clock: Callable[[], int] = now_ms

    def handle_event(self, event: dict, owner: str) -> BatchResult:
        result = BatchResult()
        for record in event.get("Records", []):
            kinesis = record["kinesis"]
            try:
                self.handle_record(base64.b64decode(kinesis["data"]), owner, result.counts,
                                   record.get("eventID", kinesis["sequenceNumber"]))
            except DeliveryError as err:
                log_event(log, logging.ERROR, "delivery_failed", record_id=record.get("eventID"), error=str(err))
                result.failures.append(kinesis["sequenceNumber"])
                result.counts["failed_records"] += 1
                break  # the retry starts at this record; the rest would be sent out of order
            result.counts["records"] += 1
        return result

    def handle_record(self, data: bytes, owner: str, counts: Counter, record_id: str = "") -> None:
        try:
            parsed = parse_record(data)
        except Malformed as err:
            counts["malformed"] += 1
            log_event(log, logging.WARNING, "malformed_record", record_id=record_id, reason=err.reason,
                      detail=err.detail, data=data[:200].decode("utf-8", "replace"))
            return
        for signal in parsed.signals:
            rule = self.rules.match(parsed.symbol, signal.type, signal.direction, signal.value, signal.detail,
                                    signal.timeframe)
            if rule is None:
                counts["not_matched"] += 1
                continue
            counts[self.send_once(_alert(parsed, signal, rule), rule, owner)] += 1

    def send_once(self, alert: Alert, rule: Rule, owner: str) -> str:
        """One alert per signal id: "sent", "duplicate" or "suppressed" (cooldown)."""
        now = self.clock()
        if not self.store.claim(alert, owner, now):
            return "duplicate"
        taken, previous = (True, None)
        if rule.cooldown_ms:
            taken, previous = self.store.take_cooldown(alert, rule.cooldown_ms, now)
            if not taken:
                self.store.finish(alert, owner, SUPPRESSED, now)
                log_event(log, logging.INFO, "alert_suppressed", id=alert.id, rule=rule.name,
                          reason=f"cooldown of {rule.cooldown_ms // 60_000} min")
                return "suppressed"
        try:
            self.publisher.publish(alert)
        except DeliveryError:
            if rule.cooldown_ms:
                self.store.give_back_cooldown(alert, previous)
            self.store.release(alert, owner)
            raise
        self.store.finish(alert, owner, SENT, self.clock())
        return "sent"


def _alert(record: SignalRecord, signal, rule: Rule) -> Alert:
    return Alert(record.symbol, record.ts, record.ts_ms, signal.type, signal.direction, signal.value,
                 signal.detail, record.close, rule.name, signal.timeframe)
