"""The scale curve: how QIDO, series metadata and ingest behave as the index grows.

    .venv/bin/python benchmarks/scale.py [--db sqlite|postgresql] [--sizes 10000,100000]
                                         [--out FILE.json] [--blob-url URL] [--max-seed-minutes M]

One real ``cloudfilm serve`` (benchmarks/cloudfilm_server.py: its own data directory, and on
PostgreSQL its own schema in 127.0.0.1:5432/test, dropped afterwards) is seeded through the
real ingest path, STOW-RS, and grown step by step to each size in ``--sizes`` (instances);
nothing is ever reseeded from zero. At each size (on PostgreSQL after a ``VACUUM (ANALYZE)`` of
the schema, as autovacuum would have run while the index grew; ``--no-analyze`` skips it, see
refresh_statistics), over HTTP with the server's bearer token:

* the ingest rate of that seeding step (instances/s; ``--batch`` instances per request from
  ``--clients`` threads, whole studies per request);
* QIDO-RS ``/studies`` p50/p95 for an exact PatientID, a PatientName prefix (``DOE*``, about
  6% of studies), a one-month StudyDate range and a StudyInstanceUID, each ``limit=100``,
  a different existing value per request (curl, one kept-alive connection, 3 untimed
  warm-ups, then ``--samples`` requests);
* warm series metadata p50/p95 of one 300-instance CT series seeded before the first step;
* the index's size on disk (PostgreSQL: ``pg_total_relation_size`` of the DICOM tables and
  of the whole schema; SQLite: the database file after a WAL checkpoint).

The seed is deterministic: study *n* always has the same patient, date, modality, size and
UIDs (derived from *n*), so the queries pick values that exist without keeping the index in
memory, and a run to 1M or 10M instances streams its bodies as it goes. Patients have ~2.5
studies each on average (see SeedPlan), names ``LAST^FIRST_n`` from 50×20 names, dates
spread over 2015–2024, modality CT/MR/CR; each study is one series of 1 to 2N−1 instances
(mean N = ``--per-study``, default 10) of ~1 kB (8×8 pixels).

To go further (issue 14): ``--sizes 10000,100000,1000000,10000000``; results are written
after every step, so a run stopped by ``--max-seed-minutes`` (or by hand) keeps what it
measured, and the JSON says which sizes were reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cloudfilm_server import DEFAULT_POSTGRES, CloudfilmServer
from benchmarks.common import (
    JSON_ACCEPT,
    ROOT,
    LoadMonitor,
    Transfer,
    curl_sequential,
    machine_info,
    median,
    multipart_body,
    p95,
    stow_post,
    tail,
)
from benchmarks.data import (
    DATE_SPAN_DAYS,
    DESCRIPTIONS,
    FIRST_DATE,
    FIRST_NAMES,
    LAST_NAMES,
    MODALITIES,
    SOP_CLASSES,
    SeriesSpec,
    ct_instance,
    encode_part10,
    patient_for,
)

UID_NAMESPACE = uuid.UUID("6f1c3a52-8f7e-4d0b-9a51-3c2e8d7b1f00")
QIDO_LIMIT = 100
NEW_PATIENT_SHARE = 0.4
DICOM_TABLES = ("patients", "studies", "series", "instances")
_PIXELS = (np.arange(64, dtype=np.int16).reshape(8, 8) * 10).tobytes()


# -- the deterministic seed -----------------------------------------------------------------
def seed_uid(*parts: object) -> str:
    """A UID derived from a name (PS3.5 §B.2, 2.25 + a UUID): study n has the same UIDs in
    every run, so queries can name studies that exist without remembering them."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '/'.join(map(str, parts))).int}"


@dataclass(frozen=True)
class PlannedStudy:
    """Study ``number`` of the seed: one series of ``instances`` small images."""

    number: int
    patient_number: int
    study_date: str
    modality: str
    instances: int

    @property
    def uid(self) -> str:
        return seed_uid("study", self.number)

    @property
    def patient_id(self) -> str:
        return patient_for(self.patient_number)[0]


