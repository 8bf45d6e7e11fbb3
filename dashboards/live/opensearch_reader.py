"""Read-only queries against the job's OpenSearch indices, shaped for the live dashboard.

Only searches and the cluster health are ever sent. A missing index means "no data yet" (the job
has not written anything), not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

log = logging.getLogger(__name__)

INDICATORS = "stock-indicators"
SIGNALS = "stock-signals"
# What the chart and the indicator panel draw; the rest of an enriched document stays on the server.
BAR_FIELDS = (
    "symbol", "ts", "open", "high", "low", "close", "volume", "session", "return_1", "volume_z_20",
    "sma_5", "sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14",
    "bb_upper", "bb_middle", "bb_lower", "vwap", "trend", "signals",
)
SIGNAL_FIELDS = ("symbol", "ts", "type", "direction", "value", "detail")
MAX_SYMBOLS = 1000


class OpenSearchUnavailable(RuntimeError):
    """OpenSearch did not answer, or answered with an error the dashboard cannot show as data."""


@dataclass(frozen=True)
class Reader:
    base_url: str
    index_prefix: str = ""
    timeout_s: tuple[float, float] = (1.0, 5.0)  # (connect, read): a dead cluster shows up quickly

    def _search(self, index: str, body: dict) -> dict | None:
        """The search response, or None when the index does not exist yet."""
        url = f"{self.base_url.rstrip('/')}/{self.index_prefix}{index}/_search"
        try:
            response = requests.post(url, json=body, timeout=self.timeout_s)
        except requests.RequestException as err:
            log.warning("OpenSearch request to %s failed: %s", url, err)
            raise OpenSearchUnavailable("OpenSearch is unreachable") from None
        if response.status_code == 404 and "index_not_found" in response.text:
            return None
        if response.status_code >= 300:
            log.warning("OpenSearch answered %s to %s: %s", response.status_code, url, response.text[:500])
            raise OpenSearchUnavailable(f"OpenSearch answered HTTP {response.status_code}")
        return response.json()

    def health(self) -> str:
        """The cluster status (green, yellow or red)."""
        url = f"{self.base_url.rstrip('/')}/_cluster/health"
        try:
            response = requests.get(url, timeout=self.timeout_s)
            response.raise_for_status()
            return response.json()["status"]
        except (requests.RequestException, ValueError, KeyError) as err:
            log.warning("OpenSearch health check at %s failed: %s", url, err)
            raise OpenSearchUnavailable("OpenSearch is unreachable") from None

    def symbols(self) -> list[dict]:
        """Every symbol with enriched bars: how many, and the time of the latest."""
        response = self._search(INDICATORS, {
            "size": 0,
            "aggs": {"symbols": {"terms": {"field": "symbol", "size": MAX_SYMBOLS, "order": {"_key": "asc"}},
                                 "aggs": {"last": {"max": {"field": "ts"}}}}},
        })
        if response is None:
            return []
        return [{"symbol": b["key"], "bars": b["doc_count"], "last_ts": b["last"].get("value_as_string")}
                for b in response["aggregations"]["symbols"]["buckets"]]

    def bars(self, symbol: str, limit: int, after_ms: int | None) -> list[dict]:
        """Enriched bars in time order: the latest ``limit``, or with ``after_ms`` the first ``limit``
        at or after it (inclusive: a revision of the latest bar keeps its time)."""
        query: dict = {"bool": {"filter": [{"term": {"symbol": symbol}}]}}
        if after_ms is not None:
            query["bool"]["filter"].append({"range": {"ts": {"gte": after_ms, "format": "epoch_millis"}}})
        order = "desc" if after_ms is None else "asc"
        response = self._search(INDICATORS, {
            "size": limit, "query": query, "sort": [{"ts": order}], "_source": list(BAR_FIELDS)})
        hits = [] if response is None else response["hits"]["hits"]
        bars = [dict(hit["_source"], time=hit["sort"][0] // 1000) for hit in hits]
        return bars if after_ms is not None else bars[::-1]

    def signals(self, limit: int, since_ms: int | None, symbol: str | None) -> list[dict]:
        """Signals across symbols (or of one), newest first; ``since_ms`` is inclusive."""
        filters: list[dict] = []
        if symbol:
            filters.append({"term": {"symbol": symbol}})
        if since_ms is not None:
            filters.append({"range": {"ts": {"gte": since_ms, "format": "epoch_millis"}}})
        response = self._search(SIGNALS, {
            "size": limit, "query": {"bool": {"filter": filters}},
            "sort": [{"ts": "desc"}, {"symbol": "asc"}, {"type": "asc"}], "_source": list(SIGNAL_FIELDS)})
        hits = [] if response is None else response["hits"]["hits"]
        return [dict(hit["_source"], id=hit["_id"], time=hit["sort"][0] // 1000) for hit in hits]
