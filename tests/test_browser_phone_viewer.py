"""The viewer on a 390 px phone (issue 12, part 5), in a real browser over demo data.

A patient on a phone in Chinese: nothing scrolls sideways at any step; the lung,
mediastinum and bone presets, the window/level mode, reset and "compare with prior"
are on screen without scrolling; one finger dragged up or down turns the slices; the
window/level mode, shown as pressed, makes the same drag change the window; two fingers
still zoom; "More" unfolds the other tools in place. A physician following the study
page's "Measure a nodule" link (``?tool=nodule``) lands with the nodule tool on. On a slow
link the first script's own viewer (no Cornerstone) already turns slices and windows, and
Cornerstone takes over at the same slice and window.

Touch is real: CDP Input.dispatchTouchEvent and Playwright's touchscreen, which
Chromium turns into the touch and pointer events Cornerstone3D listens to.
Needs the viewer build: ``make web`` (``make test`` builds it first).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cloudfilm.web.viewer import BUILD_DIR
from conftest import DemoSite, screenshot
from test_browser_viewer import (
    PHONE,
    _pinch,
    _touch_drag,
    changed,
    login,
    open_viewer,
    pixels,
    studies,
    wait_for,
    wait_for_pixels_to_change,
)
from viewer_hooks import hook

PHONE_CONTEXT = {"viewport": PHONE, "has_touch": True, "is_mobile": True,
                 "device_scale_factor": 2, "locale": "zh-CN"}
# DevTools' throttling, as on the viewer's slow-link target (benchmarks/browser_link.py):
# 1.6 Mbit/s down, 750 kbit/s up, 150 ms round trips.
SLOW_LINK = {"offline": False, "latency": 150, "downloadThroughput": 1_600_000 / 8,
             "uploadThroughput": 750_000 / 8}
CORNERSTONE_CHUNK = "**/static/build/viewer/assets/app-*.js"
ESSENTIALS = ("[data-preset=lung]", "[data-preset=mediastinum]", "[data-preset=bone]",
              "[data-tool=windowLevel]", "[data-action=reset]", "[data-action=compare]",
              "[data-action=more]")


@pytest.fixture(autouse=True, scope="module")
def built() -> None:
    """A missing build is a failure, not a skip: make test builds it first."""
    assert (BUILD_DIR / "index.html").is_file(), "the viewer is not built: run `make web`"


@pytest.fixture
def phone() -> Iterator[list[Any]]:
    """The test's browser contexts, closed after it."""
    opened: list[Any] = []
    yield opened
    for context in opened:
        context.close()