@dataclass(frozen=True)
class SeedPlan:
    """Which patient, date, modality and size study *n* has: a function of *n* alone, so the
    index grows without reseeding. 40% of studies bring a new patient (~2.5 studies each);
    the others return to the patient of an earlier study at least ``lag`` studies back
    (patients seen early collect more studies over the years). ``lag`` keeps a
    patient's creation out of the requests still in flight, so concurrent clients never
    both create one patient (see post_until_stored)."""

    per_study: int
    lag: int

    @classmethod
    def for_clients(cls, per_study: int, batch: int, clients: int) -> SeedPlan:
        return cls(per_study, 4 * clients * -(-batch // per_study))

    def brings_new_patient(self, number: int) -> bool:
        return number < self.lag or random.Random(f"new/{number}").random() < NEW_PATIENT_SHARE

    def patient_of(self, number: int) -> int:
        """A new patient is numbered after their first study; a returning study draws an
        earlier study and takes the patient of the nearest first study at or before it."""
        if self.brings_new_patient(number):
            return number
        earlier = random.Random(f"returns/{number}").randrange(number - self.lag + 1)
        while not self.brings_new_patient(earlier):
            earlier -= 1
        return earlier

    def study(self, number: int) -> PlannedStudy:
        rnd = random.Random(number)
        day = FIRST_DATE + timedelta(days=rnd.randrange(DATE_SPAN_DAYS))
        return PlannedStudy(number, self.patient_of(number), day.strftime("%Y%m%d"),
                            rnd.choice(MODALITIES), 1 + rnd.randrange(2 * self.per_study - 1))


def study_instances(study: PlannedStudy) -> list[tuple[str, bytes]]:
    """The study's instances as (SOP Instance UID, Part-10 bytes), explicit VR little endian
    through the small encoder of benchmarks/data.py (~0.07 ms an instance, not pydicom's ~2 ms)."""
    rnd = random.Random(study.number + 1_000_003)
    _, name, birth, sex = patient_for(study.patient_number)
    sop_class = SOP_CLASSES[study.modality]
    description = rnd.choice(DESCRIPTIONS[study.modality])
    common: list[tuple[int, int, bytes, bytes | str | int]] = [
        (0x0008, 0x0005, b"CS", "ISO_IR 100"), (0x0008, 0x0016, b"UI", sop_class),
        (0x0008, 0x0020, b"DA", study.study_date),
        (0x0008, 0x0030, b"TM", f"{rnd.randrange(7, 20):02d}{rnd.randrange(60):02d}00"),
        (0x0008, 0x0050, b"SH", f"ACC{study.number:09d}"), (0x0008, 0x0060, b"CS", study.modality),
        (0x0008, 0x0090, b"PN", f"{rnd.choice(LAST_NAMES)}^{rnd.choice(FIRST_NAMES)}"),
        (0x0008, 0x1030, b"LO", description), (0x0008, 0x103E, b"LO", description),
        (0x0010, 0x0010, b"PN", name), (0x0010, 0x0020, b"LO", study.patient_id),
        (0x0010, 0x0021, b"LO", "HOSP-A"), (0x0010, 0x0030, b"DA", birth),
        (0x0010, 0x0040, b"CS", sex), (0x0020, 0x000D, b"UI", study.uid),
        (0x0020, 0x000E, b"UI", seed_uid("series", study.number)),
        (0x0020, 0x0010, b"SH", str(study.number % 10000)), (0x0020, 0x0011, b"IS", "1"),
        (0x0028, 0x0002, b"US", 1), (0x0028, 0x0004, b"CS", "MONOCHROME2"),
        (0x0028, 0x0010, b"US", 8), (0x0028, 0x0011, b"US", 8), (0x0028, 0x0100, b"US", 16),
        (0x0028, 0x0101, b"US", 16), (0x0028, 0x0102, b"US", 15), (0x0028, 0x0103, b"US", 1),
        (0x0028, 0x1052, b"DS", "-1024"), (0x0028, 0x1053, b"DS", "1"),
        (0x7FE0, 0x0010, b"OW", _PIXELS),
    ]
    out = []
    for n in range(1, study.instances + 1):
        sop_uid = seed_uid("instance", study.number, n)
        out.append((sop_uid, encode_part10(sop_class, sop_uid, [
            *common, (0x0008, 0x0018, b"UI", sop_uid), (0x0020, 0x0013, b"IS", str(n))])))
    return out


def post_until_stored(http: httpx.Client, url: str, parts: list[tuple[str, bytes]],
                      auth: dict[str, str], attempts: int = 5) -> int:
    """STOW-RS ``parts`` ((SOP Instance UID, Part-10 bytes)) and send again what was refused as
    a conflict, as a modality would: on PostgreSQL two concurrent requests that both create a
    new patient (or study) race on its unique row, and the loser's instances are failed with
    0xA900 "concurrent conflicting write" (PS3.18 Table 10.5.3-1). Returns how many were resent."""
    resent = 0
    for _ in range(attempts):
        body, ctype = multipart_body(raw for _, raw in parts)
        response = http.post(url, content=body, headers={
            "Content-Type": ctype, "Accept": JSON_ACCEPT, **auth})
        if response.status_code not in (200, 202, 409):
            raise RuntimeError(f"STOW to {url} answered {response.status_code}: {response.text[:500]}")
        failed = {item["00081155"]["Value"][0]: item.get("00F11001", {}).get("Value", ["?"])[0]
                  for item in response.json().get("00081198", {}).get("Value", [])}
        if not failed:
            return resent
        if any("concurrent" not in reason for reason in failed.values()):
            raise RuntimeError(f"STOW to {url} refused instances: {sorted(set(failed.values()))}")
        parts = [(uid, raw) for uid, raw in parts if uid in failed]
        resent += len(parts)
    raise RuntimeError(f"STOW to {url}: {len(parts)} instances still refused after {attempts} attempts")


# -- seeding -----------------------------------------------------------------------------------
@dataclass
class SeedStep:
    instances: int
    studies: int
    seconds: float
    load: str
    stopped_by_budget: bool
    resent: int

    @property
    def rate(self) -> float:
        return self.instances / self.seconds if self.seconds else float("nan")


class Seeder:
    """Grows one server's index study by study, in STOW-RS requests of whole studies."""

    def __init__(self, server: CloudfilmServer, plan: SeedPlan, batch: int, clients: int) -> None:
        self.server, self.plan, self.batch, self.clients = server, plan, batch, clients
        self.studies = 0  # studies 0 … studies-1 are stored (or handed to a client)
        self.instances = 0  # instances stored, the metadata series included
        self.resent = 0  # instances refused as a "concurrent conflicting write" and sent again
        self._lock = threading.Lock()

    def _batches(self, target: int, deadline: float) -> Iterator[list[PlannedStudy]]:
        planned = self.instances
        while planned < target and time.monotonic() < deadline:
            chunk: list[PlannedStudy] = []
            while planned < target and sum(s.instances for s in chunk) < self.batch:
                chunk.append(self.plan.study(self.studies))
                planned += chunk[-1].instances
                self.studies += 1
            yield chunk

    def grow_to(self, target: int, deadline: float, say: Callable[[str], None]) -> SeedStep:
        """Seed until ``target`` instances are stored or ``deadline`` (monotonic) passes."""
        before_i, before_s, before_r = self.instances, self.studies, self.resent
        started = time.perf_counter()
        batches = self._batches(target, deadline)
        url = f"{self.server.dicomweb}/studies"
        last = [started]

        def client() -> None:
            with httpx.Client(timeout=600) as http:
                while True:
                    with self._lock:
                        chunk = next(batches, None)
                    if chunk is None:
                        return
                    parts = [part for study in chunk for part in study_instances(study)]
                    resent = post_until_stored(http, url, parts, self.server.auth_headers)
                    with self._lock:
                        self.instances += len(parts)
                        self.resent += resent
                        now = time.perf_counter()
                        if now - last[0] > 30:
                            last[0] = now
                            say(f"  seeding: {self.instances:,} instances, "
                                f"{(self.instances - before_i) / (now - started):.0f}/s")

        monitor = LoadMonitor()
        with ThreadPoolExecutor(self.clients) as pool:
            for future in [pool.submit(client) for _ in range(self.clients)]:
                future.result()
        return SeedStep(self.instances - before_i, self.studies - before_s,
                        time.perf_counter() - started, monitor.stop(), self.instances < target,
                        self.resent - before_r)


def seed_metadata_series(server: CloudfilmServer, count: int) -> SeriesSpec:
    """One CT series (64×64 pixels, full CT attributes) whose metadata is timed at every size."""
    spec = SeriesSpec.new("scale-metadata")
    rng = np.random.default_rng(3)
    body, ctype = multipart_body(ct_instance(spec, n, rng, size=64)[1] for n in range(1, count + 1))
    with httpx.Client(timeout=600) as http:
        stow_post(http, f"{server.dicomweb}/studies", body, ctype, count, server.auth_headers)
    return spec


# -- measuring -----------------------------------------------------------------------------------
def query_params(plan: SeedPlan, seeded_studies: int, samples: int,
                 rnd: random.Random) -> dict[str, list[dict[str, str]]]:
    """Each request names a different existing value (a study drawn from those stored)."""
    picks = [plan.study(rnd.randrange(seeded_studies)) for _ in range(samples)]
    months = []
    for _ in range(samples):
        start = FIRST_DATE + timedelta(days=rnd.randrange(DATE_SPAN_DAYS - 31))
        months.append(f"{start:%Y%m%d}-{start + timedelta(days=30):%Y%m%d}")
    limit = {"limit": str(QIDO_LIMIT)}
    return {
        "PatientID": [{"PatientID": s.patient_id} | limit for s in picks],
        "PatientName=DOE*": [{"PatientName": "DOE*"} | limit] * samples,
        "StudyDate month": [{"StudyDate": m} | limit for m in months],
        "StudyInstanceUID": [{"StudyInstanceUID": s.uid} | limit for s in picks],
    }


def timed(urls: list[str], auth: dict[str, str], warmups: int = 3) -> list[float]:
    """Milliseconds per request after ``warmups`` untimed ones; 204 (no match) counts as OK."""
    transfers: list[Transfer] = curl_sequential(urls[:warmups] + urls, JSON_ACCEPT, headers=auth)
    bad = [t.status for t in transfers if t.status not in (200, 204)]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(transfers)} requests failed (HTTP {bad[0]}): {urls[0]}")
    return [t.seconds * 1000 for t in transfers[warmups:]]


def result_count(url: str, auth: dict[str, str]) -> int:
    response = httpx.get(url, headers={"Accept": JSON_ACCEPT, **auth}, timeout=120)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:300]}")
    return len(response.json()) if response.status_code == 200 else 0


