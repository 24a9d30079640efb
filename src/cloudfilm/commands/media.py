"""``cloudfilm attach`` (a PDF or photo into a study) and ``cloudfilm export`` (IHE PDI zip).

attach exits 0 when stored, 1 for an unknown study or patient (or a refusal), 2 for a
file type it can't use; export exits 1 when a study or patient is unknown.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened


def run_attach(args: argparse.Namespace) -> int:
    from cloudfilm.services.exchange import documents

    source = Path(args.file)
    if not source.is_file():
        print(f"error: {source} is not a file", file=sys.stderr)
        return 2
    with opened(args) as archive:
        try:
            attached = documents.attach(archive, source, source.name, study_uid=args.study,
                                        patient_id=args.patient, issuer=args.issuer,
                                        title=args.title)
        except documents.UnsupportedDocument as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (documents.UnknownTarget, documents.DocumentNotStored) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{attached.status} {attached.sop_instance_uid} ({attached.media_type}) in series "
          f"{attached.series_uid} of study {attached.study_uid}")
    return 0


def _write(chunks: Any, out: Path) -> int:
    """Write to ``out.part`` as chunks come, then rename: a failed export leaves no zip."""
    partial = out.with_name(out.name + ".part")
    written = 0
    try:
        with open(partial, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                written += len(chunk)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def run_export(args: argparse.Namespace) -> int:
    from cloudfilm.services.exchange import export

    if not args.study and args.patient is None:
        print("error: name at least one --study or a --patient", file=sys.stderr)
        return 2
    out = Path(args.out)
    with opened(args) as archive:
        try:
            plan = export.studies_for(archive, args.study or [], args.patient, args.issuer)
        except (export.UnknownStudies, export.UnknownPatient, export.AmbiguousPatient) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            size = _write(export.stream_export(plan, archive.blobs), out)
        except OSError as exc:
            print(f"error: cannot write {out}: {exc}", file=sys.stderr)
            return 1
    print(f"exported {len(plan.files)} instance(s) of {len(plan.studies)} study(ies) "
          f"to {out} ({size} bytes)")
    return 0


def register(commands: Any) -> None:
    attach = commands.add_parser("attach", help="store a PDF report or a JPEG/PNG photo in a study")
    add_data_arg(attach)
    target = attach.add_mutually_exclusive_group(required=True)
    target.add_argument("--study", help="StudyInstanceUID of the stored study to add a series to")
    target.add_argument("--patient", help="PatientID of a stored patient: starts a new study")
    attach.add_argument("--issuer", help="IssuerOfPatientID, with --patient")
    attach.add_argument("--title", help="series description and document title "
                                        "(default: the file name)")
    attach.add_argument("file")
    attach.set_defaults(func=run_attach)

    exp = commands.add_parser("export", help="write studies as an IHE PDI zip (DICOMDIR, "
                                             "README.TXT, INDEX.HTM, previews)")
    add_data_arg(exp)
    exp.add_argument("--study", action="append", help="StudyInstanceUID (repeatable)")
    exp.add_argument("--patient", help="PatientID: every study of that patient")
    exp.add_argument("--issuer", help="IssuerOfPatientID, with --patient")
    exp.add_argument("--out", required=True, help="the zip file to write")
    exp.set_defaults(func=run_export)
