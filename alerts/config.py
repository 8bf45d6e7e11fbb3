"""Settings of the alerts, read once from the environment; errors name the variable (or the rule).

The Lambda and the local runner read the same variables; the local runner adds the stream to poll
and the optional webhook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from alerts.rules import RuleSet, load_rules
from lambda_kit.env import ConfigError, http_url, log_level, number, optional, with_renamed
from lambda_kit.renamed import ALERTS as RENAMED

__all__ = ["ConfigError", "Settings"]


@dataclass(frozen=True)
class Settings:
    rules: RuleSet
    table: str = "stock_alerts"
    topic_arn: str | None = None
    region: str = "us-east-1"
    dynamodb_endpoint_url: str | None = None
    kinesis_endpoint_url: str | None = None
    stream_name: str = "stock_sma_stream"
    ttl_days: float = 7.0
    lease_s: float = 120.0
    publish_attempts: int = 5
    webhook_url: str | None = None
    webhook_attempts: int = 4
    webhook_timeout_s: float = 2.0
    poll_interval_s: float = 1.0
    batch_size: int = 100
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = with_renamed(os.environ if environ is None else environ, RENAMED)
        d = cls(rules=RuleSet(()))
        return cls(
            rules=load_rules(env.get("ALERTS_RULES")),
            table=optional(env, "ALERTS_TABLE_NAME") or d.table,
            topic_arn=optional(env, "ALERTS_TOPIC_ARN"),
            region=optional(env, "AWS_REGION") or optional(env, "AWS_DEFAULT_REGION") or d.region,
            dynamodb_endpoint_url=optional(env, "DYNAMODB_ENDPOINT_URL"),
            kinesis_endpoint_url=optional(env, "KINESIS_ENDPOINT_URL"),
            stream_name=optional(env, "ENRICHED_STREAM_NAME") or d.stream_name,
            ttl_days=number(env, "ALERTS_TTL_DAYS", d.ttl_days, minimum=1),
            lease_s=number(env, "ALERTS_LEASE_SECONDS", d.lease_s, minimum=1),
            publish_attempts=int(number(env, "ALERTS_PUBLISH_ATTEMPTS", d.publish_attempts, minimum=1)),
            webhook_url=http_url(env, "ALERTS_WEBHOOK_URL", None, "http://127.0.0.1:9000/alerts"),
            webhook_attempts=int(number(env, "ALERTS_WEBHOOK_ATTEMPTS", d.webhook_attempts, minimum=1)),
            webhook_timeout_s=number(env, "ALERTS_WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_s, minimum=0.1),
            poll_interval_s=number(env, "ALERTS_POLL_INTERVAL_SECONDS", d.poll_interval_s, minimum=0.05),
            log_level=log_level(env, d.log_level),
        )
