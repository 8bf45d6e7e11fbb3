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
from typing import Callable, Iterator

import pytest
from opensearchpy import OpenSearch, TransportError, helpers

from flink_job.core.index_lifecycle import BY_NAME, FAMILIES, ism_policy, ism_policy_id, parse_retention
from infra import index_templates_loader as loader
from tests.local_aws import OPENSEARCH_URL as OPENSEARCH
from tests.local_aws import opensearch_client
JOB_TEMPLATES = Path(__file__).resolve().parent.parent / "flink_job" / "index_templates"


class Context:
    log_stream_name = "test-stream"

    def __init__(self, remaining_s: float = 30.0):
        self._end = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


class ResponseRecorder:
    """A real HTTP server that records every request and answers it with ``reply(method, path)``
    (status, JSON): CloudFormation's pre-signed S3 URL, and the ISM API, which the local OpenSearch
    lacks."""

    def __init__(self, reply: Callable[[str, str], tuple[int, dict]] = lambda method, path: (200, {})) -> None:
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.requests.append({"method": self.command, "path": self.path, "headers": headers,
                                          "body": json.loads(raw) if raw else None})
                status, body = reply(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = answer  # noqa: N815 - http.server API

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base}/response?signature=x"

    @property
    def answers(self) -> list[dict]:
        return [r["body"] for r in self.requests]

    @property
    def headers(self) -> list[dict]:
        return [r["headers"] for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def client() -> OpenSearch:
    return opensearch_client()


@pytest.fixture(scope="module")
def opensearch(client) -> str:
    try:
        client.info()
    except TransportError as err:
        pytest.fail(f"local OpenSearch is not reachable at {OPENSEARCH} ({err}); "
                    "start it with: .venv/bin/python -m stack.services start opensearch")
    return OPENSEARCH


@pytest.fixture
def own_templates(tmp_path, opensearch, client) -> Iterator[tuple[Path, dict[str, dict]]]:
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
        client.indices.delete_index_template(name=name, ignore=404)
    client.indices.delete(index=f"{prefix}*")


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


def stored(name: str) -> dict:
    (template,) = opensearch_client().indices.get_index_template(name=name)["index_templates"]
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


def test_put_templates_shape_new_indices(opensearch, client, own_templates):
    directory, renamed = own_templates
    names = loader.put_templates(opensearch, loader.with_replicas(loader.load_templates(directory), 1))
    assert names == sorted(renamed)
    for name in renamed:
        assert stored(name)["template"]["settings"]["index"]["number_of_replicas"] == "1"
    # An index the job would create gets the template's mapping, the replica and the family's alias.
    alias = next(n for n in renamed if n.endswith("stock-indicators"))
    index = f"{alias}-2024.03"
    client.indices.create(index=index)
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert settings["number_of_replicas"] == "1"
    assert mapping["dynamic"] == "false" and mapping["properties"]["symbol"] == {"type": "keyword"}
    assert client.indices.get_alias(name=alias) == {index: {"aliases": {alias: {}}}}
    # Putting again replaces, so a second run changes nothing and fails nothing.
    assert loader.put_templates(opensearch, loader.with_replicas(loader.load_templates(directory), 1)) == names


def test_existing_indices_gain_the_fields_added_to_their_template_and_the_alias(opensearch, client, own_templates):
    _, renamed = own_templates
    name, body = next((n, b) for n, b in renamed.items() if n.endswith("stock-dlq"))
    loader.put_templates(opensearch, {name: body})
    older = {**body, "template": {k: v for k, v in body["template"].items() if k != "aliases"}}
    loader.put_templates(opensearch, {name: older})
    indices = [f"{name}-2024.02", f"{name}-2024.03"]
    for index in indices:
        client.indices.create(index=index)
    grown = json.loads(json.dumps(body))
    grown["template"]["mappings"]["properties"]["added_later"] = {"type": "keyword"}

    loader.put_templates(opensearch, {name: grown})
    for index in indices:
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]
        assert mapping["properties"]["added_later"] == {"type": "keyword"}
        assert set(body["template"]["mappings"]["properties"]) < set(mapping["properties"])
    assert sorted(client.indices.get_alias(name=name)) == indices


