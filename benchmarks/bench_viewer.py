"""cloudfilm's patient viewer (/view/{study}) and OHIF (/ohif/) side by side in headless
Chromium: how soon a patient sees their CT, and how long until every slice is in memory,
at preview and at full quality (issue 5).

    .venv/bin/python benchmarks/bench_viewer.py [--slices 300] [--runs 2] [--slow-runs 1]
                                                [--slow-limit 420] [--warm-limit 60]
                                                [--no-ohif] [--json PATH]

Starts one ``cloudfilm serve`` over fresh demo data (one patient; CT series of ``--slices``
512×512 16-bit slices, 512 KB each, stored uncompressed). Both viewers open the same study
(the newest CT), one after the other within each repetition, so machine load hits both.
cloudfilm's viewer is opened by the demo patient; OHIF (for physicians and staff) by the
demo admin. Measured from the start of navigation, from the viewer's performance marks:

- **preview**: the study's server-rendered 256 px JPEG is on screen (the viewer's small
  first script shows it before loading Cornerstone);
- **interactive**: a canvas the patient can scroll and window shows the slice (cloudfilm:
  the first script's own viewer, frontend/viewer/src/quickview.ts, drawing the lossy HTJ2K
  preview before Cornerstone has loaded; OHIF: its first image);
- **first image**: Cornerstone drew the slice (cloudfilm: its lossy HTJ2K preview, where
  it takes over from the first viewer);
- **first full**: the slice on screen is at full quality (lossless HTJ2K);
- **all preview** / **all full**: every slice is in memory as a preview / at full quality.

OHIF (benchmarks/bench_ohif.py's ``measure``) fetches frames as stored (uncompressed), so
its first image and its "all slices" are full quality.

Profiles: loopback, and the slow link (1.6 Mbit/s down, 750 kbit/s up, 150 ms RTT) through
benchmarks/browser_link.py's ShapedLink, which shapes every byte (OHIF's workers too).
Each runs cold (HTTP cache cleared) then warm (navigated again: hashed bundles cached).
A slow cold run stops ``--slow-limit`` s after the first image, a slow warm run
``--warm-limit`` s after it, and projects what is missing from the load rate so far
(``0``: wait for everything).

First, without a browser, the cost of round trips (``--no-transport`` skips it): the 300
lossy previews fetched by one series pixel data request (PS3.18 §10.4.1.1.6) against 300
single-frame requests over 6 kept-alive connections (a browser's limit per host), by httpx,
on both profiles.

Needs ``make web`` and Debian's chromium (Playwright downloads nothing). Results print as
tables (with cloudfilm ÷ OHIF ratios) and go to benchmarks/results/viewer.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_ohif
from benchmarks.browser_link import (
    SLOW_BPS_DOWN,
    SLOW_BPS_UP,
    SLOW_NAME,
    SLOW_RTT_MS,
    ShapedLink,
    login,
)
from benchmarks.cloudfilm_server import CloudfilmServer
from benchmarks.common import ROOT, LoadMonitor, machine_info, median
from cloudfilm.web import ohif
from cloudfilm.web.viewer import BUILD_DIR

LOGIN = "demo-patient"
STALL_S = 60.0


@dataclass
class Sample:
    profile: str
    cache: str
    preview_s: float | None
    interactive_s: float | None
    first_image_s: float | None
    first_full_s: float | None
    all_preview_s: float | None
    all_full_s: float | None              # measured (None if stopped first)
    all_full_projected_s: float | None    # from the full-quality rate, when stopped first
    full_loaded: int
    slices: int
    mb_down: float | None                 # through the shaping proxy (slow profile)


@dataclass(frozen=True)
class Profile:
    name: str
    base: str
    link: ShapedLink | None
    timeout: float
    limit: dict[str, float]  # cache → seconds after the first image (0: no limit)


def _marks(page: Any) -> dict[str, float]:
    """The viewer's performance marks (cf-<what>-left), in seconds since navigation start."""
    found = page.evaluate(
        "() => performance.getEntriesByType('mark').filter(m => m.name.startsWith('cf-'))"
        ".map(m => [m.name, m.startTime])")
    marks: dict[str, float] = {}
    for name, t in found:
        if name.endswith("-left"):
            key = name.removeprefix("cf-").removesuffix("-left")
            marks[key] = min(marks.get(key, t / 1000), t / 1000)
    return marks


def _full_count(page: Any) -> tuple[int, int]:
    state = page.evaluate("() => { const v = window.cloudfilmViewer; return v && v.ready "
                          "? [v.counts('left').full, v.count('left')] : [0, 0]; }")
    return int(state[0]), int(state[1])


