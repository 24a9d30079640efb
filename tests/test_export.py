"""IHE PDI export: ``GET /api/{studies,patients}/.../export.zip`` and ``cloudfilm export``.

The zip is checked by other readers than the writer: Python's zipfile for the layout,
dcmtk's dcmdump and pydicom's FileSet for the DICOMDIR, and cloudfilm's own import
of the unzipped folder, which must go through the DICOMDIR (no fallback note).
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from conftest import Server, database_url_for, run_cli
from factory import make_instance, sample, stow, to_bytes

COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


@dataclass
class Stored:
    study_a: str
    study_b: str
    other_study: str
    files: dict[str, bytes]  # SOP Instance UID -> the bytes sent


@pytest.fixture(scope="module")
def stored(server: Server) -> Stored:
    """Patient PDI-1 (non-ASCII name): study A with two series (CT, a JPEG sample), study B;
    another patient's study that must never appear."""
    study_a, study_b, other = generate_uid(), generate_uid(), generate_uid()
    patient = {"patient_id": "PDI-1", "patient_name": "Müller^Jörg"}
    series = generate_uid()
    datasets = [make_instance(study=study_a, series=series, instance_number=i, **patient)
                for i in (1, 2, 3)]
    jpeg = sample("SC_rgb_jpeg_dcmtk.dcm", study=study_a)
    jpeg.PatientID, jpeg.PatientName = "PDI-1", "Müller^Jörg"
    jpeg.SpecificCharacterSet = "ISO_IR 192"
    for ds in datasets:
        ds.SpecificCharacterSet = "ISO_IR 192"
    datasets.append(jpeg)
    series_b = generate_uid()
    datasets += [make_instance(study=study_b, series=series_b, study_date="20240101",
                               instance_number=i, SpecificCharacterSet="ISO_IR 192", **patient)
                 for i in (1, 2)]
    datasets.append(make_instance(study=other, patient_id="OTHER"))
    files = {str(ds.SOPInstanceUID): to_bytes(ds) for ds in datasets}
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as client:
        response = stow(client, list(files.values()))
    assert response.status_code == 200, response.text
    return Stored(study_a, study_b, other, files)


def _download(server: Server, path: str) -> httpx.Response:
    with httpx.stream("GET", f"{server.url}{path}", headers=server.auth, timeout=120) as response:
        response.read()
        return response


