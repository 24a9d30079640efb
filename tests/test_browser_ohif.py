"""The prebuilt OHIF Viewer v3, served by cloudfilm, driven in a real browser.

A clinician logs in through the real form, opens a demo study in OHIF (over the
same-origin session cookie, no token), sees an image, draws a Length measurement, saves
it as DICOM SR the way OHIF does (Create SR → Save, a STOW-RS to /dicomweb/studies), finds
it again after a reload, and compares a study with its prior side by side. Every
/dicomweb answer must be a success and the console must stay free of errors.

Needs the OHIF build: ``make web`` (``make test`` builds it first).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cloudfilm.web.ohif import BUILD_DIR, ohif_url
from conftest import DemoSite, running_demo_site, screenshot
from jobs_wait import wait_for_tracking


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """Images only: each SR here is one these tests made, in OHIF or in cloudfilm."""
    with running_demo_site(tmp_path_factory, images_only=True) as site:
        yield site


@pytest.fixture(autouse=True, scope="module")
def built() -> None:
    """A missing build is a failure, not a skip: make test builds it first."""
    assert (BUILD_DIR / "index.html").is_file(), "OHIF is not built: run `make web`"

ADMIN = "demo-admin"  # a clinician-side account that sees every demo study
REPORT_NAME = "cloudfilm OHIF test report"


# -- helpers ----------------------------------------------------------------------------------

@dataclass
class Watch:
    """What a page said and fetched: console errors, page errors, failed or bad requests."""

    base: str
    console_errors: list[str] = field(default_factory=list)
    # (status, method, path, accept) of every /dicomweb request
    dicomweb: list[tuple[int, str, str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.console_errors.append(
            f"{m.text} [{m.location.get('url', '')}]") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        path = response.url.removeprefix(self.base)
        if path.startswith("/dicomweb"):
            self.dicomweb.append((response.status, response.request.method, path,
                                  response.request.headers.get("accept", "")))
        elif response.status >= 400:
            self.failed.append(f"{response.status} {response.request.method} {path}")

    def assert_clean(self) -> None:
        bad = [d for d in self.dicomweb if d[0] >= 400]
        assert not bad, f"DICOMweb requests failed: {bad}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


OpenPage = Callable[[str], tuple[Any, Watch]]


@pytest.fixture
def open_page(chromium: Any, demo_site: DemoSite) -> Iterator[OpenPage]:
    """A fresh browser context per call, logged in as ADMIN through the real form, which
    sends the browser on to ``next``; then that page, opened anew and watched."""
    contexts: list[Any] = []

    def login(next_path: str) -> tuple[Any, Watch]:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        form = context.new_page()
        form.goto(f"{demo_site.server.url}/login?next={quote(next_path, safe='')}")
        form.fill("#username", ADMIN)
        form.fill("#password", demo_site.logins[ADMIN])
        form.click("button[type=submit]")
        form.wait_for_url(f"{demo_site.server.url}{next_path}", timeout=30_000)
        form.close()
        # A page of its own for the viewer, watched from its first request (the login
        # page is not OHIF's: its errors, if any, are not counted here).
        page = context.new_page()
        watch = Watch(demo_site.server.url)
        watch.attach(page)
        opened = page.goto(f"{demo_site.server.url}{next_path}")
        # OHIF runs under its Content-Security-Policy: a violation is a console error.
        assert opened is not None and "script-src" in opened.headers["content-security-policy"]
        return page, watch

    yield login
    for context in contexts:
        context.close()


def dismiss_notices(page: Any) -> None:
    """OHIF's first-visit tour and its investigational-use banner cover the viewport."""
    for name in ("Skip all", "Confirm and hide"):
        button = page.get_by_text(name, exact=True)
        if button.count() and button.first.is_visible():
            button.first.click()


def canvas_is_rendered(page: Any, canvas: Any) -> bool:
    """A canvas showing an image: many distinct grey levels, not one flat colour."""
    import numpy as np
    from PIL import Image

    if not canvas.is_visible():
        return False
    box = canvas.bounding_box()
    if not box or box["width"] < 50 or box["height"] < 50:
        return False
    pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"), dtype=np.float64)
    return bool(pixels.std() > 10 and len(np.unique(pixels)) > 32)


def wait_for_images(page: Any, count: int, timeout: float = 60) -> list[Any]:
    """Wait until ``count`` viewport canvases show an image; return them."""
    deadline = time.monotonic() + timeout
    rendered: list[Any] = []
    while time.monotonic() < deadline:
        canvases = page.locator(".cornerstone-canvas")
        rendered = [canvases.nth(i) for i in range(canvases.count())
                    if canvas_is_rendered(page, canvases.nth(i))]
        if len(rendered) >= count:
            return rendered
        page.wait_for_timeout(500)
    raise AssertionError(f"{len(rendered)} of {count} viewports rendered an image in {timeout} s")


