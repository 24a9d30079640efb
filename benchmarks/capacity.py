"""What one node can take on this machine: the figures behind docs/deploy.md's capacity model.

    .venv/bin/python benchmarks/capacity.py [--slices 300] [--rounds 5] [--out FILE.json]
                                            [--skip-dimse] [--postgres-url URL]

Every part is a real process on loopback: ``cloudfilm serve`` (benchmarks/cloudfilm_server.py),
PostgreSQL (a schema of its own in 127.0.0.1:5432/test, dropped afterwards), an S3 peer
(``python -m moto.server``, a bucket made with boto3, as tests/test_cluster.py does) and
dcmtk's ``storescu``. It measures:

* **STOW-RS per node**: a fresh 512×512 16-bit CT series of ``--slices`` instances
  (~525 kB each, benchmarks/data.py) per round, 50 instances per request, one client per
  node sending its requests one after the other; ``--rounds`` rounds. On SQLite with the file
  store, on PostgreSQL with the file store and with the S3 store, one node; then two nodes
  sharing the PostgreSQL index, the store and ``CLOUDFILM_SECRET_KEY``, one client per node
  at the same time (aggregate and per node).
* **C-STORE** (``storescu +sd``, one association per series) into one node on PostgreSQL.
* **Storage**: blob bytes per instance (the file store's files, or the bucket's objects) and
  index bytes per instance (PostgreSQL: growth of ``pg_total_relation_size`` of the DICOM
  tables and of the audit trail; SQLite: growth of the file after a WAL checkpoint), over
  the instances the STOW rounds stored.

With each run: the node processes' CPU seconds per instance (psutil), the machine's busy
share of its cores, and the 1-minute load average (``os.getloadavg()``), since the machine
is shared and the clients, PostgreSQL and moto run on the same 2 cores as the nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_dimse import CF_AET, DimseCloudfilm, storescu, study_instance_count, write_series
from benchmarks.cloudfilm_server import DEFAULT_POSTGRES, CloudfilmServer
from benchmarks.common import (
    ROOT,
    LoadMonitor,
    machine_info,
    make_tmpdir,
    median,
    multipart_body,
    stow_post,
    tail,
)
from benchmarks.data import SeriesSpec, ct_instance
from benchmarks.s3_peer import s3_peer
from benchmarks.scale import index_bytes

BATCH = 50


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class SharedNode(CloudfilmServer):
    """Another node on ``first``'s index: the same database (schema), user and token, its
    own ``--data``; the store and key come from ``extra_env``, as on every node."""

    def __init__(self, first: CloudfilmServer, label: str, extra_env: dict[str, str]) -> None:
        super().__init__(label, "sqlite", extra_env=extra_env)  # "sqlite": no schema of its own
        self.database, self.database_url = first.database, first.database_url
        self.postgres_url, self.token = first.postgres_url, first.token


# -- measuring -----------------------------------------------------------------------------------
class Usage:
    """CPU seconds of some processes, the machine's busy share and the load, over one run."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.cpu0 = [sum(p.cpu_times()[:2]) for p in self.procs]
        self.machine0 = psutil.cpu_times()
        self.loadavg0 = os.getloadavg()
        self.monitor = LoadMonitor(every=2)
        self.started = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        cpu = [sum(p.cpu_times()[:2]) - c0 for p, c0 in zip(self.procs, self.cpu0, strict=True)]
        now = psutil.cpu_times()
        total = sum(now) - sum(self.machine0)
        idle = (now.idle + now.iowait) - (self.machine0.idle + self.machine0.iowait)
        return {"wall_s": wall, "process_cpu_s": cpu, "machine_busy_pct": 100 * (1 - idle / total),
                "load": self.monitor.stop(), "loadavg_before": self.loadavg0,
                "loadavg_after": os.getloadavg()}


