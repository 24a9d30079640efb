"""QIDO-RS `/studies` over an index seeded with N one-instance studies (100k by default).

Seeding is itself measured: the same STOW-RS bodies (500 small instances each) go to
both servers from two client threads. Then three realistic study searches are
timed on each server: PatientID exact match, PatientName wildcard `DOE*`, and a
one-month StudyDate range, each with limit=100.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

import httpx

from benchmarks.common import (
    JSON_ACCEPT,
    Context,
    Row,
    check_ok,
    curl_sequential,
    median,
    multipart_body,
    p95,
    stow_post,
)
from benchmarks.data import DATE_SPAN_DAYS, FIRST_DATE, check_encoder, seed_instance
from benchmarks.pair import server_pair

NAME = "qido"
SEED_BATCH = 500
SEED_CLIENTS = 2
LIMIT = 100
METHOD = f"""\
**QIDO-RS `/studies`.** Both servers are seeded with the same N studies (one 8×8 16-bit
instance each; ~1 kB Part-10 files built by a small explicit-VR encoder): varied names like
`DOE^JOHN_123` drawn from 50 last × 20 first names (patients have ~2.5 studies each), PatientID
`PID0001234`, IssuerOfPatientID, StudyDate spread over 2015–2024, Modality CT/MR/CR with matching
SOP classes, accession numbers, descriptions, referring physicians. Seeding is STOW-RS with
{SEED_BATCH} instances per request from {SEED_CLIENTS} client threads, the same bodies to both
servers, one server after the other; its rate is reported. Queries (curl, one kept-alive
connection, `Accept: application/dicom+json`, default return attributes, `limit={LIMIT}`;
`*` is sent literally, since Orthanc's plugin 1.7 does not percent-decode `%2A`):
`PatientID=<existing id>` (a different patient per request), `PatientName=DOE*` (~6% of
studies match: DOE, DOERR, DOEBLER), `StudyDate=<one-month range>` (a different month per
request, ~800 matches at 100k). 3 untimed warm-up requests per query and server, then the
samples in two halves with the server order swapped. The target compares p95 latencies."""


def _seed(ctx: Context, url: str, bodies: list[tuple[bytes, str, int]], label: str,
          auth: dict[str, str]) -> float:
    started = time.perf_counter()
    done = [0]
    last_report = [started]

    def post(chunk: list[tuple[bytes, str, int]]) -> None:
        with httpx.Client(timeout=600) as client:
            for body, ctype, n in chunk:
                stow_post(client, url, body, ctype, n, auth)
                done[0] += n
                now = time.perf_counter()
                if now - last_report[0] > 30:
                    last_report[0] = now
                    ctx.say(f"  seeding {label}: {done[0]} studies, "
                            f"{done[0] / (now - started):.0f}/s")

    chunks = [bodies[i::SEED_CLIENTS] for i in range(SEED_CLIENTS)]
    with ThreadPoolExecutor(SEED_CLIENTS) as pool:
        for future in [pool.submit(post, c) for c in chunks]:
            future.result()
    return time.perf_counter() - started


def _queries(studies: list, samples: int) -> dict[str, list[dict[str, str]]]:
    rnd = random.Random(42)
    pids = rnd.sample(sorted({s.patient_id for s in studies}), k=min(samples, len(studies)))
    pids = (pids * (samples // max(1, len(pids)) + 1))[:samples]
    months = []
    for _ in range(samples):
        start = FIRST_DATE + timedelta(days=rnd.randrange(DATE_SPAN_DAYS - 31))
        end = start + timedelta(days=30)
        months.append(f"{start:%Y%m%d}-{end:%Y%m%d}")
    return {
        "PatientID exact": [{"PatientID": p, "limit": str(LIMIT)} for p in pids],
        "PatientName=DOE*": [{"PatientName": "DOE*", "limit": str(LIMIT)}] * samples,
        "StudyDate 1-month range": [{"StudyDate": m, "limit": str(LIMIT)} for m in months],
    }


def _url(base: str, params: dict[str, str]) -> str:
    """The query string with ``*`` left literal: Orthanc's DICOMweb plugin 1.7 does not
    percent-decode QIDO values, so ``%2A`` would match nothing there."""
    return f"{base}/studies?{urlencode(params, safe='*')}"


def _count(base: str, params: dict[str, str], auth: dict[str, str]) -> int:
    response = httpx.get(_url(base, params), timeout=120,
                         headers={"Accept": JSON_ACCEPT, "Accept-Encoding": "identity", **auth})
    if response.status_code == 204:
        return 0
    if response.status_code != 200:
        raise RuntimeError(f"QIDO {base} {params}: HTTP {response.status_code} {response.text[:300]}")
    return len(response.json())


def run(ctx: Context, studies_wanted: int | None = None) -> tuple[list[Row], dict]:
    total = studies_wanted or (5000 if ctx.quick else 100_000)
    samples = 16 if ctx.quick else 40
    check_encoder()
    t0 = time.perf_counter()
    seeded = [seed_instance(i, total) for i in range(total)]
    studies = [s for s, _ in seeded]
    bodies = []
    for i in range(0, total, SEED_BATCH):
        chunk = [raw for _, raw in seeded[i:i + SEED_BATCH]]
        body, ctype = multipart_body(chunk)
        bodies.append((body, ctype, len(chunk)))
    del seeded
    ctx.say(f"qido: built {total} seed instances in {time.perf_counter() - t0:.0f} s "
            f"({sum(len(b) for b, _, _ in bodies) / 1e6:.0f} MB in {len(bodies)} bodies)")
    rows: list[Row] = []
    extra: dict[str, object] = {"studies in each index (N)": f"{total:,}"}
    with server_pair(ctx, "qido", background_cleanup=True) as pair:
        bases = {"cloudfilm": pair.cloudfilm.dicomweb, "Orthanc": pair.orthanc.dicomweb}
        auth = {"cloudfilm": pair.cloudfilm.auth_headers, "Orthanc": pair.orthanc.auth_headers}
        _count(bases["cloudfilm"], {"limit": "1"}, auth["cloudfilm"])  # fail fast: QIDO missing?
        pair.cloudfilm.profile_phase("seed")
        seed_s = {}
        for name in ("cloudfilm", "Orthanc"):
            seed_s[name] = _seed(ctx, f"{bases[name]}/studies", bodies, name, auth[name])
            ctx.say(f"qido: seeded {name} with {total} studies in {seed_s[name]:.0f} s "
                    f"({total / seed_s[name]:.0f}/s)")
        del bodies
        stats = pair.orthanc.statistics()
        if int(stats.get("CountStudies", 0)) != total:
            raise RuntimeError(f"Orthanc holds {stats.get('CountStudies')} studies, expected {total}")
        rate = {k: total / v for k, v in seed_s.items()}
        rows.append(Row(NAME, f"seed: STOW of {total:,} one-instance studies ({SEED_BATCH}/request, "
                              f"{SEED_CLIENTS} clients)", "instances/s", rate["cloudfilm"], rate["Orthanc"],
                        rate["cloudfilm"] / rate["Orthanc"], "cloudfilm ÷ Orthanc", "– (setup)", None,
                        {"seconds": seed_s}, samples=1))
        extra["seeding time"] = ", ".join(f"{k} {v:.0f} s" for k, v in seed_s.items())
        pair.cloudfilm.profile_phase("query")
        queries = _queries(studies, samples)
        counts = {}
        for label, params in queries.items():
            counts[label] = {s: _count(base, params[0], auth[s]) for s, base in bases.items()}
            urls = {s: [_url(base, p) for p in params] for s, base in bases.items()}
            times: dict[str, list[float]] = {"cloudfilm": [], "Orthanc": []}
            for server in times:
                curl_sequential(urls[server][:3], JSON_ACCEPT, headers=auth[server])
            half = samples // 2
            for order, part in ((["cloudfilm", "Orthanc"], slice(0, half)),
                                (["Orthanc", "cloudfilm"], slice(half, samples))):
                for server in order:
                    transfers = curl_sequential(urls[server][part], JSON_ACCEPT,
                                                headers=auth[server])
                    check_ok(transfers, f"{server} QIDO {label}")
                    times[server] += [t.seconds * 1000 for t in transfers]
            cf95, or95 = p95(times["cloudfilm"]), p95(times["Orthanc"])
            ratio = cf95 / or95
            rows.append(Row(NAME, f"QIDO /studies {label}, limit={LIMIT}", "ms",
                            median(times["cloudfilm"]), median(times["Orthanc"]), ratio,
                            "p95 cloudfilm ÷ p95 Orthanc", "p95 ≤ 1× Orthanc", ratio <= 1.0,
                            {"ms": times, "results_first_query": counts[label]},
                            cloudfilm_tail=cf95, orthanc_tail=or95, samples=samples))
            ctx.say(f"qido {label}: p95 cloudfilm {cf95:.1f} ms, Orthanc {or95:.1f} ms "
                    f"(results {counts[label]})")
        extra["results of the first query (cloudfilm / Orthanc)"] = "; ".join(
            f"{k}: {v['cloudfilm']} / {v['Orthanc']}" for k, v in counts.items())
        extra["samples per query and server"] = samples
    return rows, extra
