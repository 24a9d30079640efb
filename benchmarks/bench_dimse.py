"""DIMSE side by side: C-STORE ingest (dcmtk storescu) and study-level C-FIND, cloudfilm vs Orthanc.

    .venv/bin/python benchmarks/bench_dimse.py [--quick] [--studies N] [--profile DIR] [--no-docs]
                                               [--database sqlite|postgresql] [--store-only]

Standalone (not part of benchmarks/run.py): it starts its own Orthanc (DICOM AET ORTHANC)
and its own ``cloudfilm serve`` with a DIMSE port (AE CLOUDFILM, SQLite or PostgreSQL),
measures, stops both, and rewrites the ``## DIMSE (benchmarks/bench_dimse.py)`` section at
the end of docs/benchmarks.md (outside the generated block, which belongs to run.py).
``--store-only`` measures C-STORE alone (no seeding, no C-FIND) and only prints.

C-STORE is measured twice: one ``storescu`` association at a time (each instance waits
for the previous one's answer, so this is per-instance latency), and ``PARALLEL``
associations at once, each sending its share of the series (what a modality pool or a
PACS migration does; cloudfilm's group commit covers their instances together).

cloudfilm only lets a calling AE's C-FIND/C-MOVE/C-GET match what its known node may see
(an unregistered caller sees nothing), so the benchmark's AE (CFBENCHSCU) is registered
with ``cloudfilm node add … --sees all`` right after start; its HTTP requests (seeding,
QIDO checks) carry the server's bearer token (see benchmarks/cloudfilm_server.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import httpx
from pydicom.dataset import Dataset
from pynetdicom import AE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cloudfilm_server
from benchmarks.cloudfilm_server import DEFAULT_POSTGRES, CloudfilmServer
from benchmarks.common import (
    JSON_ACCEPT,
    ROOT,
    LoadMonitor,
    free_port,
    make_tmpdir,
    median,
    multipart_body,
    p95,
    stow_post,
    wait_for_port,
)
from benchmarks.data import SeriesSpec, check_encoder, ct_series, seed_instance
from benchmarks.orthanc import OrthancServer

CF_AET, ORTHANC_AET, OUR_AET = "CLOUDFILM", "ORTHANC", "CFBENCHSCU"
OUR_NODE = "cfbench-scu"
OUR_PORT = 104  # required by a node entry; nothing is C-MOVEd back to us, so it is never used
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## DIMSE (benchmarks/bench_dimse.py)"
SEED_BATCH = 500
ORTHANC_SEED_CLIENTS = 4
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PARALLEL = 4  # concurrent storescu associations in the second C-STORE measurement


class DimseCloudfilm(CloudfilmServer):
    """`CloudfilmServer` with DIMSE on: the helper turns it off (``--dimse-port 0``) for the
    DICOMweb benchmarks, so its option list is swapped for ours while it starts. On the first
    start our calling AE is registered as a node that sees every study (like Orthanc's
    ``DicomAlwaysAllowFind``); otherwise cloudfilm's C-FIND would match nothing for it."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.dimse_port = free_port()
        self.node_registered = False

    def start(self, timeout: float = 120) -> DimseCloudfilm:
        options = ["--dimse-port", str(self.dimse_port), "--ae-title", CF_AET]
        with mock.patch.object(cloudfilm_server, "serve_options", lambda: options):
            super().start(timeout)
        wait_for_port(self.dimse_port, self.process, timeout, self.log_path)
        if not self.node_registered:
            self.add_node(OUR_NODE, OUR_AET, OUR_PORT, sees="all")
            self.node_registered = True
        return self


def start_orthanc() -> OrthancServer:
    """Orthanc with the DIMSE settings of the brief; everything else is Orthanc's default."""
    return OrthancServer("dimse", {
        "DicomAet": ORTHANC_AET, "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowEcho": True,
    }).start()


