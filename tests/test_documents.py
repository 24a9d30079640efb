"""Non-DICOM documents: PDF → Encapsulated PDF (PS3.3 A.45.1), JPEG/PNG → Secondary Capture.

``POST /api/studies/{uid}/documents`` and ``cloudfilm attach``; the result is read
back over QIDO and WADO like any instance, and by dcmtk's dcm2pdf.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from conftest import Server, run_cli
from factory import make_instance, parse_multipart, stow, to_bytes

PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def study(server: Server) -> str:
    """A stored CT study whose patient and study attributes the documents must copy."""
    uid = generate_uid()
    datasets = [make_instance(study=uid, patient_id="DOC-1", patient_name="Doe^Jane",
                              AccessionNumber="ACC-DOC", instance_number=i) for i in (1, 2)]
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as client:
        assert stow(client, [to_bytes(ds) for ds in datasets]).status_code == 200
    return uid


def _pdf() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(out, format="PDF")
    return out.getvalue()


def _image(fmt: str, mode: str = "RGB", **options: object) -> tuple[bytes, Image.Image]:
    rng = np.random.default_rng(7)
    shape = (48, 64, 3) if mode == "RGB" else (48, 64)
    picture = Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8), mode)
    out = io.BytesIO()
    picture.save(out, format=fmt, **options)
    return out.getvalue(), picture


def _post(server: Server, study: str, name: str, data: bytes, title: str | None = None,
          content_type: str = "application/octet-stream") -> httpx.Response:
    fields = {"title": title} if title else None
    return httpx.post(f"{server.url}/api/studies/{study}/documents", data=fields,
                      files=[("file", (name, data, content_type))], headers=server.auth,
                      timeout=60)


def _retrieve(server: Server, created: dict[str, str]) -> pydicom.Dataset:
    url = (f"{server.dicomweb}/studies/{created['study_uid']}/series/{created['series_uid']}"
           f"/instances/{created['sop_instance_uid']}")
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'  # as stored
    response = httpx.get(url, headers={"accept": accept} | server.auth, timeout=60)
    assert response.status_code == 200, response.text
    return pydicom.dcmread(io.BytesIO(parse_multipart(response)[0][1]))


def test_pdf_becomes_an_encapsulated_pdf_series_of_the_study(
        server: Server, study: str, tmp_path: Path) -> None:
    pdf = _pdf()
    response = _post(server, study, "discharge letter.pdf", pdf, title="Discharge letter")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["study_uid"] == study and created["sop_class_uid"] == PDF_CLASS
    series = httpx.get(f"{server.dicomweb}/studies/{study}/series", headers=server.auth,
                       timeout=30).json()
    doc = [s for s in series if s["0020000E"]["Value"][0] == created["series_uid"]]
    assert doc and doc[0]["00080060"]["Value"] == ["DOC"]
    assert doc[0]["0008103E"]["Value"] == ["Discharge letter"]
    assert doc[0]["00200011"]["Value"] == [2]  # after the CT's series 1
    ds = _retrieve(server, created)
    assert ds.EncapsulatedDocument[:ds.EncapsulatedDocumentLength] == pdf
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert (ds.PatientID, str(ds.PatientName)) == ("DOC-1", "Doe^Jane")
    assert ds.AccessionNumber == "ACC-DOC"
    assert ds.StudyDate == "20250301" and ds.DocumentTitle == "Discharge letter"
    stored = tmp_path / "doc.dcm"
    ds.save_as(stored, enforce_file_format=True)
    extracted = tmp_path / "out.pdf"
    subprocess.run(["dcm2pdf", str(stored), str(extracted)], check=True, timeout=60)
    assert extracted.read_bytes()[:len(pdf)] == pdf


def test_baseline_jpeg_is_encapsulated_without_re_encoding(server: Server, study: str) -> None:
    jpeg, _ = _image("JPEG", quality=90)
    response = _post(server, study, "film.jpg", jpeg)
    assert response.status_code == 201, response.text
    ds = _retrieve(server, response.json())
    assert ds.SOPClassUID == SC_CLASS and ds.Modality == "OT"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.SeriesDescription == "film"
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame.rstrip(b"\0") == jpeg.rstrip(b"\0")  # the very same bytes
    decoded = ds.pixel_array.astype(int)  # pydicom's decoder vs Pillow's, same JPEG
    reference = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert decoded.shape == (48, 64, 3) and np.abs(decoded - reference).mean() < 3


def test_png_and_progressive_jpeg_are_decoded_to_native_pixels(server: Server, study: str) -> None:
    png, picture = _image("PNG")
    ds = _retrieve(server, _post(server, study, "photo.png", png).json())
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert np.array_equal(ds.pixel_array, np.asarray(picture))
    grey, grey_picture = _image("PNG", mode="L")
    ds = _retrieve(server, _post(server, study, "grey.png", grey).json())
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert np.array_equal(ds.pixel_array, np.asarray(grey_picture))
    progressive, _ = _image("JPEG", progressive=True)
    ds = _retrieve(server, _post(server, study, "progressive.jpg", progressive).json())
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.PhotometricInterpretation == "RGB" and ds.LossyImageCompression == "01"


def test_wrong_type_is_415_and_unknown_study_404(server: Server, study: str) -> None:
    text = _post(server, study, "report.pdf", b"this is not a PDF at all", "", "application/pdf")
    assert text.status_code == 415 and "only PDF" in text.json()["error"]
    missing = _post(server, generate_uid(), "report.pdf", _pdf())
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    not_form = httpx.post(f"{server.url}/api/studies/{study}/documents", content=_pdf(),
                          headers={"content-type": "application/pdf"} | server.auth, timeout=30)
    assert not_form.status_code == 415
    no_file = httpx.post(f"{server.url}/api/studies/{study}/documents", data={"title": "x"},
                         files=[("other", ("a.pdf", _pdf()))], headers=server.auth, timeout=30)
    assert no_file.status_code == 400
    broken = _post(server, study, "broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    assert broken.status_code == 415 and "cannot decode" in broken.json()["error"]


def test_cli_attach_and_its_exit_codes(server: Server, study: str, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(_pdf())
    args = ["attach", "--data", str(server.data_dir)]
    ok = run_cli([*args, "--study", study, "--title", "CLI report", str(pdf)], server.database_url)
    assert ok.returncode == 0 and ok.stdout.startswith("stored "), ok.stderr
    sop = ok.stdout.split()[1]
    found = httpx.get(f"{server.dicomweb}/studies/{study}/instances",
                      params={"SOPInstanceUID": sop}, headers=server.auth, timeout=30).json()
    assert found[0]["00080016"]["Value"] == [PDF_CLASS]
    unknown = run_cli([*args, "--study", "1.2.3.404", str(pdf)], server.database_url)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    wrong = run_cli([*args, "--study", study, str(notes)], server.database_url)
    assert wrong.returncode == 2 and "unsupported file type" in wrong.stderr


def test_a_document_can_start_a_new_study_for_a_stored_patient(server: Server, study: str) -> None:
    response = httpx.post(f"{server.url}/api/patients/DOC-1/documents",
                          data={"title": "Outside letter"},
                          files=[("file", ("letter.pdf", _pdf(), "application/pdf"))],
                          headers=server.auth, timeout=60)
    assert response.status_code == 201, response.text
    new_study = response.json()["study_uid"]
    assert new_study != study
    found = httpx.get(f"{server.dicomweb}/studies", params={"PatientID": "DOC-1"},
                      headers=server.auth, timeout=30).json()
    assert {s["0020000D"]["Value"][0] for s in found} == {study, new_study}
    assert [s["00081030"]["Value"][0] for s in found if s["0020000D"]["Value"][0] == new_study] \
        == ["Outside letter"]
    nobody = httpx.post(f"{server.url}/api/patients/NOBODY/documents",
                        files=[("file", ("letter.pdf", _pdf(), "application/pdf"))],
                        headers=server.auth, timeout=60)
    assert nobody.status_code == 404


def test_exported_dicomdir_lists_the_pdf_as_an_encap_doc_record(
        server: Server, study: str, tmp_path: Path) -> None:
    assert _post(server, study, "letter.pdf", _pdf()).status_code == 201
    response = httpx.get(f"{server.url}/api/studies/{study}/export.zip", headers=server.auth,
                         timeout=60)
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path)
    dump = subprocess.run(["dcmdump", str(tmp_path / "DICOMDIR")], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert '"Directory Record" ENCAP DOC' in dump and "application/pdf" in dump
