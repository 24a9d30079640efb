"""Blobs in an S3-compatible object store (issue 13): the real server against a real
S3-protocol server on loopback (moto in server mode), on SQLite and PostgreSQL.

Between cloudfilm and moto sits a small recording proxy, so a test sees every request
cloudfilm makes of the store: which objects it writes, in how many parts, and that a
frame is one ranged GET of exactly the frame's bytes. The same proxy can flip a byte of
every upload on the wire, which cloudfilm must notice and refuse to acknowledge.
"""

from __future__ import annotations

import http.client
import io
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from cloudfilm.services.archive.retention import Retention
from cloudfilm.storage.blobs import blob_key_for
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.read_cache import ReadCache
from conftest import Server, cli_env, database_url_for, free_port
from factory import make_instance, parse_multipart, stow, to_bytes

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cloudfilm-test", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


# -- the S3 peer and the proxy in front of it ------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """One request cloudfilm made of the object store, as the proxy forwarded it."""

    method: str
    path: str
    range: str
    status: int


class RecordingProxy:
    """Forwards HTTP to the moto server and records each request; ``corrupt`` flips one
    byte in the middle of every upload body (PutObject, UploadPart) on its way."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.seen: list[Seen] = []
        self.corrupt = False
        self._lock = threading.Lock()
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _forward(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length) if length else b""
        if self.corrupt and request.command == "PUT" and len(body) > 1024:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=120)
        upstream.request(request.command, request.path, body=body, headers=dict(request.headers))
        answer = upstream.getresponse()
        data = answer.read()
        with self._lock:
            self.seen.append(Seen(request.command, request.path,
                                  request.headers.get("range", ""), answer.status))
        request.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "server", "date"):
                request.send_header(name, value)
        request.send_header("content-length", answer.getheader("content-length", "0")
                            if request.command == "HEAD" else str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
        upstream.close()

    def mark(self) -> int:
        with self._lock:
            return len(self.seen)

    def since(self, mark: int) -> list[Seen]:
        with self._lock:
            return list(self.seen[mark:])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    """``python -m moto.server`` on a loopback port: an S3-protocol server in its own process."""
    port = free_port()
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def proxy(moto_port: int) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(moto_port)
    try:
        yield recording
    finally:
        recording.close()


@dataclass
class Bucket:
    """A fresh bucket with cloudfilm's objects under ``prefix``."""

    name: str
    prefix: str
    client: Any
    proxy: RecordingProxy

    @property
    def env(self) -> dict[str, str]:
        endpoint = f"http://127.0.0.1:{self.proxy.port}"
        return CREDENTIALS | {
            "CLOUDFILM_BLOB_URL": f"s3://{self.name}/{self.prefix}?endpoint_url={endpoint}"}

    def objects(self) -> dict[str, int]:
        """Key (below the prefix) → size, listed straight from moto."""
        found: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=f"{self.prefix}/"):
            for item in page.get("Contents", []):
                found[item["Key"][len(self.prefix) + 1:]] = item["Size"]
        return found

    def key_of(self, sop_uid: str) -> str:
        keys = [k for k in self.objects() if k.startswith(blob_key_for(sop_uid) + ".")]
        assert len(keys) == 1, f"expected one object for {sop_uid}, found {keys}"
        return keys[0]

    def requests_for(self, sop_uid: str, seen: list[Seen]) -> list[Seen]:
        start = f"/{self.name}/{self.prefix}/{blob_key_for(sop_uid)}."
        return [s for s in seen if s.path.startswith(start)]


@pytest.fixture
def bucket(moto_port: int, proxy: RecordingProxy) -> Bucket:
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                          region_name="us-east-1")
    name = f"cloudfilm-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    proxy.corrupt = False
    return Bucket(name, "archive", client, proxy)


@pytest.fixture
def s3_server(database_kind: str, tmp_path: Path, bucket: Bucket) -> Iterator[Server]:
    """A server of its own whose blobs live in ``bucket`` (its data directory is scratch)."""
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, extra_env=bucket.env)
    try:
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


