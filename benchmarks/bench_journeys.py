"""Patient journeys on a phone at 1.6 Mbit/s (issue 12): how many taps, how many typed fields
and how many seconds each of the four journeys takes, walked in headless Chromium.

    .venv/bin/python benchmarks/bench_journeys.py [--link proxy|cdp|both|none]
                                                  [--only film,family,doctor,download]
                                                  [--json PATH] [--shots DIR]

For each link, a fresh ``cloudfilm serve`` (SQLite) over the default demo (``cloudfilm demo``:
3 patients, CTs of 120 slices) and ``cloudfilm demo-logins``, so every link starts from the
same data. Phones are Playwright contexts of 390×844 CSS px, ``device_scale_factor`` 3,
``is_mobile``, ``has_touch``, locale zh-CN, tapping with touch; the physician uses a 1280×800
desktop context (zh-CN, mouse clicks) on the same link. Every journey (and every person in it)
gets a new browser context, so it starts with a cold HTTP cache; a person who is already
signed in signs in through the login form first, then the HTTP cache is cleared (CDP
``Network.clearBrowserCache``) before the clock starts.

1. **film**: an operator (``cloudfilm user add --role operator``, bearer token) issues a cloud
   film for the second demo patient's newest study (``POST /api/films``; the first patient's
   records belong to ``demo-patient`` after ``demo-logins``, so keeping them would be refused).
   On the phone, with no account: film link → "Open viewer" → first image → the viewer's back
   button → "Keep in my folder" → sign-up (name, phone number, password, birth date from
   ``demo-truth.json``) → the timeline lists the study.
2. **family**: ``demo-patient`` on the phone: timeline → "家属代理人" → "Make an invitation
   link" (the link is on screen); then a caregiver on another phone opens the link → "Make an
   account and accept" → sign-up (name, phone number, password) → the patient's timeline.
3. **doctor**: ``demo-physician`` (shared with by ``demo-logins``) on the desktop: sign-in →
   newest study → "Compare with prior" (both scans drawn) → back → "Measure a nodule in the
   viewer" → slice slider to the largest truth nodule's slice → click its centre → measured →
   back → the other guideline (Lung-RADS v2022, where the demo applied Fleischner 2017) →
   "Apply" → the study page shows the new assessment.
4. **download**: ``demo-patient`` on the phone: timeline → newest study → "Download" →
   "Original images (DICOM, zip)" → the download starts → the zip is saved whole.

Counted per person: **taps** (taps and clicks, a slider drag, the back button) and **fields**
(typed inputs and a chosen option). Timed from the journey's first navigation: the first
image (the viewer's ``cf-first-image-*`` performance mark, Cornerstone drew a slice) and the
end state. The operator's film issue (one API request) is not timed.

Links (``--link``; default ``both``), each 1.6 Mbit/s down and up with 150 ms round trips:

- ``proxy``: benchmarks/browser_link.py's ShapedLink, a loopback TCP proxy that shapes every
  byte (documents, web workers, downloads) on one shared link;
- ``cdp``: Chromium's own emulation, ``Network.emulateNetworkConditions`` with
  ``{offline: false, latency: 150, downloadThroughput: 200000, uploadThroughput: 200000}``
  (bytes/s) on every page's CDP session. It does not slow requests made by web workers, nor
  (as measured here) a download, which Chromium's download manager fetches.

Needs ``make web`` and Debian's chromium. Prints a markdown table per link; writes
benchmarks/results/journeys.json and one end-state screenshot per journey and link under
benchmarks/results/journeys/.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.browser_link import SLOW_RTT_MS, ShapedLink
from benchmarks.cloudfilm_server import CloudfilmServer
from benchmarks.common import ROOT, LoadMonitor, machine_info

LINK_BPS = 1_600_000  # both directions
CDP_CONDITIONS = {"offline": False, "latency": SLOW_RTT_MS,
                  "downloadThroughput": LINK_BPS / 8, "uploadThroughput": LINK_BPS / 8}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "zh-CN"}
PASSWORD = "a long enough password"
JOURNEYS = ("film", "family", "doctor", "download")
STEP_TIMEOUT_S = 300
DOWNLOAD_TIMEOUT_S = 1200


@dataclass(frozen=True)
class Link:
    """Where the browser connects and how its traffic is slowed."""

    name: str
    base: str
    cdp: dict[str, Any] | None
    proxy: ShapedLink | None = None  # counts the bytes it carried down


@dataclass
class Result:
    """One person's part of one journey, as a row of the table."""

    journey: str
    who: str
    device: str
    link: str
    taps: int = 0
    fields: int = 0
    seconds: float | None = None
    first_image_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[str, float]] = field(default_factory=list)
    screenshot: str | None = None
    error: str | None = None


