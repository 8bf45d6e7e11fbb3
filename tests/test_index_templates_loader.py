"""The index template loader (infra/index_templates_loader.py) against the real local OpenSearch.

The job's templates are put under names and index patterns of each test's own, so the shared
templates the other tests rely on stay as they are. CloudFormation's side of the custom-resource
protocol is a local HTTP server that records the answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests

from flink_job.core.index_lifecycle import parse_retention
from infra import index_templates_loader as loader
from tests.local_aws import OPENSEARCH_URL as OPENSEARCH
JOB_TEMPLATES = Path(__file__).resolve().parent.parent / "flink_job" / "index_templates"


class Context:
    log_stream_name = "test-stream"

    def __init__(self, remaining_s: float = 30.0):
        self._end = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


class ResponseRecorder:
    """Stands in for CloudFormation's pre-signed S3 URL: records each PUT answer."""

    def __init__(self) -> None:
        self.answers: list[dict] = []
        self.headers: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.headers.append(dict(self.headers))
                recorder.answers.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/response?signature=x"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def opensearch() -> str:
    try:
        requests.get(OPENSEARCH, timeout=5).raise_for_status()
    except requests.RequestException as err:
        pytest.fail(f"local OpenSearch is not reachable at {OPENSEARCH} ({err}); "
                    "start it with: .venv/bin/python -m stack.services start opensearch")
    return OPENSEARCH


@pytest.fixture
def own_templates(tmp_path, opensearch) -> Iterator[tuple[Path, dict[str, dict]]]:
    """The job's templates renamed to this test's prefix (names, index patterns and aliases), as files."""
    prefix = f"loader-{uuid.uuid4().hex[:8]}-"
    directory = tmp_path / "index_templates"
    directory.mkdir()
    renamed = {}
    for name, body in loader.load_templates(JOB_TEMPLATES).items():
        body["index_patterns"] = [prefix + pattern for pattern in body["index_patterns"]]
        body["template"]["aliases"] = {prefix + alias: spec for alias, spec in body["template"]["aliases"].items()}
        renamed[prefix + name] = body
        (directory / f"{prefix}{name}.json").write_text(json.dumps(body))
    yield directory, renamed
    for name in renamed:
        requests.delete(f"{opensearch}/_index_template/{name}", timeout=10)
    requests.delete(f"{opensearch}/{prefix}*", timeout=10)


@pytest.fixture
def recorder() -> Iterator[ResponseRecorder]:
    server = ResponseRecorder()
    yield server
    server.stop()


def event(request_type: str, response_url: str) -> dict:
    return {
        "RequestType": request_type, "ResponseURL": response_url, "StackId": "arn:stack/test",
        "RequestId": "req-1", "LogicalResourceId": "IndexTemplates", "ResourceType": "Custom::IndexTemplates",
        "ResourceProperties": {"ServiceToken": "arn:function", "CodeKey": "k", "DataNodes": "2"},
    }


def stored(opensearch: str, name: str) -> dict:
    response = requests.get(f"{opensearch}/_index_template/{name}", timeout=10)
    response.raise_for_status()
    (template,) = response.json()["index_templates"]
    return template["index_template"]


# --- pure ----------------------------------------------------------------------------------------


def test_one_replica_once_a_second_node_can_hold_it():
    assert [loader.replicas_for(n) for n in (1, 2, 4, 6)] == [0, 1, 1, 1]


def test_replicas_are_set_on_copies_and_the_files_keep_theirs():
    templates = loader.load_templates(JOB_TEMPLATES)
    assert {p.stem for p in JOB_TEMPLATES.glob("*.json")} == set(templates)
    assert {t["template"]["settings"]["number_of_replicas"] for t in templates.values()} == {0}
    changed = loader.with_replicas(templates, 1)
    assert {t["template"]["settings"]["number_of_replicas"] for t in changed.values()} == {1}
    assert {t["template"]["settings"]["number_of_replicas"] for t in templates.values()} == {0}
    for name, body in changed.items():
        body["template"]["settings"]["number_of_replicas"] = 0
        assert body == templates[name], "nothing but the replicas changes"
    assert loader.with_replicas({"bare": {"index_patterns": ["x"]}}, 1)["bare"]["template"] == \
        {"settings": {"number_of_replicas": 1}}