def check(server: Server, bucket: Bucket, *args: str) -> subprocess.CompletedProcess[str]:
    """``cloudfilm check`` as an operator runs it, with the same blob URL as the server."""
    return subprocess.run([sys.executable, "-m", "cloudfilm", "check", "--data",
                           str(server.data_dir), *args],
                          env=cli_env(server.database_url) | bucket.env,
                          capture_output=True, text=True, timeout=600)


def _url(ds: pydicom.Dataset) -> str:
    return (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def _retrieve(http: httpx.Client, ds: pydicom.Dataset) -> bytes:
    response = http.get(_url(ds), headers={"accept": AS_STORED})
    assert response.status_code == 200, response.text
    [(_, data)] = parse_multipart(response)
    return data


# -- STOW, WADO-RS, rendered ------------------------------------------------------------------

def test_stowed_instances_are_objects_and_frames_are_single_ranged_gets(
        s3_server: Server, bucket: Bucket) -> None:
    study = generate_uid()
    single = make_instance(study=study, rows=32, columns=32, seed=1)
    multi = make_instance(study=study, rows=64, columns=64, frames=6, seed=2, instance_number=2)
    s3_server.start()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(single), to_bytes(multi)]).status_code == 200
        objects = bucket.objects()
        assert len(objects) == 2
        assert objects[bucket.key_of(multi.SOPInstanceUID)] == len(to_bytes(multi))
        assert not (s3_server.data_dir / "blobs").exists(), "an s3:// store keeps no local blobs"
        assert _retrieve(http, single) == to_bytes(single)

        mark = bucket.proxy.mark()
        frame = http.get(_url(multi) + "/frames/4", headers={"accept": FRAMES_AS_STORED})
        assert frame.status_code == 200
        frame_size = 64 * 64 * 2
        assert parse_multipart(frame)[0][1] == multi.PixelData[3 * frame_size:4 * frame_size]
        gets = [s for s in bucket.requests_for(multi.SOPInstanceUID, bucket.proxy.since(mark))
                if s.method == "GET"]
        assert len(gets) == 1 and gets[0].status == 206, gets
        first, last = (int(n) for n in gets[0].range.removeprefix("bytes=").split("-"))
        assert last - first + 1 == frame_size, "the GET asked for the frame's bytes only"

        rendered = http.get(_url(multi) + "/frames/2/rendered", headers={"accept": "image/png"})
        assert rendered.status_code == 200
        assert Image.open(io.BytesIO(rendered.content)).size == (64, 64)


def test_bulk_pixel_data_is_read_with_ranged_gets_only(s3_server: Server, bucket: Bucket) -> None:
    ds = make_instance(rows=32, columns=32, frames=3, seed=3)
    s3_server.start()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(ds)]).status_code == 200
        mark = bucket.proxy.mark()
        bulk = http.get(_url(ds) + "/bulkdata/7FE00010", headers={"accept": FRAMES_AS_STORED})
        assert bulk.status_code == 200
        assert parse_multipart(bulk)[0][1] == ds.PixelData
    gets = [s for s in bucket.requests_for(ds.SOPInstanceUID, bucket.proxy.since(mark))
            if s.method == "GET"]
    assert gets and all(s.range and s.status == 206 for s in gets), gets


