"""The fetcher's CloudWatch metrics, written as Embedded Metric Format (EMF) log lines.

Namespace ``StockAnalytics/Fetcher``:

- ``DataAgeSeconds`` (Seconds, dimension ``Symbol``): per symbol of a market-hours invocation, now
  minus the end of its newest bar on the stream, counted at most from today's session open (a thin
  pre-market is not stale): ``now - max(newest bar end, session open)``;
- ``MaxDataAgeSeconds`` (Seconds): the largest of those; the stale-data alarm watches it;
- ``EntitlementRefused`` (Count): calls answered "your plan does not include this entitlement";
- ``MarketClosedSkips`` (Count): invocations that made no call because the market was closed.

CloudWatch Logs turns each line into metric data points: no PutMetricData call, no extra latency or
permission. An EMF object names one value per dimension, so each symbol's age is a line of its own;
the invocation's own metrics share one line.

Why not aws-lambda-powertools' ``Metrics``: it would add the library and its dependencies to the
function's zip and its import to the cold start the project measures, keeps one dimension set per
flush (per-symbol ages would need one ``single_metric`` block each anyway), and writes with print;
the format is a small documented JSON shape, built here by pure functions and written the same way.
Lines go to stdout as they are: under the Lambda runtime's text log format, the logging module's
handler would put a prefix before the JSON and CloudWatch would not read it as EMF.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime
from typing import IO, Any, Mapping

NAMESPACE = "StockAnalytics/Fetcher"
_write_lock = threading.Lock()


def _document(timestamp: datetime, dimensions: Mapping[str, str], metrics: Mapping[str, tuple[float, str]],
              **properties: Any) -> dict[str, Any]:
    """One EMF object: ``metrics`` maps a name to (value, unit)."""
    return {
        "_aws": {
            "Timestamp": int(timestamp.timestamp() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
            }],
        },
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
        **properties,
    }


def data_age_seconds(now: datetime, newest_bar_end: datetime | None, session_open: datetime) -> float:
    """How old a symbol's data is: from its newest bar's end, but never from before today's open."""
    since = session_open if newest_bar_end is None else max(newest_bar_end, session_open)
    return max(0.0, round((now - since).total_seconds(), 3))


def invocation_documents(timestamp: datetime, invocation_id: str, ages: Mapping[str, float],
                         entitlement_refused: int = 0, market_closed: bool = False) -> list[dict[str, Any]]:
    """The EMF objects of one invocation: one per symbol's age, then the invocation's metrics."""
    documents = [_document(timestamp, {"Symbol": symbol}, {"DataAgeSeconds": (age, "Seconds")},
                           invocation_id=invocation_id)
                 for symbol, age in ages.items()]
    totals: dict[str, tuple[float, str]] = {}
    if market_closed:
        totals["MarketClosedSkips"] = (1, "Count")
    else:
        totals["EntitlementRefused"] = (entitlement_refused, "Count")
        if ages:
            totals["MaxDataAgeSeconds"] = (max(ages.values()), "Seconds")
    documents.append(_document(timestamp, {}, totals, invocation_id=invocation_id))
    return documents


def write(documents: list[dict[str, Any]], stream: IO[str] | None = None) -> None:
    """Each object as one JSON line on stdout, where CloudWatch Logs extracts the metrics."""
    out = stream or sys.stdout
    text = "".join(json.dumps(document, separators=(",", ":")) + "\n" for document in documents)
    with _write_lock:
        out.write(text)
        out.flush()
