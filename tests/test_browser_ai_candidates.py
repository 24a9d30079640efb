"""AI candidates (issue 15, IHE AI Results) in a real browser over demo images.

The demo patient's latest CT gets three candidates: the built-in finder's at its largest
nodule and a false positive, and an AI service's ("lung-ai") beside its second nodule. A
physician sees them on the study page's Nodules panel and in the viewer, as circles on
the slices they name; accepts the first (the measurement appears, within 1 mm of the
truth), rejects the false positive (marked rejected, its circle gone), corrects the AI
service's point with a click on the nodule's centre and accepts there. Back on the study
page both are measurements. The patient's page and viewer show nothing of it. "Find
nodules" runs the built-in finder as a job and its candidates appear by themselves.

The candidates are stored through `CandidateService`, the service the detect job and
the AI services' STOW admission both end in (tests/test_ai_results.py covers that way in);
the "Find nodules" test goes through the real endpoint, job and detector.

Needs the viewer build: ``make web`` (``make test`` builds it first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.uid import generate_uid

from cloudfilm.web.viewer import BUILD_DIR
from conftest import DemoSite, log_in, running_demo_site, screenshot
from jobs_wait import wait_for_tracking_in_page
from viewer_hooks import hook, wait_for


@pytest.fixture(autouse=True, scope="module")
def built() -> None:
    """A missing build is a failure, not a skip: make test builds it first."""
    assert (BUILD_DIR / "index.html").is_file(), "the viewer is not built: run `make web`"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    # Images only: no nodule is measured before the physician accepts one.
    with running_demo_site(tmp_path_factory, images_only=True) as demo:
        yield demo


def latest(site: DemoSite) -> dict[str, Any]:
    return max(site.truth["patients"][0]["studies"], key=lambda s: s["study_date"])


@pytest.fixture(scope="module")
def seeded(site: DemoSite) -> dict[str, Any]:
    """Three pending candidates on the patient's latest CT; their ids by role."""
    from cloudfilm.config import Settings
    from cloudfilm.services.ai.candidates import BUILTIN, CandidateService, NewCandidate
    from cloudfilm.services.context import Archive
    from cloudfilm.storage.index.ai_models import AiResultRow

    study = latest(site)
    big, second = sorted(study["nodules"], key=lambda n: -n["diameter_mm"])[:2]

    def at(nodule: dict[str, Any], source: str, name: str, version: str, score: float,
           shift: float = 0.0) -> NewCandidate:
        column, row, _ = nodule["center_voxel"]
        return NewCandidate(study["series_uid"], source, name, version,
                            tuple(nodule["center_patient_mm"]), nodule["diameter_mm"], None,
                            score, nodule["instance_uid_at_center"], column + shift, row)

    archive = Archive.open(Settings.load(site.server.data_dir, site.server.database_url),
                           recover=False)
    try:
        service = CandidateService(archive)
        # The false positive: the big nodule's slice, 40 pixels (a lung's width) aside.
        service.replace_builtin(study["study_uid"], [
            at(big, BUILTIN, "cloudfilm-nodule-finder", "1.0.0", 0.93),
            at(big, BUILTIN, "cloudfilm-nodule-finder", "1.0.0", 0.31, shift=40.0)])
        # The AI service's point is 25 pixels off the second nodule: it needs correcting.
        service.add_result(AiResultRow(
            sop_uid=generate_uid(), study_uid=study["study_uid"], series_uid=generate_uid(),
            source_series_uid=study["series_uid"], node_name="lung-ai", kind="sr",
            algorithm_name="LungNet", algorithm_version="2.1", candidates=1),
            [at(second, "lung-ai", "LungNet", "2.1", 0.88, shift=25.0)])
        found = service.study_candidates(study["study_uid"])
    finally:
        archive.close()
    by_score = {c["score"]: c["id"] for c in found}
    return {"study": study, "big": big, "second": second, "accept": by_score[0.93],
            "reject": by_score[0.31], "edit": by_score[0.88]}


