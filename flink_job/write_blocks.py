"""Whether OpenSearch refuses the job's writes: asked when the job restarts, and logged with what to do.

A refused bulk write (a write block: the disk's flood stage, or one set by hand) fails the OpenSearch
sink, and the connector gives the job no hook to say why: the job just restarts from its last
checkpoint until the index takes writes again, and nothing is lost. So each restarted attempt asks
OpenSearch which of the job's indices block writes, and if any do, logs one
``opensearch_writes_blocked`` line (ERROR) naming them, their blocks and what to do. Asking never fails
the job: an unanswered question is logged as ``opensearch_blocks_unknown`` (WARNING).

The question is one GET with the standard library, not opensearch-py as elsewhere: the client would
have to travel in ``flink-app.zip`` (``infra/package.py``) with requests, urllib3, certifi and its
other dependencies, about 3 MB on every worker's path where they could shadow the runtime's own
copies, for a single read that needs no retries (the next attempt asks again), no bulk and no scroll.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.request
from typing import Iterable

from flink_job.config import OpenSearchConfig
from flink_job.logs import log_event

BLOCK_SETTINGS = ("index.blocks.write", "index.blocks.read_only", "index.blocks.read_only_allow_delete")
ACTION = ("OpenSearch refuses writes to these indices, so the job restarts from its last checkpoint until "
          "they take writes again; nothing is lost and the job needs no action. Free disk space (delete "
          "expired indices: `make retention`, or a shorter RetentionDays) or enlarge the volume "
          "(OPENSEARCH_VOLUME_SIZE); OpenSearch lifts the flood-stage block itself once disk usage falls "
          "below the high watermark. A block set by hand is lifted with "
          "PUT <index>/_settings {\"index.blocks.write\": null}.")


def blocked_indices(config: OpenSearchConfig, families: Iterable[str], timeout_s: float = 5.0) -> dict[str, list[str]]:
    """The indices of ``families`` (``<family>-*``) that block writes now, each with its blocks.
    Raises ``OSError`` (``urllib.error.URLError`` included), ``ValueError`` or ``http.client``'s
    errors if OpenSearch does not answer."""
    host = config.hosts.split(";")[0].rstrip("/")
    patterns = ",".join(f"{family}-*" for family in families)
    request = urllib.request.Request(f"{host}/{patterns}/_settings/index.blocks.*?flat_settings=true")
    if config.username:
        token = base64.b64encode(f"{config.username}:{config.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    blocked = {}
    for index, body in sorted(answer.items()):
        blocks = [key for key in BLOCK_SETTINGS if str(body.get("settings", {}).get(key)).lower() == "true"]
        if blocks:
            blocked[index] = blocks
    return blocked


def report_write_blocks(config: OpenSearchConfig, families: Iterable[str], attempt: int) -> dict[str, list[str]] | None:
    """Log the blocked indices of ``families``, if any (see the module); returns them, or None if
    OpenSearch did not answer."""
    try:
        blocked = blocked_indices(config, families)
    except Exception as err:  # noqa: BLE001 - whatever went wrong, the question must not fail the job
        log_event("opensearch_blocks_unknown", logging.WARNING, attempt=attempt, error=f"{type(err).__name__}: {err}")
        return None
    if blocked:
        log_event("opensearch_writes_blocked", logging.ERROR, attempt=attempt, indices=blocked, action=ACTION)
    return blocked
