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

from opensearchpy import NotFoundError, RequestError, TransportError, helpers

from flink_job.core.index_lifecycle import BY_NAME
from stack import resources, search

INDICATORS = "stock-indicators"  # the alias over the family's indices: what readers query
# Every index the job writes per symbol: cleaned up after a run.
SYMBOL_INDICES = ("stock-indicators", "stock-signals", "stock-bars-5m", "stock-bars-15m")


class Poller:
    """Which documents of a set of symbols are searchable now, as cheaply as OpenSearch allows:
    ids only, filtered to the benchmark's symbols and to ``ts`` at or after the oldest unseen bar."""

    def __init__(self, base_url: str, symbols: list[str]):
        self.client = search.client(base_url, timeout_s=5)
        self.symbols = symbols

    def visible_ids(self, since_ms: int) -> list[str]:
        body = {
            "size": 10_000, "_source": False, "track_total_hits": False,
            "query": {"bool": {"filter": [
                {"terms": {"symbol": self.symbols}},
                {"range": {"ts": {"gte": since_ms, "format": "epoch_millis"}}},
            ]}},
        }
        try:
            answer = self.client.search(index=INDICATORS, body=body)
        except NotFoundError:  # the index is created by the first bulk request
            return []
        return [hit["_id"] for hit in answer["hits"]["hits"]]


def index_of(when_ms: int) -> str:
    """The index the benchmark's bars of that time go to (their own time decides, not today's)."""
    return BY_NAME[INDICATORS].index_for(datetime.fromtimestamp(when_ms / 1000, timezone.utc).isoformat())


def ensure_index(base_url: str, when_ms: int) -> str:
    """Create the index of bars of ``when_ms`` from its template if no document has created it yet; its name."""
    resources.ensure_index_templates(base_url)
    index = index_of(when_ms)
    try:
        search.client(base_url, timeout_s=30).indices.create(index=index)
    except RequestError as err:
        if err.error != "resource_already_exists_exception":
            raise RuntimeError(f"cannot create {index}: HTTP {err.status_code} {str(err.info)[:300]}") from None
    return index


@contextmanager
def refresh_interval(base_url: str, value: str, when_ms: int) -> Iterator[None]:
    """Set the ``refresh_interval`` of the index of bars of ``when_ms`` for the duration, then put
    the previous value back.

    The template only applies when the index is created, and the index is shared, so a different
    value is tried on the live index rather than by recreating it."""
    index = ensure_index(base_url, when_ms)
    indices = search.client(base_url).indices
    current = indices.get_settings(index=index)[index]["settings"]["index"].get("refresh_interval")
    if value == current:
        yield
        return
    indices.put_settings(index=index, body={"index": {"refresh_interval": value}})
    try:
        yield
    finally:
        _restore(base_url, index, current)


def _restore(base_url: str, index: str, value: str | None, attempts: int = 30) -> None:
    """Put the setting back, waiting out a restart of OpenSearch (the setting outlives it)."""
    for _ in range(attempts):
        try:
            search.client(base_url).indices.put_settings(index=index, body={"index": {"refresh_interval": value}})
            return
        except TransportError:  # unreachable too (its ConnectionError)
            time.sleep(2)
    url = f"{base_url}/{index}/_settings"
    print(f"latency: could NOT restore refresh_interval={value} on {url}; restore it with\n"
          f"  curl -XPUT {url} -H 'Content-Type: application/json' "
          f"-d '{{\"index\": {{\"refresh_interval\": \"{value}\"}}}}'", file=sys.stderr)


def index_counters(base_url: str, when_ms: int) -> dict[str, int]:
    """Refreshes and indexing operations so far of the index of bars of ``when_ms`` (shared: other
    writers count too)."""
    index = index_of(when_ms)
    stats = search.client(base_url).indices.stats(index=index, metric="refresh,indexing")
    total = stats["indices"][index]["total"]
    return {"refreshes": total["refresh"]["total"], "indexed": total["indexing"]["index_total"]}


def delete_symbols(base_url: str, symbols: list[str]) -> None:
    """Best effort: leftovers are only documents of symbols nobody else uses. Their ids are scrolled
    and deleted in bulk: the local distribution has no ``_delete_by_query``."""
    client = search.client(base_url, timeout_s=60)
    query = {"query": {"terms": {"symbol": symbols}}, "_source": False}
    try:
        hits = helpers.scan(client, index=",".join(SYMBOL_INDICES), query=query, ignore_unavailable=True)
        deletes = ({"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]} for hit in hits)
        _, failed = helpers.bulk(client, deletes, raise_on_error=False, refresh=True)
    except TransportError as err:
        failed = [f"{type(err).__name__} {err.status_code}"]
    if failed:
        print(f"latency: could not delete all the benchmark's documents ({str(failed[0])[:200]})", file=sys.stderr)
