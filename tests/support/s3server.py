"""moto's standalone S3-compatible server on 127.0.0.1 (a subprocess) for object storage tests."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs

# moto accepts any credentials; these are only there so that no real ones are looked up.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-do-not-log",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server(timeout_s: float = 20.0) -> Iterator[str]:
    """Start ``python -m moto.server`` on a free port; yields its ``http://`` endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                        break
                except (urllib.error.URLError, OSError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"moto server did not start: {log.read()!r}") from None
                    time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            process.wait(timeout=10)


def s3_filesystem(endpoint: str) -> pafs.S3FileSystem:
    """A pyarrow filesystem on the test server that may create buckets."""
    return pafs.S3FileSystem(
        endpoint_override=endpoint.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
        access_key=TEST_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        allow_bucket_creation=True,
    )


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket's name."""
    name = f"test-{secrets.token_hex(4)}"
    s3_filesystem(endpoint).create_dir(name)
    return name
