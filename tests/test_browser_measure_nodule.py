"""The viewer's "Measure nodule" tool (issue 6) in a real browser over demo data.

A physician opens the demo patient's latest CT, goes to the slice through the centre of
its largest demo nodule, turns the tool on and clicks the nodule's centre: the server
segments it, and the viewer draws the outline and axes and lists long axis, short axis,
mean diameter, volume and suggested type; the mean diameter is the truth's within 1 mm.
A click on air gets the server's reason instead. A patient does not get the tool.

Needs the viewer build: ``make web`` (``make test`` builds it first).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cloudfilm.web.viewer import BUILD_DIR
from conftest import DemoSite, log_in, screenshot
from viewer_hooks import hook, wait_for


@pytest.fixture(autouse=True, scope="module")
def built() -> None:
    """A missing build is a failure, not a skip: make test builds it first."""
    assert (BUILD_DIR / "index.html").is_file(), "the viewer is not built: run `make web`"


def open_study(chromium: Any, site: DemoSite, username: str, study: str) -> tuple[Any, list[str]]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    page = log_in(context, site, username)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(f"{site.server.url}/view/{study}")
    wait_for(page, "v && v.ready")
    return page, errors


def click_pixel(page: Any, column: float, row: float) -> None:
    """A real mouse click on the centre of image pixel (column, row) of the left pane."""
    box = page.locator(".pane[data-side=left] .viewport").bounding_box()
    x, y = hook(page, "v.imageToCanvas('left', a[0], a[1])", column + 0.5, row + 0.5)
    page.mouse.click(box["x"] + x, box["y"] + y)


def millimetres(text: str) -> float:
    return float(re.search(r"[0-9]+(?:\.[0-9]+)?", text.replace("−", "-")).group())


def test_physician_measures_a_nodule_with_one_click(chromium: Any, demo_site: DemoSite) -> None:
    study = demo_site.truth["patients"][0]["studies"][-1]
    page, errors = open_study(chromium, demo_site, "demo-physician", study["study_uid"])
    try:
        tool = page.locator("[data-tool=nodule]")
        tool.wait_for(state="visible", timeout=10_000)

        nodule = max(study["nodules"], key=lambda n: n["diameter_mm"])
        column, row, _ = nodule["center_voxel"]
        index = hook(page, "v.indexNearestZ('left', a[0])", nodule["center_patient_mm"][2])
        hook(page, "v.setIndex('left', a[0])", index)
        wait_for(page, "v.currentIndex('left') === a[0]", 10, index)
        tool.click()
        assert hook(page, "v.activeTool()") == "MeasureNodule"
        assert tool.get_attribute("aria-pressed") == "true"
        click_pixel(page, column, row)

        wait_for(page, "v.nodule() || v.noduleError()", 180)
        assert hook(page, "v.noduleError()") is None
        panel = page.locator(".nodule-panel")
        assert panel.is_visible()
        # The demo measured this nodule already: the click measures it again (same
        # measurement, same label N1, N2, ...), and the folder's settle job re-tracks it.
        assert re.fullmatch(r"Nodule N\d+", panel.locator("h2").inner_text())
        assert hook(page, "v.nodule()")["tracking"] == "pending"
        field = {name: panel.locator(f"[data-field={name}]").inner_text()
                 for name in ("long", "short", "mean", "volume", "type")}
        mean = millimetres(field["mean"])
        assert mean == pytest.approx(nodule["diameter_mm"], abs=1.0), field
        assert millimetres(field["long"]) >= millimetres(field["short"]) > 0
        assert field["volume"].endswith("mm³") and millimetres(field["volume"]) > 0
        assert field["type"] in ("Solid", "Part-solid", "Ground-glass")
        measured = hook(page, "v.nodule()")["measurement"]
        assert measured["mean_diameter_mm"] == pytest.approx(mean, abs=0.05)
        # The outline is drawn on the slice it was measured on (the viewer goes there).
        best = measured["outline"]["instance_uid"]
        wait_for(page, "v.image('left').sop === a[0] && v.noduleOutline('left') === 1", 10, best)
        page.wait_for_timeout(150)
        screenshot(page, "viewer-nodule-01-measured")

        # Air, far from any nodule: the server's reason is shown, nothing is drawn.
        click_pixel(page, 8, 8)
        wait_for(page, "v.noduleError()", 60)
        assert hook(page, "v.noduleOutline('left')") == 0
        assert panel.locator("h2").inner_text() == "No nodule measured"
        reason = panel.locator(".reason").inner_text()
        assert reason and reason == hook(page, "v.noduleError()")
        assert reason in page.locator(".status").inner_text()
        screenshot(page, "viewer-nodule-02-no-nodule")
        # Chromium logs every 4xx response; the 422 for the click on air is expected.
        assert [e for e in errors if "status of 422" not in e] == [], errors
    finally:
        page.context.close()


def test_a_patient_does_not_get_the_measure_nodule_tool(chromium: Any, demo_site: DemoSite) -> None:
    study = demo_site.truth["patients"][0]["studies"][-1]
    page, errors = open_study(chromium, demo_site, "demo-patient", study["study_uid"])
    try:
        with page.expect_response(lambda r: r.url.endswith("/api/me")) as me:
            page.reload()
        assert me.value.json()["role"] == "patient"
        wait_for(page, "v && v.ready")
        assert page.locator("[data-tool=nodule]").is_hidden()
        assert not errors, errors
    finally:
        page.context.close()


def test_the_measure_a_nodule_link_opens_the_viewer_with_the_nodule_tool(
        chromium: Any, demo_site: DemoSite) -> None:
    """The study page's ``?tool=nodule`` link: on for a physician, never for a patient."""
    study = demo_site.truth["patients"][0]["studies"][-1]["study_uid"]
    page, errors = open_study(chromium, demo_site, "demo-physician", f"{study}?tool=nodule")
    try:
        wait_for(page, "v.activeTool() === 'MeasureNodule'", 10)
        tool = page.locator("[data-tool=nodule]")
        assert tool.is_visible() and tool.get_attribute("aria-pressed") == "true"
        assert page.locator("[data-tool=windowLevel]").get_attribute("aria-pressed") == "false"
        screenshot(page, "viewer-nodule-03-opened-by-link")
        assert not errors, errors
    finally:
        page.context.close()
    page, errors = open_study(chromium, demo_site, "demo-patient", f"{study}?tool=nodule")
    try:
        page.wait_for_load_state("networkidle")
        assert page.locator("[data-tool=nodule]").is_hidden()
        assert hook(page, "v.activeTool()") == "WindowLevel"
        assert not errors, errors
    finally:
        page.context.close()
