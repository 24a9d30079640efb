"""``cloudfilm``: a thin command line over the services.

serve   start the DICOMweb server
import  store files, folders, .zip archives and CD/USB folders with a DICOMDIR
demo    generate synthetic chest CTs with growing nodules and import them
check   verify that the index and the stored blobs agree
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from cloudfilm.config import Settings
from cloudfilm.services.archive import Archive

LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data directory (default $CLOUDFILM_DATA or ./var/cloudfilm)")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cloudfilm.api.app import create_app

    if not _is_loopback(args.host) and not args.insecure_no_auth:
        print(f"refusing to listen on {args.host}: access control is not enabled yet, so only "
              "loopback addresses are allowed; pass --insecure-no-auth to override", file=sys.stderr)
        return 2
    archive = Archive.open(Settings.load(args.data))
    try:
        print(f"cloudfilm serving {archive.settings.data_dir} at http://{args.host}:{args.port}/dicomweb",
              flush=True)
        config = uvicorn.Config(create_app(archive), host=args.host, port=args.port, loop="uvloop",
                                http="httptools", access_log=False, log_level="warning",
                                timeout_keep_alive=30)
        uvicorn.Server(config).run()
    finally:
        archive.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from cloudfilm.services.importer import SKIPPED, ImportResult, import_paths

    archive = Archive.open(Settings.load(args.data))
    notes: list[str] = []

    def show(result: ImportResult) -> None:
        reason = f": {result.reason}" if result.reason else ""
        print(f"{result.status:<9} {result.name}{reason}", flush=True)

    try:
        results = import_paths(archive.ingest, [Path(p) for p in args.paths], show, notes)
    finally:
        archive.close()
    for note in notes:
        print(f"note: {note}")
    counts = {s: sum(r.status == s for r in results) for s in ("stored", "duplicate", "failed", SKIPPED)}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if counts["failed"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cloudfilm.services.demo import DemoOptions, generate_demo, write_truth
    from cloudfilm.services.importer import import_paths

    settings = Settings.load(args.data)
    archive = Archive.open(settings)
    scratch = Path(tempfile.mkdtemp(prefix="demo-", dir=settings.data_dir))
    try:
        truth = generate_demo(scratch, DemoOptions(patients=args.patients, slices=args.slices))
        results = import_paths(archive.ingest, [scratch], lambda r: None, [])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        archive.close()
    truth_path = settings.data_dir / "demo-truth.json"
    write_truth(truth_path, truth)
    failed = [r for r in results if r.status == "failed"]
    print(f"demo: {len(results) - len(failed)} instances for {args.patients} patients; "
          f"truth in {truth_path}")
    for result in failed:
        print(f"failed {result.name}: {result.reason}")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from cloudfilm.services.check import check_archive

    archive = Archive.open(Settings.load(args.data), recover=False)
    try:
        report = check_archive(archive.index, archive.blobs)
    finally:
        archive.close()
    for problem in report.problems:
        print(problem)
    print(f"checked {report.instances} index rows and {report.blobs} blobs: "
          f"{'clean' if report.clean else f'{len(report.problems)} difference(s)'}")
    return 0 if report.clean else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudfilm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the DICOMweb server")
    _data_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="allow a non-loopback host before access control exists")
    serve.set_defaults(func=cmd_serve)

    imp = commands.add_parser("import", help="import files, folders, zips and DICOMDIR media")
    _data_arg(imp)
    imp.add_argument("paths", nargs="+")
    imp.set_defaults(func=cmd_import)

    demo = commands.add_parser("demo", help="generate and import synthetic chest CTs")
    _data_arg(demo)
    demo.add_argument("--patients", type=int, default=3)
    demo.add_argument("--slices", type=int, default=120, help="slices per CT series")
    demo.set_defaults(func=cmd_demo)

    check = commands.add_parser("check", help="verify index rows against stored blobs")
    _data_arg(check)
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