# -- DIMSE ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")
def test_c_store_with_storescu_then_retrieve(s3_server: Server, bucket: Bucket,
                                             tmp_path: Path) -> None:
    ds = make_instance(rows=32, columns=32, seed=4, patient_id="S3-DIMSE")
    path = tmp_path / "one.dcm"
    path.write_bytes(to_bytes(ds))
    s3_server.dimse_port = free_port()
    s3_server.start()
    with s3_server.http() as admin:  # storescu's AE as a known modality (tests/test_dimse.py)
        node = {"name": "storescu", "aet": "STORESCU", "host": "127.0.0.1", "port": 104}
        assert admin.post("/api/admin/nodes", json=node).status_code == 201
    sent = subprocess.run(["storescu", "-v", "-aec", s3_server.ae_title, "127.0.0.1",
                           str(s3_server.dimse_port), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    bucket.key_of(ds.SOPInstanceUID)  # exactly one object holds it
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        stored = pydicom.dcmread(io.BytesIO(_retrieve(http, ds)))
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData


# -- large objects ----------------------------------------------------------------------------

def test_an_instance_over_8_mb_goes_up_in_parts_and_comes_back_byte_identical(
        s3_server: Server, bucket: Bucket) -> None:
    ds = make_instance(rows=512, columns=512, frames=20, seed=5)  # 10.5 MB
    sent = to_bytes(ds)
    assert len(sent) > 8 << 20
    s3_server.start()
    mark = bucket.proxy.mark()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=120) as http:
        assert stow(http, [sent]).status_code == 200
        writes = bucket.requests_for(ds.SOPInstanceUID, bucket.proxy.since(mark))
        assert [s.method for s in writes if "uploads" in s.path] == ["POST"]  # created
        parts = [s for s in writes if s.method == "PUT" and "partNumber=" in s.path]
        assert len(parts) == 2 and all(s.status == 200 for s in parts)
        assert any(s.method == "POST" and "uploadId=" in s.path for s in writes)  # completed
        assert not [s for s in writes if s.method == "PUT" and "partNumber=" not in s.path]
        assert _retrieve(http, ds) == sent
        frame = http.get(_url(ds) + "/frames/17", headers={"accept": FRAMES_AS_STORED})
        size = 512 * 512 * 2
        assert parse_multipart(frame)[0][1] == ds.PixelData[16 * size:17 * size]


# -- checksums --------------------------------------------------------------------------------

def test_bytes_changed_on_the_way_to_the_store_are_not_acknowledged(
        s3_server: Server, bucket: Bucket) -> None:
    ds = make_instance(rows=64, columns=64, seed=6)
    s3_server.start()
    bucket.proxy.corrupt = True
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        response = stow(http, [to_bytes(ds)])
        bucket.proxy.corrupt = False
        assert response.status_code != 200
        [failed] = response.json()["00081198"]["Value"]
        assert "did not confirm" in failed["00F11001"]["Value"][0]
        assert http.get(_url(ds) + "/metadata").status_code == 404
    assert s3_server.log_path is not None
    assert "stored other bytes than were sent" in s3_server.log_path.read_text()  # ETag ≠ MD5
    assert bucket.objects() == {}, "the corrupted object was deleted"
    result = check(s3_server, bucket)
    assert result.returncode == 0, result.stdout + result.stderr


# -- cloudfilm check ---------------------------------------------------------------------------

def test_check_is_clean_on_s3_and_names_an_object_deleted_behind_its_back(
        s3_server: Server, bucket: Bucket) -> None:
    instances = [make_instance(rows=16, columns=16, seed=i, instance_number=i) for i in range(3)]
    s3_server.start()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(ds) for ds in instances]).status_code == 200
    clean = check(s3_server, bucket)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "checked 3 index rows and 3 blobs: clean" in clean.stdout
    gone, changed = instances[1].SOPInstanceUID, instances[2].SOPInstanceUID
    bucket.client.delete_object(Bucket=bucket.name, Key=f"{bucket.prefix}/{bucket.key_of(gone)}")
    bucket.client.put_object(Bucket=bucket.name, Key=f"{bucket.prefix}/zz/stray", Body=b"x")
    other = bytearray(to_bytes(instances[2]))
    other[-1] ^= 0xFF  # same size, other bytes: only hashing sees it
    bucket.client.put_object(Bucket=bucket.name, Body=bytes(other),
                             Key=f"{bucket.prefix}/{bucket.key_of(changed)}")
    found = check(s3_server, bucket)
    assert found.returncode == 1
    assert f"missing blob: instance {gone}" in found.stdout
    assert "orphan blob: zz/stray has no index row" in found.stdout
    assert f"SHA-256 mismatch: instance {changed}" in found.stdout
    sizes = check(s3_server, bucket, "--sizes-only")
    assert sizes.returncode == 1 and f"instance {changed}" not in sizes.stdout
    assert f"missing blob: instance {gone}" in sizes.stdout


