"""Create, idempotently, what the pipeline writes to: Kinesis streams and OpenSearch index templates.

Used by ``make run`` and the tests against the local services; the same templates serve AWS.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import boto3

from flink_job.config import JobConfig, StreamConfig, load_config
from infra import index_templates_loader as loader

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "flink_job" / "index_templates"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def kinesis_client(stream: StreamConfig):
    return boto3.client("kinesis", region_name=stream.region, endpoint_url=stream.endpoint,
                        **(LOCAL_CREDENTIALS if stream.endpoint else {}))


def ensure_stream(stream: StreamConfig, shards: int = 1, timeout_s: float = 30.0) -> None:
    """Create the stream if it does not exist and wait until it is ACTIVE."""
    client = kinesis_client(stream)
    try:
        client.create_stream(StreamName=stream.stream_name, ShardCount=shards)
    except client.exceptions.ResourceInUseException:
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=stream.stream_name)
        if status["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.2)
    raise TimeoutError(f"stream {stream.stream_name} not ACTIVE after {timeout_s:.0f}s")


def index_templates() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(TEMPLATES_DIR.glob("*.json"))}


def ensure_index_templates(hosts: str, auth: tuple[str, str] | None = None) -> list[str]:
    """What the stack's loader does on AWS (``infra/index_templates_loader.py``), minus ISM: PUT every
    composable index template, move an unpartitioned index into the partitioned ones, and give the
    existing indices of each family its alias and any field new in its template."""
    return loader.put_templates(hosts.split(";")[0], index_templates(), auth, deadline=time.monotonic() + 300)


def ensure_all(config: JobConfig, shards: int = 1) -> None:
    for stream in (config.source, config.sink):
        ensure_stream(stream, shards)
    auth = (config.opensearch.username, config.opensearch.password or "") if config.opensearch.username else None
    ensure_index_templates(config.opensearch.hosts, auth)


def main(argv: list[str]) -> int:
    from stack.properties import write_local_properties

    path = Path(argv[0]) if argv else write_local_properties()
    config = load_config(path)
    ensure_all(config)
    print(f"streams {config.source.stream_name}, {config.sink.stream_name} active; "
          f"index templates {', '.join(index_templates())} in place")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
