"""Delivery on AWS: one SNS message per alert, with attributes subscribers filter on.

``MessageStructure=json`` gives each protocol its own text: e-mail the body, SMS the subject line,
HTTP(S), SQS and Lambda subscribers the alert as JSON. ``symbol``, ``type`` and ``direction`` are
message attributes, so a subscription's filter policy picks what it receives.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from alerts.logs import log_event
from alerts.message import Alert

log = logging.getLogger(__name__)
JSON_PROTOCOLS = ("http", "https", "sqs", "lambda", "email-json", "firehose")


class DeliveryError(RuntimeError):
    """An alert could not be delivered (after the retries); the record is retried later."""


class Publisher(Protocol):
    def publish(self, alert: Alert) -> None:
        """Deliver, or raise ``DeliveryError``."""


def publish_request(alert: Alert, topic_arn: str) -> dict[str, Any]:
    """The keyword arguments of ``sns.publish`` for one alert."""
    as_json = json.dumps(alert.to_dict(), separators=(",", ":"))
    message = {"default": alert.body(), "email": alert.body(), "sms": alert.subject(),
               **{protocol: as_json for protocol in JSON_PROTOCOLS}}
    return {
        "TopicArn": topic_arn,
        "Subject": alert.subject(),
        "Message": json.dumps(message),
        "MessageStructure": "json",
        "MessageAttributes": {name: {"DataType": "String", "StringValue": value} for name, value in
                              (("symbol", alert.symbol), ("type", alert.type), ("direction", alert.direction))},
    }


class SnsPublisher:
    """Publishes with the client's retries (botocore standard mode: throttling, 5xx, connection
    errors, with backoff); what still fails raises ``DeliveryError``."""

    def __init__(self, client: Any, topic_arn: str):
        self.client = client
        self.topic_arn = topic_arn

    def publish(self, alert: Alert) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.publish(**publish_request(alert, self.topic_arn))
        except (BotoCoreError, ClientError) as err:
            raise DeliveryError(f"SNS publish of {alert.id} failed: {err}") from err
        log_event(log, logging.INFO, "alert_published", id=alert.id, message_id=response.get("MessageId"),
                  subject=alert.subject())


def sns_client(region: str, attempts: int) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": attempts},
                    user_agent_extra="stock-analytics-alerts")
    return boto3.session.Session().client("sns", region_name=region, config=config)
