"""Per-request overhead of the read path (issue 14), through a Python httpx client.

    .venv/bin/python benchmarks/bench_read_overhead.py [--database sqlite|postgresql]
                                                       [--rounds 5] [--json FILE]

One cloudfilm and one Orthanc (Debian's, as in every benchmark here) receive the same
300-slice 512² CT series by STOW-RS; then, alternating which server goes first:

* frames: ``GET …/instances/I/frames/1`` for the 300 instances in order, one request at a
  time on one kept-alive httpx connection (``Accept: multipart/related;
  type="application/octet-stream"``); curl's ``time_total`` on the same URLs beside it;
* series metadata, warm: the same request repeated (httpx as it comes, so gzip; httpx with
  ``Accept-Encoding: identity``; curl, which asks for no encoding);
* series metadata, first request: right after the series was stored, and right after a
  restart of both servers.

``--cloudfilm-src DIR`` runs cloudfilm from another source tree (``git archive`` of an
earlier commit), for a before/after comparison on the same machine and load.

Every cloudfilm request carries a bearer token (benchmarks/cloudfilm_server.py), so the
token and grant checks and the view audit are part of what is measured. The 1-minute
load average is sampled during the run and printed: the machine has 2 cores and other
work shows there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_series import SeriesFixture, StoredSeries, store_series
from benchmarks.cloudfilm_server import DEFAULT_POSTGRES
from benchmarks.common import (
    FRAME_ACCEPT,
    JSON_ACCEPT,
    Context,
    LoadMonitor,
    Row,
    check_ok,
    curl_sequential,
    median,
    p95,
)
from benchmarks.pair import Pair
from benchmarks.report import console_table

NAME = "read_overhead"
SERVERS = ["cloudfilm", "Orthanc"]
FRAME_TARGET_MS = 1.5
WARM_METADATA_TARGET_MS = 6.0
WARM_REQUESTS = 30


def httpx_times(urls: list[str], headers: dict[str, str]) -> list[float]:
    """Milliseconds per request, one at a time on one kept-alive connection, body read."""
    times = []
    with httpx.Client(timeout=120, headers=headers) as client:
        for url in urls:
            started = time.perf_counter()
            response = client.get(url)
            body = response.content
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or not body:
                raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return times


class Samples:
    """ms per (measure, server), from every round."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {}
        self.rounds: dict[str, dict[str, list[float]]] = {}

    def add(self, measure: str, server: str, times: list[float]) -> None:
        self.values.setdefault(measure, {s: [] for s in SERVERS})[server] += times
        self.rounds.setdefault(measure, {s: [] for s in SERVERS})[server].append(median(times))

    def row(self, measure: str, target: str = "– (info)", limit: float | None = None) -> Row:
        per = self.values[measure]
        cf, orth = median(per["cloudfilm"]), median(per["Orthanc"])
        spread = {s: [round(v, 3) for v in self.rounds[measure][s]] for s in SERVERS}
        return Row(NAME, measure, "ms", cf, orth, cf / orth, "cloudfilm ÷ Orthanc", target,
                   None if limit is None else cf <= limit, {"round medians": spread},
                   cloudfilm_tail=p95(per["cloudfilm"]), orthanc_tail=p95(per["Orthanc"]),
                   samples=len(per["cloudfilm"]))


def frame_urls(fixture: SeriesFixture, server: str, series: StoredSeries) -> list[str]:
    return [f"{fixture.dicomweb(server)}{series.path()}/instances/{uid}/frames/1"
            for uid in series.sop_uids]


def metadata_url(fixture: SeriesFixture, server: str, series: StoredSeries) -> str:
    return f"{fixture.dicomweb(server)}{series.path()}/metadata"


def measure_frames(ctx: Context, fixture: SeriesFixture, samples: Samples, rounds: int) -> None:
    series = fixture.series[0]
    for server in SERVERS:  # untimed: page cache, connections, this token's first check
        httpx_times(frame_urls(fixture, server, series),
                    {"Accept": FRAME_ACCEPT, **fixture.auth_headers(server)})
    for number in range(rounds):
        for server in SERVERS if number % 2 == 0 else SERVERS[::-1]:
            urls, auth = frame_urls(fixture, server, series), fixture.auth_headers(server)
            samples.add("one frame at a time, httpx", server,
                        httpx_times(urls, {"Accept": FRAME_ACCEPT, **auth}))
            transfers = curl_sequential(urls, FRAME_ACCEPT, headers=auth)
            check_ok(transfers, f"{server} frames")
            samples.add("one frame at a time, curl", server, [t.seconds * 1000 for t in transfers])
        ctx.say(f"frames round {number + 1}/{rounds}: " + ", ".join(
            f"{s} {samples.rounds['one frame at a time, httpx'][s][-1]:.2f} ms (httpx) "
            f"{samples.rounds['one frame at a time, curl'][s][-1]:.2f} ms (curl)" for s in SERVERS))