class Walk:
    """One person on one device: a fresh browser context whose taps and typed fields are
    counted and whose steps are timed from the first navigation."""

    def __init__(self, browser: Any, link: Link, device: dict[str, Any], result: Result) -> None:
        self.context = browser.new_context(**device, accept_downloads=True)
        self.page = self.context.new_page()
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Network.enable")
        if link.cdp is not None:
            self.cdp.send("Network.emulateNetworkConditions", link.cdp)
        self.link, self.result, self.touch = link, result, bool(device.get("has_touch"))
        self.started: float | None = None
        self.bytes_at_start = 0
        self.page.set_default_timeout(STEP_TIMEOUT_S * 1000)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.link.base}{path}"

    def sign_in_first(self, username: str, password: str) -> None:
        """Already signed in when the journey starts: the login form, then a cold cache."""
        self.page.goto(self.url("/login"))
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        with self.page.expect_navigation():
            self.page.click("button[type=submit]")
        self.page.goto("about:blank")
        self.cdp.send("Network.clearBrowserCache")

    def go(self, path: str) -> None:
        """A navigation the person did not tap for (a link opened from a message): the clock
        starts at the first one."""
        if self.started is None:
            self.started = time.time()
            self.bytes_at_start = self.link.proxy.bytes_down if self.link.proxy else 0
        self.page.goto(self.url(path), wait_until="commit")

    def tap(self, selector: str, label: str, navigates: bool = True) -> None:
        target = self.page.locator(selector).first
        target.wait_for(state="visible")
        self.result.taps += 1
        if not navigates:
            (target.tap if self.touch else target.click)()
        else:
            with self.page.expect_navigation(wait_until="commit"):
                (target.tap if self.touch else target.click)()
        self.mark(label)

    def back(self, label: str) -> None:
        """The phone's or browser's back button: one tap."""
        self.result.taps += 1
        self.page.go_back(wait_until="commit")
        self.mark(label)

    def type(self, selector: str, text: str) -> None:
        self.page.locator(selector).wait_for(state="visible")
        self.page.fill(selector, text)
        self.result.fields += 1

    def choose(self, selector: str, value: str) -> None:
        self.page.select_option(selector, value)
        self.result.fields += 1

    def now(self) -> float:
        assert self.started is not None, "no navigation yet"
        return round(time.time() - self.started, 2)

    def mark(self, label: str) -> float:
        elapsed = self.now()
        self.result.steps.append((label, elapsed))
        return elapsed

    def until(self, expression: str, what: str, timeout: float = STEP_TIMEOUT_S,
              arg: Any = None) -> Any:
        """Poll a JavaScript function of ``arg`` until it is truthy (the viewer's CSP forbids
        the string eval that ``wait_for_function`` uses); the step's time when it is."""
        deadline = time.monotonic() + timeout
        while not (value := self._evaluate(expression, arg)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s at {self.page.url}")
            time.sleep(0.05)
        self.mark(what)
        return value

    def _evaluate(self, expression: str, arg: Any) -> Any:
        """None while a navigation replaces the document under the poll."""
        from playwright.sync_api import Error

        try:
            return self.page.evaluate(expression, arg)
        except Error as error:
            if "context was destroyed" in str(error) or "navigat" in str(error):
                return None
            raise

    def first_image(self) -> float:
        """Journey seconds at the viewer's first drawn slice (its performance mark); the
        server-rendered preview JPEG shown before it goes into ``extra``."""
        marks = self.until(
            "() => { const at = (p) => { const m = performance.getEntriesByType('mark')"
            ".filter(m => m.name.startsWith(p)); return m.length ? performance.timeOrigin + "
            "Math.min(...m.map(x => x.startTime)) : null; }; const image = at('cf-first-image');"
            " return image && [image, at('cf-preview')]; }", "first image")
        assert self.started is not None
        if marks[1] is not None:
            self.result.extra["preview_jpeg_s"] = round(marks[1] / 1000 - self.started, 2)
        return round(marks[0] / 1000 - self.started, 2)

    def finish(self, shots: Path, name: str, show: str | None = None) -> None:
        """The end state is reached: its time, and a screenshot with ``show`` on screen."""
        self.result.seconds = self.mark("end state")
        if self.link.proxy is not None:
            self.result.extra["mb_down"] = round(
                (self.link.proxy.bytes_down - self.bytes_at_start) / 1e6, 2)
        if show is not None:
            self.page.locator(show).first.evaluate("e => e.scrollIntoView({block: 'center'})")
        shots.mkdir(parents=True, exist_ok=True)
        path = shots / f"{name}-{self.link.name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        self.result.screenshot = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

    def close(self) -> None:
        self.context.close()


# -- the site ------------------------------------------------------------------------------
@dataclass
class Site:
    server: CloudfilmServer
    truth: dict[str, Any]
    passwords: dict[str, str]
    operator_token: str

    def newest(self, patient: int) -> dict[str, Any]:
        return max(self.truth["patients"][patient]["studies"], key=lambda s: s["study_date"])

    def prior(self, patient: int) -> dict[str, Any]:
        return sorted(self.truth["patients"][patient]["studies"],
                      key=lambda s: s["study_date"])[-2]


def start_site(server: CloudfilmServer) -> Site:
    """``cloudfilm demo`` (defaults), ``demo-logins``, an operator with a token, then serve."""
    cli_with_retries(server, "demo")
    logins = cli_with_retries(server, "demo-logins")
    passwords = {parts[1]: parts[2] for line in logins.splitlines()
                 if len(parts := line.split()) == 3 and parts[1].startswith("demo-")}
    cli_with_retries(server, "user", "add", "desk-operator", "--role", "operator")
    token = cli_with_retries(server, "token", "issue", "desk-operator", "--expires-in", "1d")
    server.start()
    truth = json.loads((server.data / "demo-truth.json").read_text())
    return Site(server, truth, passwords, token.strip())


def cli_with_retries(server: CloudfilmServer, *args: str, attempts: int = 4) -> str:
    """A failed command is retried after a minute: the code under it may be mid-change."""
    for attempt in range(1, attempts + 1):
        try:
            return server.cli(*args)
        except RuntimeError as error:
            if attempt == attempts:
                raise
            print(f"cloudfilm {args[0]} failed (attempt {attempt}), retrying in 60 s: "
                  f"{str(error)[-300:]}", flush=True)
            time.sleep(60)
    raise AssertionError("unreachable")


def issue_film(site: Site, link: Link, study: str) -> str:
    """The operator's one request; the film URL carries the link's host, as printed."""
    answer = httpx.post(f"{link.base}/api/films", json={"study_uid": study}, timeout=120,
                        headers={"Authorization": f"Bearer {site.operator_token}"})
    if answer.status_code != 201:
        raise RuntimeError(f"POST /api/films answered {answer.status_code}: {answer.text[:300]}")
    return str(answer.json()["url"])


def phone_number() -> str:
    return f"139{secrets.randbelow(10**8):08d}"


def iso_date(dicom_date: str) -> str:
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:]}"


