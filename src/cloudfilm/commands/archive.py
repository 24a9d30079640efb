"""``cloudfilm import``, ``demo`` and ``check``: putting data in and verifying it."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.services.exchange.importer import (
    SKIPPED,
    ImportLimits,
    ImportResult,
    Walker,
    import_paths,
)


def _show(result: ImportResult) -> None:
    reason = f": {result.reason}" if result.reason else ""
    print(f"{result.status:<9} {result.name}{reason}", flush=True)


def run_import(args: argparse.Namespace) -> int:
    notes: list[str] = []
    with opened(args) as archive:
        walker = Walker(notes, ImportLimits.from_settings(archive.settings.imports))
        results = import_paths(archive.ingest, [Path(p) for p in args.paths], _show, notes, walker)
    for note in notes:
        print(f"note: {note}")
    counts = {s: sum(r.status == s for r in results) for s in ("stored", "duplicate", "failed", SKIPPED)}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if counts["failed"] else 0


def run_demo(args: argparse.Namespace) -> int:
    """Synthetic CTs, then (unless --images-only) each study's radiology report in Chinese and
    English and every nodule measured, tracked and assessed (issue 12, part 8)."""
    from cloudfilm.services.demo.care import seed_nodule_care
    from cloudfilm.services.demo.generate import DemoOptions, generate_demo, write_truth
    from cloudfilm.services.demo.reports import write_demo_reports

    with opened(args) as archive:
        data_dir = archive.settings.data_dir
        scratch = Path(tempfile.mkdtemp(prefix="demo-", dir=data_dir))
        try:
            truth = generate_demo(scratch, DemoOptions(patients=args.patients, slices=args.slices))
            reports = 0 if args.images_only else write_demo_reports(scratch, truth)
            results = import_paths(archive.ingest, [scratch], lambda r: None, [])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        failed = [r for r in results if r.status == "failed"]
        care = None if args.images_only or failed else seed_nodule_care(archive, truth)
    write_truth(data_dir / "demo-truth.json", truth)
    print(f"demo: {len(results) - len(failed)} instances ({reports} reports) for "
          f"{args.patients} patients; truth in {data_dir / 'demo-truth.json'}")
    for result in failed:
        print(f"failed {result.name}: {result.reason}")
    if care is not None:
        print(f"demo: {care.measurements} nodule measurements on "
              f"{len(care.categories)} assessed scans")
        for problem in care.failed:
            print(f"not measured: {problem}")
    return 1 if failed or (care is not None and care.failed) else 0


def run_demo_logins(args: argparse.Namespace) -> int:
    """Print the demo logins (creating them once); the demo patient owns the first demo person's
    records at both hospitals, so their timeline spans two hospitals, and shares it with the
    demo physician."""
    import json

    from cloudfilm.domain.access import Principal, Role
    from cloudfilm.services.access.accounts import accounts_of, ensure_demo_users, principal_for_user
    from cloudfilm.services.access.people import PeopleService
    from cloudfilm.services.access.sharing import ensure_demo_physician_share
    from cloudfilm.storage.index.access_models import UserRow

    with opened(args) as archive:
        logins = ensure_demo_users(archive)
        truth_path = archive.settings.data_dir / "demo-truth.json"
        patient = accounts_of(archive).get_user("demo-patient")
        if truth_path.exists() and patient is not None and patient.person_id is not None:
            system = Principal("user", None, "demo-setup", Role.ADMIN)
            first = json.loads(truth_path.read_text())["patients"][0]
            for record in first["records"]:
                PeopleService(archive).link(system, patient.person_id, record["patient_id"],
                                            record["issuer"])
            with archive.index.session() as session:
                owner = principal_for_user(session, session.get_one(UserRow, patient.id))
            ensure_demo_physician_share(archive, owner, "demo-physician")
        film = _demo_film(archive, truth_path, args.base_url)
    print("demo logins (open /login on the server):")
    for username, role, password in logins:
        print(f"  {role.value:<10} {username:<18} {password}")
    if film:
        print(film)
    return 0


def _demo_film(archive: Any, truth_path: Path, base_url: str | None) -> str:
    """The newcomer's cloud film: its URL, its slip and the birth date to keep it with."""
    import json

    from cloudfilm.commands.films import DEFAULT_BASE, write_slip
    from cloudfilm.services.access.films import FilmService
    from cloudfilm.services.demo.film import ensure_demo_film

    if not truth_path.exists():
        return ""
    film = ensure_demo_film(archive, json.loads(truth_path.read_text()))
    if film is None:
        return ""
    base = (base_url or archive.settings.public_url or DEFAULT_BASE).rstrip("/")
    slip = archive.settings.data_dir / "demo-film-slip.pdf"
    write_slip(FilmService(archive), film.film_id, base, slip)
    return ("a hospital's cloud film, as a patient gets it (open it on a phone; to keep it, "
            f"sign up with birth date {film.birth_date}):\n  {base}{film.path}\n"
            f"  printable slip with its QR code: {slip}")


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: use a number of hours, 0 or more")
    return hours


def run_check(args: argparse.Namespace) -> int:
    from cloudfilm.services.archive.check import check_archive

    hours = args.remove_orphans_older_than
    with opened(args, recover=False) as archive:
        report = check_archive(
            archive.index, archive.blobs, hashes=not args.sizes_only,
            remove_orphans_older_than=None if hours is None else timedelta(hours=hours))
    for key in report.removed:
        print(f"removed orphan blob: {key} (no index row, written over {hours:g} h ago)")
    for problem in report.problems:
        print(problem)
    verdict = "clean" if report.clean else f"{len(report.problems)} difference(s)"
    print(f"checked {report.instances} index rows and {report.blobs} blobs: {verdict}")
    return 0 if report.clean else 1


def register(commands: Any) -> None:
    imp = commands.add_parser("import", help="import files, folders, zips and DICOMDIR media")
    add_data_arg(imp)
    imp.add_argument("paths", nargs="+")
    imp.set_defaults(func=run_import)

    demo = commands.add_parser("demo", help="generate and import synthetic chest CTs")
    add_data_arg(demo)
    demo.add_argument("--patients", type=int, default=3)
    demo.add_argument("--slices", type=int, default=120, help="slices per CT series")
    demo.add_argument("--images-only", action="store_true",
                      help="only the CT images: no reports, no measured nodules")
    demo.set_defaults(func=run_demo)

    logins = commands.add_parser("demo-logins", help="create (once) and print the demo logins "
                                                     "and the demo's cloud film")
    add_data_arg(logins)
    logins.add_argument("--base-url", help="public address of the server for the film's URL")
    logins.set_defaults(func=run_demo_logins)

    check = commands.add_parser("check", help="verify index rows against stored blobs")
    add_data_arg(check)
    check.add_argument("--sizes-only", action="store_true",
                       help="compare sizes, not SHA-256 (no blob is read back)")
    check.add_argument("--remove-orphans-older-than", type=_hours, metavar="HOURS",
                       help="delete blobs no index row names that were written more than "
                            "HOURS ago (e.g. 24: left by a node lost with its data directory)")
    check.set_defaults(func=run_check)
