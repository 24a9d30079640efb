"""The Cornerstone3D patient viewer (/view/...) driven in a real browser over demo data.

A patient logs in through the real form and opens one of their CTs: the image renders,
the mouse wheel moves to another slice (the pixels change), window presets change the
pixels, and a length drawn with real mouse events across a demo nodule reads its true
diameter. Every slice comes first as a lossy HTJ2K preview, marked as such, then at full
quality, which is exactly the stored image. Compare mode shows the prior beside the
current study and keeps both sides at the same patient position. A phone can scroll and
window by touch; a study the user may not see is a 404. The page's test hook
(window.cloudfilmViewer) is used to read state; every claim about what is shown is also
checked on the pixels.

Needs the viewer build: ``make web`` (``make test`` builds it first).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from PIL import Image

from cloudfilm.web.viewer import BUILD_DIR
from conftest import DemoSite, screenshot
from factory import parse_multipart
from viewer_hooks import hook, wait_for


@pytest.fixture(autouse=True, scope="module")
def built() -> None:
    """A missing build is a failure, not a skip: make test builds it first."""
    assert (BUILD_DIR / "index.html").is_file(), "the viewer is not built: run `make web`"

PATIENT = "demo-patient"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


# -- helpers ----------------------------------------------------------------------------------

@dataclass
class Watch:
    """Console errors and failed requests of one page (the viewer must stay clean)."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and "/dicomweb/" in r.url else None)

    def assert_clean(self) -> None:
        assert not self.errors, f"the viewer logged errors: {self.errors}"


def login(chromium: Any, site: DemoSite, next_path: str, username: str = PATIENT,
          **context_options: Any) -> tuple[Any, Watch]:
    """A fresh context, signed in through the real form, which sends it on to ``next_path``."""
    context = chromium.new_context(**({"viewport": DESKTOP, "locale": "en-GB"} | context_options))
    page = context.new_page()
    watch = Watch()
    page.goto(f"{site.server.url}/login?next={quote(next_path, safe='')}")
    page.fill("#username", username)
    page.fill("#password", site.logins[username])
    with page.expect_navigation():
        page.press("#password", "Enter")
    watch.attach(page)
    return page, watch


def open_viewer(page: Any) -> None:
    wait_for(page, "v && v.ready")
    page.wait_for_timeout(150)  # one more frame, so the canvas holds the rendered image


def pixels(page: Any, side: str = "left") -> np.ndarray:
    """What the viewport's canvas holds (the rendered image, without the DOM overlays),
    as grey levels, one per canvas pixel."""
    url = page.evaluate("(side) => document.querySelector(`.pane[data-side=${side}] .viewport "
                        "canvas`).toDataURL('image/png')", side)
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def screen(page: Any, side: str = "left") -> np.ndarray:
    """The viewport as shown on screen (a real screenshot: image, overlays, annotations)."""
    png = page.locator(f".pane[data-side={side}] .viewport").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def changed(a: np.ndarray, b: np.ndarray, pixels_needed: int = 200) -> bool:
    """Did at least ``pixels_needed`` pixels change visibly (more than 8 grey levels)?"""
    return a.shape != b.shape or int(np.count_nonzero(np.abs(a - b) > 8)) >= pixels_needed


def wait_for_pixels_to_change(page: Any, before: np.ndarray, side: str = "left") -> np.ndarray:
    for _ in range(40):
        after = pixels(page, side)
        if changed(before, after):
            return after
        page.wait_for_timeout(50)
    raise AssertionError("the image on screen did not change")


def _image_square(grey: np.ndarray) -> tuple[slice, slice]:
    """Where a square image lies in a wider canvas (the columns that are not black bars)."""
    columns = np.flatnonzero((grey > 5).any(axis=0))
    side = min(grey.shape[0], int(columns[-1] - columns[0] + 1))
    return slice(0, side), slice(int(columns[0]), int(columns[0]) + side)


PRIOR_NOT_MOUNTED = ("GET /api/studies/{study}/prior is not routed: api/app.py must mount "
                     "cloudfilm.web.viewer.api_routes under /api")


