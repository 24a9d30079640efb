"""The cloud-film journey in a real browser (Debian's chromium through Playwright), issue 12.

At the desk (a desktop, English) an operator finds the exam by PatientID and presses
"Issue cloud film": the link, its QR code and the slip appear. On a phone (390×844,
touch, zh-CN) with no account, the link opens the study page in Chinese with the
"open viewer" button on the first screen; one tap shows the image. Typing the slip's
short code at /code opens the same film. After the desk
withdraws the film, the same phone gets "not available". Screenshots of every step go
to test-output/screenshots/.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from conftest import Server, admin_token, database_url_for, screenshot
from factory import make_instance, stow, to_bytes
from test_browser_viewer import open_viewer

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def desk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """SQLite only (the browser exercises pages): one CT study at 北京协和医院."""
    data_dir = tmp_path_factory.mktemp("films-browser") / "data"
    url, _ = database_url_for("sqlite", data_dir)
    server = Server(data_dir, url).start()
    token = admin_token(url, "desk-one", "operator")
    uid = generate_uid()
    parts = [make_instance(study=uid, patient_id="BJ-0042", issuer="BJXH",
                           patient_name="Wang^Xiuying=王^秀英", charset="ISO_IR 192",
                           InstitutionName="北京协和医院", StudyDescription="胸部CT",
                           rows=64, columns=64, instance_number=n, seed=n) for n in (1, 2, 3)]
    with httpx.Client(base_url=server.dicomweb, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as http:
        assert stow(http, [to_bytes(p) for p in parts]).status_code == 200
    try:
        yield server, token, uid
    finally:
        server.stop()


def canvas_grey(page: Any) -> np.ndarray:
    url = page.evaluate("() => document.querySelector('.pane[data-side=left] .viewport "
                        "canvas').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def issue_at_the_desk(desk: Any, server: Server) -> tuple[str, str, str]:
    """/admin → find by PatientID → "Issue cloud film"; the film's URL, id and slip code."""
    desk.goto(f"{server.url}/admin")
    desk.fill("#film-search", "BJ-0042")
    desk.click("#film-search ~ .actions button")
    desk.wait_for_load_state("networkidle")
    assert "胸部CT" in desk.inner_text("main")
    screenshot(desk, "films-01-desk-search")
    desk.click("li.film-hit button[type=submit]")
    desk.wait_for_load_state("networkidle")
    issued = desk.locator("li.new-film")
    assert issued.count() == 1
    url = issued.locator("a.film-url").get_attribute("href")
    assert url is not None and url.startswith(f"{server.url}/s/")
    assert issued.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
    screenshot(desk, "films-02-desk-issued")
    return url, str(issued.get_attribute("data-film")), issued.locator(".film-code").inner_text()


def test_desk_issues_a_film_and_a_phone_opens_it_without_an_account(
        desk_server: tuple[Server, str, str], chromium: Any) -> None:
    server, token, _ = desk_server
    desk_context = chromium.new_context(locale="en-GB",
                                        extra_http_headers={"Authorization": f"Bearer {token}"})
    url, film_id, code = issue_at_the_desk(desk_context.new_page(), server)
    phone_context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                         has_touch=True, locale="zh-CN")
    phone = phone_context.new_page()
    phone.goto(url)
    phone.wait_for_load_state("networkidle")
    assert phone.url.endswith("/shared") and "北京协和医院" in phone.inner_text("main")
    button = phone.locator("#open-viewer")
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"]  # first screen
    screenshot(phone, "films-03-phone-study")
    button.tap()
    phone.wait_for_url("**/view/**")
    phone.wait_for_load_state("networkidle")
    open_viewer(phone)
    grey = canvas_grey(phone)
    assert grey.size > 0 and float(grey.std()) > 1.0  # an image is drawn, not a blank canvas
    screenshot(phone, "films-04-phone-image")
    typed = phone_context.new_page()  # no camera: the code on the slip, typed
    typed.goto(f"{server.url}/code")
    typed.fill("#film-code", code.lower())
    screenshot(typed, "films-05-phone-code")
    typed.click("form[action='/code'] button[type=submit]")
    typed.wait_for_load_state("networkidle")
    assert typed.url.endswith("/shared") and "北京协和医院" in typed.inner_text("main")
    revoked = httpx.delete(f"{server.url}/api/films/{film_id}",
                           headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 204
    answer = phone_context.new_page().goto(url)
    assert answer is not None and answer.status == 404
    screenshot(phone_context.pages[-1], "films-06-phone-withdrawn")
    for context in (desk_context, phone_context):
        context.close()
