"""The environment variables renamed in this release, ``{old: new}`` per Lambda.

The old names keep working for this release, each with a warning line (``env.with_renamed``), and
are dropped in the next one together with this module. README's *Renamed settings* table lists the
same pairs (a test holds them equal). One map per Lambda because one old name, ``STREAM_NAME``,
meant the fetcher's output stream and the alerts' input stream.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

FETCHER: Mapping[str, str] = MappingProxyType({
    "STREAM_NAME": "BARS_STREAM_NAME",
    "CURSOR_TABLE": "CURSOR_TABLE_NAME",
    "ALPHAVANTAGE_API_KEY": "AV_API_KEY",
    "ALPHAVANTAGE_SECRET_ARN": "AV_SECRET_ARN",
    "ALPHAVANTAGE_BASE_URL": "AV_BASE_URL",
    "INTERVAL": "AV_INTERVAL",
    "EXTENDED_HOURS": "AV_EXTENDED_HOURS",
    "ADJUSTED": "AV_ADJUSTED",
    "OUTPUTSIZE": "AV_OUTPUTSIZE",
    "HTTP_CONNECT_TIMEOUT": "AV_CONNECT_TIMEOUT_SECONDS",
    "HTTP_READ_TIMEOUT": "AV_READ_TIMEOUT_SECONDS",
    "HTTP_RETRIES": "AV_RETRIES",
    "FETCH_CONCURRENCY": "FETCHER_CONCURRENCY",
    "PUT_ATTEMPTS": "FETCHER_PUT_ATTEMPTS",
    "LOCAL_BUDGET_SECONDS": "FETCHER_LOCAL_BUDGET_SECONDS",
    "BACKFILL_BUDGET_SECONDS": "FETCHER_BACKFILL_BUDGET_SECONDS",
    "CATCH_UP": "FETCHER_CATCH_UP",
})

ALERTS: Mapping[str, str] = MappingProxyType({
    "STREAM_NAME": "ENRICHED_STREAM_NAME",
    "ALERTS_TABLE": "ALERTS_TABLE_NAME",
    "ALERT_TOPIC_ARN": "ALERTS_TOPIC_ARN",
    "ALERT_RULES": "ALERTS_RULES",
    "ALERT_LEASE_SECONDS": "ALERTS_LEASE_SECONDS",
    "ALERT_PUBLISH_ATTEMPTS": "ALERTS_PUBLISH_ATTEMPTS",
    "ALERT_WEBHOOK_URL": "ALERTS_WEBHOOK_URL",
    "ALERT_WEBHOOK_ATTEMPTS": "ALERTS_WEBHOOK_ATTEMPTS",
    "ALERT_WEBHOOK_TIMEOUT": "ALERTS_WEBHOOK_TIMEOUT_SECONDS",
    "POLL_INTERVAL": "ALERTS_POLL_INTERVAL_SECONDS",
})
