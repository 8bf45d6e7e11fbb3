"""What ``make run`` prints every few seconds: the job's state and restarts, whether Kinesis and
OpenSearch answer, and the document counts, or why there are none (never a zero that means "down")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import requests
from opensearchpy import NotFoundError, TransportError

from stack.search import client
from stack.services import Service, port_open

INDICES = ("stock-indicators", "stock-signals", "stock-dlq")


@dataclass(frozen=True)
class JobStatus:
    state: str  # RUNNING, RESTARTING, ... as Flink says; "starting" before the REST API answers
    restarts: int | None = None

    def __str__(self) -> str:
        restarts = "" if self.restarts is None else f", {self.restarts} restart{'s' * (self.restarts != 1)}"
        state = self.state.lower() if self.state.isupper() else self.state  # Flink's states are upper case
        return f"job {state}{restarts}"


def job_status(rest_port: int) -> JobStatus:
    """The state and restart count of the newest job on the local mini-cluster's REST API."""
    base = f"http://127.0.0.1:{rest_port}"
    try:
        jobs = requests.get(f"{base}/jobs/overview", timeout=2).json()["jobs"]
    except (requests.RequestException, ValueError, KeyError):
        return JobStatus("starting")
    if not jobs:
        return JobStatus("submitting")
    job = max(jobs, key=lambda j: j.get("start-time", 0))
    return JobStatus(job["state"], _restarts(base, job["jid"]))


def _restarts(base: str, job_id: str) -> int | None:
    """The job's ``numRestarts`` metric; until the metric is first published (some seconds after
    the start), the number of failures in its exception history (each one caused a restart)."""
    try:
        metrics = requests.get(f"{base}/jobs/{job_id}/metrics", params={"get": "numRestarts"}, timeout=2).json()
        values = [m["value"] for m in metrics if m.get("id") == "numRestarts" and "value" in m]
        if values:
            return int(values[0])
        history = requests.get(f"{base}/jobs/{job_id}/exceptions", timeout=2).json()
        return len(history["exceptionHistory"]["entries"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


def count(base: str, index: str) -> int | None:
    """Documents in ``index`` (0 if it does not exist yet); None if OpenSearch did not answer."""
    try:
        return int(client(base, timeout_s=2).count(index=index)["count"])
    except NotFoundError:
        return 0
    except (TransportError, ValueError, KeyError, TypeError):  # unreachable too (its ConnectionError)
        return None


def oldest_symbol(base: str, now_ms: int | None = None, index: str = "stock-indicators") -> str | None:
    """The symbol whose newest enriched bar is the oldest, and that bar's age: "oldest IBM 3 min" (a
    fetched bar's age counts from its end), "oldest IBM replay" for the sample data, which is old by
    design; None while there is no bar or OpenSearch does not answer."""
    body = {"size": 0, "aggs": {"symbols": {
        "terms": {"field": "symbol", "size": 1000},
        "aggs": {"last": {"top_hits": {"size": 1, "sort": [{"ts": "desc"}], "_source": ["ts", "source"]}}}}}}
    try:
        answer = client(base, timeout_s=2).search(index=index, body=body)
        buckets = answer["aggregations"]["symbols"]["buckets"]
    except (TransportError, ValueError, KeyError, TypeError):  # no index yet (NotFoundError) or no answer
        return None
    newest = [(b["key"], b["last"]["hits"]["hits"][0]["_source"]) for b in buckets if b["last"]["hits"]["hits"]]
    if not newest:
        return None
    symbol, bar = min(newest, key=lambda item: item[1]["ts"])
    if bar.get("source") == "replay":
        return f"oldest {symbol} replay"
    ended_ms = int(datetime.fromisoformat(bar["ts"].replace("Z", "+00:00")).timestamp() * 1000) + 60_000
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"oldest {symbol} {max(0, now_ms - ended_ms) // 60_000} min"


def service_state(service: Service) -> str:
    """"up"; "DOWN" when nothing accepts connections on its port; "not answering" when something
    does but gives no healthy answer in time (e.g. a local Kinesis starved of CPU)."""
    if not port_open(service.port):
        return "DOWN"
    return "up" if service.healthy(service.port) else "not answering"


def progress_line(job: JobStatus | str, services: dict[str, Service], opensearch_url: str,
                  others: dict[str, str] | None = None) -> str:
    """One line: time, job, each service's state, the counts or why there are none, the age of the
    symbol with the oldest newest bar, then ``others`` (e.g. a producer that has finished)."""
    parts = [time.strftime("%H:%M:%S"), str(job)]
    states = {name: service_state(service) for name, service in services.items()}
    parts += [f"{name} {state}" for name, state in states.items()]
    counts = {index: count(opensearch_url, index) for index in INDICES}
    if None in counts.values():
        parts.append(f"no counts: OpenSearch {states.get('opensearch', 'not answering')}")
    else:
        parts.append(" ".join(f"{index}={n}" for index, n in counts.items()))
        oldest = oldest_symbol(opensearch_url)
        if oldest:
            parts.append(oldest)
    parts += [f"{name} {state}" for name, state in (others or {}).items()]
    return "  ".join(parts)