def open_page(chromium: Any, site: DemoSite, username: str, path: str,
              locale: str = "en-GB") -> tuple[Any, list[str], list[str]]:
    """A signed-in page at ``path``; its console errors and the AI candidate requests."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale=locale)
    page = log_in(context, site, username)
    errors: list[str] = []
    asked: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: asked.append(r.url) if "ai-candidates" in r.url else None)
    page.goto(f"{site.server.url}{path}")
    return page, errors, asked


def click_pixel(page: Any, column: float, row: float) -> None:
    """A real mouse click on the centre of image pixel (column, row) of the left pane."""
    box = page.locator(".pane[data-side=left] .viewport").bounding_box()
    x, y = hook(page, "v.imageToCanvas('left', a[0], a[1])", column + 0.5, row + 0.5)
    page.mouse.click(box["x"] + x, box["y"] + y)


def candidate(page: Any, candidate_id: int) -> dict[str, Any]:
    return hook(page, "v.candidates().find((c) => c.id === a[0])", candidate_id)


def item(page: Any, candidate_id: int) -> Any:
    return page.locator(f".ai-item[data-candidate='{candidate_id}']")


def test_physician_reviews_ai_candidates_on_the_study_page_and_in_the_viewer(
        chromium: Any, site: DemoSite, seeded: dict[str, Any]) -> None:
    study, uid = seeded["study"], seeded["study"]["study_uid"]
    page, errors, _ = open_page(chromium, site, "demo-physician", f"/studies/{uid}")
    try:
        # The study page: the three candidates, with algorithm, source, score and size.
        table = page.locator("#ai-candidates-table")
        assert table.locator("tbody tr").count() == 3
        ai_row = page.locator(f"#ai-candidate-{seeded['edit']}")
        assert "LungNet 2.1" in ai_row.inner_text() and "AI service lung-ai" in ai_row.inner_text()
        assert "0.88" in ai_row.inner_text() and "to review" in ai_row.inner_text()
        assert "built-in finder" in page.locator(f"#ai-candidate-{seeded['accept']}").inner_text()
        assert page.locator("#nodules .nodule-table:not(#ai-candidates-table)").count() == 0
        screenshot(page, "ai-candidates-01-study-page")

        # "Review in the viewer" opens the viewer at that candidate, circled on its slice.
        with page.expect_navigation():
            page.locator(f"#ai-candidate-{seeded['accept']} a").click()
        wait_for(page, "v && v.ready")
        big = seeded["big"]
        wait_for(page, "v.image('left').sop === a[0]", 20, big["instance_uid_at_center"])
        wait_for(page, "v.candidateMarkers('left').includes(a[0])", 10, seeded["accept"])
        panel = page.locator(".ai-panel")
        assert panel.is_visible() and page.locator("[data-action=ai-candidates]").is_visible()
        assert item(page, seeded["edit"]).locator("[data-field=algorithm]").inner_text() == \
            "LungNet 2.1"
        assert item(page, seeded["edit"]).locator("[data-field=source]").inner_text() == \
            "AI service lung-ai"
        assert item(page, seeded["accept"]).locator("[data-field=score]").inner_text() == "0.93"
        # The circle is centred on the candidate's pixel, its radius the diameter's half.
        column, row, _ = big["center_voxel"]
        circle = page.locator(f".ai-overlay circle[data-candidate='{seeded['accept']}']")
        x, y = hook(page, "v.imageToCanvas('left', a[0], a[1])", column + 0.5, row + 0.5)
        assert float(circle.get_attribute("cx")) == pytest.approx(x, abs=1.0)
        assert float(circle.get_attribute("cy")) == pytest.approx(y, abs=1.0)
        edge, _ = hook(page, "v.imageToCanvas('left', a[0], a[1])",
                       column + 0.5 + big["diameter_mm"] / 2 / study["pixel_spacing_mm"], row)
        assert float(circle.get_attribute("r")) == pytest.approx(max(6.0, edge - x), abs=1.0)
        screenshot(page, "ai-candidates-02-viewer")
        # Another slice: no circle there.
        index = hook(page, "v.currentIndex('left')")
        hook(page, "v.setIndex('left', a[0])", index + 8)
        wait_for(page, "v.currentIndex('left') === a[0]", 10, index + 8)
        wait_for(page, "v.candidateMarkers('left').length === 0", 10)

        # Accept: segmented like the measure tool; the measurement shows in the panel.
        item(page, seeded["accept"]).locator("button[data-action=accept]").click()
        wait_for(page, "v.nodule() || v.candidateError()", 180)
        assert hook(page, "v.candidateError()") is None
        assert candidate(page, seeded["accept"])["status"] == "accepted"
        measured = hook(page, "v.nodule()")["measurement"]
        assert measured["mean_diameter_mm"] == pytest.approx(big["diameter_mm"], abs=1.0)
        assert page.locator(".nodule-panel").is_visible()
        wait_for(page, "v.noduleOutline('left') === 1", 10)
        assert item(page, seeded["accept"]).get_attribute("data-status") == "accepted"
        assert item(page, seeded["accept"]).locator("button[data-action=accept]").count() == 0

        # Reject the false positive: marked, its circle gone.
        item(page, seeded["reject"]).locator("button[data-action=show]").click()
        wait_for(page, "v.candidateMarkers('left').includes(a[0])", 10, seeded["reject"])
        item(page, seeded["reject"]).locator("button[data-action=reject]").click()
        wait_for(page, "v.candidates().find((c) => c.id === a[0]).status === 'rejected'", 30,
                 seeded["reject"])
        assert item(page, seeded["reject"]).get_attribute("data-status") == "rejected"
        assert "rejected" in item(page, seeded["reject"]).inner_text()
        wait_for(page, "!v.candidateMarkers('left').includes(a[0])", 10, seeded["reject"])

        # Edit: the AI service's point is off the nodule; click its centre, accept there.
        second = seeded["second"]
        item(page, seeded["edit"]).locator("button[data-action=edit]").click()
        wait_for(page, "v.image('left').sop === a[0]", 20, second["instance_uid_at_center"])
        wait_for(page, "v.candidateMarkers('left').includes(a[0])", 10, seeded["edit"])
        column, row, _ = second["center_voxel"]
        click_pixel(page, column, row)
        accept_here = item(page, seeded["edit"]).locator("button[data-action=accept-here]")
        accept_here.wait_for(state="visible", timeout=10_000)
        assert page.locator(".ai-overlay .ai-point").count() == 1
        screenshot(page, "ai-candidates-03-edit-point")
        accept_here.click()
        wait_for(page, "v.candidates().find((c) => c.id === a[0]).status !== 'pending' "
                       "|| v.candidateError()", 180, seeded["edit"])
        assert hook(page, "v.candidateError()") is None
        measured = hook(page, "v.nodule()")["measurement"]
        assert measured["mean_diameter_mm"] == pytest.approx(second["diameter_mm"], abs=1.0)
        assert hook(page, "v.activeTool()") != "MeasureNodule"  # the edit was no tool change
        screenshot(page, "ai-candidates-04-decided")
        # Chromium logs no failed request here: nothing was refused.
        assert not errors, errors

        # Back on the study page: two measurements, and the decisions.
        wait_for_tracking_in_page(page, site.server.url, uid)
        page.goto(f"{site.server.url}/studies/{uid}")
        rows = page.locator("#nodules .nodule-table:not(#ai-candidates-table) tbody tr")
        assert rows.count() == 2
        decided = {c: page.locator(f"#ai-candidate-{seeded[c]}").get_attribute("data-status")
                   for c in ("accept", "reject", "edit")}
        assert decided == {"accept": "accepted", "reject": "rejected", "edit": "accepted"}
        assert "accepted as nodule N" in page.locator(f"#ai-candidate-{seeded['accept']}").inner_text()
        screenshot(page, "ai-candidates-05-study-page-decided")
    finally:
        page.context.close()


def test_the_viewer_speaks_chinese_to_a_chinese_physician(
        chromium: Any, site: DemoSite, seeded: dict[str, Any]) -> None:
    uid = seeded["study"]["study_uid"]
    page, errors, _ = open_page(chromium, site, "demo-physician",
                                f"/view/{uid}?candidate=all&lang=zh-Hans", locale="zh-CN")
    try:
        wait_for(page, "v && v.ready")
        page.locator(".ai-panel").wait_for(state="visible", timeout=10_000)
        assert page.locator("#ai-panel-title").inner_text().startswith("AI 候选结节")
        assert page.locator("[data-action=detect]").inner_text() == "查找结节"
        assert not errors, errors
    finally:
        page.context.close()


def test_a_patient_sees_no_ai_candidates(chromium: Any, site: DemoSite,
                                        seeded: dict[str, Any]) -> None:
    uid = seeded["study"]["study_uid"]
    page, errors, asked = open_page(chromium, site, "demo-patient", f"/studies/{uid}")
    try:
        assert page.locator("#nodules").is_visible()
        assert page.locator("#ai-candidates").count() == 0
        assert "LungNet" not in page.content() and "AI candidates" not in page.content()
        page.goto(f"{site.server.url}/view/{uid}?candidate={seeded['accept']}")
        wait_for(page, "v && v.ready")
        page.wait_for_load_state("networkidle")
        assert page.locator("[data-action=ai-candidates]").is_hidden()
        assert page.locator(".ai-panel").is_hidden()
        assert hook(page, "v.candidateMarkers('left').length") == 0
        assert asked == []  # the viewer never asks for what the API would refuse
        assert not errors, errors
        # The API itself answers as for a missing study.
        answer = page.request.get(f"{site.server.url}/api/studies/{uid}/ai-candidates")
        assert answer.status == 404
    finally:
        page.context.close()


def test_find_nodules_runs_the_built_in_finder_and_shows_its_candidates(
        chromium: Any, site: DemoSite) -> None:
    """The physician's "Find nodules" on the patient's first CT (no candidates yet): the
    job runs the detector; its candidates appear in the panel without a reload, and the
    largest demo nodule is among them."""
    study = min(site.truth["patients"][0]["studies"], key=lambda s: s["study_date"])
    uid = study["study_uid"]
    page, errors, _ = open_page(chromium, site, "demo-physician", f"/view/{uid}?candidate=all")
    try:
        wait_for(page, "v && v.ready")
        find = page.locator("[data-action=detect]")
        find.wait_for(state="visible", timeout=10_000)
        assert hook(page, "v.candidates().length") == 0
        assert page.locator(".ai-none").is_visible()
        find.click()
        wait_for(page, "v.candidates().length > 0 || !v.finding()", 300)
        found = hook(page, "v.candidates()")
        assert found, page.locator(".status").text_content()
        assert {c["source"] for c in found} == {"builtin"}
        big = max(study["nodules"], key=lambda n: n["diameter_mm"])
        nearest = min(found, key=lambda c: sum(
            (a - b) ** 2 for a, b in zip(c["center_mm"], big["center_patient_mm"], strict=True)))
        distance = sum((a - b) ** 2 for a, b in zip(
            nearest["center_mm"], big["center_patient_mm"], strict=True)) ** 0.5
        assert distance < big["diameter_mm"] / 2, (nearest, big)
        assert item(page, nearest["id"]).locator("[data-field=algorithm]").inner_text() \
            .startswith("cloudfilm-nodule-finder ")
        screenshot(page, "ai-candidates-06-found")
        assert not errors, errors
    finally:
        page.context.close()