def test_an_unpartitioned_index_moves_into_the_partitioned_ones_ids_unchanged(opensearch, client, own_templates):
    """The layout before time partitioning: one concrete index named as the family. Its documents
    move into the index of their own time (as the job would write them), and the name becomes the
    alias over them, so readers and the job's later upserts meet the same documents."""
    _, renamed = own_templates
    name, body = next((n, b) for n, b in renamed.items() if n.endswith("stock-indicators"))
    docs = {f"IBM|2024-0{m}-2{d}T14:3{d}:00Z": {"symbol": "IBM", "ts": f"2024-0{m}-2{d}T14:3{d}:00Z", "close": m + d}
            for m in (2, 3) for d in (1, 2)}
    assert helpers.bulk(client, [{"_index": name, "_id": i, "_source": d} for i, d in docs.items()],
                        refresh=True) == (len(docs), [])

    loader.put_templates(opensearch, {name: body}, deadline=time.monotonic() + 60)
    client.indices.refresh(index=name)
    hits = client.search(index=name, body={"size": 100})["hits"]["hits"]
    assert {h["_id"]: h["_index"] for h in hits} == {i: f"{name}-{d['ts'][:7].replace('-', '.')}" for i, d in docs.items()}
    assert {h["_id"]: h["_source"] for h in hits} == docs
    assert sorted(client.indices.get_alias(name=name)) == [f"{name}-2024.02", f"{name}-2024.03"]
    # Repeating is harmless: nothing is left to move.
    assert not loader.migrate_unpartitioned(loader.Domain.connect(opensearch), name, body, name)


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


def test_the_master_user_goes_as_basic_authentication(recorder):
    loader.put_templates(recorder.base, {"t": {"index_patterns": []}}, ("analytics-admin", "p:w"))
    (put,) = recorder.requests
    assert (put["method"], put["path"]) == ("PUT", "/_index_template/t")
    assert put["headers"]["authorization"] == "Basic YW5hbHl0aWNzLWFkbWluOnA6dw=="


def test_a_refused_master_user_stops_at_once_and_says_to_check_the_secret():
    domain = ResponseRecorder(lambda method, path: (403, {"error": {"type": "security_exception"}, "status": 403}))
    try:
        with pytest.raises(loader.LoadError, match=r"refused the master user \(HTTP 403\) for index template t"):
            loader.put_templates(domain.base, {"t": {}}, ("analytics-admin", "wrong"), time.monotonic() + 30)
        assert len(domain.requests) == 1, "a refusal is not retried"
    finally:
        domain.stop()


def test_retention_policies_are_put_replaced_at_their_version_and_attached():
    """The ISM calls (Amazon OpenSearch Service; the local distribution has no ISM) against a server
    that answers like the plugin: the stock-dlq policy exists at a version, the others do not."""
    def ism(method: str, path: str) -> tuple[int, dict]:
        if method == "GET":
            if path.endswith("/stock-dlq-retention"):
                return 200, {"_id": "stock-dlq-retention", "_seq_no": 7, "_primary_term": 2, "policy": {}}
            return 404, {"error": {"type": "status_exception"}, "status": 404}
        return 200, {"updated_indices": 1, "failures": False}

    domain = ResponseRecorder(ism)
    retention = {**parse_retention(""), "stock-dlq": 9}
    try:
        assert loader.put_retention_policies(domain.base, retention, deadline=time.monotonic() + 30) == retention
    finally:
        domain.stop()
    calls = [(r["method"], r["path"]) for r in domain.requests]
    for fam in FAMILIES:
        policy_id = ism_policy_id(fam)
        version = "?if_seq_no=7&if_primary_term=2" if fam.name == "stock-dlq" else ""
        assert [c for c in calls if policy_id in c[1] or fam.pattern in c[1]] == [
            ("GET", f"/_plugins/_ism/policies/{policy_id}"), ("PUT", f"/_plugins/_ism/policies/{policy_id}{version}"),
            ("POST", f"/_plugins/_ism/add/{fam.pattern}"), ("POST", f"/_plugins/_ism/change_policy/{fam.pattern}")]
    bodies = {r["path"]: r["body"] for r in domain.requests}
    assert bodies["/_plugins/_ism/policies/stock-dlq-retention?if_seq_no=7&if_primary_term=2"] == \
        ism_policy(BY_NAME["stock-dlq"], 9)
    assert bodies["/_plugins/_ism/add/stock-dlq-*"] == {"policy_id": "stock-dlq-retention"}


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
    assert recorder.headers[0].get("content-type", "") == ""
    for name in renamed:
        assert stored(name)["template"]["settings"]["index"]["number_of_replicas"] == "1"

    update = dict(event("Update", recorder.url), PhysicalResourceId=answer["PhysicalResourceId"])
    monkeypatch.setenv("DATA_NODES", "1")
    loader.handler(update, Context())
    assert recorder.answers[-1]["Status"] == "SUCCESS"
    assert recorder.answers[-1]["PhysicalResourceId"] == answer["PhysicalResourceId"], "an update replaces nothing"
    for name in renamed:
        assert stored(name)["template"]["settings"]["index"]["number_of_replicas"] == "0"


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