def test_settings_come_from_the_environment():
    settings = loader.Settings.from_env({"OPENSEARCH_ENDPOINT": "vpc-x.es.amazonaws.com",
                                         "MASTER_SECRET_ARN": "arn:secret", "DATA_NODES": "4",
                                         "RETENTION_DAYS": "stock-dlq=7"})
    assert settings == loader.Settings("https://vpc-x.es.amazonaws.com", "arn:secret", 4,
                                       {**parse_retention(""), "stock-dlq": 7}, ism=False)
    assert loader.Settings.from_env({"OPENSEARCH_ENDPOINT": "x", "ISM": "true"}).ism
    with pytest.raises(loader.LoadError, match="RETENTION_DAYS: retention of stock-dlq"):
        loader.Settings.from_env({"OPENSEARCH_ENDPOINT": "x", "RETENTION_DAYS": "stock-dlq=0"})
    assert loader.Settings.from_env({"OPENSEARCH_ENDPOINT": "http://127.0.0.1:9200/"}).endpoint == "http://127.0.0.1:9200"
    with pytest.raises(loader.LoadError, match="OPENSEARCH_ENDPOINT"):
        loader.Settings.from_env({})
    with pytest.raises(loader.LoadError, match="DATA_NODES"):
        loader.Settings.from_env({"OPENSEARCH_ENDPOINT": "x", "DATA_NODES": "two"})


# --- against the local OpenSearch ----------------------------------------------------------------


def test_put_templates_shape_new_indices(opensearch, own_templates):
    directory, renamed = own_templates
    names = loader.put_templates(opensearch, loader.with_replicas(loader.load_templates(directory), 1))
    assert names == sorted(renamed)
    for name in renamed:
        assert stored(opensearch, name)["template"]["settings"]["index"]["number_of_replicas"] == "1"
    # An index the job would create gets the template's mapping, the replica and the family's alias.
    alias = next(n for n in renamed if n.endswith("stock-indicators"))
    index = f"{alias}-2024.03"
    requests.put(f"{opensearch}/{index}", timeout=30).raise_for_status()
    settings = requests.get(f"{opensearch}/{index}/_settings", timeout=10).json()[index]["settings"]["index"]
    mapping = requests.get(f"{opensearch}/{index}/_mapping", timeout=10).json()[index]["mappings"]
    assert settings["number_of_replicas"] == "1"
    assert mapping["dynamic"] == "false" and mapping["properties"]["symbol"] == {"type": "keyword"}
    assert requests.get(f"{opensearch}/_alias/{alias}", timeout=10).json() == {index: {"aliases": {alias: {}}}}
    # Putting again replaces, so a second run changes nothing and fails nothing.
    assert loader.put_templates(opensearch, loader.with_replicas(loader.load_templates(directory), 1)) == names


def test_existing_indices_gain_the_fields_added_to_their_template_and_the_alias(opensearch, own_templates):
    _, renamed = own_templates
    name, body = next((n, b) for n, b in renamed.items() if n.endswith("stock-dlq"))
    loader.put_templates(opensearch, {name: body})
    older = {**body, "template": {k: v for k, v in body["template"].items() if k != "aliases"}}
    loader.put_templates(opensearch, {name: older})
    indices = [f"{name}-2024.02", f"{name}-2024.03"]
    for index in indices:
        requests.put(f"{opensearch}/{index}", timeout=30).raise_for_status()
    grown = json.loads(json.dumps(body))
    grown["template"]["mappings"]["properties"]["added_later"] = {"type": "keyword"}

    loader.put_templates(opensearch, {name: grown})
    for index in indices:
        mapping = requests.get(f"{opensearch}/{index}/_mapping", timeout=10).json()[index]["mappings"]
        assert mapping["properties"]["added_later"] == {"type": "keyword"}
        assert set(body["template"]["mappings"]["properties"]) < set(mapping["properties"])
    assert sorted(requests.get(f"{opensearch}/_alias/{name}", timeout=10).json()) == indices


def test_an_unpartitioned_index_moves_into_the_partitioned_ones_ids_unchanged(opensearch, own_templates):
    """The layout before time partitioning: one concrete index named as the family. Its documents
    move into the index of their own time (as the job would write them), and the name becomes the
    alias over them, so readers and the job's later upserts meet the same documents."""
    _, renamed = own_templates
    name, body = next((n, b) for n, b in renamed.items() if n.endswith("stock-indicators"))
    docs = {f"IBM|2024-0{m}-2{d}T14:3{d}:00Z": {"symbol": "IBM", "ts": f"2024-0{m}-2{d}T14:3{d}:00Z", "close": m + d}
            for m in (2, 3) for d in (1, 2)}
    lines = "".join(json.dumps({"index": {"_index": name, "_id": i}}) + "\n" + json.dumps(d) + "\n"
                    for i, d in docs.items())
    requests.post(f"{opensearch}/_bulk?refresh=true", data=lines, timeout=30,
                  headers={"Content-Type": "application/x-ndjson"}).raise_for_status()

    loader.put_templates(opensearch, {name: body}, deadline=time.monotonic() + 60)
    requests.post(f"{opensearch}/{name}/_refresh", timeout=10)
    hits = requests.post(f"{opensearch}/{name}/_search", json={"size": 100}, timeout=10).json()["hits"]["hits"]
    assert {h["_id"]: h["_index"] for h in hits} == {i: f"{name}-{d['ts'][:7].replace('-', '.')}" for i, d in docs.items()}
    assert {h["_id"]: h["_source"] for h in hits} == docs
    assert sorted(requests.get(f"{opensearch}/_alias/{name}", timeout=10).json()) == [f"{name}-2024.02", f"{name}-2024.03"]
    # Repeating is harmless: nothing is left to move.
    assert not loader.migrate_unpartitioned(opensearch, name, body, name, {}, time.monotonic() + 30)