def test_check_removes_orphans_only_when_asked_and_only_old_ones(
        s3_server: Server, bucket: Bucket) -> None:
    """An object no row names, as a node lost with its data directory leaves behind (an
    upload whose index commit never came): reported, kept while it could still be in
    flight, removed once older than the age the operator gives."""
    kept = make_instance(rows=16, columns=16, seed=7)
    s3_server.start()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(kept)]).status_code == 200
    stray = f"{blob_key_for(generate_uid())}.{secrets.token_hex(8)}"
    bucket.client.put_object(Bucket=bucket.name, Key=f"{bucket.prefix}/{stray}",
                             Body=to_bytes(make_instance(seed=8)))
    young = check(s3_server, bucket, "--remove-orphans-older-than", "24")
    assert young.returncode == 1 and f"orphan blob: {stray} has no index row" in young.stdout
    removed = check(s3_server, bucket, "--remove-orphans-older-than", "0")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"removed orphan blob: {stray}" in removed.stdout
    assert "checked 1 index rows and 2 blobs: clean" in removed.stdout
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=f"{bucket.prefix}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{bucket.prefix}/{bucket.key_of(kept.SOPInstanceUID)}"]
    refused = check(s3_server, bucket, "--remove-orphans-older-than", "-1")
    assert refused.returncode == 2 and "use a number of hours" in refused.stderr


def test_delete_removes_the_objects(s3_server: Server, bucket: Bucket) -> None:
    keep, drop = make_instance(seed=7), make_instance(seed=8)
    s3_server.start()
    index = Index(s3_server.database_url)
    Retention(index).set_policy("*", 0)  # the default policy keeps everything: allow deletion
    index.dispose()
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(keep), to_bytes(drop)]).status_code == 200
        assert http.delete(f"/studies/{drop.StudyInstanceUID}").status_code == 200
    assert list(bucket.objects()) == [bucket.key_of(keep.SOPInstanceUID)]
    assert not list((s3_server.data_dir / "trash").iterdir())
    result = check(s3_server, bucket)
    assert result.returncode == 0, result.stdout + result.stderr


# -- crashes ---------------------------------------------------------------------------------

