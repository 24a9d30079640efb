"""Nodule care in a real browser over demo data (Debian's chromium through Playwright).

A physician measures the demo patient's nodules on two scans from two hospitals; the
study page shows the Nodules panel with the guideline result and its rule; the case
folder shows a growth chart and the nodule × scan-date table; the patient reads the
plain-language explanation in English and in Chinese and finds the follow-up reminder
among their messages (delivered through the notification outbox), as does the caregiver.
Screenshots of every step go to test-output/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import DemoSite, log_in, running_demo_site, screenshot
from jobs_wait import wait_for_tracking_in_page

# Reminders are enqueued and delivered every second here, and the follow-up window is
# wide enough that the demo's next scan (months ahead) is already "due soon".
FAST_REMINDERS = {"CLOUDFILM_REMINDER_INTERVAL": "1", "CLOUDFILM_NOTIFY_INTERVAL": "1",
                  "CLOUDFILM_FOLLOWUP_DAYS": "3650"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    # Images only: the physician measures the nodules here, from a clean slate.
    with running_demo_site(tmp_path_factory, FAST_REMINDERS, images_only=True) as demo:
        yield demo


def sign_in(chromium: Any, site: DemoSite, username: str, locale: str = "en-GB") -> Any:
    return log_in(chromium.new_context(locale=locale), site, username)


def csrf(page: Any) -> dict[str, str]:
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "cf_csrf")
    return {"X-CSRF-Token": token}


@pytest.fixture(scope="module")
def measured(site: DemoSite, chromium: Any) -> dict[str, Any]:
    """The physician measures every demo nodule of the patient's two latest scans."""
    page = sign_in(chromium, site, "demo-physician")
    studies = sorted(site.truth["patients"][0]["studies"], key=lambda s: s["study_date"])[-2:]
    for study in studies:
        for nodule in study["nodules"]:
            d = nodule["diameter_mm"]
            r = page.request.post(
                f"{site.server.url}/api/studies/{study['study_uid']}/nodules", headers=csrf(page),
                data={"series_uid": study["series_uid"],
                      "instance_uid": nodule["instance_uid_at_center"],
                      "center_patient_mm": nodule["center_patient_mm"], "long_axis_mm": d,
                      "short_axis_mm": d, "nodule_type": nodule["type"], "lobe": "RUL"})
            assert r.status == 201, r.text()
    for study in studies:  # registration and tracking run in a job: wait for it
        wait_for_tracking_in_page(page, site.server.url, study["study_uid"])
    page.context.close()
    return {"prior": studies[0], "latest": studies[1]}


def test_the_physician_sees_the_guideline_result_and_the_tracking(site: DemoSite, chromium: Any,
                                                                   measured: dict[str, Any]) -> None:
    page = sign_in(chromium, site, "demo-physician")
    latest = measured["latest"]
    page.goto(f"{site.server.url}/studies/{latest['study_uid']}#nodules")
    panel = page.locator("#nodules")
    assert panel.locator("tbody tr").count() == len(latest["nodules"])
    assert page.locator("#nodule-category").inner_text().strip() != ""
    assert "Fleischner 2017" in panel.inner_text()
    screenshot(page, "nodules-01-study-panel-physician")
    person_link = page.locator("a", has_text="Case folder")
    if person_link.count() == 0:  # the physician reaches the folder from their patient list
        page.goto(f"{site.server.url}/shared-with-me")
        page.locator("a[href^='/patients/']").first.click()
    else:
        person_link.first.click()
    page.wait_for_load_state("networkidle")
    table = page.locator("#tracking-table")
    assert table.count() == 1
    # Both nodules were seen on both scans: every cell of the table is filled.
    cells = table.locator("tbody td")
    assert cells.count() == 2 * len(latest["nodules"])
    assert all(re.search(r"\d mm", cells.nth(i).inner_text()) for i in range(cells.count()))
    charts = page.locator("svg.growth-chart")
    assert charts.count() == 2 * len(latest["nodules"])  # diameter and volume per nodule
    assert charts.first.locator("circle").count() == 2
    screenshot(page, "nodules-02-folder-growth-charts")
    page.context.close()


@pytest.mark.parametrize("locale, expected", [
    ("en-GB", re.compile(r"your doctor", re.I)),
    ("zh-CN", re.compile(r"医生")),
])
def test_the_patient_reads_the_plain_language_text(site: DemoSite, chromium: Any,
                                                   measured: dict[str, Any], locale: str,
                                                   expected: re.Pattern[str]) -> None:
    page = sign_in(chromium, site, "demo-patient", locale)
    page.goto(f"{site.server.url}/studies/{measured['latest']['study_uid']}")
    text = page.locator("#nodule-explanation").inner_text()
    assert expected.search(text)
    sizes = {f"{n['diameter_mm']:g}" for n in measured["latest"]["nodules"]}
    assert any(size in text for size in sizes)
    if locale.startswith("zh"):
        assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 50
    # A glossary word opens its definition on tap.
    term = page.locator("#nodule-explanation .term").first
    term.click()
    assert page.locator("[role=tooltip]:visible, .term-definition:visible").count() >= 1
    screenshot(page, f"nodules-03-patient-explanation-{locale}")
    page.context.close()


@pytest.mark.parametrize("username", ["demo-patient", "demo-caregiver"])
def test_the_follow_up_reminder_arrives(site: DemoSite, chromium: Any, measured: dict[str, Any],
                                        username: str) -> None:
    page = sign_in(chromium, site, username)
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{site.server.url}/messages")
        reminders = page.locator("#messages li[data-kind='follow-up-due']")
        if reminders.count() or time.monotonic() > deadline:
            break
        page.wait_for_timeout(1000)
    assert reminders.count() == 1
    assert "CT" in reminders.first.inner_text()
    screenshot(page, f"nodules-04-reminder-{username}")
    page.context.close()