def measure(page: Any, cdp: Any, url: str, profile: Profile, cache: str) -> Sample:
    page.goto("about:blank")  # the previous visit's requests end before this one starts
    page.wait_for_timeout(1000)
    if cache == "cold":
        cdp.send("Network.clearBrowserCache")
    down_before = profile.link.bytes_down if profile.link else 0
    start = time.monotonic()
    page.goto(url, wait_until="commit")
    limit = profile.limit[cache]
    full, progress_at = 0, time.monotonic()
    while True:
        page.wait_for_timeout(100)
        marks = _marks(page)
        now = time.monotonic()
        if "all-full" in marks:
            break
        if "first-image" not in marks:
            if now - start > profile.timeout:
                raise RuntimeError(f"{profile.name}/{cache}: no image within {profile.timeout} s")
            continue
        count, _ = _full_count(page)
        if count > full:
            full, progress_at = count, now
        if (limit and now - start - marks["first-image"] > limit) or now - progress_at > STALL_S:
            break
    full, slices = _full_count(page)
    elapsed = time.monotonic() - start
    projected = None
    if "all-full" not in marks and "first-full" in marks and full > 1:
        rate = (full - 1) / max(1e-3, elapsed - marks["first-full"])
        projected = round(marks["first-full"] + (slices - 1) / rate, 1)
    mb_down = round((profile.link.bytes_down - down_before) / 1e6, 2) if profile.link else None
    at = {k: _rounded(marks.get(k)) for k in ("preview", "interactive", "first-image",
                                                "first-full", "all-preview", "all-full")}
    return Sample(profile.name, cache, at["preview"], at["interactive"], at["first-image"],
                  at["first-full"], at["all-preview"], at["all-full"], projected, full, slices,
                  mb_down)


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _s(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f} s" if value is not None else "-"


def line(sample: Sample) -> str:
    every = (f"all full {_s(sample.all_full_s)}" if sample.all_full_s is not None else
             f"{sample.full_loaded}/{sample.slices} full when stopped, all full projected "
             f"{_s(sample.all_full_projected_s, 0)}")
    down = f", {sample.mb_down:.1f} MB down" if sample.mb_down is not None else ""
    return (f"preview {_s(sample.preview_s)}, interactive {_s(sample.interactive_s)}, "
            f"first image {_s(sample.first_image_s)}, first full "
            f"{_s(sample.first_full_s)}, all preview {_s(sample.all_preview_s)}, {every}{down}")


VIEWPORT = {"width": 1280, "height": 800}


def _session(browser: Any, base: str, username: str, password: str) -> tuple[Any, Any, Any]:
    """A new browser context signed in as ``username``: (context, page, CDP session)."""
    context = browser.new_context(viewport=VIEWPORT)
    login(context, base, username, password)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    return context, page, cdp


def _cloudfilm_visits(browser: Any, profile: Profile, study: str, password: str) -> list[Sample]:
    context, page, cdp = _session(browser, profile.base, LOGIN, password)
    samples = []
    for cache in ("cold", "warm"):
        sample = measure(page, cdp, f"{profile.base}/view/{study}", profile, cache)
        print(f"  cloudfilm {profile.name:28} {cache:5} {line(sample)}", flush=True)
        samples.append(sample)
    context.close()
    return samples


def _ohif_visits(browser: Any, profile: Profile, study: str, series: str, slices: int,
                 password: str) -> list[bench_ohif.Sample]:
    context, page, cdp = _session(browser, profile.base, bench_ohif.LOGIN, password)
    samples = []
    for cache in ("cold", "warm"):
        sample = bench_ohif.measure(
            page, cdp, f"{profile.base}{ohif.ohif_url(study)}", profile.name, cache,
            series=series, slices=slices, timeout=profile.timeout, limit=profile.limit[cache],
            link=profile.link)
        print(f"  OHIF      {profile.name:28} {cache:5} {bench_ohif.line(sample)}", flush=True)
        samples.append(sample)
    context.close()
    return samples


PREVIEW_ACCEPT = 'multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.203'


def transport(server: CloudfilmServer, base: str, study: str, series: str) -> dict[str, float]:
    """Seconds to fetch every lossy preview: one series request vs one request per frame."""
    import concurrent.futures

    import httpx

    path = f"{base}/dicomweb/studies/{study}/series/{series}"
    headers = server.auth_headers | {"Accept": PREVIEW_ACCEPT}
    with httpx.Client(headers=server.auth_headers, timeout=600) as http:
        sops = [m["00080018"]["Value"][0] for m in http.get(f"{path}/metadata").json()]
        start = time.monotonic()
        one = http.get(f"{path}/pixeldata", headers=headers)
        series_s = time.monotonic() - start
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=6)
    with httpx.Client(headers=headers, timeout=600, limits=limits) as http:
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            sizes = list(pool.map(lambda sop: len(http.get(
                f"{path}/instances/{sop}/frames/1").content), sops))
        frames_s = time.monotonic() - start
    costs = {"frames": len(sops), "series_request_s": round(series_s, 2),
             "series_request_mb": round(len(one.content) / 1e6, 2),
             "frame_requests_s": round(frames_s, 2),
             "frame_requests_mb": round(sum(sizes) / 1e6, 2)}
    print(f"  previews by httpx via {base}: one series request {series_s:.2f} s, "
          f"{len(sops)} frame requests over 6 connections {frames_s:.2f} s", flush=True)
    return costs


