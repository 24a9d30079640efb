"""Patient uploads: ``POST /api/uploads`` (multipart/form-data) through the importer."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pycdlib
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from conftest import Server
from factory import make_instance, to_bytes

Files = list[tuple[str, tuple[str, bytes, str]]]


@pytest.fixture
def api(server: Server) -> httpx.Client:
    with httpx.Client(base_url=f"{server.url}/api", headers=server.auth, timeout=120) as http:
        yield http  # type: ignore[misc]


def _upload(api: httpx.Client, files: Files) -> httpx.Response:
    return api.post("/uploads", files=files)


def _by_name(response: httpx.Response) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in response.json()["results"]}


def _cd_files(tmp_path: Path, study: str, count: int) -> dict[str, bytes]:
    """A CD written by pydicom's FileSet (DICOMDIR + 8.3 names), as relative path -> bytes."""
    fileset = FileSet()
    for i in range(count):
        fileset.add(make_instance(study=study, instance_number=i + 1))
    fileset.write(tmp_path / "cd")
    return {p.relative_to(tmp_path / "cd").as_posix(): p.read_bytes()
            for p in sorted((tmp_path / "cd").rglob("*")) if p.is_file()}


def _iso(files: dict[str, bytes]) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1)
    folders = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
    for name in sorted(folders):
        iso.add_directory(iso_path=f"/{name}")
    for name, data in files.items():
        iso.add_fp(io.BytesIO(data), len(data), iso_path=f"/{name}.;1")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def _qido_count(server: Server, study: str) -> int:
    response = httpx.get(f"{server.dicomweb}/studies/{study}/instances", headers=server.auth,
                         timeout=30)
    return len(response.json()) if response.status_code == 200 else 0


def test_zip_dcm_iso_and_folder_files_in_one_upload(api: httpx.Client, server: Server,
                                                     tmp_path: Path) -> None:
    study = generate_uid()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("export/a.dcm", to_bytes(make_instance(study=study, instance_number=1)))
        zf.writestr("export/b.dcm", to_bytes(make_instance(study=study, instance_number=2)))
    cd = _cd_files(tmp_path, study, 2)
    single = to_bytes(make_instance(study=study))
    iso = _iso(_cd_files(tmp_path / "i", study, 2))
    files: Files = [("file", ("export.zip", buffer.getvalue(), "application/zip")),
                    ("file", ("single.dcm", single, "application/dicom")),
                    ("file", ("disc.iso", iso, "application/x-iso9660-image"))]
    files += [("file", (f"MYCD/{name}", data, "application/octet-stream"))
              for name, data in cd.items()]
    files.append(("file", ("MYCD/README.TXT", b"hello", "text/plain")))
    files.append(("file", ("photo-of-me.txt", b"hello", "text/plain")))
    response = _upload(api, files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["counts"] == {"stored": 7, "duplicate": 0, "failed": 0, "skipped": 1}, body
    results = _by_name(response)
    assert results["export.zip!export/a.dcm"]["status"] == "stored"
    assert results["single.dcm"]["sop_instance_uid"]
    assert len([n for n in results if n.startswith("disc.iso!PT000000/")]) == 2
    assert len([n for n in results if n.startswith("MYCD/PT000000/")]) == 2
    assert "MYCD/README.TXT" not in results  # the CD is read through its DICOMDIR
    assert results["photo-of-me.txt"]["status"] == "skipped" and body["notes"] == []
    assert _qido_count(server, study) == 7
    assert list((server.data_dir / "uploads").iterdir()) == []  # the scratch folder is gone
    again = _upload(api, files[:2])
    assert again.status_code == 200 and again.json()["counts"]["duplicate"] == 3


def _bomb_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.dcm", b"\0" * (150 << 20))
        zf.writestr("../../evil.dcm", to_bytes(make_instance()))
        zf.writestr("/abs/evil.dcm", to_bytes(make_instance()))
    return buffer.getvalue()


def test_bombs_and_traversal_are_refused_per_file(api: httpx.Client, server: Server) -> None:
    good = to_bytes(make_instance())
    files: Files = [("file", ("evil.zip", _bomb_zip(), "application/zip")),
                    ("file", ("../../../outside.dcm", good, "application/dicom")),
                    ("file", ("/tmp/absolute.dcm", good, "application/dicom"))]
    response = _upload(api, files)
    assert response.status_code == 422, response.text
    results = _by_name(response)
    assert "compression ratio above 200:1" in results["evil.zip!bomb.dcm"]["reason"]
    assert "path traversal" in results["evil.zip!../../evil.dcm"]["reason"]
    assert "absolute path" in results["evil.zip!/abs/evil.dcm"]["reason"]
    assert "path traversal" in results["../../../outside.dcm"]["reason"]
    assert "absolute path" in results["/tmp/absolute.dcm"]["reason"]
    assert response.json()["counts"]["failed"] == 5
    root = server.data_dir.parent.parent
    names = ("outside.dcm", "absolute.dcm", "evil.dcm")
    assert [p for p in root.rglob("*") if p.name in names] == []
    assert not Path("/tmp/absolute.dcm").exists()
    assert list((server.data_dir / "uploads").iterdir()) == []
    assert list((server.data_dir / "incoming").iterdir()) == []


def test_bad_bodies_are_400_415_and_nothing_usable_is_422(api: httpx.Client) -> None:
    assert api.post("/uploads", content=b"x", headers={"content-type": "application/zip"}
                    ).status_code == 415
    assert api.post("/uploads", content=b"x", headers={"content-type": "multipart/form-data"}
                    ).status_code == 400
    truncated = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"'
                 b"\r\n\r\nDICM")
    assert api.post("/uploads", content=truncated,
                    headers={"content-type": "multipart/form-data; boundary=b"}).status_code == 400
    no_file = api.post("/uploads", data={"note": "hello"}, files=[("other", ("x.dcm", b"x"))])
    assert no_file.status_code == 400 and "no 'file' field" in no_file.json()["error"]
    text = _upload(api, [("file", ("notes.txt", b"just text", "text/plain"))])
    assert text.status_code == 422
    assert text.json()["results"] == [{"name": "notes.txt", "status": "skipped",
                                       "reason": "not a DICOM file", "sop_instance_uid": ""}]


def test_a_large_upload_is_streamed_to_disk_not_memory(fresh_server: Server) -> None:
    """An 80 MB instance must not raise the server's peak memory by anything like 80 MB."""
    big = to_bytes(make_instance(rows=512, columns=512, frames=160))
    server = fresh_server.start()

    def peak() -> int:
        status = Path(f"/proc/{server.process.pid}/status").read_text()  # type: ignore[union-attr]
        line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        return int(line.split()[1])

    before = peak()

    def body() -> object:
        boundary = "cloudfilmtestboundary"
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.dcm\"\r\nContent-Type: application/dicom\r\n\r\n").encode()
        for start in range(0, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]
        yield f"\r\n--{boundary}--\r\n".encode()

    content_type = "multipart/form-data; boundary=cloudfilmtestboundary"
    response = httpx.post(f"{server.url}/api/uploads", content=body(), timeout=120,
                          headers={"content-type": content_type} | server.auth)
    assert response.status_code == 200 and response.json()["counts"]["stored"] == 1, response.text
    assert (peak() - before) * 1024 < 40_000_000, (before, peak())
