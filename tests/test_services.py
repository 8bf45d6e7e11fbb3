"""The local service scripts: idempotent start, clean stop, clear errors.

Runs separate instances on spare ports with their own run directory, so the stack the other tests use
is left alone.
"""

from __future__ import annotations

import json
import socket

import pytest

from stack.services import DynamoDB, Kinesis, OpenSearch, Ports, StackError, port_open
from tests.local_aws import spare_port


@pytest.fixture
def own_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.services  # starts the local Kinesis and DynamoDB (make setup installs them)
@pytest.mark.parametrize("service_class,companion", [(Kinesis, 1000), (DynamoDB, 0)])
def test_start_twice_is_harmless_and_stop_frees_the_port(own_run_dir, service_class, companion):
    port = spare_port(companion)  # never a port a run or the suite uses
    service = service_class(port)
    try:
        assert "started" in service.start()
        first_pid = service.pid()
        assert "already running" in service.start()
        assert service.pid() == first_pid
    finally:
        service.stop()
    assert not port_open(port)
    assert service.pid() is None
    assert "not running" in service.stop()


def test_a_port_held_by_another_process_is_a_clear_error(own_run_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} is already in use"):
            Kinesis(port).start()


@pytest.mark.services
def test_the_running_opensearch_is_reused_not_restarted():
    service = OpenSearch(Ports.from_env().opensearch)
    assert service.healthy(service.port), "make test starts OpenSearch before the suite"
    pid = service.pid()
    assert "already running" in service.start()
    assert service.pid() == pid


def test_ports_come_from_the_environment_and_a_bad_one_is_named():
    assert Ports.from_env({}) == Ports(kinesis=4568, opensearch=9200, dynamodb=8000, dashboard=8050)
    ports = Ports.from_env({"KINESIS_PORT": "1", "OPENSEARCH_PORT": "2", "DYNAMODB_PORT": "3", "DASHBOARD_PORT": "4"})
    assert ports.as_env() == {"KINESIS_PORT": "1", "OPENSEARCH_PORT": "2", "DYNAMODB_PORT": "3", "DASHBOARD_PORT": "4"}
    assert ports.url("opensearch") == "http://127.0.0.1:2"
    with pytest.raises(StackError, match="OPENSEARCH_PORT='92OO' is not a port"):
        Ports.from_env({"OPENSEARCH_PORT": "92OO"})


def test_the_job_properties_follow_the_ports():
    from stack.properties import local_property_groups

    groups = {g["PropertyGroupId"]: g["PropertyMap"]
              for g in local_property_groups(Ports(kinesis=1111, opensearch=2222, dynamodb=3333))}
    assert groups["InputStream0"]["aws.endpoint"] == groups["OutputStream0"]["aws.endpoint"] == "http://127.0.0.1:1111"
    assert groups["OpenSearch0"]["hosts"] == "http://127.0.0.1:2222"
    assert "${" not in json.dumps(groups)