# -- 1. C-STORE ingest ------------------------------------------------------------
def write_series(folder: Path, count: int, label: str) -> SeriesSpec:
    """A fresh CT series (new study/series/SOP UIDs, so nothing is a duplicate) as files."""
    spec = SeriesSpec.new(label)
    folder.mkdir(parents=True)
    for n, (_, raw) in enumerate(ct_series(spec, count), start=1):
        (folder / f"CT{n:04d}.dcm").write_bytes(raw)
    return spec


def storescu(aet: str, port: int, folder: Path) -> float:
    """Send the whole folder on one association; wall seconds of the storescu process."""
    return storescu_parallel(aet, port, [folder])


def storescu_parallel(aet: str, port: int, folders: list[Path]) -> float:
    """One storescu association per folder, all at once; wall seconds until the last ends."""
    started = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aet", OUR_AET, "-aec", aet, "+sd", "127.0.0.1",
                               str(port), str(folder)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for folder in folders]
    errors = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            errors.append((err or out)[-2000:])
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"storescu to {aet} failed: {errors[0]}")
    return seconds


def split_series(folder: Path, parts: int) -> list[Path]:
    """The series' files moved into ``parts`` sub-folders, round robin (one per association)."""
    shares = [folder / f"part{i}" for i in range(parts)]
    for share in shares:
        share.mkdir()
    for n, path in enumerate(sorted(folder.glob("*.dcm"))):
        path.rename(shares[n % parts] / path.name)
    return shares


def study_instance_count(qido_base: str, study_uid: str, auth: dict[str, str]) -> int:
    """NumberOfStudyRelatedInstances from QIDO-RS: checks that every C-STORE really landed."""
    response = httpx.get(f"{qido_base}/studies", params={
        "StudyInstanceUID": study_uid, "includefield": "00201208"},
        headers={"Accept": JSON_ACCEPT, **auth}, timeout=60)
    response.raise_for_status()
    rows = response.json() or []
    return int(rows[0]["00201208"]["Value"][0]) if rows else 0


def bench_store(cf: DimseCloudfilm, orthanc: OrthancServer, runs: int, count: int,
                scratch: Path, say, parallel: int = 1) -> dict[str, list[float]]:
    """`runs` rounds; in each, one fresh series to each server, order alternating by round,
    over ``parallel`` simultaneous associations."""
    targets = {"cloudfilm": (CF_AET, cf.dimse_port, cf.dicomweb, cf.auth_headers),
               "Orthanc": (ORTHANC_AET, orthanc.dicom_port, orthanc.dicomweb,
                           orthanc.auth_headers)}
    rates: dict[str, list[float]] = {name: [] for name in targets}
    for run in range(runs):
        order = list(targets) if run % 2 == 0 else list(targets)[::-1]
        for name in order:
            folder = scratch / f"{name}-{parallel}-{run}"
            spec = write_series(folder, count, f"{name}{parallel}x{run}")
            aet, port, qido, auth = targets[name]
            shares = split_series(folder, parallel) if parallel > 1 else [folder]
            seconds = storescu_parallel(aet, port, shares)
            stored = study_instance_count(qido, spec.study_uid, auth)
            if stored != count:
                raise RuntimeError(f"{name}: {stored} of {count} instances stored")
            rates[name].append(count / seconds)
            say(f"  C-STORE run {run + 1} {name} ({parallel} association(s)): {count} in "
                f"{seconds:.2f} s = {count / seconds:.1f}/s")
            shutil.rmtree(folder)
    return rates


# -- 2. C-FIND over a seeded index -------------------------------------------------
def seed_cloudfilm(cf: DimseCloudfilm, instances: list[bytes]) -> float:
    """STOW-RS, 500 instances a request, 2 clients (cloudfilm's fastest bulk path)."""
    batches = [instances[i:i + SEED_BATCH] for i in range(0, len(instances), SEED_BATCH)]

    def post(chunk: list[list[bytes]]) -> None:
        with httpx.Client(timeout=600) as client:
            for batch in chunk:
                body, ctype = multipart_body(batch)
                stow_post(client, f"{cf.dicomweb}/studies", body, ctype, len(batch),
                          cf.auth_headers)

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(post, [batches[0::2], batches[1::2]]))
    return time.perf_counter() - started


