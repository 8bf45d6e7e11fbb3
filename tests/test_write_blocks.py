"""The job's question on a restart, "does OpenSearch refuse our writes?", against the real local OpenSearch.

The index is of 1997, a period no other test writes, and is deleted afterwards.
"""

from __future__ import annotations

import json

import pytest

from flink_job.config import OpenSearchConfig
from flink_job.write_blocks import blocked_indices, report_write_blocks
from stack import resources
from tests.flink_rest import free_port
from tests.local_aws import OPENSEARCH_URL as OPENSEARCH
from tests.local_aws import opensearch_client

INDEX = "stock-indicators-1997.01"
FAMILIES = ["stock-indicators", "stock-signals"]


@pytest.fixture
def write_blocked_index():
    resources.ensure_index_templates(OPENSEARCH)
    client = opensearch_client()
    client.index(index=INDEX, id="write-block-test", body={"symbol": "WB", "ts": "1997-01-02T15:00:00Z"}, refresh=True)
    client.indices.put_settings(index=INDEX, body={"index.blocks.write": True})
    yield INDEX
    client.indices.put_settings(index=INDEX, body={"index.blocks.write": None}, ignore=404)
    client.indices.delete(index=INDEX, ignore=404)


def logged(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_a_write_blocked_index_is_named_with_its_block_and_what_to_do(write_blocked_index, capsys):
    config = OpenSearchConfig(hosts=OPENSEARCH)
    assert blocked_indices(config, FAMILIES)[write_blocked_index] == ["index.blocks.write"]
    capsys.readouterr()
    assert report_write_blocks(config, FAMILIES, attempt=3)[write_blocked_index] == ["index.blocks.write"]
    (line,) = [r for r in logged(capsys) if r["event"] == "opensearch_writes_blocked"]
    assert line["level"] == "ERROR" and line["attempt"] == 3
    assert line["indices"][write_blocked_index] == ["index.blocks.write"]
    assert "nothing is lost" in line["action"] and "index.blocks.write" in line["action"]

    opensearch_client().indices.put_settings(index=write_blocked_index, body={"index.blocks.write": None})
    assert write_blocked_index not in blocked_indices(config, FAMILIES)


def test_an_unanswered_question_is_a_warning_never_a_failure(capsys):
    config = OpenSearchConfig(hosts=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert report_write_blocks(config, FAMILIES, attempt=1) is None
    (line,) = logged(capsys)
    assert (line["event"], line["level"], line["attempt"]) == ("opensearch_blocks_unknown", "WARNING", 1)
    assert "Connection refused" in line["error"] or "URLError" in line["error"]