def test_a_refused_template_stops_at_once_and_names_it(opensearch, own_templates):
    _, renamed = own_templates
    name = next(iter(renamed))
    started = time.monotonic()
    with pytest.raises(loader.LoadError, match=f"rejected index template {name}: HTTP 400"):
        loader.put_templates(opensearch, {name: {"index_patterns": "not-a-list", "template": {"bogus": 1}}},
                             deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 5, "a 4xx is not retried"


def test_an_unreachable_domain_is_retried_until_the_deadline():
    started = time.monotonic()
    # Port 9 (discard) on loopback: refused at once, so only the deadline ends the retries.
    with pytest.raises(loader.LoadError, match="security group admits this function"):
        loader.put_templates("http://127.0.0.1:9", {"t": {}}, deadline=time.monotonic() + 4)
    assert 3 <= time.monotonic() - started < 10


def test_basic_auth_header():
    assert loader.basic_auth("analytics-admin", "p:w") == "Basic YW5hbHl0aWNzLWFkbWluOnA6dw=="


# --- the Lambda entry point ----------------------------------------------------------------------


def test_create_puts_the_templates_and_answers_success(opensearch, own_templates, recorder, monkeypatch):
    directory, renamed = own_templates
    monkeypatch.setattr(loader, "TEMPLATE_DIRS", (directory,))
    monkeypatch.setenv("OPENSEARCH_ENDPOINT", opensearch)
    monkeypatch.setenv("DATA_NODES", "2")
    monkeypatch.delenv("MASTER_SECRET_ARN", raising=False)  # the local OpenSearch has no security plugin

    data = loader.handler(event("Create", recorder.url), Context())
    (answer,) = recorder.answers
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"] == data == {"Templates": ",".join(sorted(renamed)), "Replicas": "1"}
    assert (answer["StackId"], answer["RequestId"], answer["LogicalResourceId"]) == \
        ("arn:stack/test", "req-1", "IndexTemplates")
    assert answer["PhysicalResourceId"]
    # S3 refuses a pre-signed PUT whose signed headers differ: CloudFormation signs an empty type.
    assert recorder.headers[0].get("Content-Type", "") == ""
    for name in renamed:
        assert stored(opensearch, name)["template"]["settings"]["index"]["number_of_replicas"] == "1"

    update = dict(event("Update", recorder.url), PhysicalResourceId=answer["PhysicalResourceId"])
    monkeypatch.setenv("DATA_NODES", "1")
    loader.handler(update, Context())
    assert recorder.answers[-1]["Status"] == "SUCCESS"
    assert recorder.answers[-1]["PhysicalResourceId"] == answer["PhysicalResourceId"], "an update replaces nothing"
    for name in renamed:
        assert stored(opensearch, name)["template"]["settings"]["index"]["number_of_replicas"] == "0"


def test_failure_answers_failed_with_a_reason_and_in_time(recorder, monkeypatch):
    monkeypatch.setenv("OPENSEARCH_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("MASTER_SECRET_ARN", raising=False)
    started = time.monotonic()
    # 12 s left and a 10 s margin for the answer: the retries stop after about 2 s.
    loader.handler(event("Create", recorder.url), Context(remaining_s=12))
    (answer,) = recorder.answers
    assert answer["Status"] == "FAILED"
    assert "could not reach" in answer["Reason"] and "test-stream" in answer["Reason"]
    assert time.monotonic() - started < 8


def test_delete_leaves_the_domain_alone(recorder, monkeypatch):
    monkeypatch.setenv("OPENSEARCH_ENDPOINT", "http://127.0.0.1:9")  # would fail if contacted
    loader.handler(dict(event("Delete", recorder.url), PhysicalResourceId="index-templates"), Context())
    (answer,) = recorder.answers
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == "index-templates"


def test_direct_invocation_returns_what_it_did(opensearch, own_templates, monkeypatch):
    directory, renamed = own_templates
    monkeypatch.setattr(loader, "TEMPLATE_DIRS", (directory,))
    monkeypatch.setenv("OPENSEARCH_ENDPOINT", opensearch)
    monkeypatch.setenv("DATA_NODES", "1")
    monkeypatch.delenv("MASTER_SECRET_ARN", raising=False)
    assert loader.handler({}, Context()) == {"Templates": ",".join(sorted(renamed)), "Replicas": "0"}
