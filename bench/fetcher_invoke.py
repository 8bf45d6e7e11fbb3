"""One fresh Lambda container in this process: ``python -m bench.fetcher_invoke [--cold-only]``
(settings from the environment, as in AWS). Prints JSON: the cold invocation (module import,
container set-up, one run over all SYMBOLS) and its CPU seconds, then (unless ``--cold-only``) a
warm one in the same container, the peak resident memory, and how much of each invocation was
spent waiting on each service.

Waiting time is taken at urllib3's ``HTTPConnectionPool.urlopen``, which both requests (Alpha
Vantage) and botocore (Kinesis, DynamoDB) go through, keyed by port: the local services are shared
with other work on the machine, and this separates their response times from the fetcher's own.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

from urllib3.connectionpool import HTTPConnectionPool

TIMEOUT_S = 55.0  # the function's timeout in infra/cloudformation.yaml


class LambdaContext:
    """The parts of the Lambda context the handler reads."""

    def __init__(self, timeout_s: float, request_id: str):
        self._end = time.monotonic() + timeout_s
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self._end - time.monotonic()) * 1000)


class ServiceWaits:
    """Seconds and requests per port, accumulated by wrapping ``HTTPConnectionPool.urlopen``."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = defaultdict(float)
        self.requests: dict[int, int] = defaultdict(int)
        urlopen = HTTPConnectionPool.urlopen
        waits = self

        def timed_urlopen(pool, *args, **kwargs):
            started = time.perf_counter()
            try:
                return urlopen(pool, *args, **kwargs)
            finally:
                waits.seconds[pool.port] += time.perf_counter() - started
                waits.requests[pool.port] += 1

        HTTPConnectionPool.urlopen = timed_urlopen

    def take(self) -> dict[str, dict]:
        """Totals since the last call, per port."""
        out = {str(port): {"seconds": self.seconds[port], "requests": self.requests[port]} for port in self.seconds}
        self.seconds.clear()
        self.requests.clear()
        return out


def max_rss_mib() -> float:
    """Peak RSS of this process image (VmHWM; ``ru_maxrss`` would include the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    cold_only = "--cold-only" in sys.argv[1:]
    waits = ServiceWaits()
    from fetcher_lambda import handler  # its cold import time is measured on its own (``fetcher``)

    imported = time.perf_counter()
    rss_after_import = max_rss_mib()
    cpu_before = cpu_s()
    cold = handler.lambda_handler({}, LambdaContext(TIMEOUT_S, "bench-cold"))
    cold_done = time.perf_counter()
    cold_cpu = cpu_s() - cpu_before
    cold_waits = waits.take()
    warm = None if cold_only else handler.lambda_handler({}, LambdaContext(TIMEOUT_S, "bench-warm"))
    warm_done = time.perf_counter()
    warm_waits = waits.take()
    print(json.dumps({
        "cold_invocation_s": cold_done - imported, "cold_cpu_s": cold_cpu,
        "warm_invocation_s": None if cold_only else warm_done - cold_done,
        "cold": cold, "warm": warm,
        "cold_waits": cold_waits, "warm_waits": warm_waits,
        "max_rss_after_import_mib": rss_after_import,
        "max_rss_mib": max_rss_mib(),
    }))


if __name__ == "__main__":
    main()
