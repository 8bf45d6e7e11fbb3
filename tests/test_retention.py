"""``make retention`` (``python -m stack.retention``) against the real local OpenSearch.

Other tests share the OpenSearch, and the sample data's indices (2024) are long expired by today's
date, so these tests decide for a day in 1999 and make indices of 1998 and 1999 only. The test
OpenSearch keeps its data from run to run, so an older index left by anything else expires on that
day too: the tests judge their own indices only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stack import resources, retention
from stack.services import ROOT
from tests.local_aws import OPENSEARCH_URL as OPENSEARCH
from tests.local_aws import opensearch_client

client = opensearch_client()

OURS = ["stock-dlq-1999.01", "stock-indicators-1999.02", "stock-indicators-1999.04", "stock-bars-5m-1998"]
TODAY = "1999-06-01"


@pytest.fixture
def old_indices():
    """Indices of the families, created as the job creates them (through the templates), one
    document each, readable through the family's alias."""
    resources.ensure_index_templates(OPENSEARCH)
    client.indices.delete(index=",".join(OURS), ignore_unavailable=True)
    for index in OURS:
        family = index.rsplit("-", 1)[0]
        field = {"stock-dlq": "received_at", "stock-bars-5m": "window_start"}.get(family, "ts")
        period = index.rsplit("-", 1)[1].replace(".", "-")
        when = f"{period}-01T10:00:00Z" if "-" in period else f"{period}-03-01T10:00:00Z"
        client.index(index=index, id="retention-test", body={field: when}, refresh=True)
    yield OURS
    client.indices.delete(index=",".join(OURS), ignore_unavailable=True)


def existing(names: list[str]) -> list[str]:
    return [n for n in names if client.indices.exists(index=n)]


def test_expired_indices_are_deleted_and_the_rest_kept(old_indices):
    aliases = client.indices.get_alias(name="stock-indicators")
    assert {"stock-indicators-1999.02", "stock-indicators-1999.04"} <= set(aliases)

    result = subprocess.run([sys.executable, "-m", "stack.retention", "--today", TODAY], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    deleted = [line["index"] for line in lines if line["event"] == "index_expired"]
    # February's bars: 1 March + 90 days = 30 May, gone on 1 June; January's dead letters long gone.
    assert sorted(set(deleted) & set(OURS)) == ["stock-dlq-1999.01", "stock-indicators-1999.02"]
    # Anyone else's index that went is older still: no retention reaches a period after February 1999.
    assert all(index.rsplit("-", 1)[1] < "1999.03" for index in deleted), deleted
    assert existing(old_indices) == ["stock-indicators-1999.04", "stock-bars-5m-1998"]
    assert lines[-1]["event"] == "retention" and lines[-1]["retention_days"]["stock-bars-5m"] == 730


def test_days_from_the_environment_and_the_command_line(old_indices, monkeypatch, capsys):
    monkeypatch.setenv("RETENTION_DAYS", "stock-bars-5m=100,stock-indicators=5000")
    assert retention.main(["--today", TODAY, "--dry-run"]) == 0
    assert existing(old_indices) == old_indices, "a dry run deletes nothing"
    assert retention.main(["--today", TODAY, "--days", "stock-indicators=30"]) == 0
    # The rollups of 1998 ended 151 days before: past 100. April's bars ended 31 days before: past 30.
    assert existing(old_indices) == []
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[-1]["retention_days"]["stock-indicators"] == 30 and out[-1]["retention_days"]["stock-bars-5m"] == 100


def test_malformed_days_stop_with_the_family_named(capsys):
    assert retention.main(["--days", "stock-dlq=never"]) == 2
    assert "retention of stock-dlq must be a whole number of days >= 1, got 'never'" in capsys.readouterr().err