def ct_bodies(label: str, slices: int, seed: int) -> tuple[list[tuple[bytes, str, int]], int]:
    """A fresh CT series as STOW-RS bodies of ``BATCH`` instances, and its Part-10 bytes."""
    spec, rng = SeriesSpec.new(label), np.random.default_rng(seed)
    parts = [ct_instance(spec, n, rng)[1] for n in range(1, slices + 1)]
    bodies = []
    for i in range(0, slices, BATCH):
        body, ctype = multipart_body(parts[i:i + BATCH])
        bodies.append((body, ctype, len(parts[i:i + BATCH])))
    return bodies, sum(len(p) for p in parts)


def send(server: CloudfilmServer, bodies: list[tuple[bytes, str, int]]) -> float:
    """One client, requests one after the other; wall seconds."""
    started = time.perf_counter()
    with httpx.Client(timeout=600) as http:
        for body, ctype, count in bodies:
            stow_post(http, f"{server.dicomweb}/studies", body, ctype, count, server.auth_headers)
    return time.perf_counter() - started


def send_together(nodes: list[CloudfilmServer], bodies: list[list[tuple[bytes, str, int]]]) -> list[float]:
    """One client per node, all started at once; each client's wall seconds."""
    seconds: list[float | None] = [None] * len(nodes)

    def client(i: int) -> None:
        seconds[i] = send(nodes[i], bodies[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [s for s in seconds if s is not None]
    if len(done) != len(nodes):
        raise RuntimeError("a STOW client failed (its error is printed above)")
    return done


def warm_up(server: CloudfilmServer) -> None:
    bodies, _ = ct_bodies("capacity-warmup", 5, 99)
    send(server, bodies)


def stow_rounds(nodes: list[CloudfilmServer], rounds: int, slices: int, label: str) -> dict[str, Any]:
    """Each round: a fresh series per node, all nodes' clients started together."""
    runs = []
    for r in range(rounds):
        series = [ct_bodies(f"{label}-{r}-{i}", slices, 1000 * r + i) for i in range(len(nodes))]
        usage = Usage(sorted({n.process.pid for n in nodes if n.process}))
        seconds = send_together(nodes, [bodies for bodies, _ in series])
        used = usage.stop()
        runs.append(used | {"per_node_s": seconds, "aggregate_ips": slices * len(nodes) / used["wall_s"],
                            "per_node_ips": [slices / s for s in seconds],
                            "node_cpu_ms_per_instance": 1000 * sum(used["process_cpu_s"]) / (slices * len(nodes)),
                            "part10_bytes": sum(b for _, b in series)})
        say(f"  {label} round {r + 1}: {runs[-1]['aggregate_ips']:.0f} inst/s aggregate, per node "
            f"{', '.join(f'{x:.0f}' for x in runs[-1]['per_node_ips'])}; busy "
            f"{used['machine_busy_pct']:.0f}%, load {used['loadavg_after'][0]:.1f}")
    return summarise(runs, len(nodes) * slices * rounds)


def summarise(runs: list[dict[str, Any]], instances: int) -> dict[str, Any]:
    agg = [r["aggregate_ips"] for r in runs]
    per_node = [x for r in runs for x in r["per_node_ips"]]
    return {"rounds": runs, "instances": instances,
            "aggregate_ips_median": median(agg), "aggregate_ips_range": [min(agg), max(agg)],
            "per_node_ips_median": median(per_node), "per_node_ips_range": [min(per_node), max(per_node)],
            "node_cpu_ms_per_instance_median": median([r["node_cpu_ms_per_instance"] for r in runs]),
            "machine_busy_pct_median": median([r["machine_busy_pct"] for r in runs]),
            "loadavg_1min": [r["loadavg_after"][0] for r in runs],
            "part10_bytes": sum(r["part10_bytes"] for r in runs)}


def blob_bytes(root: Path) -> tuple[int, int]:
    """(files, bytes) under a file store's ``blobs/``."""
    count = size = 0
    for dirpath, _, files in os.walk(root / "blobs"):
        for name in files:
            count, size = count + 1, size + os.path.getsize(os.path.join(dirpath, name))
    return count, size


def storage(before: dict[str, int], after: dict[str, int], blobs: tuple[int, int],
            result: dict[str, Any]) -> dict[str, Any]:
    """Bytes per instance over what the rounds stored (the warm-up is in ``before``)."""
    n = result["instances"]
    grown = {k: (after[k] - before.get(k, 0)) / n for k in after}
    return {"instances": n, "index_bytes_per_instance": grown,
            "blob_objects": blobs[0], "blob_bytes": blobs[1],
            "blob_bytes_per_instance": blobs[1] / blobs[0] if blobs[0] else None,
            "part10_bytes_per_instance": result["part10_bytes"] / n}


# -- the configurations ------------------------------------------------------------------------------
def one_node(args: argparse.Namespace, label: str, database: str, env: dict[str, str],
             blobs_of: Any, two_clients: bool = False) -> dict[str, Any]:
    """One client's rounds (and the storage they took); with ``two_clients`` then two
    clients at once on the same node, to tell a node's limit from one client's."""
    node = CloudfilmServer(f"cap-{label}", database, args.postgres_url, extra_env=env)
    try:
        node.start()
        warm_up(node)
        before = index_bytes(node)
        result = stow_rounds([node], args.rounds, args.slices, label)
        result["storage"] = storage(before, index_bytes(node), blobs_of(node), result)
        if two_clients:
            result["two_clients"] = stow_rounds([node, node], args.rounds, args.slices, f"{label}x2")
        return result
    except BaseException:
        print(f"--- the end of {label}'s log ---\n{tail(node.log_path, 60)}", flush=True)
        raise
    finally:
        node.cleanup(background=True)


def two_nodes(args: argparse.Namespace, label: str, env: dict[str, str]) -> dict[str, Any]:
    env = env | {"CLOUDFILM_SECRET_KEY": secrets.token_hex(32)}
    first = CloudfilmServer(f"cap-{label}-1", "postgresql", args.postgres_url, extra_env=env)
    nodes = [first]
    try:
        first.start()
        nodes.append(SharedNode(first, f"cap-{label}-2", env).start())
        for node in nodes:
            warm_up(node)
        return stow_rounds(nodes, args.rounds, args.slices, label)
    except BaseException:
        for node in nodes:
            print(f"--- the end of {node.label}'s log ---\n{tail(node.log_path, 40)}", flush=True)
        raise
    finally:
        for node in reversed(nodes):
            node.cleanup(background=True)


def cstore(args: argparse.Namespace) -> dict[str, Any]:
    node = DimseCloudfilm(label="cap-cstore", database="postgresql", postgres_url=args.postgres_url)
    scratch = make_tmpdir("cap-cstore")
    runs = []
    try:
        node.start()
        for r in range(args.rounds):
            folder = scratch / f"series-{r}"
            spec = write_series(folder, args.slices, f"cstore{r}")
            usage = Usage([node.process.pid] if node.process else [])
            seconds = storescu(CF_AET, node.dimse_port, folder)
            used = usage.stop()
            stored = study_instance_count(node.dicomweb, spec.study_uid, node.auth_headers)
            if stored != args.slices:
                raise RuntimeError(f"C-STORE: {stored} of {args.slices} instances stored")
            runs.append(used | {"ips": args.slices / seconds, "node_cpu_ms_per_instance":
                                1000 * sum(used["process_cpu_s"]) / args.slices})
            say(f"  cstore round {r + 1}: {runs[-1]['ips']:.0f} inst/s, load {used['loadavg_after'][0]:.1f}")
            shutil.rmtree(folder)
    finally:
        node.cleanup(background=True)
        shutil.rmtree(scratch, ignore_errors=True)
    ips = [r["ips"] for r in runs]
    return {"rounds": runs, "ips_median": median(ips), "ips_range": [min(ips), max(ips)],
            "node_cpu_ms_per_instance_median": median([r["node_cpu_ms_per_instance"] for r in runs]),
            "loadavg_1min": [r["loadavg_after"][0] for r in runs]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "slices": args.slices, "rounds": args.rounds, "batch": BATCH}
    scratch = make_tmpdir("capacity")

    def save() -> None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    def file_blobs(node: CloudfilmServer) -> tuple[int, int]:
        return blob_bytes(node.data)

    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        say("SQLite, file store, 1 node")
        result["sqlite-file-1"] = one_node(args, "sqlite-file-1", "sqlite", {}, file_blobs)
        save()
        say("PostgreSQL, file store, 1 node")
        result["pg-file-1"] = one_node(args, "pg-file-1", "postgresql", {}, file_blobs, two_clients=True)
        save()
        with s3_peer(scratch) as peer:
            say("PostgreSQL, S3 store (moto), 1 node")
            result["pg-s3-1"] = one_node(args, "pg-s3-1", "postgresql", peer.env,
                                         lambda _node: peer.stored_bytes())
        save()
        shared = scratch / "shared-store"
        say("PostgreSQL, one shared file store, 2 nodes")
        result["pg-file-2"] = two_nodes(args, "pg-file-2", {"CLOUDFILM_BLOB_URL": f"file://{shared}"})
        save()
        with s3_peer(scratch) as peer:
            say("PostgreSQL, one S3 store (moto), 2 nodes")
            result["pg-s3-2"] = two_nodes(args, "pg-s3-2", peer.env)
        save()
        if not args.skip_dimse:
            say("PostgreSQL, file store, 1 node, C-STORE from storescu")
            result["pg-cstore-1"] = cstore(args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    save()
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["run | inst/s aggregate (median, range) | inst/s per node (median) | node CPU ms/inst | "
             "machine busy | load 1-min", "--- | --- | --- | --- | --- | ---"]
    keys = ("sqlite-file-1", "pg-file-1", "pg-s3-1", "pg-file-2", "pg-s3-2")
    runs: dict[str, Any] = {key: result[key] for key in keys if key in result}
    if "two_clients" in result.get("pg-file-1", {}):
        runs["pg-file-1, 2 clients (per client)"] = result["pg-file-1"]["two_clients"]
    for key, r in runs.items():
        lo, hi = r["aggregate_ips_range"]
        lines.append(f"{key} | {r['aggregate_ips_median']:.0f} ({lo:.0f}–{hi:.0f}) | "
                     f"{r['per_node_ips_median']:.0f} | {r['node_cpu_ms_per_instance_median']:.1f} | "
                     f"{r['machine_busy_pct_median']:.0f}% | "
                     f"{', '.join(f'{x:.1f}' for x in r['loadavg_1min'])}")
    if "pg-cstore-1" in result:
        r = result["pg-cstore-1"]
        lo, hi = r["ips_range"]
        lines.append(f"pg-cstore-1 | {r['ips_median']:.0f} ({lo:.0f}–{hi:.0f}) | {r['ips_median']:.0f} | "
                     f"{r['node_cpu_ms_per_instance_median']:.1f} | – | "
                     f"{', '.join(f'{x:.1f}' for x in r['loadavg_1min'])}")
    lines += ["", "storage | instances | blob B/inst | Part-10 B/inst | index B/inst (all tables) | "
              "DICOM tables B/inst | audit B/inst", "--- | --- | --- | --- | --- | --- | ---"]
    for key in ("sqlite-file-1", "pg-file-1", "pg-s3-1"):
        if key in result:
            s = result[key]["storage"]
            idx = s["index_bytes_per_instance"]
            lines.append(f"{key} | {s['instances']} | {s['blob_bytes_per_instance'] or 0:.0f} | "
                         f"{s['part10_bytes_per_instance']:.0f} | {idx['all_tables']:.0f} | "
                         f"{idx.get('dicom_tables', idx.get('file', 0)):.0f} | {idx.get('audit_events', 0):.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300, help="instances per CT series")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "capacity.json")
    parser.add_argument("--skip-dimse", action="store_true", help="no C-STORE run")
    parser.add_argument("--postgres-url", default=os.environ.get("CLOUDFILM_BENCH_POSTGRES", DEFAULT_POSTGRES))
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(args)
    print(table(result), flush=True)
    say(f"done in {time.monotonic() - started:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