def run(args: argparse.Namespace) -> tuple[list[Sample], list[bench_ohif.Sample], dict[str, Any]]:
    """Both viewers, each profile, ``runs`` times: cloudfilm then OHIF within a repetition."""
    from playwright.sync_api import sync_playwright

    if not (BUILD_DIR / "index.html").is_file():
        raise SystemExit("the viewer is not built: run `make web` first")
    with_ohif = args.ohif and (ohif.BUILD_DIR / "index.html").is_file()
    server = CloudfilmServer(label="bench-viewer")
    link: ShapedLink | None = None
    ours: list[Sample] = []
    theirs: list[bench_ohif.Sample] = []
    transports: dict[str, dict[str, float]] = {}
    try:
        print(f"generating demo data ({args.slices} slices per CT)…", flush=True)
        server.cli("demo", "--patients", "1", "--slices", str(args.slices))
        server.start()
        passwords = {u: bench_ohif.password_of(server, u) for u in (LOGIN, bench_ohif.LOGIN)}
        study, series = bench_ohif.study_and_series(server)
        link = ShapedLink(server.port, SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_RTT_MS).start()
        profiles = [
            (Profile("loopback", server.base, None, 120, {"cold": 0, "warm": 0}), args.runs),
            (Profile(f"{SLOW_NAME} (proxy)", f"http://127.0.0.1:{link.port}", link, 600,
                     {"cold": args.slow_limit, "warm": args.warm_limit}), args.slow_runs),
        ]
        load = LoadMonitor()
        if args.transport:
            transports = {p.name: transport(server, p.base, study, series) for p, _ in profiles}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 headless=True, args=["--no-sandbox"])
            try:
                for profile, repetitions in profiles:
                    for _ in range(repetitions):
                        ours += _cloudfilm_visits(browser, profile, study, passwords[LOGIN])
                        if with_ohif:
                            theirs += _ohif_visits(browser, profile, study, series, args.slices,
                                                   passwords[bench_ohif.LOGIN])
            finally:
                browser.close()
        meta = {"load_average": load.stop(), "machine": machine_info(), "transport": transports,
                "bundle": bundle_sizes(),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    finally:
        if link is not None:
            link.stop()
        server.cleanup()
    return ours, theirs, meta


def _sent(path: Path) -> int:
    """Bytes on the wire: the brotli twin, else the gzip twin, else the file (build.sh)."""
    twins = (path.with_name(path.name + ".br"), path.with_name(path.name + ".gz"), path)
    return next(p for p in twins if p.is_file()).stat().st_size


def _with_imports(first: Path) -> list[Path]:
    """A chunk and the chunks it imports statically (what the browser fetches before it runs)."""
    found, todo = [first], [first]
    while todo:
        for name in re.findall(r'from"\./([^"]+\.js)"', todo.pop().read_text()):
            path = first.parent / name
            if path not in found:
                found.append(path)
                todo.append(path)
    return found


def bundle_sizes() -> dict[str, dict[str, Any]]:
    """What each step of the viewer costs on the wire (KB as sent): the first script (frame,
    preview JPEG), the first viewer (its chunks and the HTJ2K codec: what "interactive"
    waits for), and Cornerstone (its app chunk and its own chunks, then the decode worker)."""
    assets = BUILD_DIR / "assets"

    def one(pattern: str) -> list[Path]:
        return sorted(assets.glob(pattern))[:1]

    entry = one("index-*.js")
    parts = {
        "first_script": entry + one("index-*.css"),
        "first_viewer": [p for q in one("quickstart-*.js") for p in _with_imports(q)
                         if p not in entry] + one("openjphjs-*.wasm"),
        "cornerstone": [p for q in one("app-*.js") for p in _with_imports(q) if p not in entry]
        + one("decodeImageFrameWorker-*.js"),
    }
    return {name: {"files": [p.name for p in paths],
                   "sent_kb": round(sum(_sent(p) for p in paths) / 1024, 1)}
            for name, paths in parts.items() if paths}


def _mid(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(median(present), 2) if present else None


def summarize(ours: list[Sample], theirs: list[bench_ohif.Sample]) -> list[dict[str, Any]]:
    """One row per profile and cache: medians of both viewers and cloudfilm ÷ OHIF."""
    rows = []
    for profile in dict.fromkeys(s.profile for s in ours):
        for cache in ("cold", "warm"):
            cf = [s for s in ours if s.profile == profile and s.cache == cache]
            oh = [s for s in theirs if s.profile == profile and s.cache == cache]
            if not cf:
                continue
            row: dict[str, Any] = {"profile": profile, "cache": cache, "runs": len(cf),
                                   "slices": cf[0].slices}
            for key in ("preview_s", "interactive_s", "first_image_s", "first_full_s",
                        "all_preview_s",
                        "all_full_s", "all_full_projected_s", "mb_down"):
                row[f"cloudfilm_{key}"] = _mid([getattr(s, key) for s in cf])
            row["ohif_first_image_s"] = _mid([s.first_image_s for s in oh])
            row["ohif_all_slices_s"] = _mid([s.all_slices_s for s in oh])
            row["ohif_all_slices_projected_s"] = _mid([s.all_slices_projected_s for s in oh])
            row["ohif_slices_loaded"] = _mid([float(s.slices_loaded) for s in oh])
            row["ohif_mb_down"] = _mid([s.mb_down for s in oh])
            rows.append(row | _ratios(row))
    return rows


def _ratios(row: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    ohif_all = row["ohif_all_slices_s"] or row["ohif_all_slices_projected_s"]
    cf_full = row["cloudfilm_all_full_s"] or row["cloudfilm_all_full_projected_s"]
    return {"ratio_interactive": ratio(row["cloudfilm_interactive_s"], row["ohif_first_image_s"]),
            "ratio_first_image": ratio(row["cloudfilm_first_image_s"], row["ohif_first_image_s"]),
            "ratio_first_full": ratio(row["cloudfilm_first_full_s"], row["ohif_first_image_s"]),
            "ratio_all_preview": ratio(row["cloudfilm_all_preview_s"], ohif_all),
            "ratio_all_full": ratio(cf_full, ohif_all)}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'profile':28} {'cache':5} {'preview':>8} {'interact':>8} {'first':>8} "
          f"{'1st full':>9} {'all prev':>9} {'all full':>10} | {'OHIF 1st':>9} {'OHIF all':>10} "
          f"| {'÷ inter':>7} {'÷ first':>7} {'÷ all':>6}")
    for r in rows:
        full = _s(r["cloudfilm_all_full_s"], 1) if r["cloudfilm_all_full_s"] is not None \
            else f"~{_s(r['cloudfilm_all_full_projected_s'], 0)}"
        every = _s(r["ohif_all_slices_s"], 1) if r["ohif_all_slices_s"] is not None \
            else f"~{_s(r['ohif_all_slices_projected_s'], 0)}"
        print(f"{r['profile']:28} {r['cache']:5} {_s(r['cloudfilm_preview_s']):>8} "
              f"{_s(r['cloudfilm_interactive_s']):>8} "
              f"{_s(r['cloudfilm_first_image_s']):>8} {_s(r['cloudfilm_first_full_s']):>9} "
              f"{_s(r['cloudfilm_all_preview_s'], 1):>9} {full:>10} | "
              f"{_s(r['ohif_first_image_s']):>9} {every:>10} | "
              f"{r['ratio_interactive'] or '-':>7} {r['ratio_first_image'] or '-':>7} "
              f"{r['ratio_all_preview'] or '-':>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300, help="slices per CT (default 300)")
    parser.add_argument("--runs", type=int, default=2, help="loopback repetitions (default 2)")
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="slow-link repetitions (default 1)")
    parser.add_argument("--slow-limit", type=float, default=420,
                        help="stop a cold slow run this many seconds after the first image "
                             "(0: wait for every slice at full quality; default 420)")
    parser.add_argument("--warm-limit", type=float, default=60,
                        help="the same for warm slow runs (default 60)")
    parser.add_argument("--no-ohif", dest="ohif", action="store_false",
                        help="cloudfilm's viewer only")
    parser.add_argument("--no-transport", dest="transport", action="store_false",
                        help="skip the series-request vs frame-requests comparison")
    parser.add_argument("--json", type=Path,
                        default=ROOT / "benchmarks" / "results" / "viewer.json")
    args = parser.parse_args(argv)
    ours, theirs, meta = run(args)
    rows = summarize(ours, theirs)
    print_table(rows)
    print(f"\nload average during the run: {meta['load_average']}")
    print("bundle as sent: " + ", ".join(f"{name} {part['sent_kb']:.0f} KB ({', '.join(part['files'])})"
                                         for name, part in meta["bundle"].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "rows": rows, "cloudfilm": [asdict(s) for s in ours], "ohif": [asdict(s) for s in theirs],
        "slow_link": {"down_bps": SLOW_BPS_DOWN, "up_bps": SLOW_BPS_UP, "rtt_ms": SLOW_RTT_MS},
        **meta}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
