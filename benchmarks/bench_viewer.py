"""The Cornerstone3D patient viewer (/view/{study}) in headless Chromium: how soon a patient
sees their CT, and how long until every slice is in memory.

    .venv/bin/python benchmarks/bench_viewer.py [--slices 300] [--runs 2] [--slow-limit 90]
                                                [--proxy] [--json PATH]

Starts its own ``cloudfilm serve`` over fresh demo data (one patient; CT series of
``--slices`` 512×512 slices, 512 KB each, uncompressed as the demo stores them), logs in
as the demo patient through the login form, opens the newest CT in the viewer and reads the
viewer's own performance marks (time from the start of navigation):

- **preview**: the study's server-rendered 256 px thumbnail is on screen (the viewer's small
  first script shows it before it loads Cornerstone);
- **first image**: the first full-quality frame is drawn by Cornerstone;
- **all slices**: every frame of the series is loaded (stack prefetch, nearest first).

Profiles: loopback (no shaping), and 1.6 Mbit/s down / 150 ms RTT via Chrome DevTools
``Network.emulateNetworkConditions`` (this viewer fetches metadata and frames on the page's
main thread, so DevTools shapes all of them; only decoding runs in workers). ``--proxy``
adds the same link as a shaping TCP proxy (benchmarks/browser_link.py's ShapedLink), which
also shapes anything a worker would fetch. Each profile runs cold (new context, empty HTTP
cache) and warm (opened again: the hashed bundles come from the cache).

At 1.6 Mbit/s the whole 300-slice series (~157 MB) takes about 13 minutes; by default a
slow run stops ``--slow-limit`` seconds after the first image and reports the slices loaded
so far and a projection from the rate so far (``--slow-limit 0`` waits for all of them).

Needs ``make web`` and Debian's chromium (Playwright downloads nothing). Results print as a
table and go to benchmarks/results/viewer.json.
"""

from __future__ import annotations

import argparse
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
from cloudfilm.web.viewer import BUILD_DIR  # noqa: E402

LOGIN = "demo-patient"
MARKS = ("preview", "first-image", "all-loaded")


@dataclass
class Sample:
    profile: str
    cache: str
    preview_s: float | None
    first_image_s: float | None
    all_slices_s: float | None       # measured (None if stopped early)
    all_slices_projected_s: float | None  # from the load rate, when stopped early
    slices_loaded: int
    slices: int
    mb_down: float                   # bytes the page received (DevTools encodedDataLength)


class Bytes:
    """Bytes received by the page (``Network.loadingFinished``), from DevTools."""

    def __init__(self, cdp: Any) -> None:
        self.total = 0
        cdp.on("Network.loadingFinished", self._finished)

    def _finished(self, event: dict[str, Any]) -> None:
        self.total += int(event.get("encodedDataLength", 0))


def _marks(page: Any) -> dict[str, float]:
    """The viewer's performance marks (cf-<what>-left), in seconds since navigation start."""
    found = page.evaluate(
        "() => performance.getEntriesByType('mark').filter(m => m.name.startsWith('cf-'))"
        ".map(m => [m.name, m.startTime])")
    marks: dict[str, float] = {}
    for name, t in found:
        key = name.removeprefix("cf-").removesuffix("-left")
        marks[key] = min(marks.get(key, t / 1000), t / 1000)
    return marks


def _progress(page: Any) -> tuple[int, int]:
    state = page.evaluate("() => { const v = window.cloudfilmViewer; return v && v.ready "
                          "? [v.loaded('left'), v.count('left')] : [0, 0]; }")
    return int(state[0]), int(state[1])