def measure_qido(server: CloudfilmServer, seeder: Seeder, samples: int) -> dict[str, dict[str, float]]:
    params = query_params(seeder.plan, seeder.studies, samples, random.Random(seeder.instances))
    out = {}
    for label, rows in params.items():
        urls = [f"{server.dicomweb}/studies?{urlencode(p, safe='*')}" for p in rows]
        ms = timed(urls, server.auth_headers)
        first = result_count(urls[0], server.auth_headers)
        if label == "StudyInstanceUID" and first != 1:
            raise RuntimeError(f"StudyInstanceUID query found {first} studies, expected 1: {urls[0]}")
        if label == "PatientID" and first < 1:
            raise RuntimeError(f"PatientID query found nothing: {urls[0]}")
        out[label] = {"p50_ms": median(ms), "p95_ms": p95(ms), "results_first": first,
                      "samples": len(ms)}
    return out


def measure_metadata(server: CloudfilmServer, spec: SeriesSpec, samples: int) -> dict[str, float]:
    url = f"{server.dicomweb}/studies/{spec.study_uid}/series/{spec.series_uid}/metadata"
    first = timed([url], server.auth_headers, warmups=0)[0]
    ms = timed([url] * samples, server.auth_headers)
    return {"first_ms": first, "p50_ms": median(ms), "p95_ms": p95(ms), "samples": len(ms)}


