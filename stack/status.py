"""What ``make run`` prints every few seconds: the job's state and restarts, whether Kinesis and
OpenSearch answer, and the document counts, or why there are none (never a zero that means "down")."""

from __future__ import annotations

import time
from dataclasses import dataclass

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


def service_state(service: Service) -> str:
    """"up"; "DOWN" when nothing accepts connections on its port; "not answering" when something
    does but gives no healthy answer in time (e.g. a local Kinesis starved of CPU)."""
    if not port_open(service.port):
        return "DOWN"
    return "up" if service.healthy(service.port) else "not answering"


def progress_line(job: JobStatus | str, services: dict[str, Service], opensearch_url: str,
                  others: dict[str, str] | None = None) -> str:
    """One line: time, job, each service's state, the counts or why there are none, then ``others``
    (e.g. a producer that has finished)."""
    parts = [time.strftime("%H:%M:%S"), str(job)]
    states = {name: service_state(service) for name, service in services.items()}
    parts += [f"{name} {state}" for name, state in states.items()]
    counts = {index: count(opensearch_url, index) for index in INDICES}
    if None in counts.values():
        parts.append(f"no counts: OpenSearch {states.get('opensearch', 'not answering')}")
    else:
        parts.append(" ".join(f"{index}={n}" for index, n in counts.items()))
    parts += [f"{name} {state}" for name, state in (others or {}).items()]
    return "  ".join(parts)
