"""The Lambda functions' built artifacts run, from their own unzipped files, against the real local services.

``fetcher-lambda.zip``: unzipped, its handler runs as the Lambda runtime would run it: the zip first
on the path, then boto3 and its dependencies only (the runtime's), against the fake Alpha Vantage
API and the local Kinesis and DynamoDB. ``index-templates-loader.zip``: the same way, its handler
puts the job's index templates into the local OpenSearch with the client the zip carries.
(``flink-app.zip`` runs on a standalone cluster, the way Managed Flink runs it: ``test_cluster.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from pathlib import Path

import pytest

from infra import package
from tests import fake_alphavantage as fake
from tests.local_aws import DYNAMODB_URL, KINESIS_URL, OPENSEARCH_URL, opensearch_client
from tests.pipeline_harness import unique_symbol

ROOT = Path(__file__).resolve().parent.parent
# What the Lambda runtime provides besides the standard library: boto3 and what it imports. Not
# urllib3: the zip vendors its own (for requests), and the function's directory comes first.
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")


@pytest.fixture(scope="module")
def dist(packaged_dist) -> Path:
    return packaged_dist


def unzip(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    return target


@pytest.fixture
def lambda_runtime(tmp_path) -> Path:
    """A directory with boto3 and its dependencies only, as the Lambda runtime provides them."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in LAMBDA_RUNTIME_PACKAGES:
        assert (site / name).exists(), f"{name} not in {site}: run `make setup`"
        (runtime / name).symlink_to(site / name)
    return runtime


HANDLER_RUN = """
import json, sys, time
import boto3, holidays, requests, urllib3
from fetcher_lambda.handler import lambda_handler

class Context:
    aws_request_id = "package-e2e"
    def __init__(self):
        self.end = time.monotonic() + 30
    def get_remaining_time_in_millis(self):
        return int((self.end - time.monotonic()) * 1000)

summary = lambda_handler({}, Context())
modules = {m.__name__: m.__file__ for m in (sys.modules["fetcher_lambda.handler"], sys.modules["lambda_kit.env"],
                                              requests, urllib3, boto3, holidays)}
print(json.dumps({"summary": summary, "modules": modules, "path": sys.path}))
"""


def test_packaged_lambda_handler_puts_bars_on_the_stream(dist, tmp_path, lambda_runtime, fake_alphavantage,
                                                        kinesis_stream, cursor_table, read_stream):
    function = unzip(dist / package.LAMBDA_ZIP, tmp_path / "function")
    symbol = unique_symbol("LMB")
    rows = fake.minute_rows("2024-03-08 10:00", 12)
    fake_alphavantage.set_series(symbol, rows)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # The function's directory first, as /var/task precedes the runtime's packages in Lambda.
        "PYTHONPATH": os.pathsep.join([str(function), str(lambda_runtime)]),
        "SYMBOLS": symbol, "BARS_STREAM_NAME": kinesis_stream, "CURSOR_TABLE_NAME": cursor_table,
        "AV_BASE_URL": fake_alphavantage.url, "AV_API_KEY": fake.TEST_API_KEY,
        "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "FETCHER_IGNORE_MARKET_HOURS": "true",  # the bars are of a past day
    }
    # -S: no site-packages, so nothing of the venv but the interpreter and the standard library.
    result = subprocess.run([sys.executable, "-S", "-c", HANDLER_RUN], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])

    modules = {name: Path(file) for name, file in run["modules"].items()}
    assert all(modules[m].is_relative_to(function) for m in ("fetcher_lambda.handler", "lambda_kit.env", "requests",
                                                               "urllib3", "holidays")), modules
    assert modules["boto3"].is_relative_to(lambda_runtime), modules
    assert not [p for p in run["path"] if "site-packages" in p], run["path"]

    assert run["summary"]["symbols_ok"] == 1 and run["summary"]["bars_sent"] == len(rows), run["summary"]
    records = read_stream(kinesis_stream)
    assert [key for key, _ in records] == [symbol] * len(rows)
    assert [r["ts"] for _, r in records] == [f"2024-03-08T15:{m:02d}:00Z" for m in range(len(rows))]
    assert fake.TEST_API_KEY not in result.stdout + result.stderr


