"""The live dashboard's alerts feed, in headless Chromium, against the real local OpenSearch and a
real alerts table on the local DynamoDB, written by the alerts' own store as ``python -m alerts``
writes it."""

from __future__ import annotations

import calendar
import time
import pytest
import requests

from alerts.message import Alert
from alerts.store import SENT, AlertStore
from tests.local_aws import DYNAMODB_URL
from tests.test_dashboard_live import (  # noqa: F401 (fixtures)
    CANDLES, backend_factory, browser_context, opensearch, page, series, state, wait_state,
)


@pytest.fixture
def alert_store(local_dynamodb, alerts_table) -> AlertStore:
    return AlertStore(local_dynamodb, alerts_table)


def send(store: AlertStore, symbol: str, ts: str, kind: str = "sma_cross", direction: str = "up",
         value: float = 0.02, close: float = 171.4) -> Alert:
    """Record an alert as sent, through the same calls the pipeline makes."""
    ts_ms = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) * 1000
    alert = Alert(symbol, ts, ts_ms, kind, direction, value, "golden", close, "golden and death crosses")
    now = int(time.time() * 1000)
    assert store.claim(alert, "test", now)
    store.finish(alert, "test", SENT, now)
    return alert


# F811: the fixtures are imported from test_dashboard_live, and a test names them as its parameters.
def test_alerts_appear_in_the_feed_and_new_ones_are_highlighted(page, series, backend_factory, alert_store):  # noqa: F811
    symbol, _ = series
    first = [send(alert_store, symbol, f"2024-03-08T15:{m:02d}:00Z") for m in (31, 45)]
    backend = backend_factory(opensearch_url(), "--alerts-table", alert_store.table, "--dynamodb", DYNAMODB_URL)
    page.goto(f"{backend.url}?symbol={symbol}")
    wait_state(page, "(s) => s.status === 'ok' && s.alerts === 2")
    items = page.locator("#alert-feed li")
    assert items.first.inner_text().startswith(first[1].subject())  # newest first
    assert page.locator("#alert-feed li.new").count() == 0, "alerts present at load are not new"
    assert page.locator("#alerts-new").is_hidden()

    later = send(alert_store, symbol, "2024-03-08T16:02:00Z", "volume_spike", value=9.1)
    wait_state(page, "(s) => s.alerts === 3 && s.newAlerts === 1")
    assert page.locator("#alert-feed li.new").inner_text().startswith(later.subject())
    assert page.locator("#alerts-new").inner_text() == "1 new"
    assert page.problems == []


def test_the_alerts_api_says_when_alerts_are_off_and_validates_input(series, backend_factory, alert_store):  # noqa: F811
    symbol, _ = series
    off = backend_factory().url
    assert requests.get(off + "api/alerts", timeout=10).json() == {"status": "off", "alerts": []}

    url = backend_factory(opensearch_url(), "--alerts-table", alert_store.table, "--dynamodb", DYNAMODB_URL).url
    alert = send(alert_store, symbol, "2024-03-08T15:31:00Z")
    body = requests.get(url + "api/alerts?limit=5", timeout=10).json()
    assert body["status"] == "ok" and [a["id"] for a in body["alerts"]] == [alert.id]
    assert body["alerts"][0]["subject"] == alert.subject()
    later = requests.get(url + f"api/alerts?since={body['alerts'][0]['sent_ms'] + 1}", timeout=10).json()
    assert later["alerts"] == []
    assert requests.get(url + "api/alerts?since=soon", timeout=10).status_code == 400
    missing = backend_factory(opensearch_url(), "--alerts-table", "no-such-table", "--dynamodb", DYNAMODB_URL).url
    assert requests.get(missing + "api/alerts", timeout=10).json() == {"status": "ok", "alerts": []}


def opensearch_url() -> str:
    from tests.test_dashboard_live import OPENSEARCH

    return OPENSEARCH
