"""OHIF in Chromium: time to first image and until every slice is loaded.

    .venv/bin/python benchmarks/bench_ohif.py [--slices 300] [--runs N] [--slow-runs N]
                                              [--limit 420] [--json PATH]

Usually run from benchmarks/bench_viewer.py, which opens the same study in cloudfilm's
viewer and in OHIF in one run (the side-by-side numbers in docs/benchmarks.md). On its
own it starts a ``cloudfilm serve`` over fresh demo data (one patient, CT series of
``--slices`` 512×512 slices), logs in through the login form and opens
``ohif_url(study)``, measuring from the start of navigation:

- **first image**: when the viewport canvas first shows an image (polled pixels). OHIF
  fetches frames as stored (uncompressed here), so its first image is full quality;
- **all slices**: OHIF's Cornerstone cache (``window.cornerstone.cache``, which OHIF
  exposes) holds every frame of the series. If OHIF stops fetching (it prefetches only
  what its configuration asks for), the run ends after ``STALL_S`` without progress and
  reports how many slices it had;
- OHIF's own ``studyToFirstImage`` console timer, for reference;
- the bytes that crossed the shaped link (slow profile).

Profiles: loopback, and 1.6 Mbit/s down / 750 kbit/s up / 150 ms RTT through
:class:`ShapedLink` (a loopback TCP proxy that shapes every byte, including what OHIF's
workers fetch; DevTools emulation does not). Each runs cold (HTTP cache cleared) and warm
(navigated again: hashed bundles come from the cache). A run stops ``--limit`` seconds
after the first image and projects the rest from the load rate so far.

Needs ``make web`` (the OHIF build) and Debian's chromium (Playwright downloads nothing).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.browser_link import (
    SLOW_BPS_DOWN,
    SLOW_BPS_UP,
    SLOW_NAME,
    SLOW_RTT_MS,
    ShapedLink,
    login,
)
from benchmarks.cloudfilm_server import CloudfilmServer
from benchmarks.common import ROOT, median
from cloudfilm.web.ohif import BUILD_DIR, ohif_url

LOGIN = "demo-admin"
STALL_S = 20.0
CACHED = """(series) => {
  const cache = window.cornerstone && window.cornerstone.cache;
  if (!cache || !cache._imageCache) return 0;
  let n = 0;
  for (const [id, entry] of cache._imageCache) if (entry.loaded && id.includes(series)) n++;
  return n;
}"""


@dataclass
class Sample:
    profile: str
    cache: str
    first_image_s: float
    all_slices_s: float | None            # measured (None if stopped first)
    all_slices_projected_s: float | None  # from the load rate, when stopped first
    slices_loaded: int
    slices: int
    ohif_study_to_first_image_ms: float | None
    mb_down: float | None  # through the shaping proxy only (it sees every byte)


def _rendered(canvas: Any) -> bool:
    import numpy as np
    from PIL import Image

    try:
        if not canvas.is_visible():
            return False
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot(timeout=5_000))).convert("L"),
                            dtype=np.float64)
    except Exception:  # noqa: BLE001 - the canvas may be replaced while OHIF lays out
        return False
    return bool(pixels.std() > 10 and len(np.unique(pixels)) > 32)


def _timer(messages: list[str], name: str) -> float | None:
    for text in messages:
        if text.startswith(f"{name}: ") and text.endswith(" ms"):
            return float(text[len(name) + 2:-3])
    return None


def _first_image(page: Any, start: float, timeout: float, what: str) -> float:
    while True:
        canvas = page.locator(".cornerstone-canvas").first
        if canvas.count() and _rendered(canvas):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{what}: no image within {timeout} s")
        page.wait_for_timeout(50)


def _all_slices(page: Any, series: str, slices: int, first: float, start: float,
                limit: float) -> tuple[float | None, float | None, int]:
    """(measured, projected, loaded) for OHIF's cache of the series."""
    loaded, progress_at = 0, time.monotonic()
    while True:
        now_loaded = int(page.evaluate(CACHED, series))
        now = time.monotonic()
        if now_loaded >= slices:
            return now - start, None, now_loaded
        if now_loaded > loaded:
            loaded, progress_at = now_loaded, now
        if (limit and now - start - first > limit) or now - progress_at > STALL_S:
            break
        page.wait_for_timeout(200)
    elapsed = time.monotonic() - start
    projected = None
    if loaded > 1 and time.monotonic() - progress_at <= STALL_S:
        rate = (loaded - 1) / max(1e-3, elapsed - first)
        projected = round(first + (slices - 1) / rate, 1)
    return None, projected, loaded


