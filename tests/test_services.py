"""The local service scripts: idempotent start, clean stop, clear errors.

Runs separate instances on spare ports with their own run directory, so the stack the other tests use
is left alone.
"""

from __future__ import annotations

import socket

import pytest

from stack.services import DynamoDB, Kinesis, OpenSearch, Ports, StackError, port_open


@pytest.fixture
def own_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("service_class,port", [(Kinesis, 14568), (DynamoDB, 18000)])
def test_start_twice_is_harmless_and_stop_frees_the_port(own_run_dir, service_class, port):
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


def test_the_running_opensearch_is_reused_not_restarted():
    service = OpenSearch(Ports.from_env().opensearch)
    assert service.healthy(service.port), "make test starts OpenSearch before the suite"
    pid = service.pid()
    assert "already running" in service.start()
    assert service.pid() == pid