def _measure(page: Any, cdp: Any, bytes_seen: Bytes, url: str, profile: str, cache: str,
             timeout: float, limit: float) -> Sample:
    page.goto("about:blank")  # the previous visit's requests end before this one starts
    page.wait_for_timeout(1000)
    if cache == "cold":
        cdp.send("Network.clearBrowserCache")
    before = bytes_seen.total
    start = time.monotonic()
    page.goto(url, wait_until="commit")
    first_seen: float | None = None
    while True:
        page.wait_for_timeout(100)
        marks = _marks(page)
        if "first-image" in marks and first_seen is None:
            first_seen = time.monotonic()
        if "all-loaded" in marks:
            break
        now = time.monotonic()
        if first_seen is None and now - start > timeout:
            raise RuntimeError(f"{profile}/{cache}: no image within {timeout} s")
        if first_seen is not None and limit and now - first_seen > limit:
            break
        if now - start > max(timeout, 3600):
            break
    loaded, count = _progress(page)
    elapsed = time.monotonic() - start
    projected = None
    if "all-loaded" not in marks and "first-image" in marks and loaded > 1:
        rate = (loaded - 1) / max(1e-3, elapsed - marks["first-image"])
        projected = round(marks["first-image"] + (count - 1) / rate, 1)
    return Sample(profile, cache, _rounded(marks.get("preview")), _rounded(marks.get("first-image")),
                  _rounded(marks.get("all-loaded")), projected, loaded, count,
                  round((bytes_seen.total - before) / 1e6, 2))


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def run(slices: int, runs: int, slow_runs: int, slow_limit: float, proxy: bool) -> list[Sample]:
    from playwright.sync_api import sync_playwright

    if not (BUILD_DIR / "index.html").is_file():
        raise SystemExit("the viewer is not built: run `make web` first")
    server = CloudfilmServer(label="bench-viewer")
    link = None
    samples: list[Sample] = []
    try:
        print(f"generating demo data ({slices} slices per CT)…", flush=True)
        server.cli("demo", "--patients", "1", "--slices", str(slices))
        server.start()
        logins = server.cli("demo-logins")
        password = next(line.split()[2] for line in logins.splitlines()
                        if len(line.split()) == 3 and line.split()[1] == LOGIN)
        truth = json.loads((server.data / "demo-truth.json").read_text())
        path = f"/view/{truth['patients'][0]['studies'][-1]['study_uid']}"
        profiles: list[tuple[str, int, str, dict[str, Any] | None, float, float]] = [
            ("loopback", runs, server.base, None, 120, 0),
            (f"{SLOW_NAME} (DevTools)", slow_runs, server.base, DEVTOOLS_SLOW, 600, slow_limit),
        ]
        if proxy:

            link = ShapedLink(server.port, SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_RTT_MS).start()
            profiles.append((f"{SLOW_NAME} (proxy)", slow_runs, f"http://127.0.0.1:{link.port}",
                             None, 600, slow_limit))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 headless=True, args=["--no-sandbox"])
            try:
                for profile, count, base, conditions, timeout, limit in profiles:
                    for _ in range(count):
                        context = browser.new_context(viewport={"width": 1280, "height": 800})
                        login(context, base, LOGIN, password)
                        page = context.new_page()
                        cdp = context.new_cdp_session(page)
                        cdp.send("Network.enable")
                        bytes_seen = Bytes(cdp)
                        if conditions is not None:
                            cdp.send("Network.emulateNetworkConditions", conditions)
                        for cache in ("cold", "warm"):
                            sample = _measure(page, cdp, bytes_seen, f"{base}{path}", profile,
                                              cache, timeout, limit)
                            print(f"  {profile:34} {cache:5} {_line(sample)}", flush=True)
                            samples.append(sample)
                        context.close()
            finally:
                browser.close()
    finally:
        if link is not None:
            link.stop()
        server.cleanup()
    return samples


def _s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def _line(sample: Sample) -> str:
    if sample.all_slices_s is not None:
        every = f"all {sample.slices} slices {_s(sample.all_slices_s)}"
    else:
        every = (f"{sample.slices_loaded}/{sample.slices} slices when stopped, all projected "
                 f"{_s(sample.all_slices_projected_s)}")
    return (f"preview {_s(sample.preview_s)}, first image {_s(sample.first_image_s)}, {every}, "
            f"{sample.mb_down:.1f} MB")


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

            rows.append({
                "profile": profile, "cache": cache, "runs": len(picked),
                "slices": picked[0].slices,
                "preview_median_s": mid([s.preview_s for s in picked]),
                "first_image_median_s": mid([s.first_image_s for s in picked]),
                "all_slices_median_s": mid([s.all_slices_s for s in picked]),
                "all_slices_projected_median_s": mid([s.all_slices_projected_s for s in picked]),
                "mb_down_median": mid([s.mb_down for s in picked]),
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300, help="slices per CT (default 300)")
    parser.add_argument("--runs", type=int, default=2, help="loopback repetitions (default 2)")
    parser.add_argument("--slow-runs", type=int, default=1, help="slow-link repetitions (default 1)")
    parser.add_argument("--slow-limit", type=float, default=90,
                        help="stop a slow run this many seconds after the first image and "
                             "project the rest (0: wait for every slice; default 90)")
    parser.add_argument("--proxy", action="store_true",
                        help="also run the slow link through a shaping TCP proxy")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "viewer.json")
    args = parser.parse_args(argv)
    samples = run(args.slices, args.runs, args.slow_runs, args.slow_limit, args.proxy)
    rows = summarize(samples)
    print(f"\n{'profile':34} {'cache':5} {'runs':>4} {'preview':>9} {'first image':>12} "
          f"{'all slices':>12} {'(projected)':>12} {'MB':>7}")
    for row in rows:
        print(f"{row['profile']:34} {row['cache']:5} {row['runs']:>4} "
              f"{_s(row['preview_median_s']):>9} {_s(row['first_image_median_s']):>12} "
              f"{_s(row['all_slices_median_s']):>12} "
              f"{_s(row['all_slices_projected_median_s']):>12} {row['mb_down_median']:>7.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "samples": [asdict(s) for s in samples],
                                     "slow_link": {"down_bps": SLOW_BPS_DOWN, "up_bps": SLOW_BPS_UP,
                                                   "rtt_ms": SLOW_RTT_MS}}, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
