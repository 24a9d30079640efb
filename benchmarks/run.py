"""Run the cloudfilm-vs-Orthanc benchmarks, print the table, update docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--database sqlite|postgresql]
                                       [--blob file|s3] [--profile DIR] [--no-doc]

Benchmarks (each its own module): stow, metadata, frames, retrieve, qido. Each one
starts its own cloudfilm and Orthanc on free loopback ports with temporary data
directories and stops them when it ends (metadata, frames and retrieve share one
pair that holds the same 300-instance CT series). Full runs take ~30 min, mostly
seeding the QIDO index with 100k studies; --quick uses small data (~5 min).
A full run rewrites the generated part of docs/benchmarks.md; a --quick run only
prints, unless --write-doc is given. ``--blob s3`` keeps cloudfilm's blobs in an S3 peer
(benchmarks/s3_peer.py: moto on loopback); its rows are recorded apart, marked "S3 store",
beside the file store's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_first_image, bench_qido, bench_series, bench_stow, report
from benchmarks.cloudfilm_server import DEFAULT_POSTGRES
from benchmarks.common import Context, LoadMonitor, Row, machine_info, make_tmpdir
from benchmarks.s3_peer import s3_peer

ALL = ["stow", "metadata", "frames", "retrieve", "first_image", "qido"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run in minutes")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(ALL)}")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="cloudfilm's index database (default sqlite)")
    parser.add_argument("--postgres-url", default=os.environ.get("CLOUDFILM_BENCH_POSTGRES",
                                                                 DEFAULT_POSTGRES))
    parser.add_argument("--blob", choices=["file", "s3"], default="file",
                        help="cloudfilm's blob store: the data directory, or an S3 peer (moto)")
    parser.add_argument("--studies", type=int, default=None,
                        help="QIDO index size (default 100000, 5000 with --quick)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record cloudfilm with py-spy (collapsed stacks) into this directory")
    doc = parser.add_mutually_exclusive_group()
    doc.add_argument("--write-doc", action="store_true", help="update docs even for --quick")
    doc.add_argument("--no-doc", action="store_true", help="never update docs/benchmarks.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or ALL
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {ALL}")
    args.names = [n for n in ALL if n in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = Context(quick=args.quick, database=args.database, postgres_url=args.postgres_url,
                  profile_dir=args.profile.resolve() if args.profile else None, blob=args.blob)
    if args.blob == "file":
        return run(args, ctx)
    with s3_peer(make_tmpdir("bench-s3")) as peer:
        ctx.server_env, ctx.s3 = peer.env, peer
        return run(args, ctx)


def run(args: argparse.Namespace, ctx: Context) -> int:
    machine = machine_info()
    write_doc = (not args.quick or args.write_doc) and not args.no_doc
    ctx.say(f"benchmarks {args.names} ({'quick' if args.quick else 'full'}, cloudfilm on "
            f"{args.database} with the {ctx.blob} blob store, {machine['nproc']} cores, "
            f"Orthanc {machine['orthanc']})")
    started = time.monotonic()
    all_rows: list[Row] = []
    failures: list[str] = []
    data = None

    def record(name: str, rows: list[Row], method: str, extra: dict) -> None:
        nonlocal data
        if ctx.blob != "file":  # recorded beside the file store's rows, not over them
            name = f"{name}-{ctx.blob}"
            for row in rows:
                row.measure += f", {ctx.blob.upper()} store"
        all_rows.extend(rows)
        print(report.console_table(rows), flush=True)
        if write_doc:
            data = report.save_results(name, rows, report.run_record(args.quick, args.database, machine),
                                       method, extra)

    jobs: list[tuple[str, object]] = []
    if "stow" in args.names:
        jobs.append(("stow", lambda: [("stow", bench_stow.run(ctx), bench_stow.METHOD, {})]))
    series_names = [n for n in ("metadata", "frames", "retrieve") if n in args.names]
    if series_names:
        jobs.append(("series", lambda: bench_series.run(ctx, series_names)))
    if "first_image" in args.names:
        def first_image_job() -> list:
            rows, extra = bench_first_image.run(ctx)
            return [("first_image", rows, bench_first_image.METHOD, extra)]
        jobs.append(("first_image", first_image_job))
    if "qido" in args.names:
        def qido_job() -> list:
            rows, extra = bench_qido.run(ctx, args.studies)
            return [("qido", rows, bench_qido.METHOD, extra)]
        jobs.append(("qido", qido_job))

    for label, job in jobs:
        t0 = time.monotonic()
        monitor = LoadMonitor()
        try:
            results = job()  # type: ignore[operator]
            load = monitor.stop()
            for name, rows, method, extra in results:
                extra = extra | {"1-min load average during the run (2 cores; other work on the "
                                 "machine shows here)": load,
                                 "wall time of this benchmark group": f"{time.monotonic() - t0:.0f} s"}
                record(name, rows, method, extra)
        except Exception:  # noqa: BLE001 - one failed benchmark must not lose the others
            monitor.stop()
            failures.append(label)
            traceback.print_exc()
            ctx.say(f"benchmark {label} FAILED")
        ctx.say(f"{label} took {time.monotonic() - t0:.0f} s")

    print()
    print(report.console_table(all_rows))
    if write_doc and data is not None:
        ctx.say(f"wrote {report.write_doc(data).relative_to(report.ROOT)} "
                f"and {report.RESULTS.relative_to(report.ROOT)}")
    ctx.say(f"done in {time.monotonic() - started:.0f} s"
            + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