def seed_orthanc(orthanc: OrthancServer, instances: list[bytes]) -> float:
    """Orthanc's REST ``POST /instances``, one instance a request, 4 parallel clients
    (its own bulk path; a STOW body of 500 goes through the plugin one by one anyway)."""

    def post(chunk: list[bytes]) -> None:
        with httpx.Client(timeout=600) as client:
            for raw in chunk:
                r = client.post(f"{orthanc.base}/instances", content=raw,
                                headers={"Content-Type": "application/dicom"})
                if r.status_code != 200 or r.json().get("Status") != "Success":
                    raise RuntimeError(f"Orthanc POST /instances: {r.status_code} {r.text[:300]}")

    started = time.perf_counter()
    n = ORTHANC_SEED_CLIENTS
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(post, [instances[i::n] for i in range(n)]))
    return time.perf_counter() - started


def seed_both(cf: DimseCloudfilm, orthanc: OrthancServer, total: int,
              say) -> tuple[dict[str, float], list[str]]:
    """Seed the same N one-instance studies into both servers at the same time (setup only:
    neither rate is a result), and return the patient IDs that exist for the queries."""
    check_encoder()
    seeded = [seed_instance(n, total) for n in range(total)]
    instances = [raw for _, raw in seeded]
    with ThreadPoolExecutor(2) as pool:
        cf_job = pool.submit(seed_cloudfilm, cf, instances)
        or_job = pool.submit(seed_orthanc, orthanc, instances)
        seconds = {"cloudfilm": cf_job.result(), "Orthanc": or_job.result()}
    say(f"  seeded {total} studies: cloudfilm {seconds['cloudfilm']:.0f} s, "
        f"Orthanc {seconds['Orthanc']:.0f} s")
    return seconds, sorted({study.patient_id for study, _ in seeded})


