"""The OpenSearch client of the local tools: ``make run``'s status line and readiness checks, the
retention of the local indices, the benchmarks and the tests."""

from __future__ import annotations

import logging

from opensearchpy import OpenSearch

# Callers report failures in their own words; the client's own line for each failed request (with a
# plain-text traceback) would repeat them on every poll while OpenSearch starts.
logging.getLogger("opensearch").setLevel(logging.ERROR)


def client(url: str, timeout_s: float = 10.0, retries: int = 0) -> OpenSearch:
    """A client of the OpenSearch at ``url``; by default one attempt per call, so a caller that polls
    decides itself when to try again."""
    return OpenSearch(hosts=[url], timeout=timeout_s, max_retries=retries)
