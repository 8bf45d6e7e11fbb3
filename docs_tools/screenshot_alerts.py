"""Regenerate ``docs/dashboard-alerts.png``: the live dashboard with alerts from the sample data.

    make screenshot-alerts        (the local services must be running: make services)

The shipped sample data goes through the job's pure core (``SymbolTracker``) into enriched records;
the last trading day of IBM is indexed into the real local OpenSearch, and every symbol's records
go through the alerts pipeline with the default rules into a table of its own on the local
DynamoDB. The page is opened in headless Chromium, the last two alerts arrive while it is open
(so they show as new), and the screenshot is taken. Everything written is removed afterwards.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import boto3

from alerts.deliver import AlertPipeline
from alerts.local import LocalPublisher
from alerts.rules import load_rules
from alerts.store import AlertStore, ensure_table
from dashboards.live.alerts_reader import AlertsReader
from dashboards.live.server import make_server
from fetcher_lambda.replay import load_bars
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import validate_record
from flink_job.core.index_lifecycle import BY_NAME
from flink_job.core.symbol_state import SymbolTracker
from stack import resources, search

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "dashboard-alerts.png"
OPENSEARCH = "http://127.0.0.1:9200"
DYNAMODB = "http://127.0.0.1:8000"
CHROMIUM = "/usr/bin/chromium"
SYMBOL, DAY = "IBM", "2024-03-12"
HELD_BACK = 2


def enriched_records() -> list[dict]:
    trackers: dict[str, SymbolTracker] = {}
    out = []
    for bar in load_bars():
        parsed = validate_record(bar.to_record(), now_ms=2**62)
        _, enriched = trackers.setdefault(parsed.symbol, SymbolTracker(AnalyticsSettings())).offer(parsed)
        if enriched is not None:
            out.append(enriched.to_record())
    return out


def bulk(lines: list[dict]) -> None:
    answer = search.client(OPENSEARCH, timeout_s=60).bulk(body=lines, refresh=True)
    if answer["errors"]:
        raise RuntimeError(f"bulk indexing failed: {json.dumps(answer)[:500]}")


def index_day(records: list[dict]) -> list[dict]:
    """The symbol's bars of the day and their signals into the real indices; the delete actions."""
    mapped = set(resources.index_templates()["stock-indicators"]["template"]["mappings"]["properties"])
    lines, undo = [], []
    for r in records:
        if r["symbol"] != SYMBOL or not r["ts"].startswith(DAY):
            continue
        doc_id = f"{r['symbol']}|{r['ts']}"
        # The indices the job would write: the alias over several takes no writes.
        indicators, signals = (BY_NAME[f].index_for(r["ts"]) for f in ("stock-indicators", "stock-signals"))
        lines += [{"index": {"_index": indicators, "_id": doc_id}}, {k: v for k, v in r.items() if k in mapped}]
        undo.append({"delete": {"_index": indicators, "_id": doc_id}})
        for s in r["signals"]:
            lines += [{"index": {"_index": signals, "_id": f"{doc_id}|{s['type']}"}},
                      {"symbol": r["symbol"], "ts": r["ts"], **s}]
            undo.append({"delete": {"_index": signals, "_id": f"{doc_id}|{s['type']}"}})
    bulk(lines)
    return undo


def main() -> int:
    from playwright.sync_api import sync_playwright

    resources.ensure_index_templates(OPENSEARCH)
    records = enriched_records()
    dynamodb = boto3.client("dynamodb", endpoint_url=DYNAMODB, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")
    table = f"docs-alerts-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    undo = index_day(records)
    server = make_server("127.0.0.1", 0, OPENSEARCH, alerts=AlertsReader(table, DYNAMODB))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pipeline = AlertPipeline(load_rules(None), AlertStore(dynamodb, table), LocalPublisher(None))
        counts: Counter = Counter()
        data = [json.dumps(r).encode() for r in records if r["ts"] < f"{DAY}T20:00:00Z"]
        matched = [i for i, d in enumerate(data) if json.loads(d)["signals"]]
        cut = matched[-HELD_BACK * 3]  # a few signal-carrying records arrive while the page is open
        for d in data[:cut]:
            pipeline.handle_record(d, "docs", counts)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/?symbol={SYMBOL}")
            page.wait_for_function("() => window.dashboardState && window.dashboardState.status === 'ok' "
                                   "&& window.dashboardState.alerts > 0", timeout=20_000)
            for d in data[cut:]:
                pipeline.handle_record(d, "docs", counts)
            page.wait_for_function("() => window.dashboardState.newAlerts > 0", timeout=20_000)
            page.wait_for_timeout(500)
            OUTPUT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT))
            browser.close()
        print(f"{OUTPUT}: {dict(counts)}")
    finally:
        server.shutdown()
        bulk(undo)
        dynamodb.delete_table(TableName=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