class _Writer(threading.Thread):
    """Sends STOW batches of one study each until the server dies; remembers what was
    acknowledged."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.acknowledged: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.server.dicomweb, headers=self.server.auth,
                          timeout=30) as http:
            while True:
                study = generate_uid()
                batch = [to_bytes(make_instance(study=study, instance_number=i, rows=64,
                                                columns=64)) for i in range(8)]
                try:
                    response = stow(http, batch)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    self.acknowledged.append(study)


@pytest.mark.parametrize("attempt", range(2))
def test_kill_9_during_stow_on_s3_loses_nothing_acknowledged(s3_server: Server, bucket: Bucket,
                                                            attempt: int) -> None:
    s3_server.start()
    writer = _Writer(s3_server)
    writer.start()
    deadline = time.monotonic() + 60
    while not writer.acknowledged and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.random() * 1.5)  # then kill at a random point of a later batch
    s3_server.kill()
    writer.join(timeout=30)
    acknowledged = list(writer.acknowledged)
    assert acknowledged, "the writer should have been acknowledged before the kill"
    s3_server.start()  # recovery runs at start-up
    with httpx.Client(base_url=s3_server.dicomweb, headers=s3_server.auth, timeout=60) as http:
        for study in acknowledged:
            response = http.get(f"/studies/{study}", headers={"accept": AS_STORED})
            assert response.status_code == 200, f"acknowledged study {study} is missing"
            assert len(parse_multipart(response)) == 8
    s3_server.stop()
    result = check(s3_server, bucket)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the read cache ----------------------------------------------------------------------------

def test_the_read_cache_serves_repeated_reads_without_asking_the_store(
        database_kind: str, tmp_path: Path, bucket: Bucket) -> None:
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url, extra_env=bucket.env | {"CLOUDFILM_BLOB_CACHE_MB": "64"})
    ds = make_instance(rows=64, columns=64, frames=3, seed=9)
    try:
        server.start()
        with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
            assert stow(http, [to_bytes(ds)]).status_code == 200
            for _ in range(2):
                mark = bucket.proxy.mark()
                rendered = http.get(_url(ds) + "/frames/2/rendered",
                                    headers={"accept": "image/png"})
                assert rendered.status_code == 200
                frame = http.get(_url(ds) + "/frames/3", headers={"accept": FRAMES_AS_STORED})
                assert parse_multipart(frame)[0][1] == ds.PixelData[2 * 8192:]
                asked = bucket.requests_for(ds.SOPInstanceUID, bucket.proxy.since(mark))
            assert asked == [], "the second reads came from the local cache"
    finally:
        server.stop()
        if schema:
            schema.drop()


def test_the_read_cache_stays_within_its_bound(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path / "cache", max_bytes=8 * 1024)
    for number in range(20):
        cache.put(ReadCache.range_name(f"ab/cd/{number}", 0, 1000), bytes([number]) * 1000)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert on_disk <= 8 * 1024
    newest = cache.get(ReadCache.range_name("ab/cd/19", 0, 1000))
    assert newest is not None and newest.read_bytes() == bytes([19]) * 1000
    assert cache.get(ReadCache.range_name("ab/cd/0", 0, 1000)) is None, "the oldest went first"
    reopened = ReadCache(tmp_path / "cache", max_bytes=2 * 1024)  # a smaller bound at restart
    assert sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file()) <= 2048
    assert reopened.get(ReadCache.range_name("ab/cd/19", 0, 1000)) is not None


def test_a_bucket_that_cannot_be_used_stops_the_command_with_one_line(
        moto_port: int, tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'index.sqlite3'}") | CREDENTIALS | {
        "CLOUDFILM_BLOB_URL": f"s3://no-such-bucket/x?endpoint_url=http://127.0.0.1:{moto_port}"}
    result = subprocess.run([sys.executable, "-m", "cloudfilm", "check", "--data",
                             str(tmp_path / "data")], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: CLOUDFILM_BLOB_URL: cannot use bucket "
                                    "s3://no-such-bucket/x"), result.stderr
    assert "Traceback" not in result.stderr


# -- a commit that raises --------------------------------------------------------------------

class _CommitRaises(Index):
    """An index whose write commit raises, before committing or after it (an acknowledgement
    lost on the way back from the database)."""

    def __init__(self, url: str, *, commit_first: bool) -> None:
        super().__init__(url)
        self.commit_first = commit_first

    @contextmanager
    def write_session(self) -> Iterator[Any]:
        with super().write_session() as session:
            commit = session.commit

            def failing() -> None:
                if self.commit_first:
                    commit()
                raise ConnectionError("the database went away during COMMIT")

            session.commit = failing  # type: ignore[method-assign]
            yield session


@pytest.mark.parametrize("store", ["file", "s3"])
@pytest.mark.parametrize("commit_happened", [True, False])
def test_an_ingest_whose_commit_raises_is_settled_against_the_index(
        database_kind: str, tmp_path: Path, bucket: Bucket, store: str,
        commit_happened: bool) -> None:
    from cloudfilm.services.archive.check import check_archive
    from cloudfilm.services.archive.ingest import IngestService
    from cloudfilm.storage.blobs import FileSystemBlobStore
    from cloudfilm.storage.index.writer import find_instance
    from cloudfilm.storage.s3 import S3BlobStore, S3Location

    url, schema = database_url_for(database_kind, tmp_path)
    index = _CommitRaises(url, commit_first=commit_happened)
    index.migrate()
    location = S3Location.parse(bucket.env["CLOUDFILM_BLOB_URL"])
    client = boto3.client("s3", endpoint_url=location.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    blobs = FileSystemBlobStore(tmp_path) if store == "file" else \
        S3BlobStore(location, tmp_path, client=client)
    ds = make_instance(rows=32, columns=32, seed=10)
    try:
        with pytest.raises(ConnectionError):
            IngestService(index, blobs).ingest_staged([blobs.stage_bytes(to_bytes(ds))])
        with index.session() as session:
            row = find_instance(session, ds.SOPInstanceUID)
            key = row.blob_key if row is not None else None
        if commit_happened:
            assert key is not None and blobs.read_bytes(key) == to_bytes(ds), \
                "a committed row names readable bytes"
        else:
            assert key is None and list(blobs.listing()) == [], "nothing published without a row"
        assert list((tmp_path / "incoming").iterdir()) == []
        report = check_archive(index, blobs)
        assert report.clean, report.problems
    finally:
        blobs.close()
        index.dispose()
        if schema:
            schema.drop()
