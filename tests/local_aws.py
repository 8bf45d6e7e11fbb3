"""Endpoints of, and boto3 clients for, the local services the tests use.

Ports come from ``KINESIS_PORT``, ``OPENSEARCH_PORT``, ``DYNAMODB_PORT`` like everywhere else
(``stack.services.Ports``); ``make test`` sets its own, so the suite never touches ``make run``'s data.
"""

from __future__ import annotations

import os
from typing import Any

from stack.services import Ports

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
