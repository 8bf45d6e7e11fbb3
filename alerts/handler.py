"""AWS Lambda entry point: ``alerts.handler.lambda_handler``, under a Kinesis event source mapping
on ``stock_sma_stream`` (filter: records carrying signals; ReportBatchItemFailures on).

Per container: the settings (the rules validated: a bad rule fails every invocation with a message
naming it, which the errors alarm reports), the DynamoDB and SNS clients. Per invocation: one batch.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from alerts.config import ConfigError, Settings
from alerts.deliver import AlertPipeline
from alerts.logs import configure_logging, log_event
from alerts.publish import SnsPublisher, sns_client
from alerts.store import AlertStore

log = logging.getLogger(__name__)
_pipeline: AlertPipeline | None = None
_lock = threading.Lock()


def store_for(settings: Settings) -> AlertStore:
    import boto3

    client = boto3.session.Session().client("dynamodb", region_name=settings.region,
                                            endpoint_url=settings.dynamodb_endpoint_url)
    return AlertStore(client, settings.table, ttl_s=int(settings.ttl_days * 86400),
                      lease_ms=int(settings.lease_s * 1000))


def _container_pipeline() -> AlertPipeline:
    global _pipeline
    with _lock:
        if _pipeline is None:
            settings = Settings.from_env()
            configure_logging(settings.log_level)
            if not settings.topic_arn:
                raise ConfigError("ALERTS_TOPIC_ARN is not set: the stack passes the topic's ARN")
            publisher = SnsPublisher(sns_client(settings.region, settings.publish_attempts), settings.topic_arn)
            _pipeline = AlertPipeline(settings.rules, store_for(settings), publisher)
        return _pipeline


def lambda_handler(event: dict, context: Any) -> dict:
    pipeline = _container_pipeline()
    owner = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    result = pipeline.handle_event(event, owner)
    log_event(log, logging.INFO, "batch", received=len(event.get("Records", [])), **result.counts,
              failures=len(result.failures))
    return result.response()
