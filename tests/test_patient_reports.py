"""What patients read (issue 12, part 6): no SR content trees for patients, caregivers and
links. cloudfilm's own nodule SR appears only as the Nodules panel; a hospital's report SR
appears as readable text; clinicians can still open the full SR. Real server, both
databases; uploads come back aggregated ("120 images: ...", not 120 lines)."""

from __future__ import annotations

import base64
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from conftest import Server, admin_token, database_url_for
from factory import make_instance, multipart_related, to_bytes
from jobs_wait import wait_for_tracking

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(value_type: str, name: Dataset, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", value_type
    item.ConceptNameCodeSequence = Sequence([name])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def hospital_report(**common: object) -> Dataset:
    """A radiologist's report as a hospital sends it (TID 2000 shape): a language item, a
    Findings heading with text and a measurement with float noise, and an impression."""
    ds = make_instance(modality="SR", SeriesDescription="Radiology report", SeriesNumber=900,
                       charset="ISO_IR 192", **common)  # type: ignore[arg-type]
    for keyword in ("PixelData", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                    "RescaleIntercept", "RescaleSlope", "PixelSpacing", "ImagePositionPatient",
                    "ImageOrientationPatient"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    language = _item("CODE", _code("121049", "DCM", "Language of Content Item and Descendants"),
                     ConceptCodeSequence=Sequence([_code("zh", "RFC5646", "Chinese")]))
    measured = Dataset()
    measured.NumericValue = "8.39687040043431"
    measured.MeasurementUnitsCodeSequence = Sequence([_code("mm", "UCUM", "millimeter")])
    findings = _item("CONTAINER", _code("121070", "DCM", "Findings"),
                     ContinuityOfContent="SEPARATE",
                     ContentSequence=Sequence([
                         _item("TEXT", _code("121071", "DCM", "Finding"),
                               TextValue="右肺上叶见一实性小结节，边界清楚。"),
                         _item("NUM", _code("G-D7FE", "SRT", "Diameter"),
                               MeasuredValueSequence=Sequence([measured])),
                         _item("UIDREF", _code("112040", "DCM", "Tracking Unique Identifier"),
                               UID="2.25.123456789")]))
    impression = _item("CONTAINER", _code("121072", "DCM", "Impressions"),
                       ContinuityOfContent="SEPARATE", ContentSequence=Sequence([
                           _item("TEXT", _code("121073", "DCM", "Impression"),
                                 TextValue="建议12个月后复查CT。")]))
    ds.ContentSequence = Sequence([language, findings, impression])
    return ds


@dataclass
class Site:
    server: Server
    study: str
    series: str
    sop: str
    patient: httpx.Client
    admin: httpx.Client


def _stow(client: httpx.Client, parts: list[bytes]) -> httpx.Response:
    body, content_type = multipart_related(parts)
    return client.post("/dicomweb/studies", content=body, headers={
        "content-type": content_type, "accept": "application/dicom+json"})


@pytest.fixture(scope="module")
def site(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp(f"reports-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url, extra_env={"CLOUDFILM_NOTIFY_INTERVAL": "0.5"}).start()
    try:
        admin = server.http()
        common = dict(patient_id="RP1", issuer="HOSP_A", patient_name="Zhou^Lan",
                      InstitutionName="Hospital A")
        image = make_instance(rows=64, columns=64, **common)  # type: ignore[arg-type]
        report = hospital_report(study=image.StudyInstanceUID, **common)
        assert _stow(admin, [to_bytes(image), to_bytes(report)]).status_code == 200
        measured = admin.post(f"/api/studies/{image.StudyInstanceUID}/nodules", json={
            "series_uid": image.SeriesInstanceUID, "instance_uid": image.SOPInstanceUID,
            "center_patient_mm": [22.4, 22.4, 1.25], "long_axis_mm": 8.39687040043431,
            "short_axis_mm": 6.1, "nodule_type": "solid", "lobe": "RUL"})
        assert measured.status_code == 201, measured.text
        token = admin_token(url, "rp-patient", "patient")
        patient = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                               timeout=60)
        person = patient.get("/api/me").json()["person_id"]
        assert admin.post(f"/api/persons/{person}/records",
                          json={"patient_id": "RP1", "issuer": "HOSP_A"}).status_code == 201
        wait_for_tracking(admin, image.StudyInstanceUID)  # the nodule SR is written in a job
        yield Site(server, image.StudyInstanceUID, image.SeriesInstanceUID, image.SOPInstanceUID,
                   patient, admin)
        patient.close()
        admin.close()
    finally:
        server.stop()
        if schema:
            schema.drop()


class _Text(HTMLParser):
    """The visible text of a page (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_a_patient_reads_the_hospital_report_and_no_content_tree(site: Site) -> None:
    person = site.patient.get("/api/me").json()["person_id"]
    for path in (f"/studies/{site.study}", f"/patients/{person}"):
        page = site.patient.get(path, headers=ZH)
        assert page.status_code == 200
        text = visible_text(page.text)
        assert "右肺上叶见一实性小结节，边界清楚。" in text and "建议12个月后复查CT。" in text
        assert "Diameter: 8.4 mm" in text and "Findings" in text
        for noise in ("Tracking", "2.25.", "8.3968", "Language of Content Item",
                      "Imaging Measurement", "Measurement Group", "Finding Site"):
            assert noise not in text, (path, noise)
        assert 'class="sr"' not in page.text


def test_the_nodule_report_reaches_the_patient_only_as_the_nodules_panel(site: Site) -> None:
    page = site.patient.get(f"/studies/{site.study}", headers=ZH)
    assert 'id="nodules' in page.text or "结节" in visible_text(page.text)
    report_section = page.text.split('id="report-heading"', 1)[1].split("</section>", 1)[0]
    assert "cloudfilm" not in report_section and "Measurement Report" not in report_section
    assert len(re.findall(r'<div class="panel">', report_section)) == 1  # the hospital's only


def test_a_clinician_still_opens_the_full_sr(site: Site) -> None:
    page = site.admin.get(f"/studies/{site.study}")
    assert page.status_code == 200
    assert 'class="sr"' in page.text and "Tracking Unique Identifier" in page.text
    report_section = page.text.split('id="report-heading"', 1)[1].split("</section>", 1)[0]
    assert len(re.findall(r'<div class="panel">', report_section)) == 2


def test_an_upload_of_someone_elses_record_is_one_line_in_chinese(site: Site) -> None:
    """120 images of a record that exists and is not the patient's: one summary line."""
    other = make_instance(patient_id="RP-OTHER", issuer="HOSP_A", patient_name="Zhou^Lan",
                          rows=8, columns=8)
    assert _stow(site.admin, [to_bytes(other)]).status_code == 200
    files = [("file", (f"IMG{n:04d}.dcm", to_bytes(make_instance(
        study=other.StudyInstanceUID, series=other.SeriesInstanceUID, patient_id="RP-OTHER",
        issuer="HOSP_A", patient_name="Zhou^Lan", rows=8, columns=8, instance_number=n)),
        "application/dicom")) for n in range(2, 122)]
    for language, expected in (("zh-CN", "120 个影像：这份医院记录不是您的"),
                               ("en", "120 images: this hospital record is not yours")):
        uploaded = site.patient.post("/api/uploads", files=files,
                                     headers={"Accept-Language": language})
        assert uploaded.status_code == 422, uploaded.text[:300]
        body = uploaded.json()
        assert len(body["results"]) == 120
        [line] = body["summary"]
        assert line["count"] == 120 and line["status"] == "failed"
        assert line["text"].startswith(expected), line


def _link(site: Site, pin: bool = True) -> dict[str, object]:
    audience = {"audience": "link+pin", "pin": "864200"} if pin else {"audience": "link"}
    made = site.patient.post("/api/shares", json={"scope": {"studies": [site.study]}} | audience)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _streams(pdf: bytes) -> list[bytes]:
    """The decompressed content streams (reportlab writes ASCII85 + zlib)."""
    found = []
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            found.append(zlib.decompress(base64.a85decode(raw.strip(), adobe=True)))
        except (ValueError, zlib.error):
            continue
    return found


def test_the_share_card_is_chinese_and_english_in_large_type(site: Site) -> None:
    link = _link(site)
    card = site.patient.get(f"/api/shares/{link['id']}/card.pdf")
    assert card.status_code == 200 and card.content.startswith(b"%PDF")
    content = b"".join(_streams(card.content))
    cid_fonts = set(re.findall(rb"/Encoding /UniGB-UCS2-H /Name /(F\d+)", card.content))
    assert cid_fonts and b"(Medical images shared with you) Tj" in content
    assert "给您看的医学影像" in _cid_text(content)
    courier = set(re.findall(rb"/BaseFont /Courier /Encoding /\w+ /Name /(F\d+)", card.content))
    sizes = [(font, float(size)) for font, size in re.findall(rb"/(F\d+) ([\d.]+) Tf", content)]
    assert sizes and all(size >= 12 for font, size in sizes if font not in courier), sizes


def _cid_text(content: bytes) -> str:
    """Strings drawn in a CID font: reportlab escapes UTF-16BE bytes in ``(…) Tj``."""
    text = []
    for raw in re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", content, re.S):
        unescaped = re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)])
                           if m.group(1).isdigit() else m.group(1), raw)
        if len(unescaped) % 2 == 0:
            text.append(unescaped.decode("utf-16-be", "ignore"))
    return "".join(text)


def test_messages_and_the_access_log_are_in_chinese(site: Site) -> None:
    """A link opened: the owner's message, and the access log's action, read in Chinese."""
    link = _link(site, pin=False)
    visitor = httpx.Client(base_url=site.server.url, timeout=60)
    opened = visitor.get(str(link["url"]).replace(site.server.url, ""), follow_redirects=False)
    assert opened.status_code == 303
    deadline = time.monotonic() + 60
    while not site.patient.get("/api/me/notifications").json() and time.monotonic() < deadline:
        time.sleep(0.5)  # the notification worker delivers in-app messages every 0.5 s here
    page = visible_text(site.patient.get("/messages", headers=ZH).text)
    assert "您分享的影像被打开了" in page and "被打开（到现在共打开 1 次）" in page, page
    assert "Your share" not in page and "were opened" not in page
    english = visible_text(site.patient.get("/messages", headers={"Accept-Language": "en"}).text)
    assert "Your shared images were opened" in english
    log = visible_text(site.patient.get("/share", headers=ZH).text)
    assert "打开了分享链接" in log or "打开了" in log, log
