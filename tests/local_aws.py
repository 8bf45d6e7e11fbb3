"""Endpoints of, and boto3 clients for, the local services the tests use.

Ports come from ``KINESIS_PORT``, ``OPENSEARCH_PORT``, ``DYNAMODB_PORT`` like everywhere else
(``stack.services.Ports``); ``make test`` sets its own, so the suite never touches ``make run``'s data.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from opensearchpy import OpenSearch

from stack.search import client as search_client
from stack.services import Ports, port_open

PORTS = Ports.from_env()
KINESIS_URL = os.environ.get("TEST_KINESIS_ENDPOINT_URL", PORTS.url("kinesis"))
DYNAMODB_URL = os.environ.get("TEST_DYNAMODB_ENDPOINT_URL", PORTS.url("dynamodb"))
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", PORTS.url("opensearch"))
ENDPOINTS = {"kinesis": KINESIS_URL, "dynamodb": DYNAMODB_URL}


def local_client(service: str) -> Any:
    """A new client (own session: safe to use from its own thread) with dummy credentials."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, endpoint_url=ENDPOINTS[service], region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}),
    )


def opensearch_client(url: str = OPENSEARCH_URL, timeout_s: float = 30.0) -> OpenSearch:
    """A client of the local OpenSearch (one attempt per call: a test sees the first failure)."""
    return search_client(url, timeout_s)


def spare_port(offset: int = 0) -> int:
    """A free port whose companion ``port + offset`` is free too (Kinesis' TLS listener, OpenSearch's
    transport port)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + offset < 65536 and not port_open(port + offset):
            return port
