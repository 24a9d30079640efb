"""OHIF time to first image: the prebuilt OHIF viewer served by cloudfilm, in Chromium.

    .venv/bin/python benchmarks/bench_ohif.py [--runs N] [--slow-runs N] [--json PATH]

Starts its own ``cloudfilm serve`` on a free loopback port over fresh demo data (one patient,
a CT study of 80 slices of 512×512), logs in through the login form, then opens
``ohif_url(study)`` and measures, from the start of navigation:

- **first image**: when the viewport canvas first shows an image (polled pixels);
- OHIF's own ``studyToFirstImage`` and ``scriptToView`` console timers, for reference;
- the bytes that crossed the network until then (DevTools ``encodedDataLength``).

Each profile runs **cold** (a new browser context, HTTP cache cleared, so every bundle and
WASM codec is downloaded) and **warm** (the same page reloaded: hashed bundles come from the
cache, app-config.js and index.html are revalidated, all DICOMweb requests go to the server).
Profiles, each 1.6 Mbit/s down, 750 kbit/s up, 150 ms RTT where slow:

- loopback: no shaping;
- slow (proxy): through :class:`ShapedLink`, a loopback TCP proxy in this process that
  shapes every byte (one shared link per direction, plus RTT/2 per chunk each way);
- slow (DevTools): Chrome DevTools ``Network.emulateNetworkConditions`` on the page. It
  does NOT shape requests made by web workers, and OHIF's image loader fetches frames (and
  metadata) from workers, so this profile understates the cost of a slow link; it is kept
  to show the difference. Trust the proxy profile.

Needs ``make web`` (the OHIF build) and Debian's chromium (Playwright downloads nothing).
Results print as a table and go to benchmarks/results/ohif.json.
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

from benchmarks.browser_link import (  # noqa: E402
    DEVTOOLS_SLOW, SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_NAME, SLOW_RTT_MS, ShapedLink, login,
)
from benchmarks.cloudfilm_server import CloudfilmServer  # noqa: E402
from benchmarks.common import ROOT, median  # noqa: E402
from cloudfilm.web.ohif import BUILD_DIR, ohif_url  # noqa: E402

LOGIN = "demo-admin"




@dataclass
class Sample:
    profile: str
    cache: str
    first_image_s: float
    ohif_study_to_first_image_ms: float | None
    ohif_script_to_view_ms: float | None
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


def _measure(page: Any, cdp: Any, url: str, profile: str, cache: str, timeout: float,
             link: ShapedLink | None) -> Sample:
    messages: list[str] = []

    def on_console(message: Any) -> None:
        messages.append(message.text)

    page.on("console", on_console)
    if cache == "cold":
        cdp.send("Network.clearBrowserCache")
    down_before = link.bytes_down if link else 0
    start = time.monotonic()
    if cache == "warm":
        page.reload(wait_until="commit")
    else:
        page.goto(url, wait_until="commit")
    deadline = start + timeout
    while True:
        canvas = page.locator(".cornerstone-canvas").first
        if canvas.count() and _rendered(canvas):
            elapsed = time.monotonic() - start
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{profile}/{cache}: no image within {timeout} s")
        page.wait_for_timeout(50)
    mb_down = round((link.bytes_down - down_before) / 1e6, 2) if link else None
    page.wait_for_timeout(300)  # let OHIF print its timers
    page.remove_listener("console", on_console)
    return Sample(profile, cache, round(elapsed, 3), _timer(messages, "studyToFirstImage"),
                  _timer(messages, "scriptToView"), mb_down)


def run(runs: int, slow_runs: int) -> list[Sample]:
    from playwright.sync_api import sync_playwright

    if not (BUILD_DIR / "index.html").is_file():
        raise SystemExit("OHIF is not built: run `make web` first")
    server = CloudfilmServer(label="bench-ohif")
    link: ShapedLink | None = None
    samples: list[Sample] = []
    try:
        server.cli("demo", "--patients", "1", "--slices", "80")
        server.start()
        logins = server.cli("demo-logins")
        password = next(line.split()[2] for line in logins.splitlines()
                        if len(line.split()) == 3 and line.split()[1] == LOGIN)
        truth = json.loads((server.data / "demo-truth.json").read_text())
        path = ohif_url(truth["patients"][0]["studies"][-1]["study_uid"])
        link = ShapedLink(server.port, SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_RTT_MS).start()
        proxied = f"http://127.0.0.1:{link.port}"
        profiles = [  # name, repetitions, base URL, DevTools conditions, shaping proxy, timeout
            ("loopback", runs, server.base, None, None, 120),
            (f"{SLOW_NAME} (proxy)", slow_runs, proxied, None, link, 600),
            (f"{SLOW_NAME} (DevTools)", slow_runs, server.base, DEVTOOLS_SLOW, None, 600),
        ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 headless=True, args=["--no-sandbox"])
            try:
                for profile, count, base, conditions, shaper, timeout in profiles:
                    for _ in range(count):
                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        login(context, base, LOGIN, password)
                        page = context.new_page()
                        cdp = context.new_cdp_session(page)
                        cdp.send("Network.enable")
                        if conditions is not None:
                            cdp.send("Network.emulateNetworkConditions", conditions)
                        for cache in ("cold", "warm"):
                            sample = _measure(page, cdp, f"{base}{path}", profile, cache,
                                              timeout, shaper)
                            down = f", {sample.mb_down:.1f} MB down" if sample.mb_down else ""
                            print(f"  {profile:36} {cache:5} first image "
                                  f"{sample.first_image_s:7.2f} s{down}", flush=True)
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
            ohif = [s.ohif_study_to_first_image_ms for s in picked
                    if s.ohif_study_to_first_image_ms is not None]
            down = [s.mb_down for s in picked if s.mb_down is not None]
            rows.append({"profile": profile, "cache": cache, "runs": len(picked),
                         "first_image_median_s":
                             round(median([s.first_image_s for s in picked]), 2),
                         "first_image_max_s": round(max(s.first_image_s for s in picked), 2),
                         "ohif_study_to_first_image_median_ms":
                             round(median(ohif), 0) if ohif else None,
                         "mb_down_median": round(median(down), 2) if down else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="loopback repetitions (default 3)")
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="slow-link repetitions (default 1; each cold run downloads ~6 MB)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ohif.json")
    args = parser.parse_args(argv)
    samples = run(args.runs, args.slow_runs)
    rows = summarize(samples)
    print(f"\n{'profile':36} {'cache':5} {'runs':>4} {'first image: median':>20} {'max':>8} "
          f"{'OHIF studyToFirstImage':>23} {'MB down':>8}")
    for row in rows:
        ohif = row["ohif_study_to_first_image_median_ms"]
        down = row["mb_down_median"]
        print(f"{row['profile']:36} {row['cache']:5} {row['runs']:>4} "
              f"{row['first_image_median_s']:>18.2f} s {row['first_image_max_s']:>6.2f} s "
              f"{(f'{ohif:.0f} ms' if ohif is not None else '-'):>23} "
              f"{(f'{down:.1f}' if down is not None else '-'):>8}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "samples": [asdict(s) for s in samples],
                                     "slow_link": {"down_bps": SLOW_BPS_DOWN,
                                                   "up_bps": SLOW_BPS_UP,
                                                   "rtt_ms": SLOW_RTT_MS}}, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
