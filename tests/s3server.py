"""A real S3 API on 127.0.0.1 for the object-storage tests: moto's server mode, and a proxy that can cut it off.

Import the fixtures into a test module by their function names (`s3_fixture`, `s3_server_fixture`,
`cut_proxy_fixture`); tests ask for them as `s3`, `s3_server` and `cut_proxy`.

`s3` (fixture): one moto server per test module (ThreadedMotoServer on a free port), and per test the
standard AWS environment pointing at it: AWS_ENDPOINT_URL, throwaway keys, empty config and credential
files (nothing from the machine's ~/.aws), no instance-metadata lookups, one attempt per request. Every
test gets a bucket of its own. Nothing can reach real AWS: the fixture refuses to hand out a bucket
unless the endpoint botocore will use is this server on 127.0.0.1.

`CutProxy`: a TCP proxy in front of the server that forwards bytes until told to cut, then closes every
connection after N more bytes from the client and refuses new ones: the bucket becoming unreachable in
the middle of an upload, as a dropped link or a dead endpoint does it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "AKIACCOPSTEST0000001"
SECRET_KEY = "ccops-test-secret-Zq8vW3xK9pL2mN7r"  # distinctive: the secrets test greps every file for it


@dataclass
class S3:
    """The server, this test's bucket, and a client on the test's side (boto3, for listing and tampering)."""

    endpoint: str
    bucket: str
    client: Any

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under prefix, read from the server itself (never through the code under test)."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)


@pytest.fixture(scope="module", name="s3_server")
def s3_server_fixture() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str) -> None:
    """The standard AWS variables, pointed at a server on 127.0.0.1 and nothing else."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.write_text("")
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # an unreachable endpoint fails at once, not after 5 tries
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")


def assert_local_endpoint() -> None:
    """Refuse to go on unless botocore's endpoint for S3 is a server on 127.0.0.1 (never real AWS)."""
    from urllib.parse import urlsplit

    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            host = urlsplit(os.environ[name]).hostname
            assert host == "127.0.0.1", f"{name}={os.environ[name]}: the S3 tests talk to 127.0.0.1 only"
            return
    raise AssertionError("AWS_ENDPOINT_URL is not set: an S3 call would go to real AWS")


@pytest.fixture(name="s3")
def s3_fixture(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3:
    import boto3

    aws_environment(monkeypatch, tmp_path, s3_server)
    assert_local_endpoint()
    client = boto3.client("s3", endpoint_url=s3_server)
    bucket = f"ccops-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(s3_server, bucket, client)


class CutProxy:
    """127.0.0.1:<port> -> the S3 server; `cut_after(n)`: n more client bytes pass, then the link is dead."""

    def __init__(self, upstream: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.budget: int | None = None  # client bytes still allowed through; None: no limit
        self.forwarded = 0  # client bytes forwarded since cut_after
        self.dead = False
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, limit: int) -> None:
        with self.lock:
            self.budget, self.forwarded = limit, 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dead:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client:
                    with self.lock:
                        if self.budget is not None:
                            data = data[: max(self.budget - self.forwarded, 0)]
                            self.forwarded += len(data)
                            if self.forwarded >= self.budget:
                                self.dead = True
                if data:
                    dst.sendall(data)
                if self.dead:
                    break
        except OSError:
            pass
        if self.dead:
            self._close_all()
        else:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _close_all(self) -> None:
        for s in list(self.connections):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.dead = True
        self.listener.close()
        self._close_all()


@pytest.fixture(name="cut_proxy")
def cut_proxy_fixture(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[CutProxy]:
    """The code under test talks to the bucket through the proxy; the test's own client still talks directly."""
    proxy = CutProxy(s3.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    assert_local_endpoint()
    yield proxy
    proxy.close()
