"""Download without limits (issue 12, part 4): where the caller may download, the study and
case-folder pages offer a "Download" button; its zips hold the stored originals byte for
byte; a view-only link shows no button and its direct request is refused like a missing
study. Real server on both databases, and a phone browser in zh-CN for the button."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from conftest import Server, admin_token, database_url_for, screenshot
from factory import make_instance, multipart_related, to_bytes

PHONE = dict(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
             locale="zh-CN")


@dataclass
class Folder:
    server: Server
    study: str
    person: int
    patient: httpx.Client
    sha256: set[str] = field(default_factory=set)  # of every STOWed Part-10 file
    links: dict[str, str] = field(default_factory=dict)  # "view" / "download" → URL


def _client(server: Server, username: str, role: str) -> httpx.Client:
    token = admin_token(server.database_url, username, role)
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=60)


def _stow_study(admin: httpx.Client) -> tuple[str, list[bytes]]:
    first = make_instance(patient_id="DL1", issuer="HOSP_A", patient_name="Chen^Hua",
                          rows=64, columns=64, seed=1)
    files = [to_bytes(first)] + [
        to_bytes(make_instance(study=first.StudyInstanceUID, series=first.SeriesInstanceUID,
                               patient_id="DL1", issuer="HOSP_A", patient_name="Chen^Hua",
                               rows=64, columns=64, instance_number=n, seed=n))
        for n in range(2, 5)]
    body, content_type = multipart_related(files)
    stored = admin.post("/dicomweb/studies", content=body, headers={
        "content-type": content_type, "accept": "application/dicom+json"})
    assert stored.status_code == 200, stored.text
    return first.StudyInstanceUID, files


@pytest.fixture(scope="module")
def folder(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Folder]:
    data_dir = tmp_path_factory.mktemp(f"download-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url).start()
    try:
        admin = server.http()
        study, files = _stow_study(admin)
        patient = _client(server, "dl-patient", "patient")
        person = patient.get("/api/me").json()["person_id"]
        linked = admin.post(f"/api/persons/{person}/records",
                            json={"patient_id": "DL1", "issuer": "HOSP_A"})
        assert linked.status_code == 201, linked.text
        made = Folder(server, study, person, patient, {hashlib.sha256(f).hexdigest()
                                                       for f in files})
        for name, permissions in (("view", ["view"]), ("download", ["view", "download"])):
            link = patient.post("/api/shares", json={
                "scope": {"studies": [study]}, "audience": "link", "permissions": permissions})
            assert link.status_code == 201, link.text
            made.links[name] = link.json()["url"]
        yield made
        patient.close()
        admin.close()
    finally:
        server.stop()
        if schema:
            schema.drop()


def _link_session(folder: Folder, kind: str) -> httpx.Client:
    """The link opened as a fresh browser would: its secret becomes a session cookie."""
    browser = httpx.Client(base_url=folder.server.url, timeout=60)
    opened = browser.get(folder.links[kind].replace(folder.server.url, ""), follow_redirects=False)
    assert opened.status_code == 303 and "cf_session" in opened.cookies, opened.text[:300]
    return browser


def _zip_hashes(body: bytes, suffix: str = "") -> dict[str, str]:
    archive = zipfile.ZipFile(io.BytesIO(body))
    return {name: hashlib.sha256(archive.read(name)).hexdigest()
            for name in archive.namelist() if name.startswith("DICOM/") and name.endswith(suffix)}


def _downloads(folder: Folder, who: str) -> int:
    entries = folder.server.http().get("/api/audit", params={"format": "json",
                                                             "limit": 10_000}).json()
    return sum(1 for e in entries if (e["who"], e["study"], e["action"], e["outcome"])
               == (who, folder.study, "download", "success"))


def test_the_study_page_offers_originals_identical_to_what_was_stored(folder: Folder) -> None:
    page = folder.patient.get(f"/studies/{folder.study}", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and 'id="download-button"' in page.text
    assert "下载" in page.text
    before = _downloads(folder, "dl-patient")
    originals = folder.patient.get(f"/api/studies/{folder.study}/originals.zip")
    assert originals.status_code == 200
    assert originals.headers["content-type"] == "application/zip"
    assert set(_zip_hashes(originals.content, ".dcm").values()) == folder.sha256
    assert len(_zip_hashes(originals.content)) == len(folder.sha256)
    disc = folder.patient.get(f"/api/studies/{folder.study}/export.zip")
    names = zipfile.ZipFile(io.BytesIO(disc.content)).namelist()
    assert {"DICOMDIR", "INDEX.HTM", "README.TXT"} <= set(names)
    assert set(_zip_hashes(disc.content).values()) == folder.sha256
    assert _downloads(folder, "dl-patient") == before + 2


def test_the_case_folder_offers_every_scan_it_may_download(folder: Folder) -> None:
    page = folder.patient.get(f"/patients/{folder.person}", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and 'id="download-button"' in page.text
    for kind, suffix in (("originals", ".dcm"), ("export", "")):
        got = folder.patient.get(f"/api/persons/{folder.person}/{kind}.zip")
        assert got.status_code == 200
        assert set(_zip_hashes(got.content, suffix).values()) == folder.sha256


def test_a_view_only_link_has_no_button_and_its_request_is_refused(folder: Folder) -> None:
    browser = _link_session(folder, "view")
    page = browser.get(f"/shared/studies/{folder.study}")
    assert page.status_code == 200 and 'id="download-button"' not in page.text
    for path in (f"/api/studies/{folder.study}/originals.zip",
                 f"/api/studies/{folder.study}/export.zip",
                 f"/api/persons/{folder.person}/originals.zip"):
        refused = browser.get(path)
        assert refused.status_code == 404, (path, refused.status_code)
        assert "DICM" not in refused.text
    missing = browser.get("/api/studies/1.2.3.4.5/originals.zip")
    assert refused.status_code == missing.status_code == 404


def test_a_download_link_gives_the_originals(folder: Folder) -> None:
    browser = _link_session(folder, "download")
    page = browser.get(f"/shared/studies/{folder.study}")
    assert 'id="download-button"' in page.text
    got = browser.get(f"/api/studies/{folder.study}/originals.zip")
    assert set(_zip_hashes(got.content, ".dcm").values()) == folder.sha256


def test_on_a_phone_in_chinese_the_button_shows_only_with_download(folder: Folder,
                                                                  chromium: object) -> None:
    for kind, shown in (("download", True), ("view", False)):
        context = chromium.new_context(**PHONE)  # type: ignore[attr-defined]
        try:
            page = context.new_page()
            page.goto(folder.links[kind])
            page.wait_for_load_state("networkidle")
            button = page.locator("#download-button")
            assert (button.count() == 1) is shown
            if shown:
                assert button.is_visible() and "下载" in button.inner_text()
                button.tap()
                link = page.locator("#download-originals")
                assert link.is_visible()
                box = link.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390
                with page.expect_download() as started:
                    link.tap()
                path = started.value.path()
                with zipfile.ZipFile(path) as archive:
                    got = {hashlib.sha256(archive.read(n)).hexdigest()
                           for n in archive.namelist()}
                assert got == folder.sha256
            screenshot(page, f"download-button-{kind}-link-phone-zh")
        finally:
            context.close()
