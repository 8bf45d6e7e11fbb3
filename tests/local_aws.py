"""Endpoints of, and boto3 clients for, the local Kinesis and DynamoDB the fetcher tests use."""

from __future__ import annotations

import os
from typing import Any

KINESIS_URL = os.environ.get("TEST_KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568")
DYNAMODB_URL = os.environ.get("TEST_DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:8000")
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