def _zip(response: httpx.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "content-length" not in response.headers  # streamed (chunked), not built first
    return zipfile.ZipFile(io.BytesIO(response.content))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_study_zip_has_the_pdi_layout_with_unchanged_files(server: Server, stored: Stored) -> None:
    zf = _zip(_download(server, f"/api/studies/{stored.study_a}/export.zip"))
    names = zf.namelist()
    assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= set(names)
    dicom = [n for n in names if n.startswith("DICOM/")]
    assert len(dicom) == 4
    for name in dicom:
        parts = name.split("/")
        assert len(parts) == 5 and all(COMPONENT.match(p) for p in parts), name
    sent = {_sha(data) for uid, data in stored.files.items()}
    assert {_sha(zf.read(n)) for n in dicom} <= sent  # byte for byte as stored
    previews = [n for n in names if n.startswith("IHE_PDI/")]
    assert len(previews) == 2  # one per series
    for name in previews:
        image = Image.open(io.BytesIO(zf.read(name)))
        assert image.format == "JPEG" and max(image.size) <= 256
    assert zf.read("README.TXT").decode("ascii")
    assert all(i.flag_bits & 0x08 for i in zf.infolist())  # data descriptors: written in one pass


def test_index_htm_is_xhtml_linking_previews_and_naming_the_patient(
        server: Server, stored: Stored) -> None:
    zf = _zip(_download(server, f"/api/studies/{stored.study_a}/export.zip"))
    page = zf.read("INDEX.HTM")
    root = ET.fromstring(page)  # well-formed XML, as XHTML must be
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    assert root.tag == "{http://www.w3.org/1999/xhtml}html"
    assert root.find(".//h:script", ns) is None
    links = [a.get("href") for a in root.iterfind(".//h:a", ns)]
    images = [img.get("src") for img in root.iterfind(".//h:img", ns)]
    assert "README.TXT" in links and len(images) == 2
    assert set(images) <= set(zf.namelist()) and set(links) <= set(zf.namelist())
    assert "Müller Jörg" in page.decode("utf-8") and "PDI-1" in page.decode("utf-8")


def _unzip(zf: zipfile.ZipFile, target: Path) -> Path:
    zf.extractall(target)
    return target


def test_dicomdir_is_read_by_dcmdump_pydicom_and_cloudfilm_import(
        server: Server, stored: Stored, tmp_path: Path, database_kind: str) -> None:
    folder = _unzip(_zip(_download(server, "/api/patients/PDI-1/export.zip")), tmp_path / "cd")
    dump = subprocess.run(["dcmdump", "+sd", str(folder / "DICOMDIR")], capture_output=True,
                          text=True, timeout=60)
    assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    kinds = re.findall(r'"Directory Record" (\w+)', dump.stdout)
    assert kinds.count("PATIENT") == 1 and kinds.count("STUDY") == 2
    assert kinds.count("SERIES") == 3 and kinds.count("IMAGE") == 6
    fileset = FileSet(folder / "DICOMDIR")
    expected = {uid for uid in stored.files} - {_sop(stored.files, stored.other_study)}
    assert {str(i.SOPInstanceUID) for i in fileset} == expected
    assert fileset.find_values("PatientName") == ["Müller^Jörg"]
    assert all(Path(i.path).is_file() for i in fileset)
    url, schema = database_url_for(database_kind, tmp_path / "fresh")
    try:
        result = run_cli(["import", "--data", str(tmp_path / "fresh"), str(folder)], url)
    finally:
        if schema:
            schema.drop()
    assert result.returncode == 0, result.stdout
    stored_lines = [line for line in result.stdout.splitlines() if line.startswith("stored")]
    assert len(stored_lines) == 6 and "note:" not in result.stdout
    assert "skipped" not in "".join(result.stdout.splitlines()[:-1])  # README etc. never read


def _sop(files: dict[str, bytes], study: str) -> str:
    for uid, data in files.items():
        if pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID == study:
            return uid
    raise AssertionError(study)


def test_patient_export_over_http_and_cli_hold_the_same_files(
        server: Server, stored: Stored, tmp_path: Path) -> None:
    http = _zip(_download(server, "/api/patients/PDI-1/export.zip"))
    out = tmp_path / "patient.zip"
    result = run_cli(["export", "--data", str(server.data_dir), "--patient", "PDI-1",
                      "--study", stored.other_study, "--out", str(out)], server.database_url)
    assert result.returncode == 0, result.stderr
    assert "exported 7 instance(s) of 3 study(ies)" in result.stdout
    cli = zipfile.ZipFile(out)
    dicom = [n for n in http.namelist() if n.startswith("DICOM/")]
    assert len({n.split("/")[2] for n in dicom}) == 2  # S0000001 and S0000002
    assert set(dicom) < set(cli.namelist())  # the other patient's study comes as P0000002
    assert [_sha(cli.read(n)) for n in dicom] == [_sha(http.read(n)) for n in dicom]
    assert {n.split("/")[1] for n in cli.namelist() if n.startswith("DICOM/")} == \
        {"P0000001", "P0000002"}


def test_unknown_study_or_patient_is_404_and_exit_1(server: Server, tmp_path: Path) -> None:
    assert _download(server, f"/api/studies/{generate_uid()}/export.zip").status_code == 404
    assert _download(server, "/api/patients/NOBODY/export.zip").status_code == 404
    assert _download(server, "/api/patients/PDI-1/export.zip?issuer=ELSEWHERE").status_code == 404
    out = tmp_path / "none.zip"
    result = run_cli(["export", "--data", str(server.data_dir), "--study", "1.2.3.999",
                      "--out", str(out)], server.database_url)
    assert result.returncode == 1 and "1.2.3.999 not found" in result.stderr
    assert not out.exists() and not Path(f"{out}.part").exists()


def test_export_is_written_progressively(server: Server, tmp_path: Path) -> None:
    """A 6 MB instance leaves the generator in ~1 MB chunks, never as one piece."""
    from cloudfilm.config import Settings
    from cloudfilm.services.context import Archive
    from cloudfilm.services.exchange.export import plan_export, stream_export

    big = make_instance(rows=512, columns=512, frames=12, patient_id="BIG")
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as client:
        assert stow(client, [to_bytes(big)]).status_code == 200
    archive = Archive.open(Settings.load(server.data_dir, server.database_url), recover=False)
    try:
        plan = plan_export(archive.index, [str(big.StudyInstanceUID)])
        sizes = [len(chunk) for chunk in stream_export(plan, archive.blobs)]
    finally:
        archive.close()
    assert sum(sizes) > 6_000_000 and max(sizes) < 1_200_000 and len(sizes) > 6
