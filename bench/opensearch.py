"""The OpenSearch calls of the latency benchmark: visibility polling, a temporary index setting,
index statistics and clean-up of the benchmark's own documents.

The indices are shared with everything else that runs on the local stack, so the benchmark only
ever touches documents of its own symbols, and puts back any index setting it changed.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import requests

from flink_job.core.index_lifecycle import BY_NAME
from stack import resources

INDICATORS = "stock-indicators"  # the alias over the family's indices: what readers query
# Every index the job writes per symbol: cleaned up after a run.
SYMBOL_INDICES = ("stock-indicators", "stock-signals", "stock-bars-5m", "stock-bars-15m")


class Poller:
    """Which documents of a set of symbols are searchable now, as cheaply as OpenSearch allows:
    ids only, filtered to the benchmark's symbols and to ``ts`` at or after the oldest unseen bar."""

    def __init__(self, base_url: str, symbols: list[str]):
        self.url = f"{base_url}/{INDICATORS}/_search"
        self.symbols = symbols
        self.session = requests.Session()

    def visible_ids(self, since_ms: int) -> list[str]:
        body = {
            "size": 10_000, "_source": False, "track_total_hits": False,
            "query": {"bool": {"filter": [
                {"terms": {"symbol": self.symbols}},
                {"range": {"ts": {"gte": since_ms, "format": "epoch_millis"}}},
            ]}},
        }
        response = self.session.post(self.url, json=body, timeout=5)
        if response.status_code == 404:  # the index is created by the first bulk request
            return []
        response.raise_for_status()
        return [hit["_id"] for hit in response.json()["hits"]["hits"]]


def index_of(when_ms: int) -> str:
    """The index the benchmark's bars of that time go to (their own time decides, not today's)."""
    return BY_NAME[INDICATORS].index_for(datetime.fromtimestamp(when_ms / 1000, timezone.utc).isoformat())


def ensure_index(base_url: str, when_ms: int) -> str:
    """Create the index of bars of ``when_ms`` from its template if no document has created it yet; its name."""
    resources.ensure_index_templates(base_url)
    index = index_of(when_ms)
    response = requests.put(f"{base_url}/{index}", timeout=30)
    if response.status_code >= 300 and "resource_already_exists" not in response.text:
        raise RuntimeError(f"cannot create {index}: HTTP {response.status_code} {response.text[:300]}")
    return index


@contextmanager
def refresh_interval(base_url: str, value: str, when_ms: int) -> Iterator[None]:
    """Set the ``refresh_interval`` of the index of bars of ``when_ms`` for the duration, then put
    the previous value back.

    The template only applies when the index is created, and the index is shared, so a different
    value is tried on the live index rather than by recreating it."""
    index = ensure_index(base_url, when_ms)
    url = f"{base_url}/{index}/_settings"
    current = requests.get(url, timeout=10).json()[index]["settings"]["index"].get("refresh_interval")
    if value == current:
        yield
        return
    requests.put(url, json={"index": {"refresh_interval": value}}, timeout=10).raise_for_status()
    try:
        yield
    finally:
        _restore(url, current)


def _restore(url: str, value: str | None, attempts: int = 30) -> None:
    """Put the setting back, waiting out a restart of OpenSearch (the setting outlives it)."""
    for _ in range(attempts):
        try:
            requests.put(url, json={"index": {"refresh_interval": value}}, timeout=10).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(2)
    print(f"latency: could NOT restore refresh_interval={value} on {url}; restore it with\n"
          f"  curl -XPUT {url} -H 'Content-Type: application/json' "
          f"-d '{{\"index\": {{\"refresh_interval\": \"{value}\"}}}}'", file=sys.stderr)


def index_counters(base_url: str, when_ms: int) -> dict[str, int]:
    """Refreshes and indexing operations so far of the index of bars of ``when_ms`` (shared: other
    writers count too)."""
    index = index_of(when_ms)
    stats = requests.get(f"{base_url}/{index}/_stats/refresh,indexing", timeout=10).json()
    total = stats["indices"][index]["total"]
    return {"refreshes": total["refresh"]["total"], "indexed": total["indexing"]["index_total"]}


def delete_symbols(base_url: str, symbols: list[str]) -> None:
    """Best effort: leftovers are only documents of symbols nobody else uses."""
    try:
        for index in SYMBOL_INDICES:
            requests.post(f"{base_url}/{index}/_delete_by_query?conflicts=proceed&ignore_unavailable=true",
                          json={"query": {"terms": {"symbol": symbols}}}, timeout=60)
    except requests.RequestException as err:
        print(f"latency: could not delete the benchmark's documents ({type(err).__name__})", file=sys.stderr)
