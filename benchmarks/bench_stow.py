"""STOW-RS ingest: 512×512 16-bit CT instances, explicit VR LE, 50 per request.

Each batch body is built once and POSTed to both servers (cloudfilm at
/dicomweb/studies, Orthanc at /dicom-web/studies), alternating which goes first,
by one client, one request at a time. A batch's time is the client-side wall
time from sending the request to receiving the whole response (which for both
servers means every instance is durably stored and indexed).
"""

from __future__ import annotations

import httpx
import numpy as np

from benchmarks.common import Context, Row, median, multipart_body, p5, p95, stow_post
from benchmarks.data import SeriesSpec, ct_instance
from benchmarks.pair import server_pair

NAME = "stow"
BATCH = 50
METHOD = f"""\
**STOW-RS ingest.** Batches of {BATCH} CT Image Storage instances (512×512, 16-bit signed,
explicit VR little endian, ~525 kB each, CT-like pixels) are generated with pydicom + numpy;
each multipart/related body is built once and POSTed to both servers (cloudfilm
`/dicomweb/studies`, Orthanc `/dicom-web/studies`), alternating which server goes first,
by one httpx client, sequentially. Time = client wall time per request (both servers answer
only after the instances are stored; both fsync: cloudfilm by design, Orthanc with its default
`SyncStorageArea: true`). One untimed warm-up batch first. Reported: instances/s per batch,
median and p5 (the slow tail, i.e. the p95 batch time), plus the aggregate."""


def _batches(quick: bool) -> int:
    return 4 if quick else 16


def run(ctx: Context) -> list[Row]:
    batches = _batches(ctx.quick)
    rng = np.random.default_rng(7)
    times: dict[str, list[float]] = {"cloudfilm": [], "Orthanc": []}
    with server_pair(ctx, "stow") as pair, httpx.Client(timeout=600) as client:
        urls = {"cloudfilm": f"{pair.cloudfilm.dicomweb}/studies",
                "Orthanc": f"{pair.orthanc.dicomweb}/studies"}
        auth = {"cloudfilm": pair.cloudfilm.auth_headers, "Orthanc": pair.orthanc.auth_headers}
        warm = SeriesSpec.new("stow-warmup")
        body, ctype = multipart_body(ct_instance(warm, n, rng)[1] for n in range(1, 6))
        for name, url in urls.items():
            stow_post(client, url, body, ctype, 5, auth[name])
        spec = SeriesSpec.new("stow")
        for b in range(batches):
            if b % 4 == 0:
                spec = SeriesSpec.new(f"stow{b // 4}")
            parts = [ct_instance(spec, b % 4 * BATCH + n, rng)[1] for n in range(1, BATCH + 1)]
            body, ctype = multipart_body(parts)
            order = ["cloudfilm", "Orthanc"] if b % 2 == 0 else ["Orthanc", "cloudfilm"]
            for name in order:
                times[name].append(stow_post(client, urls[name], body, ctype, BATCH, auth[name]))
            ctx.say(f"stow batch {b + 1}/{batches}: cloudfilm {BATCH / times['cloudfilm'][-1]:.0f}/s, "
                    f"Orthanc {BATCH / times['Orthanc'][-1]:.0f}/s ({len(body) / 1e6:.1f} MB)")
    rates = {k: [BATCH / t for t in v] for k, v in times.items()}
    cf, orth = median(rates["cloudfilm"]), median(rates["Orthanc"])
    ratio = cf / orth
    detail = {
        k: {"median_ips": median(rates[k]), "p5_ips": p5(rates[k]),
            "aggregate_ips": BATCH * len(v) / sum(v), "median_batch_s": median(v),
            "p95_batch_s": p95(v)} for k, v in times.items()
    }
    detail["instances_per_server"] = BATCH * batches
    return [Row(NAME, f"STOW-RS ingest, {BATCH}×512² CT per request", "instances/s", cf, orth,
                ratio, "cloudfilm ÷ Orthanc", "≥ 2×", ratio >= 2.0, detail,
                cloudfilm_tail=p5(rates["cloudfilm"]), orthanc_tail=p5(rates["Orthanc"]),
                tail_label="p5", samples=batches)]
