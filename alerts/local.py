"""``python -m alerts``: the alerts Lambda's handler, locally, fed like its event source mapping.

Polls every shard of the local ``stock_sma_stream`` (once a second, up to 100 records a call),
hands each non-empty batch to the same ``AlertPipeline.handle_event`` in the Lambda's event shape,
and on a batch item failure re-reads from the failed record after a pause, as the mapping does.
Records without signals are skipped by the pipeline, as the mapping's filter skips them on AWS.
Alerts go to the local DynamoDB table (the live dashboard reads it) and, with ``ALERTS_WEBHOOK_URL``,
to an HTTP receiver; nothing needs SNS.
"""

from __future__ import annotations

import argparse
import base64
import logging
import signal
import sys
import threading
import time
import uuid
from typing import Any

from alerts.config import ConfigError, Settings
from alerts.deliver import AlertPipeline
from alerts.handler import store_for
from alerts.logs import configure_logging, log_event
from alerts.message import Alert
from alerts.rules import RuleError
from alerts.store import ensure_table
from alerts.webhook import WebhookSender

log = logging.getLogger("alerts.local")
RETRY_PAUSE_S = 1.0


class LocalPublisher:
    """Logs each alert and hands it to the webhook, if any. Never fails: the table holds the alert."""

    def __init__(self, webhook: WebhookSender | None):
        self.webhook = webhook

    def publish(self, alert: Alert) -> None:
        log_event(log, logging.INFO, "alert", id=alert.id, subject=alert.subject())
        if self.webhook:
            self.webhook.submit(alert.to_dict())


def kinesis_client(settings: Settings) -> Any:
    import boto3

    return boto3.session.Session().client("kinesis", region_name=settings.region,
                                          endpoint_url=settings.kinesis_endpoint_url)


def to_event(records: list[dict], stream_arn: str, shard_id: str) -> dict:
    """GetRecords output in the shape of a Lambda Kinesis event."""
    return {"Records": [{
        "eventSource": "aws:kinesis", "eventSourceARN": stream_arn, "eventID": f"{shard_id}:{r['SequenceNumber']}",
        "kinesis": {"data": base64.b64encode(r["Data"]).decode(), "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"]},
    } for r in records]}


class ShardPoller:
    """Reads one shard from its start (``TRIM_HORIZON``: replays are harmless, alerts are sent once)."""

    def __init__(self, client: Any, stream: str, stream_arn: str, shard_id: str, batch_size: int):
        self.client, self.stream, self.stream_arn, self.shard_id = client, stream, stream_arn, shard_id
        self.batch_size = batch_size
        self.iterator: str | None = self._iterator("TRIM_HORIZON")
        self.last_seq: str | None = None

    def _iterator(self, kind: str, seq: str | None = None) -> str:
        kwargs = {"StartingSequenceNumber": seq} if seq else {}
        return self.client.get_shard_iterator(StreamName=self.stream, ShardId=self.shard_id,
                                              ShardIteratorType=kind, **kwargs)["ShardIterator"]

    def poll(self, pipeline: AlertPipeline, owner: str) -> int:
        """One GetRecords call and its batch; the number of records read."""
        if self.iterator is None:
            return 0
        try:
            page = self.client.get_records(ShardIterator=self.iterator, Limit=self.batch_size)
        except self.client.exceptions.ExpiredIteratorException:
            self.iterator = (self._iterator("AFTER_SEQUENCE_NUMBER", self.last_seq) if self.last_seq
                             else self._iterator("TRIM_HORIZON"))
            return 0
        records = page["Records"]
        if records:
            result = pipeline.handle_event(to_event(records, self.stream_arn, self.shard_id), owner)
            log_event(log, logging.INFO, "batch", shard=self.shard_id, read=len(records), **result.counts)
            if result.failures:
                time.sleep(RETRY_PAUSE_S)
                self.iterator = self._iterator("AT_SEQUENCE_NUMBER", result.failures[0])
                return len(records)
            self.last_seq = records[-1]["SequenceNumber"]
        self.iterator = page.get("NextShardIterator")
        return len(records)


def wait_for_stream(client: Any, stream: str, stop: threading.Event) -> str:
    """The stream's ARN once it exists (the job's side creates it)."""
    announced = False
    while not stop.is_set():
        try:
            return client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
        except client.exceptions.ResourceNotFoundException:
            if not announced:
                log_event(log, logging.INFO, "waiting_for_stream", stream=stream)
                announced = True
            stop.wait(1.0)
    raise SystemExit(0)


def run(settings: Settings, stop: threading.Event, create_table: bool = False) -> None:
    store = store_for(settings)
    if create_table:
        ensure_table(store.client, settings.table)
    webhook = (WebhookSender(settings.webhook_url, settings.webhook_attempts, settings.webhook_timeout_s)
               if settings.webhook_url else None)
    pipeline = AlertPipeline(settings.rules, store, LocalPublisher(webhook))
    client = kinesis_client(settings)
    arn = wait_for_stream(client, settings.stream_name, stop)
    shards = client.list_shards(StreamName=settings.stream_name)["Shards"]
    pollers = [ShardPoller(client, settings.stream_name, arn, s["ShardId"], settings.batch_size) for s in shards]
    log_event(log, logging.INFO, "polling", stream=settings.stream_name, shards=len(pollers), table=settings.table,
              rules=[r.name for r in settings.rules.rules], webhook=bool(webhook))
    owner = f"local-{uuid.uuid4().hex[:8]}"
    try:
        while not stop.is_set():
            if not sum(p.poll(pipeline, owner) for p in pollers):
                stop.wait(settings.poll_interval_s)
    finally:
        if webhook:
            webhook.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--create-table", action="store_true", help="create the alerts table if it is missing")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except (ConfigError, RuleError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(settings, stop, args.create_table)
    except KeyboardInterrupt:
        pass
    return 0
