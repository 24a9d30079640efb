"""Chinese first (issue 12, part 6): every page a patient, a caregiver or a link visitor
sees, loaded in zh-CN over the demo's data, holds no untranslated text.

How: each page is opened in a phone browser (zh-CN), and its visible text (text nodes
and the alt, title, aria-label and placeholder texts) is read from the DOM. What comes
from the data is allowed: the demo's names, hospitals and descriptions, numbers, dates,
UIDs, units, product names, and a hospital's own report text (``data-record-text``).
A run of two or more Latin words left over is untranslated: the test prints each one
with its page and fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from conftest import DemoSite, log_in, running_demo_site, screenshot
from jobs_wait import wait_for_tracking

PHONE = dict(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
             locale="zh-CN")
# Names that stay as they are in every language, and units and formats.
ALLOWED_WORDS = {
    "cloudfilm", "dicom", "ohif", "english", "pdf", "ct", "mri", "pet", "zip", "pin", "qr",
    "usb", "cd", "id", "mm", "cm", "utc", "index.htm", "dicomdir", "jpeg", "png", "lung-rads",
    "fleischner", "brock", "iso", "ihe", "pdi", "wado", "mb", "hu", "wl", "ww",
}
LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z'’.-]*(?:[\s,;:/()&]+[A-Za-z][A-Za-z'’.-]*)+")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’.^-]*")
SHOWN_ATTRIBUTES = ("alt", "title", "aria-label", "placeholder")
SKIPPED_TAGS = {"script", "style", "template", "noscript"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "source", "track", "wbr"}


class VisibleText(HTMLParser):
    """Text nodes and shown attributes, outside scripts and a record's own text."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._stack: list[bool] = []  # per open element: is its content skipped?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        skipped = bool(self._stack and self._stack[-1]) or tag in SKIPPED_TAGS or (
            "data-record-text" in names)
        if not skipped:
            self.texts += [v for k, v in attrs if k in SHOWN_ATTRIBUTES and v]
        if tag not in VOID_TAGS:
            self._stack.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_TAGS and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self._stack and self._stack[-1]) and data.strip():
            self.texts.append(" ".join(data.split()))


def untranslated(html: str, data: set[str]) -> list[str]:
    """The runs of two or more Latin words that are neither data nor allowed names."""
    parser = VisibleText()
    parser.feed(html)
    phrases = sorted(data, key=len, reverse=True)
    found = []
    for text in parser.texts:
        for phrase in phrases:
            if phrase in text.lower():
                text = re.sub(rf"(?<![A-Za-z]){re.escape(phrase)}(?![A-Za-z])", " ", text,
                              flags=re.I)
        kept = WORD.sub(lambda m: "" if _allowed(m.group(0)) else m.group(0), text)
        found += [run.group(0).strip() for run in LATIN_RUN.finditer(kept)
                  if len(WORD.findall(run.group(0))) >= 2]
    return found


def _allowed(word: str) -> bool:
    bare = word.strip("'’.-").lower()
    return bare in ALLOWED_WORDS or any(c.isdigit() for c in word) or bare.startswith("demo-")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def data_phrases(site: DemoSite) -> set[str]:
    """The demo's data as pages show it: names (each PN group, ^ as a space), hospitals,
    descriptions and codes, from the truth file, the stored series and the people."""
    with site.server.http() as admin:
        series = admin.get("/dicomweb/series", params={
            "includefield": "StudyDescription,SeriesDescription,InstitutionName,PatientName,"
                            "ReferringPhysicianName,BodyPartExamined,Manufacturer"}).json()
        persons = [found.json() for pid in range(1, 10)
                   if (found := admin.get(f"/api/persons/{pid}")).status_code == 200]
    phrases = set()
    for text in [*_strings(site.truth), *_strings(series), *_strings(persons)]:
        for group in text.split("="):
            for variant in (group, group.replace("^", " "), group.replace("^", "")):
                if variant.strip() and not variant.strip().isdigit():
                    phrases.add(" ".join(variant.split()).lower())
    return phrases