# -- the four journeys -------------------------------------------------------------------
def film_journey(browser: Any, site: Site, link: Link, shots: Path,
                 out: list[Result]) -> None:
    """1. A hospital's cloud film on a phone with no account, kept for life: the second demo
    patient's (demo-logins gave the first one's records to demo-patient)."""
    patient, study = site.truth["patients"][1], site.newest(1)["study_uid"]
    url = issue_film(site, link, study)
    result = Result("1 hospital film → keep", "patient, no account", "phone", link.name)
    out.append(result)
    walk = Walk(browser, link, PHONE, result)
    try:
        walk.go(url)
        walk.tap("#open-viewer", "viewer")
        result.first_image_s = walk.first_image()
        walk.tap("a.button.back", "back from the viewer")
        walk.tap("#keep-in-folder", "keep: sign-up form")
        walk.type("#display_name", "李女士")
        walk.type("#username", phone_number())
        walk.type("#password", PASSWORD)
        walk.type("#birth_date", iso_date(patient["birth_date"]))
        walk.tap("form[action='/signup'] button[type=submit]", "account made")
        walk.until("(s) => location.pathname === '/timeline' && "
                   "!!document.querySelector(`a[href='/studies/${s}']`)", "timeline shows it",
                   arg=study)
        walk.finish(shots, "1-film", f"main a[href='/studies/{study}']")
    finally:
        walk.close()