def index_bytes(server: CloudfilmServer) -> dict[str, int]:
    """The index's size on disk: DICOM tables and everything (PostgreSQL), or the file (SQLite)."""
    if server.schema:
        import psycopg

        with psycopg.connect(server.postgres_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tablename, pg_total_relation_size(format('%%I.%%I', schemaname, tablename)) "
                "FROM pg_tables WHERE schemaname = %s", (server.schema,)).fetchall()
        sizes: dict[str, int] = {str(name): int(size) for name, size in rows}
        return {"dicom_tables": sum(sizes.get(t, 0) for t in DICOM_TABLES),
                "audit_events": sizes.get("audit_events", 0), "all_tables": sum(sizes.values())}
    return sqlite_bytes(server.data / "index.sqlite3")


def refresh_statistics(server: CloudfilmServer) -> str:
    """PostgreSQL: ``VACUUM (ANALYZE)`` the schema's tables, as autovacuum would have while the
    index grew (since PostgreSQL 13 it vacuums tables that only receive inserts, too).

    Without statistics the planner takes a freshly filled ``instances`` table for tiny; without
    the vacuum the visibility map is never set, so counting a page's instances reads every
    instance's heap page (seen here: 15 ms against 5 ms per page at 300k instances). This
    machine's PostgreSQL runs with ``autovacuum = off``, so neither would happen by itself.
    Returns the server's autovacuum setting."""
    if not server.schema:
        return "n/a (SQLite)"
    import psycopg

    with psycopg.connect(server.postgres_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (server.schema,))]
        for table in tables:
            conn.execute(f'VACUUM (ANALYZE) "{server.schema}"."{table}"')
        row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "?"