def study_query(**keys: str) -> Dataset:
    """A study-level identifier: the given matching keys plus the return keys of the brief."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = ""
    ds.PatientName = ""
    ds.StudyInstanceUID = ""
    ds.StudyDate = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def timed_find(aet: str, port: int, query: Dataset) -> tuple[float, int]:
    """One association, one C-FIND, release: (wall seconds, matches). In-process pynetdicom,
    the same client for both servers, so no process start-up is in the number."""
    ae = AE(ae_title=OUR_AET)
    ae.add_requested_context(STUDY_ROOT_FIND)
    started = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError(f"association to {aet} on {port} failed")
    matches, final = 0, None
    for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        final = status.Status if status else None
        matches += identifier is not None and final in (0xFF00, 0xFF01)
    assoc.release()
    seconds = time.perf_counter() - started
    if final != 0x0000:
        raise RuntimeError(f"C-FIND to {aet} ended with status {final}")
    return seconds, matches


def bench_find(cf: DimseCloudfilm, orthanc: OrthancServer, patient_ids: list[str],
               samples: int, say) -> dict[str, dict[str, list[float]]]:
    """Exact PatientID (a different patient each time) and ``DOE^J*``, interleaved per sample
    (cloudfilm first on even samples, Orthanc first on odd), after 3 untimed warm-ups."""
    targets = {"cloudfilm": (CF_AET, cf.dimse_port), "Orthanc": (ORTHANC_AET, orthanc.dicom_port)}
    rnd = random.Random(7)
    queries = {"PatientID exact": lambda: study_query(PatientID=rnd.choice(patient_ids)),
               "PatientName DOE^J*": lambda: study_query(PatientName="DOE^J*")}
    out = {q: {name: [] for name in targets} for q in queries}
    matches: dict[str, dict[str, int]] = {q: {} for q in queries}
    for label, make in queries.items():
        for i in range(samples + 3):
            query = make()
            order = list(targets) if i % 2 == 0 else list(targets)[::-1]
            for name in order:
                seconds, found = timed_find(*targets[name], query)
                if i >= 3:
                    out[label][name].append(seconds)
                matches[label][name] = found
            if matches[label]["cloudfilm"] != matches[label]["Orthanc"]:
                raise RuntimeError(f"{label}: match counts differ {matches[label]}")
        say(f"  C-FIND {label}: {matches[label]['cloudfilm']} matches (last sample); "
            + ", ".join(f"{n} p50 {1000 * median(v):.1f} ms p95 {1000 * p95(v):.1f} ms"
                        for n, v in out[label].items()))
    return out


# -- 3. results into docs/benchmarks.md ---------------------------------------------
def table(store: dict[str, list[float]], parallel: dict[str, list[float]],
          find: dict[str, dict[str, list[float]]]) -> list[str]:
    """Markdown rows: ingest rates (cloudfilm ÷ Orthanc, ≥ 5×), find latencies (≤ 1×)."""
    rows = ["| measure | cloudfilm | Orthanc | ratio | target | met |", "|---|---|---|---|---|---|"]
    for label, rates in ((f"C-STORE ingest, one association, instances/s (median of "
                          f"{len(store['cloudfilm'])}, min–max)", store),
                         (f"C-STORE ingest, {PARALLEL} associations at once, instances/s "
                          f"(median of {len(parallel['cloudfilm'])}, min–max)", parallel)):
        cf, orth = median(rates["cloudfilm"]), median(rates["Orthanc"])
        rows.append(f"| {label} | {cf:.1f} ({min(rates['cloudfilm']):.0f}–"
                    f"{max(rates['cloudfilm']):.0f}) | {orth:.1f} ({min(rates['Orthanc']):.0f}–"
                    f"{max(rates['Orthanc']):.0f}) | {cf / orth:.2f}× (cloudfilm ÷ Orthanc) | "
                    f"≥ 5× | {'yes' if cf / orth >= 5 else '**no**'} |")
    for label, times in find.items():
        for stat_name, stat in (("p50", median), ("p95", p95)):
            a, b = stat(times["cloudfilm"]) * 1000, stat(times["Orthanc"]) * 1000
            rows.append(f"| C-FIND {label}, {stat_name} ms ({len(times['cloudfilm'])} queries) | "
                        f"{a:.1f} | {b:.1f} | {a / b:.2f}× (cloudfilm ÷ Orthanc) | ≤ 1× | "
                        f"{'yes' if a <= b else '**no**'} |")
    return rows


def write_docs(body: list[str]) -> None:
    """Replace the generated part of our section (heading to END marker) or append it; the
    hand-written text after the marker (the "why") is kept across runs."""
    end = "<!-- bench_dimse.py: end of generated part; hand-written text below is kept -->"
    text = DOCS.read_text()
    block = "\n".join([SECTION, "", *body, "", end])
    if SECTION in text and end in text:
        start = text.index(SECTION)
        text = text[:start] + block + text[text.index(end, start) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n\n### Why (hand-written)\n\n(fill in)\n"
    DOCS.write_text(text)


def method(args: argparse.Namespace, seeded: dict[str, float], load: str) -> list[str]:
    """The method paragraphs, with this run's sizes, seeding times and machine load, so a reader
    can judge the numbers without the code."""
    out = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (--quick)' if args.quick else ''}"
        f"; {os.cpu_count()} cores shared with other work; 1-min load average during the run: "
        f"{load}. cloudfilm `serve` ({args.database}, DIMSE AE {CF_AET}; our calling AE "
        f"{OUR_AET} registered as a node with `sees all`, HTTP with a bearer token; C-FIND "
        "audited per request) vs Orthanc "
        "1.10 (Debian, defaults plus `DicomAet ORTHANC`, `DicomCheckCalledAet false`, "
        "`DicomAlwaysAllowStore/Find true`), both on loopback, started by this script.",
        "",
        f"**C-STORE:** dcmtk `storescu +sd` sends a {args.instances}-instance CT series "
        "(512×512, 16-bit, explicit VR little endian, ~513 kB files from benchmarks/data.py) on "
        f"one association, then split round robin over {PARALLEL} simultaneous associations; "
        f"{args.runs} rounds of each, each sending a freshly generated series (new "
        "study/series/SOP UIDs, so nothing is a duplicate) to each server, order alternating "
        "per round. Rate = instances ÷ storescu wall time (the last association's end); every "
        "instance is checked with QIDO NumberOfStudyRelatedInstances afterwards.",
        "",
    ]
    if seeded:
        out += [
            f"**C-FIND:** both indexes seeded with the same **N = {args.studies:,}** one-instance "
            "studies (8×8 pixels, varied names `DOE^JOHN_123`, ~2.5 studies per patient; "
            f"cloudfilm by STOW-RS, 500 per request, 2 clients, {seeded['cloudfilm']:.0f} s; "
            f"Orthanc by REST `POST /instances`, 4 clients, {seeded['Orthanc']:.0f} s; both at "
            "once). Queries: Study Root, level STUDY, return keys PatientID, PatientName, "
            "StudyInstanceUID, StudyDate; `PatientID=<exact>` (a different existing patient per "
            "query) and `PatientName=DOE^J*`. Client: pynetdicom in this process, one association "
            f"per query (associate + C-FIND + release timed), {args.samples} timed queries per "
            "server after 3 warm-ups, server order alternating; match counts checked equal.",
            "",
        ]
    return out


def run(args: argparse.Namespace, say) -> list[str]:
    """Start both servers, measure, stop them; the body of the docs section."""
    load = LoadMonitor()
    scratch = make_tmpdir("dimse-series")
    cf = DimseCloudfilm(label="dimse-cf", database=args.database, postgres_url=args.postgres_url,
                        profile_dir=args.profile)
    orthanc = None
    seeded: dict[str, float] = {}
    find: dict[str, dict[str, list[float]]] = {}
    try:
        cf.phase = "ingest"
        cf.start()
        orthanc = start_orthanc()
        say(f"cloudfilm DIMSE :{cf.dimse_port}, Orthanc DICOM :{orthanc.dicom_port}")
        store = bench_store(cf, orthanc, args.runs, args.instances, scratch, say)
        parallel = bench_store(cf, orthanc, args.runs, args.instances, scratch, say, PARALLEL)
        if not args.store_only:
            cf.profile_phase("seed")
            seeded, patient_ids = seed_both(cf, orthanc, args.studies, say)
            cf.profile_phase("find")
            find = bench_find(cf, orthanc, patient_ids, args.samples, say)
    finally:
        cf.cleanup(background=True)
        if orthanc is not None:
            orthanc.cleanup(background=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return method(args, seeded, load.stop()) + table(store, parallel, find)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it works")
    parser.add_argument("--studies", type=int, help="N seeded studies (default 20000, quick 1000)")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of cloudfilm here")
    parser.add_argument("--no-docs", action="store_true", help="print, do not edit the docs")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="cloudfilm's index database (default sqlite)")
    parser.add_argument("--postgres-url", default=os.environ.get("CLOUDFILM_BENCH_POSTGRES",
                                                                 DEFAULT_POSTGRES))
    parser.add_argument("--store-only", action="store_true",
                        help="C-STORE only (no seeding, no C-FIND); prints, never edits the docs")
    args = parser.parse_args()
    args.studies = args.studies or (1000 if args.quick else 20000)
    args.instances, args.runs = (50, 1) if args.quick else (300, 3)
    args.samples = 10 if args.quick else 30

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    body = run(args, say)
    print("\n".join(body))
    if not args.no_docs and not args.store_only:
        write_docs(body)
        say(f"wrote {SECTION!r} in {DOCS}")


if __name__ == "__main__":
    main()