def family_journey(browser: Any, site: Site, link: Link, shots: Path,
                   out: list[Result]) -> None:
    """2. The patient makes an invitation link; a caregiver opens it on their own phone."""
    maker = Result("2a family: make the link", "patient, signed in", "phone", link.name)
    out.append(maker)
    walk = Walk(browser, link, PHONE, maker)
    try:
        walk.sign_in_first("demo-patient", site.passwords["demo-patient"])
        walk.go("/")
        walk.tap("nav a[href='/caregivers']", "family helpers page")
        walk.tap("form[action='/caregivers/invite'] button[type=submit]", "link made")
        invite = walk.until("() => document.querySelector('#invite-url')?.value",
                            "link on the page")
        maker.extra["link_top_px"] = round(walk.page.evaluate(  # below 844: scroll to see it
            "() => document.querySelector('#invite-url').getBoundingClientRect().top"))
        walk.finish(shots, "2a-family-link", "#invite-url")
    finally:
        walk.close()
    helper = Result("2b family: caregiver joins", "caregiver, no account", "phone", link.name)
    out.append(helper)
    walk = Walk(browser, link, PHONE, helper)
    try:
        walk.go(invite)
        walk.tap("a.button[href^='/signup']", "sign-up form")
        walk.type("#display_name", "张三的女儿")
        walk.type("#username", phone_number())
        walk.type("#password", PASSWORD)
        walk.tap("form[action='/signup'] button[type=submit]", "account made")
        walk.until("(s) => !!document.querySelector(`a[href='/studies/${s}']`)",
                   "the patient's timeline", arg=site.newest(0)["study_uid"])
        helper.extra["heading"] = walk.page.locator("h1").inner_text()
        walk.finish(shots, "2b-family-helper", "main a[href^='/studies/']")
    finally:
        walk.close()


VIEWER_READY = "() => document.body.dataset.ready === 'true'"


def doctor_journey(browser: Any, site: Site, link: Link, shots: Path,
                   out: list[Result]) -> None:
    """3. The physician compares with the prior, measures a nodule, applies a guideline."""
    study = site.newest(0)
    nodule = max(study["nodules"], key=lambda n: n["diameter_mm"])
    result = Result("3 doctor: compare, measure, guideline", "physician (shared with)",
                    "desktop 1280×800", link.name)
    out.append(result)
    walk = Walk(browser, link, DESKTOP, result)
    try:
        walk.go("/login")
        walk.type("#username", "demo-physician")
        walk.type("#password", site.passwords["demo-physician"])
        walk.tap("button[type=submit]", "signed in")
        walk.tap(f"main a[href='/studies/{study['study_uid']}']", "newest study")
        walk.tap("#compare-prior", "compare viewer")
        result.first_image_s = walk.first_image()
        walk.until(VIEWER_READY, "both scans drawn")
        walk.back("study page")
        walk.tap("a[href$='?tool=nodule']", "viewer with the nodule tool")
        walk.until("() => { const v = window.cloudfilmViewer; return v && v.ready && "
                   "v.activeTool() === 'MeasureNodule'; }", "nodule tool on")
        go_to_slice(walk, nodule["center_patient_mm"][2])
        click_pixel(walk, *nodule["center_voxel"][:2])
        measured = walk.until("() => { const v = window.cloudfilmViewer; "
                              "return v.nodule() || v.noduleError(); }", "nodule measured", 300)
        result.extra["measured"] = _measured(measured, nodule)
        walk.back("study page")
        apply_guideline(walk)
        walk.finish(shots, "3-doctor", "#nodule-assessment")
    finally:
        walk.close()


GUIDELINE = "#nodule-assessment select[name=guideline]"