def sqlite_bytes(path: Path) -> dict[str, int]:
    """File size after a WAL checkpoint (the server may hold the file open; that is fine)."""
    try:
        with sqlite3.connect(path, timeout=30) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        print(f"warning: WAL checkpoint of {path} failed: {exc}")
    wal = Path(f"{path}-wal")
    return {"file": path.stat().st_size, "wal": wal.stat().st_size if wal.exists() else 0,
            "all_tables": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)}


# -- the run -------------------------------------------------------------------------------------
def measure_step(server: CloudfilmServer, seeder: Seeder, spec: SeriesSpec, step: SeedStep,
                 target: int, samples: int, analyze: bool) -> dict[str, Any]:
    monitor = LoadMonitor()
    statistics = f"VACUUM (ANALYZE) after seeding (autovacuum {refresh_statistics(server)})" if analyze \
        else "as the server left them"
    index = index_bytes(server)
    metadata = measure_metadata(server, spec, samples)
    qido = measure_qido(server, seeder, samples)
    return {"target": target, "instances": seeder.instances, "studies": seeder.studies,
            "seed": {"instances": step.instances, "studies": step.studies,
                     "seconds": step.seconds, "instances_per_s": step.rate, "load": step.load,
                     "stopped_by_budget": step.stopped_by_budget,
                     "resent_after_conflict": step.resent},
            "statistics": statistics, "index_bytes": index,
            "index_bytes_per_instance": index["all_tables"] / seeder.instances,
            "metadata": metadata, "qido": qido, "query_load": monitor.stop(),
            "loadavg_after": os.getloadavg()}


