"""``make run``'s progress line names the symbol whose newest bar is the oldest, and its age."""

from __future__ import annotations

import uuid

import pytest

from stack.status import oldest_symbol
from tests.local_aws import OPENSEARCH_URL, opensearch_client

pytestmark = pytest.mark.services  # the local OpenSearch
NOW_MS = 1_710_000_000_000  # 2024-03-09T16:00:00Z


@pytest.fixture
def index():
    name = f"test-status-{uuid.uuid4().hex[:8]}"
    client = opensearch_client()
    client.indices.create(index=name, body={"mappings": {"properties": {
        "symbol": {"type": "keyword"}, "ts": {"type": "date"}, "source": {"type": "keyword"}}}})
    yield name
    client.indices.delete(index=name)


def put(index: str, *docs: dict) -> None:
    client = opensearch_client()
    for doc in docs:
        client.index(index=index, body=doc)
    client.indices.refresh(index=index)


def test_the_oldest_newest_bar_and_its_age_from_the_bar_end(index):
    assert oldest_symbol(OPENSEARCH_URL, NOW_MS, index) is None, "no bar yet: nothing to say"
    put(index, {"symbol": "IBM", "ts": "2024-03-09T15:58:00Z", "source": "alphavantage"},
        {"symbol": "AAPL", "ts": "2024-03-09T15:40:00Z", "source": "alphavantage"},
        {"symbol": "AAPL", "ts": "2024-03-09T15:44:00Z", "source": "alphavantage"})
    assert oldest_symbol(OPENSEARCH_URL, NOW_MS, index) == "oldest AAPL 15 min"  # ended 15:45


def test_replayed_sample_data_is_called_a_replay(index):
    put(index, {"symbol": "IBM", "ts": "2024-03-08T20:59:00Z", "source": "replay"})
    assert oldest_symbol(OPENSEARCH_URL, NOW_MS, index) == "oldest IBM replay"


def test_no_answer_is_no_claim():
    assert oldest_symbol("http://127.0.0.1:9", NOW_MS) is None
