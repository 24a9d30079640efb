"""WADO-RS frames, one at a time: frame 1 of each of the 300 instances, sequentially."""

from __future__ import annotations

import httpx

from benchmarks.common import FRAME_ACCEPT, Context, Row, check_ok, curl_sequential, drop_page_cache, median, p95

NAME = "frames"
TARGET_MS = 3.0
FRAME_BYTES = 512 * 512 * 2
METHOD = f"""\
**One frame at a time.** `GET …/instances/I/frames/1` for each of the 300 instances of the
stored CT series in order, one request at a time on one kept-alive curl connection, with
`Accept: {FRAME_ACCEPT}` (uncompressed 512×512×16-bit frames, 524 288 bytes each, sent as
stored by both servers). One untimed pass over the series (so the files are in the page
cache), then timed passes (alternating which server goes first); time per frame = curl
`time_total` of each request. The target is on cloudfilm's median ms/frame with a warm page
cache; Orthanc's `/dicom-web` frames endpoint is measured the same way for the ratio. An extra,
informational row repeats one pass after `drop_caches` (frames read from disk)."""

SERVERS = ["cloudfilm", "Orthanc"]


def _check(url: str, server: str, auth: dict[str, str]) -> None:
    response = httpx.get(url, headers={"Accept": FRAME_ACCEPT, "Accept-Encoding": "identity",
                                       **auth}, timeout=60)
    ctype = response.headers.get("content-type", "")
    if response.status_code != 200 or not ctype.startswith("multipart/related"):
        raise RuntimeError(f"{server} frames: HTTP {response.status_code} {ctype}: {response.text[:300]}")
    if len(response.content) < FRAME_BYTES:
        raise RuntimeError(f"{server} frames: body of {len(response.content)} bytes is too short")


def run(ctx: Context, fixture) -> tuple[list[Row], dict]:
    series = fixture.series[0]
    urls = {s: [f"{fixture.dicomweb(s)}{series.path()}/instances/{uid}/frames/1"
                for uid in series.sop_uids] for s in SERVERS}
    auth = {s: fixture.auth_headers(s) for s in SERVERS}
    for server in SERVERS:
        _check(urls[server][0], server, auth[server])
        check_ok(curl_sequential(urls[server], FRAME_ACCEPT, headers=auth[server]),
                 f"{server} frames")
    passes = 1 if ctx.quick else 3
    samples: dict[str, list[float]] = {s: [] for s in SERVERS}
    walls: dict[str, list[float]] = {s: [] for s in SERVERS}
    for p in range(passes):
        for server in (SERVERS if p % 2 == 0 else SERVERS[::-1]):
            transfers = curl_sequential(urls[server], FRAME_ACCEPT, headers=auth[server])
            check_ok(transfers, f"{server} frames")
            samples[server] += [t.seconds * 1000 for t in transfers]
            walls[server].append(sum(t.seconds for t in transfers) * 1000 / len(transfers))
        ctx.say(f"frames pass {p + 1}/{passes}: " + ", ".join(
            f"{s} {walls[s][-1]:.2f} ms/frame" for s in SERVERS))
    cf, orth = median(samples["cloudfilm"]), median(samples["Orthanc"])
    mean = {s: sum(v) / len(v) for s, v in samples.items()}
    row = Row(NAME, "one frame at a time, sequential (512² 16-bit)", "ms", cf, orth, cf / orth,
              "cloudfilm ÷ Orthanc", f"≤ {TARGET_MS:g} ms/frame", cf <= TARGET_MS,
              {"mean_ms": mean, "passes": passes},
              cloudfilm_tail=p95(samples["cloudfilm"]), orthanc_tail=p95(samples["Orthanc"]),
              samples=len(samples["cloudfilm"]))
    extra = {"frames per pass": len(series.sop_uids), "passes": passes,
             "mean ms/frame (warm)": ", ".join(f"{s} {m:.2f}" for s, m in mean.items())}
    rows = [row]
    cold: dict[str, list[float]] = {s: [] for s in SERVERS}
    for server in SERVERS:
        if not drop_page_cache():
            extra["page cache dropped"] = "not allowed here (cold row skipped)"
            return rows, extra
        transfers = curl_sequential(urls[server], FRAME_ACCEPT, headers=auth[server])
        check_ok(transfers, f"{server} frames")
        cold[server] = [t.seconds * 1000 for t in transfers]
    cf, orth = median(cold["cloudfilm"]), median(cold["Orthanc"])
    rows.append(Row(NAME, "one frame at a time, page cache dropped (info)", "ms", cf, orth, cf / orth,
                    "cloudfilm ÷ Orthanc", "– (info)", None, {"ms": cold},
                    cloudfilm_tail=p95(cold["cloudfilm"]), orthanc_tail=p95(cold["Orthanc"]),
                    samples=len(cold["cloudfilm"])))
    ctx.say(f"frames, page cache dropped: cloudfilm {cf:.2f} ms, Orthanc {orth:.2f} ms (median)")
    return rows, extra