def panel_length(page: Any) -> Any:
    """The tracked measurement's length in the measurements panel (HTML, not the SVG label)."""
    return page.locator(r":is(div,span,p):text-matches('^[0-9]+(\\.[0-9]+)? mm$')").first


def lengths_near(text: str, length: float) -> bool:
    """Does ``text`` show a length within display rounding of ``length`` mm?"""
    return any(abs(float(v) - length) <= 0.051 for v in re.findall(r"(\d+(?:\.\d+)?) mm", text))


def study(demo_site: DemoSite, patient: int, index: int) -> str:
    return str(demo_site.truth["patients"][patient]["studies"][index]["study_uid"])


# -- serving ----------------------------------------------------------------------------------

def test_ohif_url() -> None:
    assert ohif_url("1.2.3") == "/ohif/viewer?StudyInstanceUIDs=1.2.3"
    assert ohif_url("1.2.3", "1.2.4") == \
        "/ohif/viewer?StudyInstanceUIDs=1.2.3,1.2.4&hangingProtocolId=@ohif/hpCompare"
    with pytest.raises(ValueError):
        ohif_url("1.2.3&x=<script>")


def test_files_are_served_behind_the_login(demo_site: DemoSite) -> None:
    base = demo_site.server.url
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        page = anonymous.get("/ohif/viewer?StudyInstanceUIDs=1.2.3",
                             headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login?next=%2Fohif%2Fviewer")
        assert anonymous.get("/app-config.js").status_code == 401
        assert anonymous.get("/index.html").status_code == 401

    wasm = next(p.name for p in BUILD_DIR.glob("*.wasm"))
    bundle = next(p.name for p in BUILD_DIR.glob("app.bundle.*.js"))
    with demo_site.server.http() as http:
        index = http.get("/ohif/viewer", params={"StudyInstanceUIDs": "1.2.3"})
        assert index.status_code == 200 and 'src="/app-config.js"' in index.text
        assert "init-service-worker" not in index.text and 'rel="manifest"' not in index.text
        assert http.get("/ohif/").text == index.text  # the study list: same SPA shell

        config = http.get("/app-config.js")
        assert config.status_code == 200 and config.headers["cache-control"] == "no-cache"
        assert "qidoRoot: '/dicomweb'" in config.text

        code = http.get(f"/{wasm}", headers={"Accept-Encoding": "identity"})
        assert code.status_code == 200
        assert code.headers["content-type"] == "application/wasm"
        assert code.content[:4] == b"\0asm"
        assert "immutable" in code.headers["cache-control"]

        script = http.get(f"/{bundle}", headers={"Accept-Encoding": "gzip"})
        assert script.headers.get("content-encoding") == "gzip"
        assert script.headers["content-type"].startswith("text/javascript")
        again = http.get(f"/{bundle}", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304

        assert http.get("/viewer?StudyInstanceUIDs=1.2.3", follow_redirects=False).headers[
            "location"] == "/ohif/viewer?StudyInstanceUIDs=1.2.3"
        # OHIF answers only for its own files: nothing else is shadowed or exposed.
        assert http.get("/no-such-file.js").status_code == 404
        assert http.get("/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
        assert http.get("/api/no-such-thing").headers["content-type"].startswith(
            "application/json")
        assert http.post("/app-config.js").status_code == 405


# -- in the browser ---------------------------------------------------------------------------

def test_viewer_shows_a_study(open_page: OpenPage,
                              demo_site: DemoSite) -> None:
    uid = study(demo_site, 0, 2)
    page, watch = open_page(ohif_url(uid))
    wait_for_images(page, 1)
    dismiss_notices(page)
    page.wait_for_load_state("networkidle")
    screenshot(page, "ohif-1-study")

    assert "CHEST" in page.locator("[data-cy=viewport-overlay-top-left]").first.inner_text()
    requests = [(status, path, accept) for status, _, path, accept in watch.dicomweb]
    assert any("/metadata" in path for _, path, _ in requests)
    frames = [r for r in requests if "/frames/" in r[1]]
    assert frames and all(a.startswith("multipart/related; type=application/octet-stream")
                          for _, _, a in frames)
    assert any(re.search(r"/studies\?.*StudyInstanceUID=", p) for _, p, _ in requests)
    watch.assert_clean()


def test_measurement_is_saved_as_sr_and_found_again(open_page: OpenPage,
                                                    demo_site: DemoSite) -> None:
    uid = study(demo_site, 1, 2)
    page, watch = open_page(ohif_url(uid))
    canvas = wait_for_images(page, 1)[0]
    dismiss_notices(page)

    # Draw a Length across the chest, then track it.
    page.click("[data-cy=Length-btn]")
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x0 + step * 20, y0 + step * 6)
    page.mouse.up()
    page.click("[data-cy=prompt-begin-tracking-yes-btn]")
    page.click("[data-cy=trackedMeasurements-btn]")
    panel_text = panel_length(page)
    panel_text.wait_for()
    length = float(panel_text.inner_text().split()[0])
    assert 50 < length < 150
    screenshot(page, "ohif-2-measurement")

    # Save it as DICOM SR: "Create SR", a report name, "Save" → STOW-RS.
    page.get_by_role("button", name="Create SR").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("[data-cy=dialog-input]").fill(REPORT_NAME)
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/dicomweb/studies")) as stow:
        dialog.get_by_role("button", name="Save").click()
    assert stow.value.status == 200, stow.value.text()
    page.get_by_text(REPORT_NAME).first.wait_for()
    screenshot(page, "ohif-3-saved")
    watch.assert_clean()

    # The archive has it: one new SR series in the study (beside the demo's radiology
    # reports and nodule SR), with the report's content.
    with demo_site.server.http() as http:
        found = http.get(f"/dicomweb/studies/{uid}/series",
                         params={"Modality": "SR", "includefield": "0008103E"})
        assert found.status_code == 200, found.text
        series = [s for s in found.json()
                  if s.get("0008103E", {}).get("Value") == [REPORT_NAME]]
        assert len(series) == 1
        assert series[0]["0008103E"]["Value"] == [REPORT_NAME]
        series_uid = series[0]["0020000E"]["Value"][0]
        metadata = http.get(f"/dicomweb/studies/{uid}/series/{series_uid}/metadata").json()
        assert metadata[0]["00100021"]["Value"] == [
            demo_site.truth["patients"][1]["studies"][2]["issuer"]]
        assert "0040A730" in metadata[0]  # ContentSequence, nested, as stored

    # After a reload the SR series is listed; loading it shows the measurement again.
    page2, watch2 = open_page(ohif_url(uid))
    wait_for_images(page2, 1)
    dismiss_notices(page2)
    report = page2.get_by_text(REPORT_NAME).first
    report.wait_for()
    overlay = page2.locator("[data-cy=viewport-pane]").first
    # Generous: a loaded 2-core machine renders slowly. Under load OHIF has been seen to
    # show the tracking prompt without drawing the SR's measurement; a user opens the
    # report again, and so does the test, once.
    for _ in range(2):
        report.dblclick()
        page2.get_by_text("Do you want to continue tracking measurements for this study?").wait_for()
        deadline = time.monotonic() + 60
        while not lengths_near(overlay.inner_text(), length) and time.monotonic() < deadline:
            page2.wait_for_timeout(250)
        if lengths_near(overlay.inner_text(), length):
            break
    assert lengths_near(overlay.inner_text(), length), f"no {length} mm in: {overlay.inner_text()!r}"
    screenshot(page2, "ohif-4-sr-reloaded")
    # Continue tracking: the SR's measurement becomes a tracked measurement again.
    page2.get_by_role("button", name="Yes", exact=True).first.click()
    hydrated = panel_length(page2)
    try:
        hydrated.wait_for(timeout=5_000)
    except Exception:  # noqa: BLE001 - playwright's timeout: the measurements panel is closed, open it
        page2.click("[data-cy=trackedMeasurements-btn]")
        hydrated.wait_for()
    assert lengths_near(hydrated.inner_text(), length)
    screenshot(page2, "ohif-5-sr-hydrated")
    watch2.assert_clean()


def test_a_line_across_the_chest_is_not_imported_as_a_nodule(demo_site: DemoSite) -> None:
    """The Length saved above (5-15 cm) stays an OHIF measurement, not a nodule (> 3 cm)."""
    uid = study(demo_site, 1, 2)
    with demo_site.server.http() as http:
        found = http.get(f"/api/studies/{uid}/nodules")
    assert found.status_code == 200
    assert [m for m in found.json()["measurements"] if m["source"] == "sr-import"] == []


def test_ohif_lists_and_loads_cloudfilm_nodule_report(open_page: OpenPage,
                                                      demo_site: DemoSite) -> None:
    """A nodule measured in cloudfilm is a TID 1500 SR that OHIF lists and opens."""
    truth = demo_site.truth["patients"][0]["studies"][1]
    nodule = truth["nodules"][0]
    with demo_site.server.http() as http:
        made = http.post(f"/api/studies/{truth['study_uid']}/nodules", json={
            "series_uid": truth["series_uid"], "instance_uid": nodule["instance_uid_at_center"],
            "center_patient_mm": nodule["center_patient_mm"],
            "long_axis_mm": nodule["diameter_mm"], "short_axis_mm": nodule["diameter_mm"],
            "nodule_type": nodule["type"]})
        assert made.status_code == 201, made.text
        wait_for_tracking(http, truth["study_uid"])  # the SR is written by the settle job
    page, watch = open_page(ohif_url(truth["study_uid"]))
    wait_for_images(page, 1)
    dismiss_notices(page)
    report = page.get_by_text("cloudfilm nodule measurements").first
    report.wait_for(timeout=30_000)
    # OHIF shows the report read-only on the nodule's slice: its long axis, short axis and
    # average diameter in mm (no tracking prompt: the group is not one of its own tools).
    # Under load OHIF 3.13 now and then opens the report on the right slice without drawing
    # it (seen in CI: the SR badge and slice 43/80, no lengths); a user opens it again, and
    # so does the test, up to twice more. Never drawn at all still fails.
    overlay = page.locator("[data-cy=viewport-pane]").first
    for _ in range(3):
        report.dblclick()
        deadline = time.monotonic() + 45  # generous: a loaded 2-core machine renders slowly
        while (not lengths_near(overlay.inner_text(), nodule["diameter_mm"])
               and time.monotonic() < deadline):
            page.wait_for_timeout(250)
        if lengths_near(overlay.inner_text(), nodule["diameter_mm"]):
            break
    assert lengths_near(overlay.inner_text(), nodule["diameter_mm"]), \
        f"no {nodule['diameter_mm']} mm in {overlay.inner_text()!r}"
    screenshot(page, "ohif-7-cloudfilm-nodule-report")
    watch.assert_clean()


def test_compare_with_prior(open_page: OpenPage,
                            demo_site: DemoSite) -> None:
    current, prior = study(demo_site, 0, 2), study(demo_site, 0, 0)
    page, watch = open_page(ohif_url(current, prior))
    wait_for_images(page, 2)
    dismiss_notices(page)
    page.wait_for_load_state("networkidle")
    screenshot(page, "ohif-6-compare")

    overlays = page.locator("[data-cy=viewport-overlay-top-left]").all_inner_texts()
    dates = {s["study_date"] for s in demo_site.truth["patients"][0]["studies"]
             if s["study_uid"] in (current, prior)}
    shown = " ".join(overlays)
    for date in sorted(dates):
        day = time.strptime(date, "%Y%m%d")
        assert time.strftime("%d-%b-%Y", day) in shown, (date, overlays)
    # OHIF 3.13 opens hpCompare at its first stage, a 2x2 grid: current | prior on top, each
    # study's second series below (empty here, the demo studies have one series each).
    panes = page.locator("[data-cy=viewport-pane]")
    assert panes.count() in (2, 4)
    top = [panes.nth(i).locator(".cornerstone-canvas") for i in range(2)]
    assert all(canvas_is_rendered(page, canvas) for canvas in top)
    assert time.strftime("%d-%b-%Y", time.strptime(
        next(s["study_date"] for s in demo_site.truth["patients"][0]["studies"]
             if s["study_uid"] == prior), "%Y%m%d")) in panes.nth(1).inner_text()
    metadata = {path.split("/series/")[0] for _, _, path, _ in watch.dicomweb
                if path.endswith("/metadata")}
    assert metadata == {f"/dicomweb/studies/{current}", f"/dicomweb/studies/{prior}"}
    watch.assert_clean()


def test_a_share_link_session_opens_ohif_on_that_study_only(chromium: Any,
                                                            demo_site: DemoSite) -> None:
    """No account: the link's session cookie is all OHIF needs against /dicomweb (same origin),
    and the patient's other studies stay invisible to it."""
    from conftest import admin_token

    server = demo_site.server
    shared, other = study(demo_site, 0, 2), study(demo_site, 0, 1)
    token = admin_token(server.database_url, "demo-patient", "patient")
    owner = {"Authorization": f"Bearer {token}"}
    created = httpx.post(f"{server.url}/api/shares", headers=owner, timeout=60, json={
        "scope": {"studies": [shared]}, "audience": "link", "permissions": ["view"]})
    assert created.status_code == 201, created.text
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        opener = context.new_page()
        opener.goto(created.json()["url"])
        opener.close()
        page = context.new_page()
        watch = Watch(server.url)
        watch.attach(page)
        page.goto(f"{server.url}{ohif_url(shared)}")
        wait_for_images(page, 1)
        dismiss_notices(page)
        page.wait_for_load_state("networkidle")
        screenshot(page, "ohif-7-share-link")
        bad = [d for d in watch.dicomweb if d[0] >= 400]
        assert not bad, f"DICOMweb requests failed: {bad}"
        assert any("/frames/" in path for _, _, path, _ in watch.dicomweb)
        hidden = page.request.get(f"{server.url}/dicomweb/studies/{other}/metadata")
        assert hidden.status == 404
    finally:
        context.close()