def apply_guideline(walk: Walk) -> None:
    """Choose the guideline not applied yet (a rerun switches back) and apply it."""
    walk.page.locator(GUIDELINE).wait_for(state="visible")
    chosen = walk.page.evaluate(
        "(s) => [...document.querySelector(s).options].find(o => !o.selected).value", GUIDELINE)
    walk.choose(GUIDELINE, chosen)
    walk.tap("#nodule-assessment form button[type=submit]", "guideline applied")
    walk.until("(a) => document.querySelector(a[0])?.value === a[1] && "
               "!!document.querySelector('#nodule-category')", "assessment shown",
               arg=[GUIDELINE, chosen])
    walk.result.extra["guideline"] = chosen
    walk.result.extra["category"] = walk.page.locator("#nodule-category").inner_text()


def go_to_slice(walk: Walk, z_mm: float) -> None:
    """The physician drags the slice slider to the nodule (one drag: one tap)."""
    index = walk.page.evaluate("(z) => window.cloudfilmViewer.indexNearestZ('left', z)", z_mm)
    walk.result.taps += 1
    walk.page.locator(".pane[data-side=left] input.slider").fill(str(index + 1))
    walk.until("(i) => window.cloudfilmViewer.currentIndex('left') === i", "nodule slice",
               arg=index)


def click_pixel(walk: Walk, column: float, row: float) -> None:
    """A click on the centre of image pixel (column, row) of the left pane."""
    page = walk.page
    box = page.locator(".pane[data-side=left] .viewport").bounding_box()
    x, y = page.evaluate("(p) => window.cloudfilmViewer.imageToCanvas('left', p[0], p[1])",
                         [column + 0.5, row + 0.5])
    walk.result.taps += 1
    page.mouse.click(box["x"] + x, box["y"] + y)
    walk.mark("clicked the nodule")


