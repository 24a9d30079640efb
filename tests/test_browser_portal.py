"""The portal in a real browser (Debian's chromium through Playwright) over demo data.

A patient logs in and sees studies from two hospitals; shares one study with a PIN; a
fresh browser opens the link, types the PIN and sees only that study; the patient stops
the share and the link dies. The caregiver sees the patient's timeline; a Chinese
browser gets Chinese pages; on a phone (390×844) the timeline has no sideways scroll.
Every step leaves a screenshot in test-output/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import DemoSite, log_in, screenshot

PHONE = {"width": 390, "height": 844}
PIN = "246813"


def demo_patient(site: DemoSite) -> dict[str, Any]:
    """The demo person whose records the demo patient owns (the first one)."""
    return site.truth["patients"][0]  # type: ignore[no-any-return]


def newest_first(site: DemoSite) -> list[dict[str, Any]]:
    return sorted(demo_patient(site)["studies"], key=lambda s: s["study_date"], reverse=True)


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(locale="en-GB")
    yield ctx
    ctx.close()


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_patient_sees_studies_from_two_hospitals(demo_site: DemoSite, context: Any) -> None:
    page = log_in(context, demo_site, "demo-patient")
    assert page.url.endswith("/timeline")
    assert page.locator("h1").inner_text() == "My images"
    hospitals = {s["hospital"] for s in demo_patient(demo_site)["studies"]}
    assert len(hospitals) == 2
    body = page.locator("main").inner_text()
    for hospital in hospitals:
        assert hospital in body
    links = page.locator("a.stretch").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert links == [f"/studies/{s['study_uid']}" for s in newest_first(demo_site)]
    thumbnails = page.locator("img.thumb")
    assert thumbnails.count() == len(links)
    assert page.evaluate("[...document.querySelectorAll('img.thumb')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "portal-01-patient-timeline")
    page.click("summary")  # the micro-guide opens with its three pictures
    assert page.locator("details.guide li svg").count() == 3
    screenshot(page, "portal-02-timeline-guide")
    page.click(f"a[href='/studies/{newest_first(demo_site)[0]['study_uid']}']")
    page.wait_for_load_state("networkidle")
    assert page.locator("#open-viewer").get_attribute("href") == \
        f"/view/{newest_first(demo_site)[0]['study_uid']}"
    prior = page.locator("#compare-prior").get_attribute("href")
    assert prior == f"/view/{newest_first(demo_site)[0]['study_uid']}/compare/" \
                    f"{newest_first(demo_site)[1]['study_uid']}"
    screenshot(page, "portal-03-study-page")


def test_a_pin_share_opens_only_its_study_until_it_is_stopped(demo_site: DemoSite,
                                                              chromium: Any,
                                                              context: Any) -> None:
    shared, other = newest_first(demo_site)[1]["study_uid"], newest_first(demo_site)[0]["study_uid"]
    owner = log_in(context, demo_site, "demo-patient")
    owner.goto(f"{demo_site.server.url}/share")
    owner.check("input[name=scope][value=studies]")
    for box in owner.locator("input[name=study]").all():
        box.set_checked(box.get_attribute("value") == shared)
    owner.check("input[name=audience][value='link+pin']")
    owner.fill("#pin", PIN)
    owner.select_option("#valid", "30")
    screenshot(owner, "portal-04-share-form")
    owner.click("#new-share button[type=submit]")
    owner.wait_for_load_state("networkidle")
    created = owner.locator("li.new-share")
    assert created.count() == 1 and "The share was created" in owner.inner_text("main")
    url = created.locator("input.share-url").input_value()
    assert "/s/" in url
    assert created.locator("img.qr").evaluate("i => i.complete && i.naturalWidth > 0")
    screenshot(owner, "portal-05-share-created")

    visitor_context = chromium.new_context(locale="en-GB")
    visitor = visitor_context.new_page()
    visitor.goto(url)
    assert visitor.locator("h1").inner_text() == "Enter the PIN"
    screenshot(visitor, "portal-06-pin-form")
    visitor.fill("#pin", PIN)
    visitor.click("button[type=submit]")
    visitor.wait_for_load_state("networkidle")
    assert visitor.url.endswith("/shared")
    assert visitor.locator("#open-viewer").get_attribute("href") == f"/view/{shared}"
    assert other not in visitor.content()
    screenshot(visitor, "portal-07-shared-study")
    refused = visitor.goto(f"{demo_site.server.url}/studies/{other}")
    assert refused is not None and refused.status == 404
    screenshot(visitor, "portal-08-other-study-not-found")

    owner.goto(f"{demo_site.server.url}/share")
    share = owner.locator("li.panel", has=owner.locator(f"input[value='{url}']"))
    share.locator("details.revoke summary").click()
    share.locator("details.revoke button[type=submit]").click()
    owner.wait_for_load_state("networkidle")
    assert "The share was stopped" in owner.inner_text("main")
    screenshot(owner, "portal-09-share-stopped")

    dead = visitor.goto(url)
    assert dead is not None and dead.status == 404
    assert "not available" in visitor.inner_text("main")
    screenshot(visitor, "portal-10-link-dead")
    gone = visitor.goto(f"{demo_site.server.url}/studies/{shared}")
    assert gone is not None and visitor.url.startswith(f"{demo_site.server.url}/login")
    visitor_context.close()


def test_the_caregiver_sees_the_patients_timeline(demo_site: DemoSite, context: Any) -> None:
    page = log_in(context, demo_site, "demo-caregiver")
    assert page.url.endswith("/timeline")
    content = page.content()
    for study in demo_patient(demo_site)["studies"]:
        assert f"/studies/{study['study_uid']}" in content
    for study in demo_site.truth["patients"][1]["studies"]:
        assert study["study_uid"] not in content
    screenshot(page, "portal-11-caregiver-timeline")


def test_the_chinese_interface(demo_site: DemoSite, chromium: Any) -> None:
    ctx = chromium.new_context(locale="zh-CN", viewport=PHONE)
    page = ctx.new_page()
    page.goto(f"{demo_site.server.url}/login")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.locator("h1").inner_text() == "登录 cloudfilm 云胶片"
    assert page.locator("label[for=password]").inner_text() == "密码"
    screenshot(page, "portal-12-login-zh")
    page.fill("#username", "demo-patient")
    page.fill("#password", demo_site.logins["demo-patient"])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "我的影像"
    assert "CT 扫描" in page.inner_text("main") and "年" in page.inner_text("main")
    screenshot(page, "portal-13-timeline-zh")
    page.click("a[lang=en]")  # the switch, remembered for the next pages
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "My images"
    page.goto(f"{demo_site.server.url}/share")
    assert page.locator("h1").inner_text() == "Share my images"
    ctx.close()


def test_the_timeline_on_a_phone(demo_site: DemoSite, chromium: Any) -> None:
    ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                               has_touch=True, locale="en-GB")
    page = log_in(ctx, demo_site, "demo-patient")
    assert no_sideways_scroll(page)
    card = page.locator("li.card").first.bounding_box()
    assert card is not None and card["x"] >= 0 and card["x"] + card["width"] <= PHONE["width"]
    for link in page.locator("nav.main-nav a").all():
        box = link.bounding_box()
        assert box is not None and box["height"] >= 44  # thumb-sized targets
    screenshot(page, "portal-14-phone-timeline")
    page.click("a.text-size")
    page.wait_for_load_state("networkidle")
    assert page.locator("body").get_attribute("class") == "large-text"
    assert no_sideways_scroll(page)
    screenshot(page, "portal-15-phone-large-text")
    for path in ("/share", "/upload", "/caregivers",
                 f"/studies/{newest_first(demo_site)[0]['study_uid']}"):
        page.goto(f"{demo_site.server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert no_sideways_scroll(page), path
    screenshot(page, "portal-16-phone-study-large-text")
    ctx.close()


def test_keyboard_users_can_skip_to_the_content(demo_site: DemoSite, context: Any) -> None:
    page = log_in(context, demo_site, "demo-patient")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to the main content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/"
    screenshot(page, "portal-17-keyboard-focus")


def test_uploading_a_zip_a_folder_and_a_document(demo_site: DemoSite, context: Any,
                                                  tmp_path: Any) -> None:
    """The upload page's script: progress bar, per-file results, a PDF attached to a scan."""
    import zipfile

    from pydicom.uid import generate_uid

    from factory import make_instance, to_bytes

    person = demo_patient(demo_site)
    record = person["records"][0]
    mine: dict[str, Any] = dict(patient_id=record["patient_id"], issuer=record["issuer"],
                                patient_name=person["patient_name"], charset="ISO_IR 192",
                                PatientBirthDate=person["birth_date"], PatientSex=person["sex"],
                                InstitutionName="Riverside General Hospital")
    stranger = demo_site.truth["patients"][1]["records"][0]
    zipped, foldered = generate_uid(), generate_uid()
    archive = tmp_path / "from-the-hospital.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in (1, 2):
            zf.writestr(f"IMG{n}.dcm", to_bytes(make_instance(
                study=zipped, instance_number=n, study_date="20270105", **mine)))
        zf.writestr("OTHER.dcm", to_bytes(make_instance(
            patient_id=stranger["patient_id"], issuer=stranger["issuer"], study_date="20270105")))
    disc = tmp_path / "CDROM" / "DICOM"
    disc.mkdir(parents=True)
    for n in (1, 2, 3):
        (disc / f"I{n:07d}").write_bytes(to_bytes(make_instance(
            study=foldered, instance_number=n, study_date="20270210", **mine)))
    (disc / "README.TXT").write_text("not an image")

    page = log_in(context, demo_site, "demo-patient")
    page.goto(f"{demo_site.server.url}/upload")
    page.set_input_files("#zip-file", str(archive))
    page.set_input_files("#folder", str(tmp_path / "CDROM"))
    page.click("#images-form button[type=submit]")
    page.locator("#upload-status", has_text="Finished").wait_for(timeout=60_000)
    assert page.locator("#upload-progress").get_attribute("value") == "100"
    results = page.locator("#upload-results li")  # one line per outcome and reason
    lines = [(results.nth(i).get_attribute("class"), results.nth(i).inner_text())
             for i in range(results.count())]
    assert ("stored", "5 images: stored") in lines, lines
    assert [text for status, text in lines if status == "failed"] == [
        "1 image: these images are of another patient"], lines
    assert "Stored: 5" in page.inner_text("#upload-status")
    screenshot(page, "portal-18-upload-results")

    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    page.goto(f"{demo_site.server.url}/upload")
    page.select_option("#doc-study", zipped)
    page.fill("#doc-title", "Discharge letter")
    page.set_input_files("#doc-file", str(pdf))
    page.click("#document-form button[type=submit]")
    page.locator("#upload-status", has_text="added").wait_for(timeout=60_000)
    screenshot(page, "portal-19-document-added")
    page.goto(f"{demo_site.server.url}/timeline")
    assert f"/studies/{zipped}" in page.content() and f"/studies/{foldered}" in page.content()
    page.goto(f"{demo_site.server.url}/studies/{zipped}")
    assert "Discharge letter" in page.inner_text("main")
    screenshot(page, "portal-20-study-with-document")
