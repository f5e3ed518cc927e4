"""A real S3-compatible server (moto in server mode) on 127.0.0.1, and buckets in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from tests.support.server import free_port


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """Yields the AWS_* environment that points obstore (and boto3) at the server."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true"}
    finally:
        server.stop()


def new_bucket(env: dict[str, str]) -> tuple[str, Any]:
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"images-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name, client