def assert_no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("() => [document.scrollingElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1] == PHONE["width"], f"the page scrolls sideways: {width}"


def on_screen(page: Any, selector: str) -> bool:
    """Visible and wholly inside the 390 × 844 screen, as laid out (no scrolling)."""
    box = page.locator(selector).bounding_box()
    return page.locator(selector).is_visible() and box is not None and box["x"] >= 0 \
        and box["y"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5 \
        and box["y"] + box["height"] <= PHONE["height"] + 0.5


def slice_text(page: Any) -> str:
    return page.locator(".pane[data-side=left] .overlay.tl").inner_text()


def drag_vertically(page: Any, distance: float) -> None:
    area = page.locator(".pane[data-side=left] .viewport").bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    _touch_drag(page, (cx, cy - distance / 2), (cx, cy + distance / 2))


def test_phone_finger_turns_slices_and_every_essential_fits_the_screen(
        chromium: Any, demo_site: DemoSite, phone: list[Any]) -> None:
    study = studies(demo_site)[-1]  # the latest: it has a prior to compare with
    page, watch = login(chromium, demo_site, f"/view/{study['study_uid']}", **PHONE_CONTEXT)
    phone.append(page.context)
    open_viewer(page)
    wait_for(page, "!document.querySelector('[data-action=compare]').disabled", 10)
    assert page.locator("[data-preset=lung]").inner_text() == "肺窗"
    assert_no_sideways_scroll(page)
    for selector in ESSENTIALS:
        assert on_screen(page, selector), selector
    assert page.locator("[data-action=rotate]").is_hidden()  # folded under "More"
    screenshot(page, "phone-viewer-01-opened")

    # One finger dragged down the image turns the slices; the window stays.
    voi, index, text = hook(page, "v.voi('left')"), hook(page, "v.currentIndex('left')"), \
        slice_text(page)
    before = pixels(page)
    drag_vertically(page, 240)
    wait_for(page, "v.currentIndex('left') > a[0]", 10, index)
    assert slice_text(page) != text
    assert hook(page, "v.voi('left')") == voi
    scrolled = wait_for_pixels_to_change(page, before)
    assert_no_sideways_scroll(page)
    screenshot(page, "phone-viewer-02-scrolled")

    # Window/level is a mode: tapped, it shows as pressed and the same drag windows.
    mode = page.locator("[data-tool=windowLevel]")
    mode.tap()
    assert mode.get_attribute("aria-pressed") == "true"
    assert "窗宽窗位" in page.locator(".status").inner_text()
    index = hook(page, "v.currentIndex('left')")
    drag_vertically(page, 160)
    wait_for(page, "JSON.stringify(v.voi('left')) !== a[0]", 10,
             json.dumps(voi, separators=(",", ":")))
    assert hook(page, "v.currentIndex('left')") == index
    windowed = wait_for_pixels_to_change(page, scrolled)
    screenshot(page, "phone-viewer-03-window-mode")
    mode.tap()  # off again: one finger turns slices
    assert mode.get_attribute("aria-pressed") == "false"
    assert hook(page, "v.activeTool()") == "StackScroll"

    # The lung preset by tap.
    page.locator("[data-preset=lung]").tap()
    assert hook(page, "v.voi('left')") == {"width": 1500, "center": -600}
    lung = wait_for_pixels_to_change(page, windowed)
    assert_no_sideways_scroll(page)
    screenshot(page, "phone-viewer-04-lung")

    # Two fingers still zoom; Reset (on screen) brings the zoom back.
    zoom = hook(page, "v.zoom('left')")
    area = page.locator(".pane[data-side=left] .viewport").bounding_box()
    _pinch(page, (area["x"] + area["width"] / 2, area["y"] + area["height"] / 2), 40, 140)
    wait_for(page, "v.zoom('left') > a[0] * 1.2", 10, zoom)
    wait_for_pixels_to_change(page, lung)
    page.locator("[data-action=reset]").tap()
    wait_for(page, "Math.abs(v.zoom('left') - a[0]) < 0.01", 10, zoom)

    # "More" unfolds the rest in place, still without sideways scrolling.
    more = page.locator("[data-action=more]")
    more.tap()
    assert more.get_attribute("aria-expanded") == "true"
    for selector in ("[data-action=rotate]", "[data-action=invert]", "[data-tool=length]"):
        assert page.locator(selector).is_visible(), selector
    assert_no_sideways_scroll(page)
    screenshot(page, "phone-viewer-05-more")
    more.tap()
    assert page.locator("[data-action=rotate]").is_hidden()

    # Compare with prior, one tap away: both scans stacked, still no sideways scroll.
    page.locator("[data-action=compare]").tap()
    page.wait_for_url("**/compare/**")
    open_viewer(page)
    assert_no_sideways_scroll(page)
    for selector in ("[data-preset=lung]", "[data-tool=windowLevel]", "[data-action=reset]"):
        assert on_screen(page, selector), selector
    screenshot(page, "phone-viewer-06-compare")
    watch.assert_clean()


def test_phone_physician_link_opens_the_nodule_tool(chromium: Any, demo_site: DemoSite,
                                                    phone: list[Any]) -> None:
    """The study page's "Measure a nodule" link on a phone: the tool is on and shown."""
    study = studies(demo_site)[-1]
    page, watch = login(chromium, demo_site, f"/view/{study['study_uid']}?tool=nodule",
                        username="demo-physician", **PHONE_CONTEXT)
    phone.append(page.context)
    open_viewer(page)
    tool = page.locator("[data-tool=nodule]")
    wait_for(page, "v.activeTool() === 'MeasureNodule'", 10)
    assert tool.get_attribute("aria-pressed") == "true"
    assert on_screen(page, "[data-tool=nodule]")  # the active tool shows even when folded
    assert_no_sideways_scroll(page)
    screenshot(page, "phone-viewer-07-nodule-tool")
    watch.assert_clean()


def quick(page: Any, expression: str, *args: Any) -> Any:
    """Evaluate over the first viewer's hook (``q``, window.cloudfilmQuick) and ``a``."""
    return page.evaluate(f"(a) => {{ const q = window.cloudfilmQuick; return {expression}; }}",
                         list(args))


def wait_for_quick(page: Any, expression: str, timeout: float = 60.0, *args: Any) -> Any:
    """Poll the first viewer's hook (the page's CSP forbids Playwright's string eval)."""
    for _ in range(int(timeout / 0.05)):
        value = quick(page, f"q && ({expression})", *args)
        if value:
            return value
        page.wait_for_timeout(50)
    state = quick(page, "q && {index: q.currentIndex(), drawn: q.drawnIndex(), voi: q.voi()}")
    raise AssertionError(f"timed out waiting for {expression}: {state}")


def canvas_pixels(page: Any, selector: str) -> np.ndarray:
    url = page.evaluate("(s) => document.querySelector(s).toDataURL('image/png')", selector)
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


QUICK_CANVAS = ".pane[data-side=left] canvas.quick"
CORNERSTONE_CANVAS = ".pane[data-side=left] .viewport canvas"


def quick_pixels_change(page: Any, before: np.ndarray) -> np.ndarray:
    for _ in range(100):
        after = canvas_pixels(page, QUICK_CANVAS)
        if changed(before, after):
            return after
        page.wait_for_timeout(50)
    raise AssertionError("the first viewer's canvas did not change")


def test_phone_on_a_slow_link_scrolls_and_windows_before_cornerstone_which_takes_over_there(
        chromium: Any, demo_site: DemoSite, phone: list[Any]) -> None:
    """Cornerstone's chunk is held back, so whatever scrolls and windows here is the first
    script's own canvas; let through, Cornerstone shows the same slice with the same window
    and the reader's drag mode, and the first canvas steps aside."""
    study = studies(demo_site)[-1]
    page, watch = login(chromium, demo_site, "/", **PHONE_CONTEXT)
    phone.append(page.context)
    held: list[Any] = []
    release = {"now": False}

    def hold_cornerstone(route: Any) -> None:
        if release["now"]:
            route.continue_()
        else:
            held.append(route)

    page.route(CORNERSTONE_CHUNK, hold_cornerstone)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
    page.goto(f"{demo_site.server.url}/view/{study['study_uid']}", wait_until="commit")

    wait_for_quick(page, "q.interactive() && q.drawnIndex() === q.currentIndex()")
    assert page.evaluate("() => window.cloudfilmViewer") is None, "Cornerstone is not held back"
    assert page.locator(QUICK_CANVAS).is_visible()
    assert quick(page, "q.count()") == study["slices"]
    assert quick(page, "q.mode()") == "scroll"  # a phone: one finger turns slices
    shown = canvas_pixels(page, QUICK_CANVAS)
    assert shown.std() > 20 and (shown > 40).mean() > 0.1, "the first canvas is blank"
    assert_no_sideways_scroll(page)
    screenshot(page, "phone-viewer-08-first-viewer")

    # One finger dragged down turns the slices (the number on screen and the image).
    index, voi, text = quick(page, "q.currentIndex()"), quick(page, "q.voi()"), slice_text(page)
    drag_vertically(page, 240)
    wait_for_quick(page, "q.currentIndex() > a[0] && q.drawnIndex() === q.currentIndex()", 60,
                   index)
    assert slice_text(page) != text
    assert quick(page, "q.voi()") == voi
    scrolled = quick_pixels_change(page, shown)

    # The window/level mode (a toolbar button, in Chinese), then the same drag windows.
    mode = page.locator("[data-tool=windowLevel]")
    mode.tap()
    assert mode.get_attribute("aria-pressed") == "true"
    assert "窗宽窗位" in page.locator(".status").inner_text()
    index = quick(page, "q.currentIndex()")
    drag_vertically(page, 160)
    wait_for_quick(page, "JSON.stringify(q.voi()) !== a[0]", 10,
                   json.dumps(voi, separators=(",", ":")))
    assert quick(page, "q.currentIndex()") == index
    windowed = quick_pixels_change(page, scrolled)
    page.locator("[data-preset=lung]").tap()
    wait_for_quick(page, "q.voi().center === -600 && q.voi().width === 1500", 10)
    lung = quick_pixels_change(page, windowed)
    screenshot(page, "phone-viewer-09-first-viewer-lung")
    assert page.evaluate("() => window.cloudfilmViewer") is None, "Cornerstone is not held back"

    # Cornerstone arrives: the same slice, the same window, the same drag mode; no jump.
    for _ in range(600):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the viewer never asked for Cornerstone"
    release["now"] = True
    for route in held:
        route.continue_()
    wait_for(page, "v && v.ready", 180)
    page.wait_for_timeout(150)
    assert hook(page, "v.currentIndex('left')") == index
    assert hook(page, "v.voi('left')") == {"width": 1500, "center": -600}
    assert hook(page, "v.activeTool()") == "WindowLevel"
    assert page.locator(QUICK_CANVAS).is_hidden()
    screenshot(page, "phone-viewer-10-cornerstone-took-over")
    taken = canvas_pixels(page, CORNERSTONE_CANVAS)
    assert taken.shape == lung.shape, "the image area changed size at the takeover"
    assert float(np.corrcoef(lung.ravel(), taken.ravel())[0, 1]) > 0.98, "the picture moved"
    assert float(np.abs(lung - taken).mean()) < 8, "Cornerstone's window differs from the first"

    # From here on Cornerstone answers the finger: the window drag goes on where it was.
    drag_vertically(page, 160)
    wait_for(page, "v.voi('left').center !== -600", 10)
    assert hook(page, "v.currentIndex('left')") == index
    watch.assert_clean()