def measure(page: Any, cdp: Any, url: str, profile: str, cache: str, *, series: str,
            slices: int, timeout: float, limit: float, link: ShapedLink | None) -> Sample:
    """One visit of ``url``: cold clears the HTTP cache first; warm keeps it."""
    messages: list[str] = []

    def on_console(message: Any) -> None:
        messages.append(message.text)

    page.goto("about:blank")
    page.wait_for_timeout(1000)  # the previous visit's requests end before this one starts
    if cache == "cold":
        cdp.send("Network.clearBrowserCache")
    page.on("console", on_console)
    down_before = link.bytes_down if link else 0
    start = time.monotonic()
    page.goto(url, wait_until="commit")
    first = _first_image(page, start, timeout, f"OHIF {profile}/{cache}")
    all_s, projected, loaded = _all_slices(page, series, slices, first, start, limit)
    mb_down = round((link.bytes_down - down_before) / 1e6, 2) if link else None
    page.remove_listener("console", on_console)
    return Sample(profile, cache, round(first, 3), _rounded(all_s), projected, loaded, slices,
                  _timer(messages, "studyToFirstImage"), mb_down)


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def line(sample: Sample) -> str:
    if sample.all_slices_s is not None:
        every = f"all {sample.slices} slices {sample.all_slices_s:.2f} s"
    elif sample.all_slices_projected_s is not None:
        every = (f"{sample.slices_loaded}/{sample.slices} slices when stopped, all projected "
                 f"{sample.all_slices_projected_s:.0f} s")
    else:
        every = f"{sample.slices_loaded}/{sample.slices} slices loaded, then no progress"
    down = f", {sample.mb_down:.1f} MB down" if sample.mb_down is not None else ""
    return f"first image {sample.first_image_s:.2f} s, {every}{down}"


def study_and_series(server: CloudfilmServer) -> tuple[str, str]:
    """The newest demo CT and its image series."""
    import httpx

    truth = json.loads((server.data / "demo-truth.json").read_text())
    study = truth["patients"][0]["studies"][-1]["study_uid"]
    found = httpx.get(f"{server.dicomweb}/studies/{study}/series", headers=server.auth_headers,
                      timeout=60).json()
    series = max(found, key=lambda a: a.get("00201209", {}).get("Value", [0])[0])
    return study, series["0020000E"]["Value"][0]


def password_of(server: CloudfilmServer, username: str) -> str:
    logins = server.cli("demo-logins")
    return next(line.split()[2] for line in logins.splitlines()
                if len(line.split()) == 3 and line.split()[1] == username)


def run(slices: int, runs: int, slow_runs: int, limit: float) -> list[Sample]:
    from playwright.sync_api import sync_playwright

    if not (BUILD_DIR / "index.html").is_file():
        raise SystemExit("OHIF is not built: run `make web` first")
    server = CloudfilmServer(label="bench-ohif")
    link: ShapedLink | None = None
    samples: list[Sample] = []
    try:
        server.cli("demo", "--patients", "1", "--slices", str(slices))
        server.start()
        password = password_of(server, LOGIN)
        study, series = study_and_series(server)
        link = ShapedLink(server.port, SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_RTT_MS).start()
        profiles = [("loopback", runs, server.base, None, 120),
                    (f"{SLOW_NAME} (proxy)", slow_runs, f"http://127.0.0.1:{link.port}", link, 600)]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 headless=True, args=["--no-sandbox"])
            try:
                for profile, count, base, shaper, timeout in profiles:
                    for _ in range(count):
                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        login(context, base, LOGIN, password)
                        page = context.new_page()
                        cdp = context.new_cdp_session(page)
                        cdp.send("Network.enable")
                        for cache in ("cold", "warm"):
                            sample = measure(page, cdp, f"{base}{ohif_url(study)}", profile, cache,
                                             series=series, slices=slices, timeout=timeout,
                                             limit=limit, link=shaper)
                            print(f"  {profile:30} {cache:5} {line(sample)}", flush=True)
                            samples.append(sample)
                        context.close()
            finally:
                browser.close()
    finally:
        if link is not None:
            link.stop()
        server.cleanup()
    return samples


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    rows = []
    for profile in dict.fromkeys(s.profile for s in samples):
        for cache in ("cold", "warm"):
            picked = [s for s in samples if s.profile == profile and s.cache == cache]
            if not picked:
                continue

            def mid(values: list[float | None]) -> float | None:
                present = [v for v in values if v is not None]
                return round(median(present), 2) if present else None

            rows.append({"profile": profile, "cache": cache, "runs": len(picked),
                         "slices": picked[0].slices,
                         "first_image_median_s": mid([s.first_image_s for s in picked]),
                         "all_slices_median_s": mid([s.all_slices_s for s in picked]),
                         "all_slices_projected_median_s":
                             mid([s.all_slices_projected_s for s in picked]),
                         "slices_loaded_median": mid([float(s.slices_loaded) for s in picked]),
                         "ohif_study_to_first_image_median_ms":
                             mid([s.ohif_study_to_first_image_ms for s in picked]),
                         "mb_down_median": mid([s.mb_down for s in picked])})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300, help="slices per CT (default 300)")
    parser.add_argument("--runs", type=int, default=2, help="loopback repetitions (default 2)")
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="slow-link repetitions (default 1)")
    parser.add_argument("--limit", type=float, default=120,
                        help="stop a run this many seconds after the first image and project "
                             "the rest (0: wait; default 120)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ohif.json")
    args = parser.parse_args(argv)
    samples = run(args.slices, args.runs, args.slow_runs, args.limit)
    rows = summarize(samples)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "samples": [asdict(s) for s in samples],
                                     "slow_link": {"down_bps": SLOW_BPS_DOWN,
                                                   "up_bps": SLOW_BPS_UP,
                                                   "rtt_ms": SLOW_RTT_MS}}, indent=1))
    print(json.dumps(rows, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