def _measured(found: Any, nodule: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(found, dict):
        return {"error": str(found)}
    m = found["measurement"]
    return {"mean_diameter_mm": m["mean_diameter_mm"], "truth_diameter_mm": nodule["diameter_mm"]}


def download_journey(browser: Any, site: Site, link: Link, shots: Path,
                     out: list[Result]) -> None:
    """4. The patient downloads the newest study's originals on the phone."""
    study = site.newest(0)["study_uid"]
    result = Result("4 download originals", "patient, signed in", "phone", link.name)
    out.append(result)
    walk = Walk(browser, link, PHONE, result)
    try:
        walk.sign_in_first("demo-patient", site.passwords["demo-patient"])
        walk.go("/")
        result.extra["newest_is_first_card"] = walk.until(
            "() => document.querySelector(\"main a[href^='/studies/']\")?.getAttribute('href')",
            "timeline") == f"/studies/{study}"
        walk.tap(f"main a[href='/studies/{study}']", "study page")
        walk.tap("#download-button", "download choices", navigates=False)
        with walk.page.expect_download(timeout=DOWNLOAD_TIMEOUT_S * 1000) as started:
            walk.tap("#download-originals", "tapped download", navigates=False)
        result.extra["download_started_s"] = walk.mark("download started")
        saved = Path(started.value.path())
        result.extra["zip_saved_s"] = walk.mark("zip saved")
        result.extra.update(_zip_facts(saved))
        walk.finish(shots, "4-download", "#download")
    finally:
        walk.close()


def _zip_facts(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        bad = archive.testzip()
    return {"zip_mb": round(path.stat().st_size / 1e6, 1), "zip_entries": len(names),
            "zip_dicom_files": sum(1 for n in names if n.lower().endswith(".dcm")),
            "zip_intact": bad is None}


WALKS: dict[str, Callable[[Any, Site, Link, Path, list[Result]], None]] = {
    "film": film_journey, "family": family_journey, "doctor": doctor_journey,
    "download": download_journey}


# -- running and reporting ---------------------------------------------------------------
def open_link(name: str, server: CloudfilmServer) -> Link:
    if name == "proxy":
        proxy = ShapedLink(server.port, LINK_BPS, LINK_BPS, SLOW_RTT_MS).start()
        return Link("proxy", f"http://127.0.0.1:{proxy.port}", None, proxy)
    if name == "cdp":
        return Link("cdp", server.base, CDP_CONDITIONS)
    return Link("loopback", server.base, None)


def run_link(name: str, only: list[str], shots: Path) -> list[Result]:
    """Every journey on one link, over its own fresh demo site (so each link starts from the
    same data), one after the other; a failed journey is reported and the others still run."""
    from playwright.sync_api import sync_playwright

    server = CloudfilmServer(label=f"bench-journeys-{name}")
    link: Link | None = None
    results: list[Result] = []
    try:
        print(f"{name}: generating the default demo (3 patients, 120 slices)…", flush=True)
        site = start_site(server)
        link = open_link(name, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 headless=True, args=["--no-sandbox"])
            try:
                for journey in only:
                    print(f"{link.name}: {journey}…", flush=True)
                    results += walk_one(journey, browser, site, link, shots)
            finally:
                browser.close()
    finally:
        if link is not None and link.proxy is not None:
            link.proxy.stop()
        server.cleanup()
    return results


def walk_one(journey: str, browser: Any, site: Site, link: Link, shots: Path) -> list[Result]:
    found: list[Result] = []
    try:
        WALKS[journey](browser, site, link, shots, found)
    except Exception as error:  # noqa: BLE001 - report it and go on
        if not found:
            found.append(Result(journey, "?", "?", link.name))
        failed = found[-1]
        failed.error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        failed.extra["failed_after"] = failed.steps[-1] if failed.steps else None
    for result in found:
        print(f"  {line(result)}", flush=True)
    return found


def _s(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "–"


def line(r: Result) -> str:
    if r.error:
        return f"{r.journey}: FAILED {r.error}"
    extra = ", ".join(f"{k} {v}" for k, v in r.extra.items())
    return (f"{r.journey}: {r.taps} taps, {r.fields} fields, {_s(r.seconds)} s"
            f" (first image {_s(r.first_image_s)} s){'; ' + extra if extra else ''}")


def table(results: list[Result], link: str) -> str:
    rows = ["| journey | who, device | taps | fields | first image (s) | end state (s) |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in (r for r in results if r.link == link):
        if r.error:
            rows.append(f"| {r.journey} | failed: {r.error[:200]} | | | | |")
            continue
        end = _s(r.seconds)
        if "download_started_s" in r.extra:
            end = (f"{end} (download starts {_s(r.extra['download_started_s'])}; "
                   f"{r.extra['zip_mb']} MB zip)")
        rows.append(f"| {r.journey} | {r.who}, {r.device} | {r.taps} | {r.fields} | "
                    f"{_s(r.first_image_s)} | {end} |")
    return "\n".join(rows)


LINK_TEXT = {
    "proxy": f"ShapedLink proxy: {LINK_BPS / 1e6:g} Mbit/s down and up, {SLOW_RTT_MS} ms RTT, "
             "every byte shaped (workers and downloads too)",
    "cdp": f"CDP Network.emulateNetworkConditions {json.dumps(CDP_CONDITIONS)}",
    "loopback": "loopback, no shaping",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", choices=["proxy", "cdp", "both", "none"], default="both")
    parser.add_argument("--only", default=",".join(JOURNEYS),
                        help=f"comma-separated subset of {', '.join(JOURNEYS)}")
    parser.add_argument("--json", type=Path,
                        default=ROOT / "benchmarks" / "results" / "journeys.json")
    parser.add_argument("--shots", type=Path,
                        default=ROOT / "benchmarks" / "results" / "journeys")
    args = parser.parse_args(argv)
    if not (ROOT / "src" / "cloudfilm" / "web" / "static" / "build" / "viewer" / "index.html"
            ).is_file():
        raise SystemExit("the viewer is not built: run `make web` first")
    only = [n for n in JOURNEYS if n in args.only.split(",")]
    names = {"both": ["proxy", "cdp"], "none": ["loopback"]}.get(args.link, [args.link])
    load = LoadMonitor()
    results = [r for name in names for r in run_link(name, only, args.shots)]
    meta = {"load_average": load.stop(), "machine": machine_info(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "chromium": _chromium_version()}
    names = ["loopback" if n == "none" else n for n in names]
    for name in names:
        print(f"\n{name}: {LINK_TEXT[name]}\n\n{table(results, name)}")
    print(f"\nload average during the run: {meta['load_average']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "links": {name: LINK_TEXT[name] for name in names},
        "cdp_conditions": CDP_CONDITIONS, "phone": PHONE, "desktop": DESKTOP,
        "results": [asdict(r) for r in results], **meta}, indent=1, ensure_ascii=False))
    print(f"wrote {args.json}")
    return 1 if any(r.error for r in results) else 0


def _chromium_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[-1] if out.strip() else "?"


if __name__ == "__main__":
    sys.exit(main())
