"""A real S3-compatible server on loopback (moto's standalone server) for the storage tests.

Test modules import ``s3_server_fixture`` and ``s3_bucket_fixture`` (``# noqa: F401``); they register as
``s3_server`` and ``s3_bucket``, so test parameters with those names do not shadow the imports.
Credentials are fake and passed to the client only; nothing else in the process sees them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from feature_platform.storage.s3_store import MIB, S3ObjectStore, transfer_config_for

REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# One session: its loaders cache the S3 service model, so each further client costs ~10 ms, not ~100 ms.
# Every client still gets its own copy of the event hooks, so a fault registered in one test stays there.
_SESSION = boto3.session.Session()


def s3_client(endpoint: str) -> Any:
    return _SESSION.client("s3", endpoint_url=endpoint, region_name=REGION, **FAKE_CREDENTIALS)


_shared: dict[str, Any] = {}


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture() -> Iterator[str]:
    """Endpoint URL of a moto server on 127.0.0.1 and a kernel-chosen free port; stopped at the end.

    Each module that imports this fixture gets its own session-scoped instance of it; they share
    one server (reference-counted) instead of starting one per module.
    """
    if not _shared:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _shared.update(server=server, url=f"http://{host}:{port}", users=0)
    _shared["users"] += 1
    try:
        yield _shared["url"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared.pop("server").stop()
            _shared.clear()


@pytest.fixture(name="s3_bucket")
def s3_bucket_fixture(s3_server: str) -> tuple[Any, str]:
    """A fresh, empty bucket per test: (client, bucket name)."""
    client = s3_client(s3_server)
    bucket = f"fp-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def small_part_store(client: Any, bucket: str, prefix: str = "") -> S3ObjectStore:
    """Multipart above 5 MiB (S3's minimum part size), so tests exercise it with small files."""
    return S3ObjectStore(client, bucket, prefix,
                         transfer_config=transfer_config_for(5 * MIB, 5 * MIB, max_concurrency=2))


@dataclass(frozen=True)
class S3StoreFactory:
    """A picklable way for a build's workers (other processes, Ray nodes) to open the test server's store:
    each call makes its own client; the fake credentials travel to the client only."""

    endpoint: str
    bucket: str
    prefix: str = "fp"

    def __call__(self) -> S3ObjectStore:
        return S3ObjectStore(s3_client(self.endpoint), self.bucket, self.prefix)