def prior_of(site: DemoSite, cookies: dict[str, str], study: str) -> httpx.Response:
    with httpx.Client(base_url=site.server.url, cookies=cookies, timeout=30) as http:
        return http.get(f"/api/studies/{study}/prior")


def studies(site: DemoSite, patient: int = 0) -> list[dict[str, Any]]:
    return site.truth["patients"][patient]["studies"]


@pytest.fixture
def contexts() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for context in opened:
        context.close()


# -- tests ------------------------------------------------------------------------------------

def test_patient_scrolls_windows_and_measures_a_nodule(chromium: Any, demo_site: DemoSite,
                                                       contexts: list[Any]) -> None:
    study = studies(demo_site)[-1]
    page, watch = login(chromium, demo_site, f"/view/{study['study_uid']}")
    contexts.append(page.context)
    open_viewer(page)
    screenshot(page, "viewer-01-opened")

    shown = pixels(page)
    assert shown.std() > 20 and (shown > 40).mean() > 0.2, "the viewport is blank"
    assert hook(page, "v.count('left')") == study["slices"]
    thickness = hook(page, "v.thickness('left')")
    assert thickness == pytest.approx(study["slice_thickness_mm"])

    # The mouse wheel over the image moves three slices (and the position with them).
    start, z0 = hook(page, "v.currentIndex('left')"), hook(page, "v.zOf('left')")
    box = page.locator(".pane[data-side=left] .viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, 100)
        page.wait_for_timeout(60)
    wait_for(page, "v.currentIndex('left') === a[0]", 10, start + 3)
    scrolled = wait_for_pixels_to_change(page, shown)
    assert abs(hook(page, "v.zOf('left')") - z0) == pytest.approx(3 * thickness, abs=0.01)
    assert page.locator(".pane[data-side=left] .overlay.tl").inner_text().startswith(
        f"{start + 4} / {study['slices']}")
    screenshot(page, "viewer-02-scrolled")

    # Presets: mediastinum, then lung (the study's own window is a lung window).
    page.get_by_role("button", name="Mediastinum window").click()
    assert hook(page, "v.voi('left')") == {"width": 350, "center": 40}
    mediastinum = wait_for_pixels_to_change(page, scrolled)
    screenshot(page, "viewer-03-mediastinum")
    page.get_by_role("button", name="Lung window").click()
    assert hook(page, "v.voi('left')") == {"width": 1500, "center": -600}
    lung = wait_for_pixels_to_change(page, mediastinum)
    assert changed(lung, mediastinum, lung.size // 4)
    screenshot(page, "viewer-04-lung")

    # Orientation and grey-level tools act on the image; Reset brings it all back.
    page.get_by_role("button", name="Invert").click()
    inverted = wait_for_pixels_to_change(page, lung)
    image_area = lung > 5  # not the black bars beside the image
    assert float(np.corrcoef(inverted[image_area], lung[image_area])[0, 1]) < -0.9
    page.get_by_role("button", name="Invert").click()
    wait_for_pixels_to_change(page, inverted)  # back to the lung image
    page.get_by_role("button", name="Rotate").click()
    rotated = wait_for_pixels_to_change(page, lung)
    square = _image_square(lung)
    assert float(np.corrcoef(np.rot90(lung[square], -1).ravel(),  # clockwise
                             rotated[square].ravel())[0, 1]) > 0.95
    page.get_by_role("button", name="Flip ↔").click()
    wait_for_pixels_to_change(page, rotated)
    page.get_by_role("button", name="Reset").click()
    page.wait_for_timeout(200)
    assert not changed(pixels(page), lung, 20), "Reset did not restore the view"
    assert hook(page, "v.voi('left')") == {"width": 1500, "center": -600}

    # Measure the largest nodule at its centre slice, with real mouse events.
    nodule = max(study["nodules"], key=lambda n: n["diameter_mm"])
    col, row, _ = nodule["center_voxel"]
    z_centre = nodule["center_patient_mm"][2]
    index = hook(page, "v.indexNearestZ('left', a[0])", z_centre)
    hook(page, "v.setIndex('left', a[0])", index)
    wait_for(page, "v.currentIndex('left') === a[0]", 10, index)
    assert abs(hook(page, "v.zOf('left')") - z_centre) <= thickness / 2 + 1e-6
    page.wait_for_timeout(150)
    spacing = hook(page, "v.pixelSpacing('left')")
    assert spacing == pytest.approx([study["pixel_spacing_mm"]] * 2)

    # Where the image lies on screen: the whole image fitted into the element, centred.
    rows, cols = 512, 512
    scale = min(box["width"] / cols, box["height"] / rows)
    left = box["x"] + (box["width"] - cols * scale) / 2
    top = box["y"] + (box["height"] - rows * scale) / 2
    cx, cy = left + (col + 0.5) * scale, top + (row + 0.5) * scale
    via_hook = hook(page, "v.imageToCanvas('left', a[0], a[1])", col + 0.5, row + 0.5)
    assert via_hook[0] + box["x"] == pytest.approx(cx, abs=1.5)
    assert via_hook[1] + box["y"] == pytest.approx(cy, abs=1.5)

    # The nodule is really there: bright in the lung window, and about its true width.
    grey = pixels(page)
    gx, gy = round(cx - box["x"]), round(cy - box["y"])
    radius_px = nodule["diameter_mm"] / 2 / spacing[1] * scale
    lung_level = float(np.median(grey[gy, gx + round(2.5 * radius_px):gx + round(3.5 * radius_px)]))
    assert grey[gy, gx] > lung_level + 60, "no bright nodule at the truth's centre"
    profile = grey[gy, gx - round(2 * radius_px):gx + round(2 * radius_px) + 1]
    half = (float(profile.max()) + lung_level) / 2
    inside = np.flatnonzero(profile > half)
    seen_mm = (inside[-1] - inside[0] + 1) / scale * spacing[1]
    assert seen_mm == pytest.approx(nodule["diameter_mm"], abs=1.0)

    page.get_by_role("button", name="Drag to measure a length in millimetres").click()
    drawn_before = screen(page)
    assert hook(page, "v.activeTool()") == "Length"
    half_mm = nodule["diameter_mm"] / 2
    x0, x1 = cx - half_mm / spacing[1] * scale, cx + half_mm / spacing[1] * scale
    page.mouse.move(x0, cy)
    page.mouse.down()
    for step in range(1, 5):  # a quick drag: a few pixels per mouse event
        page.mouse.move(x0 + (x1 - x0) * step / 4, cy)
        page.wait_for_timeout(20)
    page.mouse.up()
    page.wait_for_timeout(300)  # statistics are recomputed on the next render
    found = wait_for(page, "v.measurements().filter(m => m.length != null)", 5)
    assert len(found) == 1 and found[0]["unit"] == "mm"
    assert found[0]["length"] == pytest.approx(nodule["diameter_mm"], abs=1.0)
    assert changed(drawn_before, screen(page), 10), "the measurement line is not drawn"
    screenshot(page, "viewer-05-measured")
    watch.assert_clean()


def stored_row(site: DemoSite, cookies: dict[str, str], study: str, series: str, image: dict,
               row: int) -> np.ndarray:
    """One row of a slice as modality values (HU), from its uncompressed frame."""
    path = (f"/dicomweb/studies/{study}/series/{series}/instances/{image['sop']}"
            f"/frames/{image['frame']}")
    with httpx.Client(base_url=site.server.url, cookies=cookies, timeout=30) as http:
        got = http.get(path, headers={"Accept": RAW_FRAMES})
    assert got.status_code == 200, got.text
    [(_, data)] = parse_multipart(got)
    stored = np.frombuffer(data, "<i2").reshape(512, 512)
    return stored[row].astype(np.float64) + DEMO_INTERCEPT


DEMO_INTERCEPT = -1024
RAW_FRAMES = ('multipart/related; type="application/octet-stream"; '
              "transfer-syntax=1.2.840.10008.1.2.1")
LOSSLESS_HTJ2K = "1.2.840.10008.1.2.4.201"


def test_slices_come_as_previews_then_at_full_quality(chromium: Any, demo_site: DemoSite,
                                                      contexts: list[Any]) -> None:
    """Every slice arrives first as a lossy HTJ2K preview (marked as such on screen), then
    at full quality, which is exactly the stored image. Full-quality requests are held back
    here until the preview state has been looked at, so no timing is involved."""
    study = studies(demo_site)[-1]
    page, watch = login(chromium, demo_site, "/")
    contexts.append(page.context)
    held: list[Any] = []
    release = {"now": False}

    def hold_full_quality(route: Any) -> None:
        if LOSSLESS_HTJ2K in (route.request.headers.get("accept") or "") and not release["now"]:
            held.append(route)
        else:
            route.continue_()

    page.route("**/dicomweb/**", hold_full_quality)
    page.goto(f"{demo_site.server.url}/view/{study['study_uid']}")
    open_viewer(page)
    count = study["slices"]
    wait_for(page, "v.counts('left').preview === a[0]", 60, count)
    assert hook(page, "v.quality('left')") == "preview"
    assert hook(page, "v.counts('left').full") == 0
    badge = page.locator(".pane[data-side=left] .quality-badge")
    assert badge.is_visible() and badge.inner_text() == "Preview quality"
    assert held, "the full-quality request for the slice on screen was not made"
    page.wait_for_timeout(150)
    screenshot(page, "viewer-15-preview-quality")

    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    image = hook(page, "v.image('left')")
    truth = stored_row(demo_site, cookies, study["study_uid"], hook(page, "v.series('left')"),
                       image, 256)
    preview = np.asarray(hook(page, "v.rowValues('left', 256)"), dtype=np.float64)
    error = np.abs(preview - truth)
    assert 0 < error.mean() < 30, "the preview is neither lossy nor close to the image"

    release["now"] = True
    for route in held:
        route.continue_()
    wait_for(page, "v.quality('left') === 'full'", 60)
    assert not badge.is_visible()
    np.testing.assert_array_equal(np.asarray(hook(page, "v.rowValues('left', 256)")), truth)
    wait_for(page, "v.counts('left').full === a[0]", 120, count)
    wait_for(page, "document.querySelector('.pane[data-side=left] .progress-text')"
                   ".textContent === a[0]", 10, f"All {count} slices at full quality")

    # Another slice, reached by the slider: full quality too, exactly the stored values.
    page.locator(".pane[data-side=left] .slider").fill("10")
    wait_for(page, "v.currentIndex('left') === 9 && v.quality('left') === 'full'", 10)
    image = hook(page, "v.image('left')")
    truth = stored_row(demo_site, cookies, study["study_uid"], hook(page, "v.series('left')"),
                       image, 300)
    np.testing.assert_array_equal(np.asarray(hook(page, "v.rowValues('left', 300)")), truth)
    screenshot(page, "viewer-16-full-quality")
    watch.assert_clean()


def test_compare_with_prior_keeps_both_sides_at_one_position(chromium: Any, demo_site: DemoSite,
                                                           contexts: list[Any]) -> None:
    first, middle, last = studies(demo_site)
    page, watch = login(chromium, demo_site, f"/view/{last['study_uid']}")
    contexts.append(page.context)
    open_viewer(page)

    # The button asks /api/studies/{S}/prior: the 2025 CT from the other hospital.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert prior_of(demo_site, cookies, last["study_uid"]).status_code == 200, PRIOR_NOT_MOUNTED
    button = page.get_by_role("button", name="Show this study side by side with the previous CT")
    wait_for(page, "!document.querySelector('[data-action=compare]').disabled", 10)
    with page.expect_navigation():
        button.click()
    assert page.url.endswith(f"/view/{last['study_uid']}/compare/{middle['study_uid']}")
    open_viewer(page)
    assert hook(page, "v.mode") == "compare"
    assert hook(page, "v.study('right')") == middle["study_uid"]
    assert pixels(page, "right").std() > 20, "the prior is not shown"
    screenshot(page, "viewer-06-compare-prior")

    # Different scanners (different table positions): aligned by an offset, then scrolling
    # one side moves the other by the same distance.
    offset = hook(page, "v.offset()")
    z_left, z_right = hook(page, "v.zOf('left')"), hook(page, "v.zOf('right')")
    assert abs(z_right - z_left - offset) <= last["slice_thickness_mm"]
    hook(page, "v.setIndex('left', a[0])", hook(page, "v.currentIndex('left')") + 8)
    wait_for(page, "Math.abs(v.zOf('right') - v.zOf('left') - v.offset()) <= a[0]", 10,
             last["slice_thickness_mm"])
    assert hook(page, "v.zOf('right')") - z_right == pytest.approx(
        hook(page, "v.zOf('left')") - z_left, abs=last["slice_thickness_mm"])

    # Same hospital, same table: positions compare directly (offset 0). Wheel on the left,
    # the right follows to the same z; the slider on the right, the left follows.
    page.goto(f"{demo_site.server.url}/view/{last['study_uid']}/compare/{first['study_uid']}")
    open_viewer(page)
    assert hook(page, "v.offset()") == 0
    thickness = first["slice_thickness_mm"]
    before = pixels(page, "right")
    box = page.locator(".pane[data-side=left] .viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    start = hook(page, "v.currentIndex('left')")
    for _ in range(6):
        page.mouse.wheel(0, 100)
        page.wait_for_timeout(60)
    wait_for(page, "v.currentIndex('left') === a[0]", 10, start + 6)
    wait_for(page, "Math.abs(v.zOf('right') - v.zOf('left')) <= a[0]", 10, thickness)
    wait_for_pixels_to_change(page, before, "right")
    screenshot(page, "viewer-07-compare-scrolled")

    slider = page.locator(".pane[data-side=right] .slider")
    slider.fill("20")
    wait_for(page, "v.currentIndex('right') === 19", 10)
    wait_for(page, "Math.abs(v.zOf('left') - v.zOf('right')) <= a[0]", 10, thickness)

    # Linked zoom: a right-button drag (downwards) on the left zooms both sides alike.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 3)
    page.mouse.down(button="right")
    for step in range(1, 9):
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 3 + 12 * step)
        page.wait_for_timeout(16)
    page.mouse.up(button="right")
    zoom = wait_for(page, "v.zoom('left') > 1.2 && v.zoom('left')", 10)
    assert hook(page, "v.zoom('right')") == pytest.approx(zoom, rel=0.01)

    # Linked window: a preset reaches both sides; unlinked, only the active one.
    page.get_by_role("button", name="Bone window").click()
    assert hook(page, "v.voi('left')") == hook(page, "v.voi('right')") == {"width": 2000, "center": 300}
    page.get_by_label("Link window").uncheck()
    page.locator(".pane[data-side=left] .viewport").click()
    page.get_by_role("button", name="Lung window").click()
    assert hook(page, "v.voi('left')") == {"width": 1500, "center": -600}
    assert hook(page, "v.voi('right')") == {"width": 2000, "center": 300}
    screenshot(page, "viewer-08-compare-unlinked-window")
    watch.assert_clean()


def _touch_drag(page: Any, start: tuple[float, float], end: tuple[float, float],
                steps: int = 12) -> None:
    """A one-finger drag, as a phone sends it (CDP touch events, not synthesised mouse)."""
    cdp = page.context.new_cdp_session(page)
    for kind, fraction in [("touchStart", 0.0), *[("touchMove", i / steps)
                                                 for i in range(1, steps + 1)], ("touchEnd", 1.0)]:
        x = start[0] + (end[0] - start[0]) * fraction
        y = start[1] + (end[1] - start[1]) * fraction
        points = [] if kind == "touchEnd" else [{"x": x, "y": y, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
        page.wait_for_timeout(16)
    cdp.detach()


def test_phone_scrolls_and_windows_by_touch(chromium: Any, demo_site: DemoSite,
                                            contexts: list[Any]) -> None:
    study = studies(demo_site)[0]
    page, watch = login(chromium, demo_site, f"/view/{study['study_uid']}?lang=zh-Hans",
                        viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    contexts.append(page.context)
    open_viewer(page)
    assert page.locator("[data-preset=lung]").inner_text() == "肺窗"
    screenshot(page, "viewer-09-phone")

    # Every control is big enough for a finger (44 CSS px).
    for control in page.locator("header button, header a.button, .slider").all():
        if control.is_visible():
            assert control.bounding_box()["height"] >= 43.5, control.get_attribute("aria-label")

    # Scroll with the slider (tapped and moved like a finger would).
    before = pixels(page)
    slider = page.locator(".pane[data-side=left] .slider")
    box = slider.bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] * 0.85, box["y"] + box["height"] / 2)
    wait_for(page, "v.currentIndex('left') > a[0]", 10, study["slices"] * 0.7)
    scrolled = wait_for_pixels_to_change(page, before)
    screenshot(page, "viewer-10-phone-scrolled")

    # Window with one finger once the W/L mode is on, then a preset button by tap.
    voi = hook(page, "v.voi('left')")
    page.locator("[data-tool=windowLevel]").tap()
    area = page.locator(".pane[data-side=left] .viewport").bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    _touch_drag(page, (cx - 60, cy), (cx + 60, cy + 80))
    wait_for(page, "JSON.stringify(v.voi('left')) !== a[0]", 10, json.dumps(voi, separators=(",", ":")))
    windowed = wait_for_pixels_to_change(page, scrolled)
    assert hook(page, "v.voi('left')") != voi
    screenshot(page, "viewer-11-phone-windowed")
    page.locator("[data-preset=bone]").tap()
    assert hook(page, "v.voi('left')") == {"width": 2000, "center": 300}
    wait_for_pixels_to_change(page, windowed)

    # Two fingers pinch to zoom.
    zoom = hook(page, "v.zoom('left')")
    _pinch(page, (cx, cy), 40, 140)
    wait_for(page, "v.zoom('left') > a[0] * 1.2", 10, zoom)
    screenshot(page, "viewer-12-phone-zoomed")

    # Compare on a phone: the two studies stacked, current above prior.
    later = studies(demo_site)[1]["study_uid"]
    page.goto(f"{demo_site.server.url}/view/{later}/compare/{study['study_uid']}?lang=zh-Hans")
    open_viewer(page)
    top = page.locator(".pane[data-side=left]").bounding_box()
    bottom = page.locator(".pane[data-side=right]").bounding_box()
    assert bottom["y"] >= top["y"] + top["height"] - 1 and bottom["width"] > PHONE["width"] * 0.9
    assert pixels(page, "right").std() > 20
    screenshot(page, "viewer-13-phone-compare")
    watch.assert_clean()


def _pinch(page: Any, centre: tuple[float, float], start: float, end: float, steps: int = 12) -> None:
    """Two fingers moving apart horizontally from ``start`` to ``end`` px apart."""
    cdp = page.context.new_cdp_session(page)
    cx, cy = centre
    for i in range(steps + 1):
        gap = (start + (end - start) * i / steps) / 2
        points = [{"x": cx - gap, "y": cy, "id": 1}, {"x": cx + gap, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent",
                 {"type": "touchStart" if i == 0 else "touchMove", "touchPoints": points})
        page.wait_for_timeout(16)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_a_study_the_user_may_not_see_is_not_found(chromium: Any, demo_site: DemoSite,
                                                   contexts: list[Any]) -> None:
    own = studies(demo_site, 0)[-1]["study_uid"]
    hidden = studies(demo_site, 1)[0]["study_uid"]
    page, _ = login(chromium, demo_site, "/")
    contexts.append(page.context)
    for path in (f"/view/{hidden}", f"/view/{own}/compare/{hidden}", "/view/1.2.3.4.5",
                 "/view/not-a-uid"):
        response = page.goto(demo_site.server.url + path)
        assert response.status == 404, path
        assert page.get_by_role("heading", name="Study not found").is_visible()
    screenshot(page, "viewer-14-not-found")
    # The prior lookup answers like the page: hidden is missing; own studies find the latest
    # earlier CT across both hospitals' records; the first CT has none.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    found = prior_of(demo_site, cookies, own)
    assert found.status_code == 200, PRIOR_NOT_MOUNTED
    assert found.json()["prior"] == studies(demo_site, 0)[1]["study_uid"]
    assert prior_of(demo_site, cookies, studies(demo_site, 0)[0]["study_uid"]).json()["prior"] is None
    hidden_prior = prior_of(demo_site, cookies, hidden)
    assert hidden_prior.status_code == 404 and "not found" in hidden_prior.json()["error"]

    # The demo physician holds a share of patient 1's timeline only: that patient's study
    # opens, the other patient's does not; a caregiver sees their patient's.
    doctor, _ = login(chromium, demo_site, "/", username="demo-physician")
    contexts.append(doctor.context)
    assert doctor.goto(f"{demo_site.server.url}/view/{hidden}").status == 404
    assert doctor.goto(f"{demo_site.server.url}/view/{own}").status == 200
    carer, _ = login(chromium, demo_site, "/", username="demo-caregiver", locale="zh-CN")
    contexts.append(carer.context)
    assert carer.goto(f"{demo_site.server.url}/view/{hidden}").status == 404
    assert carer.get_by_role("heading", name="找不到检查").is_visible()
    assert carer.goto(f"{demo_site.server.url}/view/{own}").status == 200


def test_assets_are_cached_and_compressed(demo_site: DemoSite) -> None:
    """The built bundle: hashed names cached for a year, gzip when asked, WASM typed right."""
    server = demo_site.server
    with server.http() as http:
        index = http.get("/static/build/viewer/index.html")
        assert index.status_code == 200 and index.headers["cache-control"] == "no-cache"
        script = next(p for p in (BUILD_DIR / "assets").iterdir() if p.name.startswith("index-")
                      and p.suffix == ".js")
        got = http.get(f"/static/build/viewer/assets/{script.name}",
                       headers={"Accept-Encoding": "gzip"})
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("text/javascript")
        assert "immutable" in got.headers["cache-control"]
        assert got.headers.get("content-encoding") == "gzip"
        again = http.get(f"/static/build/viewer/assets/{script.name}",
                         headers={"Accept-Encoding": "gzip", "If-None-Match": got.headers["etag"]})
        assert again.status_code == 304
        smaller = http.get(f"/static/build/viewer/assets/{script.name}",
                           headers={"Accept-Encoding": "gzip, deflate, br, zstd"})
        assert smaller.headers.get("content-encoding") == "br"
        assert int(smaller.headers["content-length"]) < int(got.headers["content-length"])
        refused = http.get(f"/static/build/viewer/assets/{script.name}",
                           headers={"Accept-Encoding": "br;q=0, gzip"})
        assert refused.headers.get("content-encoding") == "gzip"
        wasm = next((BUILD_DIR / "assets").glob("*.wasm"))
        assert http.get(f"/static/build/viewer/assets/{wasm.name}").headers["content-type"] \
            == "application/wasm"
        assert http.get("/static/build/viewer/../../../viewer.py").status_code == 404
        assert http.get("/static/build/viewer/assets/nothing.js").status_code == 404


def _chunk_and_imports(first: Any) -> list[Any]:
    """A built chunk and those it imports statically (what the browser fetches before it)."""
    import re

    found, todo = [first], [first]
    while todo:
        for name in re.findall(r'from"\./([^"]+\.js)"', todo.pop().read_text()):
            path = first.parent / name
            if path not in found:
                found.append(path)
                todo.append(path)
    return found


def test_the_first_script_and_first_viewer_load_no_cornerstone() -> None:
    """What a patient waits for on a slow link before the image can be scrolled is small:
    the first script and the first viewer's chunk (with what they import) carry none of
    Cornerstone, which comes in its own chunk (app-*.js) after."""
    assets = BUILD_DIR / "assets"
    first = [*assets.glob("index-*.js"), *assets.glob("quickstart-*.js")]
    assert len(first) == 2, f"expected one first script and one first-viewer chunk: {first}"
    chunks = {path for chunk in first for path in _chunk_and_imports(chunk)}
    for chunk in chunks:
        assert "CORNERSTONE_CAMERA_MODIFIED" not in chunk.read_text(), f"{chunk.name} has Cornerstone"
    cornerstone = next(assets.glob("app-*.js"))
    assert "CORNERSTONE_CAMERA_MODIFIED" in cornerstone.read_text()
