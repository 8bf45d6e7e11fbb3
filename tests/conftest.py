"""Shared pytest fixtures, and the marks that say what each test needs.

Fetcher fixtures: a fake Alpha Vantage server on a real socket, and uniquely named Kinesis streams
and DynamoDB tables on the local services (``python -m stack.services start``), deleted after each
test.

Marks (registered in pyproject.toml): ``services``, ``jvm``, ``browser``, ``packaging``, ``tools``.
A test gets them from the fixtures it uses, directly or through other fixtures (``NEEDS_BY_FIXTURE``),
and from its module's ``pytestmark`` or its own decorator where no fixture shows the need (a test
that starts the job itself). ``make check`` runs the tests that have none of them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Callable, Iterator

import pytest

from tests.fake_alphavantage import TEST_API_KEY, FakeAlphaVantage
from tests.local_aws import DYNAMODB_URL, KINESIS_URL, local_client

# Fixture name -> what a test that uses it needs. The names are the suite's own (a test module that
# defines a fixture of one of these names means the same thing by it).
NEEDS_BY_FIXTURE: dict[str, tuple[str, ...]] = {
    "local_kinesis": ("services",),
    "local_dynamodb": ("services",),
    "opensearch": ("services",),  # test_dashboard_live, test_index_templates_loader: the local OpenSearch
    "old_indices": ("services",),  # test_retention
    "write_blocked_index": ("services",),  # test_write_blocks
    "job": ("jvm", "services"),  # the job in a local mini-cluster, reading and writing the local services
    "cluster": ("jvm", "services"),  # test_cluster: a standalone Flink cluster
    "browser_context": ("browser",),  # test_dashboard_live: Chromium through Playwright
    "packaged_dist": ("packaging",),  # python -m infra.package, with the connector jar Maven builds
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = {need for name in item.fixturenames for need in NEEDS_BY_FIXTURE.get(name, ())}
        for need in sorted(needs):
            item.add_marker(need)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--min-selected", type=int, default=0, metavar="N",
                     help="stop with an error if fewer than N tests are selected (make check: a tier that "
                          "lost its tests to a wrong mark must not pass unnoticed)")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    minimum = config.getoption("--min-selected")
    return f"{len(items)} tests selected (at least {minimum} expected)" if minimum else None


def pytest_collection_finish(session: pytest.Session) -> None:
    minimum = session.config.getoption("--min-selected")
    if len(session.items) < minimum:
        pytest.exit(f"only {len(session.items)} tests selected, fewer than --min-selected={minimum}: "
                    "check the marks in tests/conftest.py (NEEDS_BY_FIXTURE) and the -m expression",
                    returncode=pytest.ExitCode.USAGE_ERROR)


def _require_service(client, call: Callable[[], object], name: str, endpoint: str):
    from botocore.exceptions import BotoCoreError

    try:
        call()
    except BotoCoreError as err:
        pytest.fail(f"local {name} is not reachable at {endpoint} ({err}); start it with "
                    ".venv/bin/python -m stack.services start kinesis dynamodb (same KINESIS_PORT, "
                    "DYNAMODB_PORT and STACK_RUN_DIR as this run), or run `make test`")
    return client


@pytest.fixture(scope="session")
def local_kinesis():
    client = local_client("kinesis")
    return _require_service(client, lambda: client.list_streams(Limit=1), "Kinesis", KINESIS_URL)


@pytest.fixture(scope="session")
def local_dynamodb():
    client = local_client("dynamodb")
    return _require_service(client, lambda: client.list_tables(Limit=1), "DynamoDB", DYNAMODB_URL)


@pytest.fixture
def fetcher_clients_factory():
    """New (kinesis, dynamodb) clients per call: each thread of a concurrency test gets its own."""
    return lambda: (local_client("kinesis"), local_client("dynamodb"))


@pytest.fixture
def kinesis_stream(local_kinesis) -> Iterator[str]:
    from fetcher_lambda.kinesis import ensure_stream

    name = f"test-bars-{uuid.uuid4().hex[:10]}"
    ensure_stream(local_kinesis, name)
    yield name
    local_kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def cursor_table(local_dynamodb) -> Iterator[str]:
    from fetcher_lambda.cursor import ensure_table

    name = f"test-cursor-{uuid.uuid4().hex[:10]}"
    ensure_table(local_dynamodb, name)
    yield name
    local_dynamodb.delete_table(TableName=name)


@pytest.fixture
def alerts_table(local_dynamodb) -> Iterator[str]:
    """A table of the alerts' once-per-signal store, of this test's own."""
    from alerts.store import ensure_table

    name = f"test-alerts-{uuid.uuid4().hex[:10]}"
    ensure_table(local_dynamodb, name)
    yield name
    local_dynamodb.delete_table(TableName=name)


@pytest.fixture
def read_stream(local_kinesis) -> Callable[[str], list[tuple[str, dict]]]:
    """All records of a stream so far, in stream order: (partition key, decoded JSON)."""

    def read(stream: str) -> list[tuple[str, dict]]:
        records: list[tuple[str, dict]] = []
        for shard in local_kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = local_kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = local_kinesis.get_records(ShardIterator=iterator, Limit=10000)
                records += [(r["PartitionKey"], json.loads(r["Data"])) for r in page["Records"]]
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return records

    return read


@pytest.fixture
def fake_alphavantage() -> Iterator[FakeAlphaVantage]:
    server = FakeAlphaVantage().start()
    yield server
    server.stop()


@pytest.fixture
def av_settings(fake_alphavantage):
    """Settings pointing at the fake API, with short timeouts and backoffs so failure paths stay fast,
    and a calls-per-minute budget that only tests of the budget itself notice."""
    from fetcher_lambda.config import Secret, Settings

    return Settings(
        symbols=("IBM",), base_url=fake_alphavantage.url, region="us-east-1", calls_per_minute=60_000,
        api_key=Secret(TEST_API_KEY), connect_timeout_s=0.5, read_timeout_s=0.5, http_retries=2,
        backoff_factor_s=0.01, backoff_max_s=0.05, backoff_jitter_s=0.01, put_backoff_base_s=0.01,
        put_backoff_max_s=0.05, safety_margin_s=0.2, put_call_s=0.1, local_budget_s=20.0,
        # The tests' bars are of past days, fetched whenever the test runs; tests of the market hours
        # turn this off and set the clock.
        ignore_market_hours=True,
    )


@pytest.fixture
def fetcher_settings(av_settings, kinesis_stream, cursor_table):
    """``av_settings`` plus this test's stream and cursor table on the local services."""
    return replace(av_settings, stream_name=kinesis_stream, cursor_table=cursor_table,
                   kinesis_endpoint_url=KINESIS_URL, dynamodb_endpoint_url=DYNAMODB_URL)


@pytest.fixture(scope="session")
def packaged_dist(tmp_path_factory):
    """``python -m infra.package`` once per session: the folder holding the built zips."""
    import subprocess
    import sys

    from infra import package

    if not package.JAR.exists():
        pytest.skip("the connector jar is missing: run `make jar`")
    output = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "infra.package", str(output)], cwd=package.ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in (package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP, package.ALERTS_ZIP):
        assert name in result.stdout, f"the packager did not report {name}"
    return output
