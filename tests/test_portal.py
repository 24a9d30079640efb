"""The server-rendered portal against the real server (SQLite and PostgreSQL).

Each page renders for the roles it is for and is "not found" (or a redirect home) for
the others; a study or person the caller may not see is a 404 page, as in the API;
Chinese under ``Accept-Language: zh-CN`` and after ``?lang=zh``; IHE IID redirects;
form posts need the session's CSRF token; share links land in what they cover.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cloudfilm.web import i18n
from conftest import Server
from factory import make_instance, stow, to_bytes
from test_people import (
    HOSPITAL_A,
    HOSPITAL_B,
    PASSWORD,
    Account,
    link,
    make_account,
    pdf_instance,
    secondary_capture,
    store_study,
    unique,
)

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


@dataclass
class Site:
    """A patient with a CT at each of two hospitals (the newer with a PDF, a photo and an
    SR report); their caregiver; a physician named by a share of the newer study; a
    stranger with a study of their own; an operator and an admin."""

    server: Server
    operator: Account
    admin: Account
    patient: Account
    caregiver: Account
    physician: Account
    stranger: Account
    old: str
    new: str
    strangers: str
    pid_a: str


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def sr_instance(**common: Any) -> Dataset:
    """A Basic Text SR: a title, a finding as text, a coded impression and a measurement."""
    ds = make_instance(modality="SR", SeriesDescription="Report", **common)
    for keyword in ("PixelData", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "RescaleIntercept", "RescaleSlope", "PixelSpacing", "ImagePositionPatient",
                    "ImageOrientationPatient"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SR_CLASS
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ConceptNameCodeSequence = Sequence([code("18748-4", "LN", "Diagnostic imaging report")])
    finding = Dataset()
    finding.RelationshipType, finding.ValueType = "CONTAINS", "TEXT"
    finding.ConceptNameCodeSequence = Sequence([code("121071", "DCM", "Finding")])
    finding.TextValue = "A 6 mm solid nodule in the right upper lobe <b>unchanged</b>."
    impression = Dataset()
    impression.RelationshipType, impression.ValueType = "CONTAINS", "CODE"
    impression.ConceptNameCodeSequence = Sequence([code("121073", "DCM", "Impression")])
    impression.ConceptCodeSequence = Sequence([code("J18", "I10", "Benign appearance")])
    size = Dataset()
    size.RelationshipType, size.ValueType = "CONTAINS", "NUM"
    size.ConceptNameCodeSequence = Sequence([code("G-D7FE", "SRT", "Diameter")])
    measured = Dataset()
    measured.NumericValue = "6"
    measured.MeasurementUnitsCodeSequence = Sequence([code("mm", "UCUM", "millimeter")])
    size.MeasuredValueSequence = Sequence([measured])
    section = Dataset()
    section.RelationshipType, section.ValueType = "CONTAINS", "CONTAINER"
    section.ContinuityOfContent = "SEPARATE"
    section.ConceptNameCodeSequence = Sequence([code("121070", "DCM", "Findings")])
    section.ContentSequence = Sequence([finding, size])
    ds.ContentSequence = Sequence([section, impression])
    return ds


def store_documents(server: Server, uploader: Account, study: str, patient_id: str) -> None:
    common: dict[str, Any] = dict(study=study, patient_id=patient_id, issuer=HOSPITAL_B.issuer,
                                  patient_name="Zhang^San", study_date="20250720",
                                  InstitutionName=HOSPITAL_B.name, PatientBirthDate="19600101",
                                  PatientSex="F")
    parts = [pdf_instance(**common), secondary_capture(**common), sr_instance(**common)]
    with httpx.Client(base_url=server.dicomweb, timeout=60, headers=uploader.http.headers) as http:
        response = stow(http, [to_bytes(p) for p in parts])
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def site(server: Server) -> Iterator[Site]:
    operator, admin = make_account(server, "operator"), make_account(server, "admin")
    patient = make_account(server, "patient", "Zhang San")
    caregiver, physician = make_account(server, "caregiver"), make_account(server, "physician")
    stranger = make_account(server, "patient")
    pid_a, pid_b, other = unique("A"), unique("B"), unique("S")
    old = store_study(server, operator, HOSPITAL_A, pid_a, date="20230105")
    new = store_study(server, operator, HOSPITAL_B, pid_b, date="20250720")
    store_documents(server, operator, new, pid_b)
    strangers = store_study(server, operator, HOSPITAL_A, other, date="20240101")
    for person, pid, hospital in ((patient, pid_a, HOSPITAL_A), (patient, pid_b, HOSPITAL_B),
                                  (stranger, other, HOSPITAL_A)):
        assert link(operator, person.person_id, pid, hospital.issuer).status_code == 201
    added = operator.http.post(f"/api/persons/{patient.person_id}/caregivers",
                               json={"username": caregiver.name})
    assert added.status_code == 201, added.text
    granted = patient.http.post("/api/shares", json={
        "scope": {"studies": [new]}, "audience": {"physician": physician.name}})
    assert granted.status_code == 201, granted.text
    yield Site(server, operator, admin, patient, caregiver, physician, stranger, old, new,
               strangers, pid_a)
    for account in (operator, admin, patient, caregiver, physician, stranger):
        account.http.close()


def page(account: Account, path: str, **kwargs: Any) -> httpx.Response:
    return account.http.get(path, follow_redirects=False, **kwargs)


def browser_login(server: Server, username: str) -> httpx.Client:
    """A cookie session made through the login form, as a browser would."""
    client = httpx.Client(base_url=server.url, timeout=60)
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text
    done = client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf": token.group(1)})
    assert done.status_code == 303, done.text
    return client


def share_url(text: str) -> str:
    found = re.findall(r'value="(https?://[^"]+/s/[^"]+)"', text)
    assert found, text
    return found[0]


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


# -- homes and who may see which page ----------------------------------------------------------


def test_the_start_page_sends_each_role_home(site: Site) -> None:
    homes = [(site.patient, "/timeline"), (site.caregiver, "/timeline"),
             (site.physician, "/shared-with-me"), (site.admin, "/admin"),
             (site.operator, "/admin")]
    for account, home in homes:
        answer = page(account, "/")
        assert (answer.status_code, answer.headers["location"]) == (303, home), account.name


def test_anonymous_page_requests_go_to_the_login_page(server: Server) -> None:
    answer = httpx.get(f"{server.url}/timeline?person=3", headers={"Accept": "text/html"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Ftimeline%3Fperson%3D3"


def test_each_page_renders_for_its_roles_and_is_not_found_for_others(site: Site) -> None:
    person = site.patient.person_id
    allowed = {
        "/timeline": [site.patient, site.caregiver, site.stranger],
        f"/timeline?person={person}": [site.patient, site.caregiver, site.admin, site.operator,
                                       site.physician],
        f"/patients/{person}": [site.patient, site.caregiver, site.admin, site.operator,
                                site.physician],
        f"/studies/{site.new}": [site.patient, site.caregiver, site.admin, site.operator,
                                 site.physician],
        f"/studies/{site.old}": [site.patient, site.caregiver, site.admin, site.operator],
        "/share": [site.patient, site.caregiver, site.stranger],
        f"/share?person={person}": [site.patient, site.caregiver, site.admin],
        "/upload": [site.patient, site.caregiver, site.stranger],
        "/caregivers": [site.patient, site.caregiver, site.stranger],
        "/shared-with-me": [site.physician],
        "/admin": [site.admin, site.operator],
    }
    everyone = [site.patient, site.caregiver, site.physician, site.admin, site.operator,
                site.stranger]
    for path, accounts in allowed.items():
        for account in everyone:
            answer = page(account, path)
            if account in accounts:
                assert answer.status_code == 200, (path, account.name, answer.text[:300])
                assert answer.headers["content-type"].startswith("text/html")
                assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            else:
                assert answer.status_code in (303, 404), (path, account.name)
                if answer.status_code == 303:  # only ever back to the caller's own start page
                    assert answer.headers["location"] in ("/admin", "/shared-with-me",
                                                          "/caregivers"), (path, account.name)


def test_hidden_studies_and_persons_are_not_found_like_missing_ones(site: Site) -> None:
    for path in (f"/studies/{site.strangers}", "/studies/1.2.3.4.5.6",
                 f"/patients/{site.stranger.person_id}", "/patients/999999",
                 f"/timeline?person={site.stranger.person_id}", "/timeline?person=999999",
                 f"/studies/{site.old}/documents/1.2/3.4"):
        answers = [page(site.patient, path), page(site.physician, path)]
        assert [a.status_code for a in answers] == [404, 404], path
        assert "Not found" in answers[0].text


# -- timeline, case folder, study --------------------------------------------------------------


def test_the_timeline_lists_every_hospital_newest_first(site: Site) -> None:
    answer = page(site.patient, "/timeline")
    text = answer.text
    assert answer.status_code == 200 and '<html lang="en">' in text
    assert text.index(site.new) < text.index(site.old)  # newest first
    assert f"/dicomweb/studies/{site.new}/thumbnail" in text
    assert f'href="/studies/{site.new}"' in text
    for needle in ("Hospital A", "Hospital B", "July 20, 2025", "January 5, 2023", "CT scan",
                   "<h1>My images</h1>", 'aria-current="page"', "How to use this page"):
        assert needle in text, needle
    assert text.count("<svg") >= 3  # the micro-guide's pictures


def test_a_caregiver_sees_the_timeline_of_their_patient(site: Site) -> None:
    answer = page(site.caregiver, "/timeline")
    assert answer.status_code == 200
    assert site.new in answer.text and site.old in answer.text and "Zhang San" in answer.text
    assert page(site.caregiver, f"/timeline?person={site.stranger.person_id}").status_code == 404


def test_the_case_folder_shows_reports_documents_and_the_nodule_slot(site: Site) -> None:
    answer = page(site.patient, f"/patients/{site.patient.person_id}")
    text = answer.text
    assert answer.status_code == 200
    assert "Discharge letter" in text and "Diagnostic imaging report" in text
    assert "Finding" in text and "Benign appearance" in text and "6 mm" in text
    assert "&lt;b&gt;unchanged&lt;/b&gt;" in text and "<b>unchanged" not in text  # escaped
    assert "Nodules" in text and "No nodule measurements yet." in text
    assert "HOSP-A" in text and site.pid_a in text  # the hospital records, for the owner
    pdf_link = re.search(rf'href="(/studies/{re.escape(site.new)}/documents/[^"]+)"', text)
    assert pdf_link
    pdf = page(site.patient, pdf_link.group(1))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4") and pdf.content.endswith(b"%%EOF\n")
    assert page(site.stranger, pdf_link.group(1)).status_code == 404
    physician = page(site.physician, f"/patients/{site.patient.person_id}")
    assert physician.status_code == 200 and site.new in physician.text
    assert site.old not in physician.text and site.pid_a not in physician.text


def test_the_study_page_opens_the_viewer_and_compares_with_the_prior(site: Site) -> None:
    text = page(site.patient, f"/studies/{site.new}").text
    assert f'href="/view/{site.new}"' in text
    assert f'href="/view/{site.new}/compare/{site.old}"' in text
    assert "Open in OHIF" not in text  # for physicians and administrators
    assert "Diagnostic imaging report" in text and "Discharge letter" in text
    assert f"/dicomweb/studies/{site.new}/series/" in text and "/thumbnail" in text
    assert "What the words mean" in text and "CT scan" in text
    old = page(site.patient, f"/studies/{site.old}").text
    assert "/compare/" not in old and "no earlier scan" in old
    admin = page(site.admin, f"/studies/{site.new}").text
    ohif = re.search(r'id="open-ohif" href="([^"]+)"|href="([^"]+)" id="open-ohif"', admin)
    assert ohif, admin
    target = (ohif.group(1) or ohif.group(2)).replace("&amp;", "&")
    assert "viewer?" in target and "StudyInstanceUIDs=" in target  # the OHIF module's URL
    assert site.new in target and site.old in target and "hpCompare" in target
    # the physician's grant covers only the newer study: no prior to compare with
    physician = page(site.physician, f"/studies/{site.new}").text
    assert "Open in OHIF" in physician and "/compare/" not in physician
    assert f"StudyInstanceUIDs={site.new}" in physician.replace("%2C", ",")


def test_physicians_see_the_patients_shared_with_them(site: Site) -> None:
    answer = page(site.physician, "/shared-with-me")
    assert answer.status_code == 200
    assert "Zhang San" in answer.text and site.new in answer.text and site.old not in answer.text
    assert f'href="/patients/{site.patient.person_id}"' in answer.text
    nobody = make_account(site.server, "physician")
    empty = page(nobody, "/shared-with-me")
    assert empty.status_code == 200 and "No patient has shared" in empty.text
    assert nobody.name in empty.text
    nobody.http.close()


# -- sharing -----------------------------------------------------------------------------------


def test_share_create_renew_and_revoke_from_the_page(site: Site) -> None:
    person = site.patient.person_id
    created = site.patient.http.post("/share", data={
        "person": person, "scope": "studies", "study": [site.old], "audience": "link+pin",
        "pin": "135790", "valid": "30"})
    assert created.status_code == 303
    assert created.headers["location"].startswith(f"/share?person={person}&done=created&new=")
    share_id = int(created.headers["location"].split("new=")[1].split("#")[0])
    listing = page(site.patient, created.headers["location"])
    text = listing.text
    assert "The share was created" in text and f'id="share-{share_id}"' in text
    assert f"/api/shares/{share_id}/qr.svg" in text and f"/api/shares/{share_id}/card.pdf" in text
    assert "Anyone with the link and the PIN" in text and "January 5, 2023" in text
    url = share_url(text)
    visitor = httpx.Client(base_url=site.server.url, timeout=60)
    form = visitor.get(path_of(url))
    assert form.status_code == 200 and 'name="pin"' in form.text and "Enter the PIN" in form.text
    opened = visitor.post(path_of(url), data={"pin": "135790"}, follow_redirects=False)
    assert (opened.status_code, opened.headers["location"]) == (303, "/shared")
    landing = visitor.get("/shared")
    assert landing.status_code == 200 and f'href="/view/{site.old}"' in landing.text
    assert site.new not in landing.text and "Sign out" not in landing.text
    assert visitor.get(f"/studies/{site.new}").status_code == 404
    assert visitor.get(f"/studies/{site.old}").status_code == 200
    renewed = site.patient.http.post(f"/share/{share_id}/renew", data={"valid": "none"})
    assert renewed.status_code == 303 and "done=renewed" in renewed.headers["location"]
    again = page(site.patient, f"/share?person={person}").text
    assert share_url(again) == url and "No end date" in again
    assert "opened a shared link" in again  # "who looked at my images"
    assert page(site.stranger, f"/share?person={person}").status_code == 404
    assert site.stranger.http.post(f"/share/{share_id}/revoke").status_code == 404
    revoked = site.patient.http.post(f"/share/{share_id}/revoke")
    assert revoked.status_code == 303 and "done=revoked" in revoked.headers["location"]
    assert visitor.get("/shared").status_code == 401  # the open session ended with the share
    assert httpx.get(url, follow_redirects=False).status_code == 404
    assert "Stopped" in page(site.patient, f"/share?person={person}").text
    visitor.close()


def test_the_pin_form_works_under_no_referrer_but_not_cross_site(site: Site) -> None:
    """Browsers send ``Origin: null`` for the PIN page's own POST (its Referrer-Policy is
    no-referrer); ``Sec-Fetch-Site`` says whether it came from this site."""
    created = site.patient.http.post("/api/shares", json={
        "scope": {"studies": [site.old]}, "audience": "link+pin", "pin": "975310"})
    target = path_of(created.json()["url"])
    with httpx.Client(base_url=site.server.url, timeout=60) as visitor:
        assert visitor.get(target).status_code == 200
        forged = visitor.post(target, data={"pin": "975310"},
                              headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
        assert forged.status_code == 403 and "Please open the link again." in forged.text
        sibling = visitor.post(target, data={"pin": "975310"},
                               headers={"Origin": site.server.url, "Sec-Fetch-Site": "same-site"})
        assert sibling.status_code == 403
        ours = visitor.post(target, data={"pin": "975310"}, follow_redirects=False,
                            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
        assert (ours.status_code, ours.headers["location"]) == (303, "/shared")


def test_a_timeline_link_lands_on_the_timeline(site: Site) -> None:
    created = site.caregiver.http.post("/share", data={
        "person": site.patient.person_id, "scope": "all", "audience": "link", "valid": "90"})
    assert created.status_code == 303, created.text
    url = share_url(page(site.caregiver, created.headers["location"]).text)
    visitor = httpx.Client(base_url=site.server.url, timeout=60)
    assert visitor.get(path_of(url), follow_redirects=False).status_code == 303
    landing = visitor.get("/shared")
    assert landing.status_code == 200
    assert site.new in landing.text and site.old in landing.text
    assert site.strangers not in landing.text
    assert visitor.get(f"/studies/{site.strangers}").status_code == 404
    assert visitor.get(f"/patients/{site.stranger.person_id}").status_code == 404
    visitor.close()


def test_share_form_mistakes_are_explained_in_the_visitors_language(site: Site) -> None:
    person = site.patient.person_id
    cases = [({"scope": "studies", "audience": "link"}, "Tick at least one scan to share.",
              "请至少勾选一项检查。"),
             ({"scope": "all", "audience": "link+pin", "pin": "12"},
              "The PIN must be 6 to 12 digits.", "访问码必须是 6 到 12 位数字。"),
             ({"scope": "all", "audience": "physician", "physician": "no-such-doctor"},
              "There is no doctor with the username no-such-doctor.",
              "没有用户名为 no-such-doctor 的医生。")]
    for data, english, chinese in cases:
        answer = site.patient.http.post("/share", data={"person": person, "valid": "90", **data})
        assert answer.status_code == 400 and english in answer.text, answer.text[-2000:]
        assert 'role="alert"' in answer.text
        answer = site.patient.http.post("/share", data={"person": person, "valid": "90", **data},
                                        headers=ZH)
        assert answer.status_code == 400 and chinese in answer.text


# -- caregivers, upload ------------------------------------------------------------------------


def test_invite_accept_act_for_and_remove_a_family_helper(site: Site) -> None:
    """Invitations are links that name nobody (issue 11); staff accounts cannot accept."""
    helper = make_account(site.server, "caregiver")
    made = site.stranger.http.post("/caregivers/invite")
    assert made.status_code == 200 and "Invitation link" in made.text
    join = re.search(r'value="https?://[^/"]+(/caregivers/join/[A-Za-z0-9_-]+)"', made.text)
    assert join, made.text
    assert "Invitation link, not used yet" in page(site.stranger, "/caregivers").text
    assert page(site.physician, join.group(1)).status_code == 403  # staff: never a helper
    assert page(helper, "/timeline").headers["location"] == "/caregivers"  # nobody to act for yet
    assert helper.http.post(join.group(1)).status_code == 303
    assert site.caregiver.http.post(join.group(1)).status_code == 404  # used once
    chosen = helper.http.post("/caregivers/act", data={"person": site.stranger.person_id})
    assert chosen.status_code == 303
    assert chosen.headers["location"] == f"/timeline?person={site.stranger.person_id}"
    assert site.strangers in page(helper, chosen.headers["location"]).text
    assert helper.http.post("/caregivers/act",
                            data={"person": site.patient.person_id}).status_code == 404
    user_id = re.search(r'action="/caregivers/(\d+)/remove"', page(site.stranger, "/caregivers")
                        .text)
    assert user_id
    assert site.stranger.http.post(f"/caregivers/{user_id.group(1)}/remove").status_code == 303
    assert page(helper, f"/timeline?person={site.stranger.person_id}").status_code == 404
    helper.http.close()


def test_the_upload_page_posts_to_the_upload_api(site: Site) -> None:
    text = page(site.patient, "/upload").text
    for needle in ("webkitdirectory", f'action="/api/uploads?person={site.patient.person_id}"',
                   'type="file"', "<progress", "/static/portal/upload.js", 'id="upload-strings"',
                   'accept="application/pdf,image/jpeg,image/png"', 'name="csrf"'):
        assert needle in text, needle
    script = page(site.patient, "/static/portal/upload.js")
    assert script.status_code == 200 and "X-CSRF-Token" in script.text
    assert "javascript" in script.headers["content-type"]
    css = page(site.patient, "/static/portal/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert page(site.patient, "/static/portal/../../pages.py").status_code == 404


# -- CSRF --------------------------------------------------------------------------------------


def test_form_posts_with_a_session_need_its_csrf_token(site: Site) -> None:
    client = browser_login(site.server, site.patient.name)
    token = client.cookies["cf_csrf"]
    shares = client.get("/share")
    assert shares.status_code == 200 and f'name="csrf" value="{token}"' in shares.text
    data = {"person": str(site.patient.person_id), "scope": "all", "audience": "link",
            "valid": "30"}
    for path, body in (("/share", data), ("/caregivers/invite", {"username": "x"}),
                       ("/share/1/revoke", {}), ("/caregivers/act", {"person": "1"})):
        refused = client.post(path, data=body)
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"], path
        forged = client.post(path, data=body | {"csrf": "not-the-token"})
        assert forged.status_code == 403, path
    accepted = client.post("/share", data={"csrf": token} | data)
    assert accepted.status_code == 303
    client.close()


# -- languages ----------------------------------------------------------------------------------


def test_chinese_pages_for_chinese_browsers_and_the_language_switch(site: Site) -> None:
    chinese = page(site.patient, "/timeline", headers=ZH)
    assert chinese.status_code == 200 and '<html lang="zh-Hans">' in chinese.text
    for needle in ("我的影像", "2025年7月20日", "CT 扫描", "如何使用本页", "退出登录"):
        assert needle in chinese.text, needle
    assert "My images" not in chinese.text
    english = page(site.patient, "/timeline?lang=en", headers=ZH)
    assert '<html lang="en">' in english.text and "My images" in english.text
    assert "cf_lang=en" in english.headers["set-cookie"]
    switched = page(site.patient, "/timeline?lang=zh")
    assert "我的影像" in switched.text and "cf_lang=zh" in switched.headers["set-cookie"]
    remembered = page(site.patient, "/share", headers={"Cookie": "cf_lang=zh"})
    assert "分享我的影像" in remembered.text
    login = httpx.get(f"{site.server.url}/login", headers=ZH)
    assert login.status_code == 200 and "登录" in login.text and '<html lang="zh-Hans">' in login.text
    assert "<script" not in login.text
    wrong = httpx.post(f"{site.server.url}/login", headers=ZH,
                       data={"username": "x", "password": "y", "csrf": "z"})
    assert wrong.status_code == 403 and "登录表单已过期" in wrong.text
    for path in ("/caregivers", "/upload", f"/studies/{site.new}",
                 f"/patients/{site.patient.person_id}"):
        text = page(site.patient, path, headers=ZH).text
        assert '<html lang="zh-Hans">' in text and "如何使用本页" in text, path
    doctor = page(site.physician, "/shared-with-me", headers=ZH).text
    assert "与我分享的患者" in doctor


def test_large_text_mode_is_a_remembered_switch(site: Site) -> None:
    normal = page(site.patient, "/timeline")
    assert '<body class="normal-text">' in normal.text and "?text=large" in normal.text
    large = page(site.patient, "/timeline?text=large")
    assert '<body class="large-text">' in large.text and "cf_text=large" in large.headers[
        "set-cookie"]
    assert '<body class="large-text">' in page(site.patient, "/share",
                                               headers={"Cookie": "cf_text=large"}).text


def test_both_catalogues_translate_every_message() -> None:
    """Every message of the templates and modules is in both catalogues, with the same
    placeholders (no server needed)."""
    extracted = i18n.extract_messages()
    placeholder = re.compile(r"%\((\w+)\)s")
    for language in i18n.LANGUAGES:
        catalog = i18n.read_catalog(language)
        for message in extracted:
            if not message.id:
                continue
            entry = catalog.get(message.id)
            assert entry is not None and not entry.fuzzy, (language, message.id)
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
            assert all(strings), (language, message.id)
            wanted = set(placeholder.findall(" ".join(ids))) - {"num"}
            for string in strings:
                assert set(placeholder.findall(string)) - {"num"} == wanted, (language, string)


# -- IHE Invoke Image Display ------------------------------------------------------------------


def test_ihe_invoke_image_display(site: Site) -> None:
    iid = "/IHEInvokeImageDisplay"
    study = page(site.patient, f"{iid}?requestType=STUDY&studyUID={site.new}")
    assert (study.status_code, study.headers["location"]) == (303, f"/view/{site.new}")
    both = page(site.admin, f"{iid}?requestType=STUDY&studyUID={site.new},{site.old}")
    assert both.headers["location"] == f"/view/{site.new}/compare/{site.old}"
    assert page(site.physician, f"{iid}?requestType=STUDY&studyUID={site.old}").status_code == 404
    assert page(site.patient,
                f"{iid}?requestType=STUDY&studyUID={site.strangers}").status_code == 404
    patient = page(site.physician, f"{iid}?requestType=PATIENT&patientID={site.pid_a}"
                                   f"&issuerOfPatientID={HOSPITAL_A.issuer}")
    assert patient.status_code == 303
    assert patient.headers["location"] == f"/timeline?person={site.patient.person_id}"
    assert page(site.stranger, f"{iid}?requestType=PATIENT&patientID={site.pid_a}"
                ).status_code == 404
    assert page(site.admin, f"{iid}?requestType=PATIENT&patientID=nobody-here").status_code == 404
    for query in ("requestType=SERIES&studyUID=1.2", "", "requestType=STUDY",
                  "requestType=PATIENT"):
        assert page(site.admin, f"{iid}?{query}").status_code == 400, query
