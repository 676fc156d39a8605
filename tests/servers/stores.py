"""Object store servers on loopback for the tests: moto's S3 server (in-process, IAM
signature checks on), the GCS emulator (in-process) and Azurite (Node.js, a child process).

Each is a :class:`Store`: ``url(key)`` (``s3://bucket/key``...), ``options`` (storage
options with working credentials), ``wrong`` (credentials the server refuses; None where it
checks none: the GCS emulator), ``put(key, data)`` and ``stop()``.
"""

from __future__ import annotations

import base64
import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional

REPO = Path(__file__).resolve().parents[2]
BUCKET = "kithara-test"


class Store:
    scheme = ""
    bucket = BUCKET
    options: Dict[str, Any]
    wrong: Optional[Dict[str, Any]] = None

    def url(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MotoS3(Store):
    """moto's S3 server with IAM authentication on: every request's SigV4 signature is
    checked against an IAM user's secret (``options``), and a wrong secret is refused.
    moto's state is one per process: each server has its own user and bucket."""

    scheme = "s3"

    def __init__(self) -> None:
        import boto3
        from moto.core import enable_iam_authentication
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        admin = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=self.endpoint, **admin)
        user = f"reader-{port}"
        self.bucket = f"{BUCKET}-{port}"
        iam.create_user(UserName=user)
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
        iam.put_user_policy(UserName=user, PolicyName="all-s3", PolicyDocument=policy)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self._auth = enable_iam_authentication()
        self._auth.__enter__()
        self._client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.key, aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )
        self._client.create_bucket(Bucket=self.bucket)
        self.options = {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}
        self.wrong = {"endpoint_url": self.endpoint, "key": self.key, "secret": "not-the-secret-0123456789"}

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.__exit__(None, None, None)
            self._auth = None
        self._server.stop()


class GcsEmulator(Store):
    """gcp-storage-emulator: anonymous; its downloads carry no ETag, only the length."""

    scheme = "gs"

    def __init__(self) -> None:
        import requests
        from gcp_storage_emulator.server import create_server

        port = free_port()
        self._server = create_server("127.0.0.1", port, in_memory=True)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._http = requests.Session()
        self._http.post(f"{self.endpoint}/storage/v1/b", json={"name": BUCKET}).raise_for_status()
        self.options = {"endpoint_url": self.endpoint, "token": "anon"}

    def put(self, key: str, data: bytes) -> None:
        self._http.post(
            f"{self.endpoint}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": key}, data=data
        ).raise_for_status()

    def stop(self) -> None:
        self._http.close()
        self._server.stop()


DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_command() -> Optional[str]:
    """Azurite's blob server as ``make test`` installs it (.npm/), else on PATH."""
    local = REPO / ".npm" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists() and shutil.which("node"):
        return str(local)
    return shutil.which("azurite-blob")


class Azurite(Store):
    """Azurite's blob service in memory: Shared Key signatures are checked."""

    scheme = "az"

    def __init__(self, command: str) -> None:
        self._process = subprocess.Popen(
            [command, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence", "--extentMemoryLimit",
             "256", "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True,
        )
        try:
            port = self._await_port(30.0)
        except BaseException:
            self.stop()
            raise
        self.endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};BlobEndpoint={self.endpoint};"
        )
        from azure.storage.blob import BlobServiceClient

        self._service = BlobServiceClient.from_connection_string(self.connection_string)
        self._service.create_container(BUCKET)
        self.options = {"connection_string": self.connection_string}
        wrong_key = base64.b64encode(b"not the account key" * 3).decode()
        self.wrong = {"account_name": "devstoreaccount1", "account_key": wrong_key, "endpoint_url": self.endpoint}

    def _await_port(self, limit: float) -> int:
        deadline = time.monotonic() + limit
        seen = []
        assert self._process.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self._process.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
            if match:
                return int(match.group(1))
        raise RuntimeError("Azurite did not start: " + "".join(seen[-5:]))

    def put(self, key: str, data: bytes) -> None:
        self._service.get_blob_client(BUCKET, key).upload_blob(data, overwrite=True)

    def stop(self) -> None:
        service = getattr(self, "_service", None)
        if service is not None:
            service.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str) -> Store:
    """A fresh server of ``kind`` ("s3", "gs", "az"); pytest skips what cannot run here."""
    import pytest

    if kind == "s3":
        pytest.importorskip("moto.server")
        pytest.importorskip("boto3")
        return MotoS3()
    if kind == "gs":
        pytest.importorskip("gcp_storage_emulator")
        return GcsEmulator()
    command = azurite_command()
    if command is None:
        pytest.skip("Azurite is not installed (make test installs it with npm)")
    pytest.importorskip("azure.storage.blob")
    return Azurite(command)


__all__ = ["BUCKET", "Azurite", "GcsEmulator", "MotoS3", "Store", "start"]
