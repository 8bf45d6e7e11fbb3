"""Settings of the alerts, read once from the environment; errors name the variable (or the rule).

The Lambda and the local runner read the same variables; the local runner adds the stream to poll
and the optional webhook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from alerts.rules import RuleSet, load_rules


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and a valid example."""


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
        env = os.environ if environ is None else environ
        d = cls(rules=RuleSet(()))
        webhook = _optional(env, "ALERT_WEBHOOK_URL")
        if webhook and not webhook.startswith(("http://", "https://")):
            raise ConfigError("ALERT_WEBHOOK_URL must start with http:// or https://, "
                              "e.g. http://127.0.0.1:9000/alerts")
        level = (_optional(env, "LOG_LEVEL") or d.log_level).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR; got {level!r}")
        return cls(
            rules=load_rules(env.get("ALERT_RULES")),
            table=_optional(env, "ALERTS_TABLE") or d.table,
            topic_arn=_optional(env, "ALERT_TOPIC_ARN"),
            region=_optional(env, "AWS_REGION") or _optional(env, "AWS_DEFAULT_REGION") or d.region,
            dynamodb_endpoint_url=_optional(env, "DYNAMODB_ENDPOINT_URL"),
            kinesis_endpoint_url=_optional(env, "KINESIS_ENDPOINT_URL"),
            stream_name=_optional(env, "STREAM_NAME") or d.stream_name,
            ttl_days=_number(env, "ALERTS_TTL_DAYS", d.ttl_days, minimum=1),
            lease_s=_number(env, "ALERT_LEASE_SECONDS", d.lease_s, minimum=1),
            publish_attempts=int(_number(env, "ALERT_PUBLISH_ATTEMPTS", d.publish_attempts, minimum=1)),
            webhook_url=webhook,
            webhook_attempts=int(_number(env, "ALERT_WEBHOOK_ATTEMPTS", d.webhook_attempts, minimum=1)),
            webhook_timeout_s=_number(env, "ALERT_WEBHOOK_TIMEOUT", d.webhook_timeout_s, minimum=0.1),
            poll_interval_s=_number(env, "POLL_INTERVAL", d.poll_interval_s, minimum=0.05),
            log_level=level,
        )


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    value = _optional(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, e.g. {default}; got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}; got {value!r}")
    return number
