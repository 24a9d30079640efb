"""Keep it for life, and family, in a real browser (issue 12 tests 1 and 2): a phone
(390×844, touch, zh-CN) opens a hospital's cloud film with no account, taps "keep in my
folder", is refused a wrong birth date, signs up with the right one and finds the study
in its timeline, while the film link still opens; then the patient invites a family
helper by link, who signs up on their own phone and sees the patient's images.
Screenshots go to test-output/screenshots/keep-*.png.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from conftest import Server, database_url_for, screenshot
from factory import make_instance, stow, to_bytes

PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True,
         "locale": "zh-CN", "device_scale_factor": 2}
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite only: the page journey, not the database, is under test."""
    data_dir = tmp_path_factory.mktemp("keep-site") / "data"
    url, _ = database_url_for("sqlite", data_dir)
    server = Server(data_dir, url).start()
    try:
        yield server
    finally:
        server.stop()


def hospital_film(server: Server, patient_name: str) -> tuple[str, str]:
    """A CT study from the hospital (PatientBirthDate 1960-01-01) and its cloud film URL."""
    study, series, pid = generate_uid(), generate_uid(), f"H{secrets.token_hex(4)}"
    parts = [to_bytes(make_instance(study=study, series=series, patient_id=pid,
                                    issuer="HOSP-A", patient_name=patient_name,
                                    instance_number=n, rows=64, columns=64,
                                    charset="ISO_IR 192", InstitutionName="市第一医院"))
             for n in (1, 2, 3)]
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        assert stow(http, parts).status_code == 200
    with server.http() as admin:
        film = admin.post("/api/films", json={"study_uid": study})
    assert film.status_code == 201, film.text
    return study, film.json()["url"]


def fill_sign_up(page: Any, name: str, login: str, birth_date: str | None) -> None:
    page.fill("#display_name", name)
    page.fill("#username", login)
    page.fill("#password", PASSWORD)
    if birth_date is not None:
        page.fill("#birth_date", birth_date)
    with page.expect_navigation():
        page.tap("form[action='/signup'] button[type=submit]")


def test_a_phone_keeps_a_hospital_film_for_life(chromium: Any, site: Server) -> None:
    study, url = hospital_film(site, "Zhang^Lan=张兰")
    context = chromium.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(url)
        keep = page.locator("#keep-in-folder")
        assert keep.inner_text().strip() == "保存到我的影像夹"
        screenshot(page, "keep-1-film-study-page")
        with page.expect_navigation():
            keep.tap()
        assert page.locator("h1").inner_text() == "把这些影像保存到您的影像夹"
        login = f"139{secrets.randbelow(10**8):08d}"
        fill_sign_up(page, "张兰", login, "1961-02-03")
        error = page.locator("#signup-error")
        assert "出生日期和医院的记录对不上" in error.inner_text()
        assert "1960" not in page.content()
        screenshot(page, "keep-2-wrong-birth-date")
        fill_sign_up(page, "张兰", login, "1960-01-01")
        assert page.url.endswith("/timeline?done=kept"), page.locator("main").inner_text()
        assert page.locator("h1").inner_text() == "我的影像"
        assert page.locator(f"a[href='/studies/{study}']").count() >= 1
        screenshot(page, "keep-3-timeline")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
    again = chromium.new_context(**PHONE)
    try:
        page = again.new_page()
        page.goto(url)
        assert page.locator("#keep-in-folder").count() == 1  # the film still opens
        assert study in page.content()
    finally:
        again.close()


def test_a_family_helper_signs_up_through_the_link_and_sees_the_timeline(
        chromium: Any, site: Server) -> None:
    study, url = hospital_film(site, "Wang^Fang=王芳")
    login = f"137{secrets.randbelow(10**8):08d}"
    with httpx.Client(base_url=site.url, timeout=60) as browser:
        made = browser.post("/api/signup", json={
            "username": login, "password": PASSWORD, "display_name": "王芳",
            "birth_date": "1960-01-01", "film_url": url})
        assert made.status_code == 201, made.text
    patient = chromium.new_context(**PHONE)
    try:
        page = patient.new_page()
        page.goto(f"{site.url}/login")
        page.fill("#username", login)
        page.fill("#password", PASSWORD)
        page.tap("button[type=submit]")
        page.wait_for_url(re.compile(r".*/timeline$"))
        page.goto(f"{site.url}/caregivers")
        with page.expect_navigation():
            page.tap("form[action='/caregivers/invite'] button[type=submit]")
        invite = re.search(r"https?://[^\"' <]+/caregivers/join/[A-Za-z0-9_-]+", page.content())
        assert invite, page.content()[-2000:]
        # The new link is on the first screen, with a one-tap copy button beside it.
        box = page.locator("#invite-url").bounding_box()
        assert box is not None and box["y"] + box["height"] <= PHONE["viewport"]["height"]
        assert page.locator("#invite-url").input_value() == invite.group(0)
        patient.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
        page.get_by_role("button", name="复制链接").tap()
        page.get_by_role("button", name=re.compile("已复制")).wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == invite.group(0)
        screenshot(page, "keep-4-invitation-link")
    finally:
        patient.close()
    helper = chromium.new_context(**PHONE)
    try:
        page = helper.new_page()
        page.goto(invite.group(0))
        assert "王芳" in page.locator("main").inner_text()
        screenshot(page, "keep-5-invitation-opened")
        with page.expect_navigation():
            page.get_by_text("注册账号并接受").tap()
        assert page.locator("#birth_date").count() == 0  # a helper gives no birth date
        fill_sign_up(page, "王芳的女儿", f"{secrets.token_hex(4)}@qq.com", None)
        assert "王芳" in page.locator("h1").inner_text()
        assert page.locator(f"a[href='/studies/{study}']").count() >= 1
        screenshot(page, "keep-6-helper-timeline")
        with page.expect_navigation():
            page.locator(f"a[href='/studies/{study}']").first.tap()
        assert "王芳" in page.locator("#whose-folder").inner_text()  # whose folder this is
    finally:
        helper.close()