LOADER_RUN = """
import json, sys, time
import index_templates_loader as loader

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

result = loader.handler({}, Context())
modules = {name: sys.modules[name].__file__ for name in ("index_templates_loader", "opensearchpy", "urllib3",
                                                         "requests", "dateutil", "events")}
print(json.dumps({"result": result, "modules": modules, "path": sys.path}))
"""


def test_packaged_loader_puts_the_templates_with_the_client_it_carries(dist, tmp_path, lambda_runtime):
    """Directly invoked (``deploy.sh index-templates``), with the local OpenSearch as the domain. The
    unzipped templates are renamed to this test's own names and patterns first, so the shared ones
    stay as they are and what is found afterwards was put by this run."""
    function = unzip(dist / package.LOADER_ZIP, tmp_path / "function")
    prefix = f"pkg-{uuid.uuid4().hex[:8]}-"
    for path in sorted((function / "index_templates").glob("*.json")):
        body = json.loads(path.read_text())
        body["index_patterns"] = [prefix + pattern for pattern in body["index_patterns"]]
        body["template"]["aliases"] = {prefix + alias: spec for alias, spec in body["template"]["aliases"].items()}
        path.unlink()
        (path.parent / f"{prefix}{path.name}").write_text(json.dumps(body))
    names = sorted(prefix + p.stem for p in package.TEMPLATES.glob("*.json"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(function), str(lambda_runtime)]),
        "OPENSEARCH_ENDPOINT": OPENSEARCH_URL, "DATA_NODES": "2",
    }
    client = opensearch_client()
    try:
        result = subprocess.run([sys.executable, "-S", "-c", LOADER_RUN], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        run = json.loads(result.stdout.strip().splitlines()[-1])

        modules = {name: Path(file) for name, file in run["modules"].items()}
        # The client and all it imports come from the zip (dateutil too, though the runtime has one).
        assert all(file.is_relative_to(function) for file in modules.values()), modules
        assert not [p for p in run["path"] if "site-packages" in p], run["path"]
        assert run["result"] == {"Templates": ",".join(names), "Replicas": "1"}
        stored = client.indices.get_index_template(name=f"{prefix}*")["index_templates"]
        assert sorted(t["name"] for t in stored) == names
        assert {t["index_template"]["template"]["settings"]["index"]["number_of_replicas"] for t in stored} == {"1"}
    finally:
        for name in names:
            client.indices.delete_index_template(name=name, ignore=404)


MARKET_HOURS_RUN = """
import json
from datetime import datetime, timezone
import holidays
from fetcher_lambda import market_hours

def decide(iso):
    return market_hours.decide(datetime.fromisoformat(iso), extended_hours=False, lag_s=900).reason or "open"

print(json.dumps({"holidays": holidays.__file__, "thanksgiving": decide("2026-11-26T15:00:00+00:00"),
                  "half_day": decide("2026-11-27T18:30:00+00:00"), "open": decide("2026-11-27T15:00:00+00:00")}))
"""


def test_the_zip_alone_decides_market_hours(dist, tmp_path):
    """The NYSE calendar ships in the zip with everything it imports: no runtime package is on the path."""
    function = unzip(dist / package.LAMBDA_ZIP, tmp_path / "function")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(function)}
    result = subprocess.run([sys.executable, "-S", "-c", MARKET_HOURS_RUN], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout)
    assert Path(run["holidays"]).is_relative_to(function), run
    assert (run["thanksgiving"], run["half_day"], run["open"]) == (
        "holiday: Thanksgiving Day", "half day: closed early", "open")