def api(page: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A JSON API call from the signed-in page (its session cookie and CSRF token)."""
    return page.evaluate("""async ([method, path, body]) => {
        const csrf = (document.cookie.match(/(?:^|;\\s*)cf_csrf=([^;]*)/) || [])[1] || "";
        const r = await fetch(path, {method, headers: {"Content-Type": "application/json",
            "X-CSRF-Token": decodeURIComponent(csrf)},
            body: body === null ? undefined : JSON.stringify(body)});
        return {status: r.status, body: await r.text()};
    }""", [method, path, body])


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """The demo, with in-app messages delivered every second (so /messages has some)."""
    with running_demo_site(tmp_path_factory, {"CLOUDFILM_NOTIFY_INTERVAL": "1"}) as site:
        yield site


def measure_and_report(site: DemoSite) -> None:
    """Realistic documents: a nodule measured on each scan of the first patient (which
    stores cloudfilm's nodule SR) and a hospital's report SR on the newest scan."""
    from factory import multipart_related, to_bytes
    from test_patient_reports import hospital_report

    patient = site.truth["patients"][0]
    with site.server.http() as admin:
        for study in patient["studies"]:
            nodule = study["nodules"][0]
            measured = admin.post(f"/api/studies/{study['study_uid']}/nodules", json={
                "series_uid": study["series_uid"],
                "instance_uid": nodule["instance_uid_at_center"],
                "center_patient_mm": nodule["center_patient_mm"],
                "long_axis_mm": nodule["diameter_mm"] + 0.0123456789,
                "short_axis_mm": nodule["diameter_mm"] * 0.8, "nodule_type": nodule["type"],
                "lobe": "RUL"})
            assert measured.status_code == 201, measured.text
        for study in patient["studies"]:  # tracked, assessed and the SR written in a job
            wait_for_tracking(admin, study["study_uid"])
        newest = max(patient["studies"], key=lambda s: s["study_date"])
        name = patient["patient_name"]
        report = hospital_report(study=newest["study_uid"], patient_id=newest["patient_id"],
                                 issuer=newest["issuer"], patient_name=name,
                                 PatientBirthDate=patient["birth_date"], PatientSex=patient["sex"],
                                 InstitutionName=newest["hospital"],
                                 study_date=newest["study_date"])
        body, content_type = multipart_related([to_bytes(report)])
        stored = admin.post("/dicomweb/studies", content=body, headers={
            "content-type": content_type, "accept": "application/dicom+json"})
        assert stored.status_code == 200, stored.text


@pytest.fixture(scope="module")
def words(demo_site: DemoSite) -> set[str]:
    measure_and_report(demo_site)
    return data_phrases(demo_site)


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(**PHONE)
    try:
        yield context
    finally:
        context.close()


def _check(page: Any, url: str, words: set[str], name: str, found: dict[str, list[str]]) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url or name.startswith("login"), (name, page.url)
    screenshot(page, f"zh-{name}")
    bad = untranslated(page.content(), words)
    if bad:
        found[f"{name} ({url})"] = sorted(set(bad))


def _report(found: dict[str, list[str]]) -> str:
    return "untranslated text on zh pages:\n" + "\n".join(
        f"  {page}:\n" + "\n".join(f"    {text!r}" for text in texts)
        for page, texts in found.items())


def test_the_checker_finds_english_and_allows_data() -> None:
    """The checker itself: an English sentence is caught, names and numbers are not."""
    html = ('<p>您的影像</p><p>Riverside General Hospital · 2024年9月8日 · 6.0 mm</p>'
            '<button title="Open viewer">打开</button><div data-record-text><p>Findings here'
            '</p></div><script>var a = "some code";</script>')
    assert untranslated(html, {"riverside general hospital", "m"}) == ["Open viewer"]


def test_patient_pages_are_all_in_chinese(demo_site: DemoSite, phone: Any,
                                          words: set[str]) -> None:
    page = log_in(phone, demo_site, "demo-patient")
    base = demo_site.server.url
    me = page.evaluate("fetch('/api/me').then(r => r.json())")
    person, studies = me["person_id"], demo_site.truth["patients"][0]["studies"]
    link = api(page, "POST", "/api/shares", {"scope": {"studies": [studies[0]["study_uid"]]},
                                             "audience": "link", "permissions": ["view"]})
    assert link["status"] == 201, link
    found: dict[str, list[str]] = {}
    visitor = phone.browser.new_context(**PHONE)
    try:
        _check(visitor.new_page(), json.loads(link["body"])["url"], words,
               "link-study", found)
    finally:
        visitor.close()
    for _ in range(120):  # the notification worker delivers the "link opened" message
        if page.evaluate("fetch('/api/me/notifications').then(r => r.json())"):
            break
        page.wait_for_timeout(500)
    pages = [("timeline", "/timeline"), ("folder", f"/patients/{person}"),
             ("share", "/share"), ("caregivers", "/caregivers"), ("upload", "/upload"),
             ("messages", "/messages")]
    pages += [(f"study-{n}", f"/studies/{s['study_uid']}") for n, s in enumerate(studies)]
    for name, path in pages:
        _check(page, base + path, words, f"patient-{name}", found)
    assert not found, _report(found)


def test_caregiver_pages_are_all_in_chinese(demo_site: DemoSite, phone: Any,
                                            words: set[str]) -> None:
    page = log_in(phone, demo_site, "demo-caregiver")
    base = demo_site.server.url
    study = demo_site.truth["patients"][0]["studies"][0]["study_uid"]
    found: dict[str, list[str]] = {}
    for name, path in (("timeline", "/timeline"), ("study", f"/studies/{study}"),
                       ("share", "/share"), ("caregivers", "/caregivers"),
                       ("upload", "/upload"), ("messages", "/messages")):
        _check(page, base + path, words, f"caregiver-{name}", found)
    assert not found, _report(found)


def test_pages_before_signing_in_are_all_in_chinese(demo_site: DemoSite, phone: Any,
                                                    words: set[str]) -> None:
    owner = log_in(phone, demo_site, "demo-patient")
    invited = api(owner, "POST", "/api/me/caregivers", {})
    assert invited["status"] == 201, invited
    join_url = json.loads(invited["body"])["url"]
    found: dict[str, list[str]] = {}
    stranger = phone.browser.new_context(**PHONE)
    try:
        visitor = stranger.new_page()
        for name, url in (("login", f"{demo_site.server.url}/login"),
                          ("login-signup", f"{demo_site.server.url}/signup"),
                          ("login-claim", f"{demo_site.server.url}/claim"),
                          ("login-caregiver-join", join_url)):
            if visitor.request.get(url, max_redirects=0).status == 404:
                continue  # that page is not there (yet)
            _check(visitor, url, words, name, found)
    finally:
        stranger.close()
    assert not found, _report(found)
