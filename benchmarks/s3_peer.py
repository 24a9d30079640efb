"""An S3-protocol peer for benchmarks: moto in server mode on a loopback port, one bucket.

No MinIO binary can be had here; moto (PyPI) speaks the same protocol, in a Python process
of its own on the same cores, so S3 figures are a lower bound for a real object store.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import PYTHON, ROOT, free_port, stop_process, tail

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cloudfilm-bench", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Peer:
    """moto in server mode on a loopback port, with one bucket."""

    process: subprocess.Popen[bytes]
    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        return CREDENTIALS | {"CLOUDFILM_BLOB_URL": f"s3://{self.bucket}/archive?endpoint_url={self.endpoint}"}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def read_ceiling(self, objects: int, size: int, threads: int = 8) -> float:
        """MB/s of boto3 GETs of ``objects`` objects of ``size`` bytes, ``threads`` at a time
        (as cloudfilm's read-ahead fetches them): what this peer can hand out at all."""
        from concurrent.futures import ThreadPoolExecutor

        client, body = self.client(), secrets.token_bytes(size)
        keys = [f"ceiling/{n}" for n in range(objects)]
        for key in keys:
            client.put_object(Bucket=self.bucket, Key=key, Body=body)

        def get(key: str) -> int:
            return len(client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(get, keys))
        seconds = time.monotonic() - started
        client.delete_objects(Bucket=self.bucket,
                              Delete={"Objects": [{"Key": key} for key in keys]})
        return total / 1e6 / seconds

    def stored_bytes(self) -> tuple[int, int]:
        """(objects, bytes) in the bucket."""
        count = size = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                count, size = count + 1, size + int(item["Size"])
        return count, size


@contextmanager
def s3_peer(log_dir: Path) -> Iterator[S3Peer]:
    port = free_port()
    with open(log_dir / "moto.log", "wb") as log:
        process = subprocess.Popen([str(PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    peer = S3Peer(process, f"http://127.0.0.1:{port}", f"cloudfilm-{secrets.token_hex(4)}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(peer.endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start:\n{tail(log_dir / 'moto.log')}") from None
                time.sleep(0.2)
        peer.client().create_bucket(Bucket=peer.bucket)
        yield peer
    finally:
        stop_process(process)
