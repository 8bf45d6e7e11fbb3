"""Read-only queries against the job's OpenSearch indices, shaped for the live dashboard.

Only searches and the cluster health are ever sent. A missing index means "no data yet" (the job
has not written anything), not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from opensearchpy import NotFoundError, OpenSearch, OpenSearchException, TransportError
from urllib3 import Timeout

log = logging.getLogger(__name__)
# Failures are logged below, with what the dashboard was doing; the client's own line for each one
# (with a traceback) would repeat them on every poll of every open page while OpenSearch is down.
logging.getLogger("opensearch").setLevel(logging.ERROR)

INDICATORS = "stock-indicators"
SIGNALS = "stock-signals"
# What the chart and the indicator panel draw; the rest of an enriched document stays on the server.
BAR_FIELDS = (
    "symbol", "ts", "open", "high", "low", "close", "volume", "session", "return_1", "volume_z_20",
    "sma_5", "sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14",
    "bb_upper", "bb_middle", "bb_lower", "vwap", "trend", "patterns", "signals",
)
SIGNAL_FIELDS = ("symbol", "ts", "type", "direction", "value", "detail", "timeframe")
# The 5- and 15-minute candles: the rollup indices, their time field, and what the chart draws.
CANDLE_INDICES = {"5m": "stock-bars-5m", "15m": "stock-bars-15m"}
CANDLE_FIELDS = (
    "symbol", "window_start", "open", "high", "low", "close", "volume", "vwap", "provisional", "sma_20",
    "ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14", "bb_upper", "bb_middle", "bb_lower",
)
MAX_SYMBOLS = 1000


class OpenSearchUnavailable(RuntimeError):
    """OpenSearch did not answer, or answered with an error the dashboard cannot show as data."""


@dataclass(frozen=True)
class Reader:
    base_url: str
    index_prefix: str = ""
    timeout_s: tuple[float, float] = (1.0, 5.0)  # (connect, read): a dead cluster shows up quickly
    client: OpenSearch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One attempt per request: the page polls again anyway, and a dead cluster shows up at once.
        client = OpenSearch(hosts=[self.base_url], timeout=Timeout(connect=self.timeout_s[0], read=self.timeout_s[1]),
                            max_retries=0)
        object.__setattr__(self, "client", client)

    def _search(self, index: str, body: dict) -> dict | None:
        """The search response, or None when the index does not exist yet."""
        name = f"{self.index_prefix}{index}"
        try:
            return self.client.search(index=name, body=body)
        except NotFoundError as err:
            if err.error == "index_not_found_exception":
                return None
            log.warning("OpenSearch answered 404 to a search of %s: %s", name, str(err.info)[:500])
            raise OpenSearchUnavailable("OpenSearch answered HTTP 404") from None
        except TransportError as err:
            if not isinstance(err.status_code, int):  # nothing answered (its ConnectionError)
                log.warning("OpenSearch search of %s at %s failed: %s", name, self.base_url, err)
                raise OpenSearchUnavailable("OpenSearch is unreachable") from None
            log.warning("OpenSearch answered %s to a search of %s: %s", err.status_code, name, str(err.info)[:500])
            raise OpenSearchUnavailable(f"OpenSearch answered HTTP {err.status_code}") from None

    def health(self) -> str:
        """The cluster status (green, yellow or red)."""
        try:
            return self.client.cluster.health()["status"]
        except (OpenSearchException, KeyError, TypeError) as err:  # unreachable, refused, or not JSON
            log.warning("OpenSearch health check at %s failed: %s", self.base_url, err)
            raise OpenSearchUnavailable("OpenSearch is unreachable") from None

    def symbols(self) -> list[dict]:
        """Every symbol with enriched bars: how many, and the time and source of the latest."""
        response = self._search(INDICATORS, {
            "size": 0,
            "aggs": {"symbols": {"terms": {"field": "symbol", "size": MAX_SYMBOLS, "order": {"_key": "asc"}},
                                 "aggs": {"last": {"top_hits": {"size": 1, "sort": [{"ts": "desc"}],
                                                                "_source": ["ts", "source"]}}}}},
        })
        if response is None:
            return []
        out = []
        for bucket in response["aggregations"]["symbols"]["buckets"]:
            hits = bucket["last"]["hits"]["hits"]
            latest = hits[0]["_source"] if hits else {}
            out.append({"symbol": bucket["key"], "bars": bucket["doc_count"], "last_ts": latest.get("ts"),
                        "last_source": latest.get("source")})
        return out

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

    def candles(self, symbol: str, timeframe: str, limit: int, after_ms: int | None) -> list[dict]:
        """The symbol's 5- or 15-minute candles in time order, as ``bars`` gives the 1-minute ones
        (``ts`` and ``time`` are the window's start): final ones with their indicators, the open one
        ``provisional`` without."""
        query: dict = {"bool": {"filter": [{"term": {"symbol": symbol}}]}}
        if after_ms is not None:
            query["bool"]["filter"].append({"range": {"window_start": {"gte": after_ms, "format": "epoch_millis"}}})
        order = "desc" if after_ms is None else "asc"
        response = self._search(CANDLE_INDICES[timeframe], {
            "size": limit, "query": query, "sort": [{"window_start": order}], "_source": list(CANDLE_FIELDS)})
        hits = [] if response is None else response["hits"]["hits"]
        candles = [dict(hit["_source"], ts=hit["_source"]["window_start"], time=hit["sort"][0] // 1000)
                   for hit in hits]
        return candles if after_ms is not None else candles[::-1]

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
