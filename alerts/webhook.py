"""Local delivery: each alert POSTed as JSON to ``ALERTS_WEBHOOK_URL``, with retries, off the hot path.

A background thread sends; the poll loop only enqueues, so a slow or failing receiver never holds
up the stream. Connection errors, timeouts and 429/5xx answers are retried with backoff (urllib3's
``Retry``); what still fails is logged (``webhook_failed``) and dropped. The log shows the receiver's
scheme, host and port, never its path or query, which often carry a token.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

from alerts.logs import log_event

log = logging.getLogger(__name__)
QUEUE_LIMIT = 1000


def receiver(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


class WebhookSender:
    def __init__(self, url: str, attempts: int = 4, timeout_s: float = 2.0, backoff_s: float = 0.2):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util import Retry

        self.url = url
        self.timeout_s = timeout_s
        self.session = requests.Session()
        retry = Retry(total=attempts - 1, backoff_factor=backoff_s, backoff_max=5.0,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                      respect_retry_after_header=False, raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.queue: queue.Queue[dict | None] = queue.Queue(QUEUE_LIMIT)
        self.sent = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def submit(self, payload: dict) -> None:
        """Enqueue, never block: a full queue (the receiver far behind) drops with a log line."""
        try:
            self.queue.put_nowait(payload)
        except queue.Full:
            self.failed += 1
            log_event(log, logging.WARNING, "webhook_failed", id=payload.get("id"), receiver=receiver(self.url),
                      reason=f"{QUEUE_LIMIT} alerts already waiting")

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (within ``timeout_s``), then stop the thread."""
        self.queue.put(None)
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while (payload := self.queue.get()) is not None:
            self._send(payload)

    def _send(self, payload: dict[str, Any]) -> None:
        import requests

        try:
            response = self.session.post(self.url, json=payload, timeout=self.timeout_s)
            problem = None if response.ok else f"HTTP {response.status_code}"
        except requests.RequestException as err:
            problem = type(err).__name__
        if problem is None:
            self.sent += 1
            return
        self.failed += 1
        log_event(log, logging.WARNING, "webhook_failed", id=payload.get("id"), receiver=receiver(self.url),
                  reason=f"{problem} after the retries; the alert is dropped for this receiver")