def table(steps: list[dict[str, Any]]) -> str:
    labels = ["PatientID", "PatientName=DOE*", "StudyDate month", "StudyInstanceUID"]
    head = ["instances", "studies", "ingest/s", *[f"{q} p50/p95" for q in labels],
            "metadata p50/p95", "index MB", "B/inst"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for s in steps:
        q = s["qido"]
        cells = [f"{s['instances']:,}", f"{s['studies']:,}", f"{s['seed']['instances_per_s']:.0f}",
                 *[f"{q[k]['p50_ms']:.1f} / {q[k]['p95_ms']:.1f}" for k in labels],
                 f"{s['metadata']['p50_ms']:.1f} / {s['metadata']['p95_ms']:.1f}",
                 f"{s['index_bytes']['all_tables'] / 1e6:.0f}", f"{s['index_bytes_per_instance']:.0f}"]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sizes", default="10000,100000", help="instances, comma-separated")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default benchmarks/results/scale-DB.json)")
    parser.add_argument("--blob-url", default=None, help="CLOUDFILM_BLOB_URL for the server")
    parser.add_argument("--postgres-url", default=os.environ.get("CLOUDFILM_BENCH_POSTGRES",
                                                                 DEFAULT_POSTGRES))
    parser.add_argument("--per-study", type=int, default=10, help="mean instances per study")
    parser.add_argument("--batch", type=int, default=500, help="instances per STOW request")
    parser.add_argument("--clients", type=int, default=2, help="concurrent STOW clients")
    parser.add_argument("--samples", type=int, default=40, help="timed requests per measure")
    parser.add_argument("--metadata-instances", type=int, default=300)
    parser.add_argument("--max-seed-minutes", type=float, default=0,
                        help="stop seeding after this long in all (0: no limit) and measure there")
    parser.add_argument("--keep", action="store_true",
                        help="leave the server running and its data (and schema) in place at the "
                             "end, and print how to reach them: for EXPLAIN and profiles")
    parser.add_argument("--no-analyze", action="store_true",
                        help="PostgreSQL: measure with whatever statistics autovacuum left (none when off)")
    args = parser.parse_args(argv)
    args.sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    args.out = args.out or ROOT / "benchmarks" / "results" / f"scale-{args.db}.json"
    return args


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    extra_env = {"CLOUDFILM_BLOB_URL": args.blob_url} if args.blob_url else {}
    server = CloudfilmServer(f"scale-{args.db}", args.db, args.postgres_url, extra_env=extra_env)
    result: dict[str, Any] = {
        "machine": machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "database": args.db, "blob_url": args.blob_url or "file (the data directory)",
        "per_study_mean": args.per_study, "batch": args.batch, "clients": args.clients,
        "sizes_wanted": args.sizes, "steps": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    budget = args.max_seed_minutes * 60 or float("inf")
    try:
        server.start()
        spec = seed_metadata_series(server, args.metadata_instances)
        plan = SeedPlan.for_clients(args.per_study, args.batch, args.clients)
        seeder = Seeder(server, plan, args.batch, args.clients)
        result["returning_patient_lag_studies"] = plan.lag
        seeder.instances = args.metadata_instances
        seed_start = time.monotonic()
        for target in args.sizes:
            say(f"{args.db}: growing the index to {target:,} instances")
            step = seeder.grow_to(target, seed_start + budget, say)
            say(f"{args.db}: {seeder.instances:,} instances ({seeder.studies:,} studies), "
                f"step {step.instances:,} in {step.seconds:.0f} s = {step.rate:.0f}/s "
                f"({step.resent} resent after a conflict); load {step.load}")
            result["steps"].append(measure_step(server, seeder, spec, step, target, args.samples,
                                                not args.no_analyze))
            args.out.write_text(json.dumps(result, indent=2) + "\n")
            print(table(result["steps"]), flush=True)
            if step.stopped_by_budget:
                say(f"{args.db}: seeding budget of {args.max_seed_minutes} min spent; stopping "
                    f"at {seeder.instances:,} instances")
                break
    except BaseException:
        print(f"--- the end of the server's log ---\n{tail(server.log_path, 60)}", flush=True)
        raise
    finally:
        if args.keep:  # the token goes to a 0600 file, never to the output
            token_file = server.root / "token"
            token_file.touch(mode=0o600)
            token_file.write_text(f"{server.token}\n")
            say(f"kept: {server.base} (bearer token in {token_file}) data {server.data} "
                f"database {server.database_url}")
        else:
            server.cleanup(background=True)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    run(args)
    say(f"done in {time.monotonic() - started:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
