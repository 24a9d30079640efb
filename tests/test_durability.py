"""Durability: kill -9 during ingest, recovery, and memory while streaming 1 GB."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pydicom.uid import generate_uid

from cloudfilm.services.archive.ingest import IngestService
from cloudfilm.storage.blobs import FileSystemBlobStore, StagedBlob
from cloudfilm.storage.index.db import Index
from conftest import Server, run_cli
from factory import make_instance, multipart_related, stow, to_bytes


class _Writer(threading.Thread):
    """Sends STOW batches until stopped; remembers what the server acknowledged."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers
        self.acknowledged: list[tuple[str, str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
            while not self.stop.is_set():
                study = generate_uid()
                batch = [make_instance(study=study, instance_number=i, rows=64, columns=64)
                         for i in range(10)]
                try:
                    response = stow(http, [to_bytes(ds) for ds in batch])
                except httpx.HTTPError:
                    return  # the server died mid-request: nothing in this batch was acknowledged
                if response.status_code == 200:
                    self.acknowledged += [(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                           ds.SOPInstanceUID) for ds in batch]


@pytest.mark.parametrize("attempt", range(3))
def test_kill_9_during_ingest_loses_nothing_acknowledged(fresh_server: Server, attempt: int) -> None:
    acknowledged: list[tuple[str, str, str]] = []
    fresh_server.start()
    writer = _Writer(fresh_server.dicomweb, fresh_server.auth)
    writer.start()
    deadline = time.monotonic() + 60  # a loaded machine may take seconds for the first batch
    while not writer.acknowledged and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.random() * 1.5)  # then kill at a random point of a later batch
    fresh_server.kill()
    writer.stop.set()
    writer.join(timeout=30)
    acknowledged += writer.acknowledged
    assert acknowledged, "the writer should have been acknowledged at least once before the kill"
    fresh_server.start()  # restart runs recovery
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth) as http:
        for study, series, sop in acknowledged:
            url = f"/studies/{study}/series/{series}/instances/{sop}/metadata"
            assert http.get(url).status_code == 200, f"acknowledged {sop} is missing"
    fresh_server.stop()
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0, check.stdout


class _CrashAfterIndex(FileSystemBlobStore):
    """A blob store whose publish step dies, as if the process were killed right there."""

    def commit(self, staged: StagedBlob, key: str) -> None:
        raise KeyboardInterrupt("simulated crash between index commit and publish")


def test_recovery_publishes_indexed_blobs_and_discards_unindexed(tmp_path: Path,
                                                                 database_kind: str) -> None:
    from conftest import database_url_for

    url, schema = database_url_for(database_kind, tmp_path)
    try:
        index = Index(url)
        index.migrate()
        crashing = _CrashAfterIndex(tmp_path)
        source = tmp_path / "in.dcm"
        ds = make_instance()
        source.write_bytes(to_bytes(ds))
        with pytest.raises(KeyboardInterrupt):
            IngestService(index, crashing).ingest_files([source])
        orphan_path, fh = crashing.new_staging_file()  # a half-received part, never indexed
        fh.write(b"partial")
        fh.close()
        healthy = FileSystemBlobStore(tmp_path)
        assert IngestService(index, healthy).recover() == {
            "published": 0, "discarded": 0, "restored": 0, "purged": 0}, \
            "files of a live store are not another store's to recover"
        crashing.close()  # the crashed process is gone: its staging is now an orphan
        report = IngestService(index, healthy).recover()
        assert report["published"] == 1 and report["discarded"] == 1
        assert not orphan_path.exists()
        from cloudfilm.services.archive.check import check_archive

        assert check_archive(index, healthy).clean
        index.dispose()
    finally:
        if schema:
            schema.drop()


def _body_chunks(count: int, boundary: str) -> Iterator[bytes]:
    study = generate_uid()
    template = make_instance(study=study, rows=512, columns=512, seed=1)
    for number in range(count):
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = number + 1
        yield (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
               + to_bytes(template) + b"\r\n")
    yield f"--{boundary}--\r\n".encode()


def test_one_gigabyte_stow_keeps_server_rss_under_300_mb(fresh_server: Server) -> None:
    fresh_server.start()
    assert fresh_server.process is not None
    process = psutil.Process(fresh_server.process.pid)
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    boundary = "gigabyte"
    count = 2000  # 2000 × ~525 KB ≈ 1.05 GB
    _, content_type = multipart_related([], boundary)
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth, timeout=600) as http:
        response = http.post("/studies", content=_body_chunks(count, boundary),
                             headers={"content-type": content_type})
    done.set()
    sampler.join()
    assert response.status_code == 200
    assert len(response.json()["00081199"]["Value"]) == count
    assert peak[0] < 300 * 1024 * 1024, f"peak RSS {peak[0] / 2**20:.0f} MB"
