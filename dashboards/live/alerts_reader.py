"""The alerts feed of the live dashboard: sent alerts from the alerts table (``alerts/store.py``).

Read-only (a scan of the local table, which holds a few days of alerts). No table configured, a
table that does not exist yet, or DynamoDB not answering all mean "no alerts to show", with a
status the page states; they never take the rest of the dashboard down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from alerts.store import AlertStore

log = logging.getLogger(__name__)


@dataclass
class AlertsReader:
    table: str | None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    _store: AlertStore | None = field(default=None, init=False, repr=False)

    def store(self) -> AlertStore:
        if self._store is None:
            import boto3
            from botocore.config import Config

            # A local endpoint (dynalite) takes any credentials; AWS gets the default chain.
            local = {"aws_access_key_id": "local", "aws_secret_access_key": "local"} if self.endpoint_url else {}
            client = boto3.session.Session().client(
                "dynamodb", region_name=self.region, endpoint_url=self.endpoint_url, **local,
                config=Config(connect_timeout=1, read_timeout=5, retries={"mode": "standard", "max_attempts": 1}))
            self._store = AlertStore(client, self.table)
        return self._store

    def recent(self, limit: int, since_ms: int | None) -> dict[str, Any]:
        """``{"status": "ok" | "off" | "unavailable", "alerts": [...]}``, newest first."""
        if not self.table:
            return {"status": "off", "alerts": []}
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return {"status": "ok", "alerts": self.store().recent(limit, since_ms)}
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return {"status": "ok", "alerts": []}
            log.warning("reading alerts from %s failed: %s", self.table, err)
        except BotoCoreError as err:
            log.warning("reading alerts from %s failed: %s", self.table, err)
        return {"status": "unavailable", "alerts": []}