def measure_warm_metadata(ctx: Context, fixture: SeriesFixture, samples: Samples,
                          rounds: int) -> None:
    series = fixture.series[0]
    for number in range(rounds):
        for server in SERVERS if number % 2 == 0 else SERVERS[::-1]:
            url, auth = metadata_url(fixture, server, series), fixture.auth_headers(server)
            urls = [url] * WARM_REQUESTS
            httpx_times([url], {"Accept": JSON_ACCEPT, **auth})  # untimed
            samples.add("series metadata, warm, httpx (gzip)", server,
                        httpx_times(urls, {"Accept": JSON_ACCEPT, **auth}))
            samples.add("series metadata, warm, httpx (identity)", server, httpx_times(
                urls, {"Accept": JSON_ACCEPT, "Accept-Encoding": "identity", **auth}))
            transfers = curl_sequential(urls, JSON_ACCEPT, headers=auth)
            check_ok(transfers, f"{server} metadata")
            samples.add("series metadata, warm, curl", server,
                        [t.seconds * 1000 for t in transfers])
    ctx.say("metadata warm: " + ", ".join(
        f"{s} {median(samples.values['series metadata, warm, httpx (gzip)'][s]):.2f} ms"
        for s in SERVERS))


def measure_first_metadata(fixture: SeriesFixture, samples: Samples,
                           series: StoredSeries, kind: str) -> None:
    """One request per server: the first for this series since it was stored or restarted."""
    order = SERVERS if len(samples.values.get(kind, {}).get("cloudfilm", [])) % 2 == 0 \
        else SERVERS[::-1]
    for server in order:
        samples.add(kind, server, httpx_times(
            [metadata_url(fixture, server, series)],
            {"Accept": JSON_ACCEPT, **fixture.auth_headers(server)}))


def run(ctx: Context, rounds: int, stored: int,
        source: Path | None = None) -> tuple[list[Row], dict[str, object]]:
    """``source``: another checkout's ``src`` to run as cloudfilm (a before/after pair)."""
    samples = Samples()
    pair = Pair(ctx, "overhead")
    if source is not None:
        pair.cloudfilm.extra_env["PYTHONPATH"] = str(source.resolve())
    try:
        pair.start()
        fixture = SeriesFixture(pair)
        for index in range(stored):
            series = store_series(ctx, fixture, index, None)
            measure_first_metadata(fixture, samples, series, "series metadata, first after store")
        measure_frames(ctx, fixture, samples, rounds)
        measure_warm_metadata(ctx, fixture, samples, rounds)
        for restart in range(rounds):
            pair.restart()
            measure_first_metadata(fixture, samples, fixture.series[restart % stored],
                                   "series metadata, first after restart")
    finally:
        pair.cleanup()
    rows = [samples.row("one frame at a time, httpx", f"≤ {FRAME_TARGET_MS:g} ms", FRAME_TARGET_MS),
            samples.row("one frame at a time, curl"),
            samples.row("series metadata, warm, httpx (gzip)",
                        f"≤ {WARM_METADATA_TARGET_MS:g} ms", WARM_METADATA_TARGET_MS),
            samples.row("series metadata, warm, httpx (identity)"),
            samples.row("series metadata, warm, curl"),
            samples.row("series metadata, first after store", "≤ 0.1× Orthanc"),
            samples.row("series metadata, first after restart", "≤ 0.1× Orthanc")]
    for row in rows[-2:]:
        row.met = row.ratio is not None and row.ratio <= 0.1
    return rows, {"rounds": rounds, "series stored": stored, "frames per round": 300,
                  "warm metadata requests per round": WARM_REQUESTS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("CLOUDFILM_BENCH_POSTGRES",
                                                                 DEFAULT_POSTGRES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--series", type=int, default=2, help="series stored (first-request samples)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    parser.add_argument("--cloudfilm-src", type=Path, default=None,
                        help="run cloudfilm from this src directory (e.g. an export of an "
                             "earlier commit) instead of the installed one")
    args = parser.parse_args(argv)
    ctx = Context(quick=False, database=args.database, postgres_url=args.postgres_url)
    monitor = LoadMonitor(every=2.0)
    try:
        rows, extra = run(ctx, args.rounds, args.series, args.cloudfilm_src)
    finally:
        load = monitor.stop()
    extra["1-min load average during the run (2 cores)"] = load
    extra["round medians"] = {r.measure: r.detail["round medians"] for r in rows}
    print(console_table(rows))
    for key, value in extra.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps({"database": args.database, "extra": extra,
                                         "rows": [r.as_dict() for r in rows]}, indent=2))
    ctx.say(f"load average now: {os.getloadavg()[0]:.2f}; median of round medians (httpx "
            f"frames, cloudfilm): {statistics.median(samples_of(rows)):.2f} ms")
    return 0


def samples_of(rows: list[Row]) -> list[float]:
    spread = rows[0].detail["round medians"]
    assert isinstance(spread, dict)
    return list(spread["cloudfilm"])


if __name__ == "__main__":
    raise SystemExit(main())
