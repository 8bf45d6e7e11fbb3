"""Delete the expired time-partitioned indices of the local OpenSearch: ``make retention``.

Amazon OpenSearch Service deletes them with the ISM policies the stack's loader puts; the local
integration-test distribution has no ISM, so this applies the same decision
(``flink_job.core.index_lifecycle.expired``: index names, today's date, retention days) over HTTP.
``make run`` runs it at start and then every hour.

    python -m stack.retention [--days stock-dlq=14,...] [--today 2024-06-30] [--dry-run] [--every SECONDS]

Retention days: the defaults of ``index_lifecycle``, overridden by ``RETENTION_DAYS`` in the
environment, overridden by ``--days``. One JSON line per deleted index, and one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timezone
from typing import Mapping

from opensearchpy import OpenSearch, TransportError

from flink_job.core.index_lifecycle import FAMILIES, RetentionError, expired, parse_retention
from stack.search import client
from stack.services import Ports

RETENTION_ENV = "RETENTION_DAYS"


def family_indices(opensearch: OpenSearch) -> list[str]:
    """Every index of every family (hidden and closed ones too)."""
    patterns = ",".join(f.pattern for f in FAMILIES)
    rows = opensearch.cat.indices(index=patterns, format="json", h="index", expand_wildcards="all",
                                  request_timeout=30)
    return sorted(row["index"] for row in rows)


def apply_retention(opensearch: OpenSearch, retention: Mapping[str, int], today: date,
                    dry_run: bool = False) -> list[str]:
    """Delete the indices that have expired on ``today``; returns their names."""
    doomed = expired(family_indices(opensearch), today, retention)
    for index in doomed:
        if not dry_run:
            opensearch.indices.delete(index=index, request_timeout=60)
        print(json.dumps({"event": "index_expired", "index": index, "deleted": not dry_run}), flush=True)
    return doomed


def retention_from(env: Mapping[str, str], days: str | None) -> dict[str, int]:
    """Defaults, then the environment's ``RETENTION_DAYS``, then ``--days``."""
    # Later items win in parse_retention, so --days overrides the environment.
    return parse_retention(",".join(filter(None, (env.get(RETENTION_ENV), days))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Delete expired stock-* indices of the local OpenSearch")
    parser.add_argument("--days", help="retention overrides, e.g. stock-dlq=14,stock-indicators=60")
    parser.add_argument("--today", type=date.fromisoformat, help="the date to decide for (default: today, UTC)")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    parser.add_argument("--every", type=float, help="repeat every SECONDS until stopped (make run: hourly)")
    args = parser.parse_args(argv)
    try:
        retention = retention_from(os.environ, args.days)
    except RetentionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    base = Ports.from_env().url("opensearch")
    opensearch = client(base)
    while True:
        today = args.today or datetime.now(timezone.utc).date()
        try:
            deleted = apply_retention(opensearch, retention, today, args.dry_run)
            print(json.dumps({"event": "retention", "today": today.isoformat(), "retention_days": retention,
                              "expired": len(deleted), "dry_run": args.dry_run}), flush=True)
        except TransportError as err:  # unreachable too (its ConnectionError)
            if not args.every:
                print(f"error: OpenSearch at {base}: {err}", file=sys.stderr)
                return 1
            # Under `make run` OpenSearch may be restarting: the next round tries again.
            print(json.dumps({"event": "retention_failed", "error": str(err)}), flush=True)
        if not args.every:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
