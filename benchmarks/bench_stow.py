"""STOW-RS ingest: 512×512 16-bit CT instances, explicit VR LE, 50 per request.

Each batch body is built once and POSTed to both servers (cloudfilm at
/dicomweb/studies, Orthanc at /dicom-web/studies), alternating which goes first,
by one client, one request at a time. A batch's time is the client-side wall
time from sending the request to receiving the whole response (which for both
servers means every instance is durably stored and indexed).

A second, informational measure sends the same kind of batches from CLIENTS clients at
once (what several modalities or a migration do; cloudfilm's group commit covers their
requests together). cloudfilm's peak RSS is sampled throughout.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil

from benchmarks.common import Context, Row, median, multipart_body, p5, p95, stow_post
from benchmarks.data import SeriesSpec, ct_instance
from benchmarks.pair import server_pair

NAME = "stow"
BATCH = 50
CLIENTS = 4
METHOD = f"""\
**STOW-RS ingest.** Batches of {BATCH} CT Image Storage instances (512×512, 16-bit signed,
explicit VR little endian, ~525 kB each, CT-like pixels) are generated with pydicom + numpy;
each multipart/related body is built once and POSTed to both servers (cloudfilm
`/dicomweb/studies`, Orthanc `/dicom-web/studies`), alternating which server goes first,
by one httpx client, sequentially. Time = client wall time per request (both servers answer
only after the instances are stored; both fsync: cloudfilm by design, Orthanc with its default
`SyncStorageArea: true`). One untimed warm-up batch first. Reported: instances/s per batch,
median and p5 (the slow tail, i.e. the p95 batch time), plus the aggregate. Then, for
information, {CLIENTS} clients at once, each POSTing its own prebuilt batches (one server at
a time, order alternating per round); rate = all instances ÷ wall time of the round.
cloudfilm's RSS is sampled every 50 ms throughout; its peak is in the notes."""


def _batches(quick: bool) -> int:
    return 4 if quick else 16


class PeakRss:
    """The highest RSS of a process, sampled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1e6


def _concurrent_rounds(urls: dict[str, str], auth: dict[str, dict[str, str]], rounds: int,
                       rng: np.random.Generator, ctx: Context) -> dict[str, list[float]]:
    """Each round: CLIENTS clients POST one fresh batch each to one server at once, then to
    the other (order alternating); instances/s of each server per round."""
    rates: dict[str, list[float]] = {name: [] for name in urls}
    for r in range(rounds):
        bodies = []
        for c in range(CLIENTS):
            spec = SeriesSpec.new(f"stow-par{r}-{c}")
            bodies.append(multipart_body(ct_instance(spec, n, rng)[1] for n in range(1, BATCH + 1)))
        order = list(urls) if r % 2 == 0 else list(urls)[::-1]
        for name in order:
            def post(body: tuple[bytes, str], name: str = name) -> None:
                with httpx.Client(timeout=600) as client:
                    stow_post(client, urls[name], *body, BATCH, auth[name])

            started = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(post, bodies))
            rates[name].append(CLIENTS * BATCH / (time.perf_counter() - started))
        ctx.say(f"stow {CLIENTS} clients round {r + 1}/{rounds}: "
                + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in urls))
    return rates


def run(ctx: Context) -> list[Row]:
    batches = _batches(ctx.quick)
    rng = np.random.default_rng(7)
    times: dict[str, list[float]] = {"cloudfilm": [], "Orthanc": []}
    with server_pair(ctx, "stow") as pair, httpx.Client(timeout=600) as client:
        assert pair.cloudfilm.process is not None
        rss = PeakRss(pair.cloudfilm.process.pid)
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
        parallel = _concurrent_rounds(urls, auth, 2 if ctx.quick else 4, rng, ctx)
        peak_mb = rss.stop()
    return [_sequential_row(times, batches, peak_mb), _parallel_row(parallel)]


def _sequential_row(times: dict[str, list[float]], batches: int, peak_mb: float) -> Row:
    rates = {k: [BATCH / t for t in v] for k, v in times.items()}
    cf, orth = median(rates["cloudfilm"]), median(rates["Orthanc"])
    ratio = cf / orth
    detail: dict[str, object] = {
        k: {"median_ips": median(rates[k]), "p5_ips": p5(rates[k]),
            "aggregate_ips": BATCH * len(v) / sum(v), "median_batch_s": median(v),
            "p95_batch_s": p95(v)} for k, v in times.items()
    }
    detail["instances_per_server"] = BATCH * batches
    detail["cloudfilm_peak_rss_mb"] = peak_mb
    return Row(NAME, f"STOW-RS ingest, {BATCH}×512² CT per request", "instances/s", cf, orth,
               ratio, "cloudfilm ÷ Orthanc", "≥ 2×", ratio >= 2.0, detail,
               note=f"cloudfilm's peak RSS during the STOW benchmark: {peak_mb:.0f} MB",
               cloudfilm_tail=p5(rates["cloudfilm"]), orthanc_tail=p5(rates["Orthanc"]),
               tail_label="p5", samples=batches)


def _parallel_row(rates: dict[str, list[float]]) -> Row:
    cf, orth = median(rates["cloudfilm"]), median(rates["Orthanc"])
    return Row(NAME, f"STOW-RS ingest, {CLIENTS} clients at once, {BATCH}×512² CT per request "
               "(info)", "instances/s", cf, orth, cf / orth, "cloudfilm ÷ Orthanc", "– (info)",
               None, {"cloudfilm_ips": rates["cloudfilm"], "orthanc_ips": rates["Orthanc"]},
               cloudfilm_tail=min(rates["cloudfilm"]), orthanc_tail=min(rates["Orthanc"]),
               tail_label="min", samples=len(rates["cloudfilm"]))
