"""``cloudfilm research export``: a de-identified cohort (PS3.15 Annex E), printed manifest.

research export [--data DIR] (--all | --study UID... | --person ID... | filters)
                (--out DIR | --to NODE) [options]

Filters (all must hold): --from/--until DATE (study date), --modality, --hospital
(IssuerOfPatientID), --nodule-type, --min-size-mm/--max-size-mm (mean diameter), --growth
(new, grew, stable), --category, --guideline (fleischner, lungrads). A nodule filter
selects nodules and exports every study they were measured in. Options: --no-dates,
--no-characteristics, --no-clean-descriptors, --retain-safe-private. The manifest (JSON)
goes to stdout; exit 2 with one line on stderr when the cohort or destination is wrong.
The person at the console acts as an admin (they hold the server's files and key).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.access import Principal, Role
from cloudfilm.domain.deidentification import Options
from cloudfilm.services.exchange.nodes import UnknownNode
from cloudfilm.services.exchange.remote_types import RemoteError
from cloudfilm.services.research.cohort import GUIDELINES, Selection, SelectionError
from cloudfilm.services.research.export import ResearchExport
from cloudfilm.services.research.nodule_table import GROWTH
from cloudfilm.services.research.sinks import FolderSink, NodeSink


def _console() -> Principal:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal(kind="user", username=f"cli:{who}", role=Role.ADMIN)


def selection_of(args: argparse.Namespace) -> Selection:
    return Selection(
        everything=args.all, study_uids=tuple(args.study or ()),
        person_ids=tuple(args.person or ()), date_from=args.date_from,
        date_until=args.date_until, modalities=tuple(args.modality or ()),
        hospitals=tuple(args.hospital or ()), nodule_types=tuple(args.nodule_type or ()),
        min_size_mm=args.min_size_mm, max_size_mm=args.max_size_mm,
        growth=tuple(args.growth or ()), categories=tuple(args.category or ()),
        guideline=args.guideline)


def options_of(args: argparse.Namespace) -> Options:
    return Options(retain_dates=not args.no_dates,
                   retain_characteristics=not args.no_characteristics,
                   clean_descriptors=not args.no_clean_descriptors,
                   retain_safe_private=args.retain_safe_private)


def run_export(args: argparse.Namespace) -> int:
    try:
        selection = selection_of(args)
        selection.check()
        with opened(args, recover=False) as archive:
            export = ResearchExport(archive, selection, options_of(args))
            if args.out:
                manifest = export.run(FolderSink(Path(args.out)), _console(),
                                      destination=f"folder {args.out}")
            else:
                sink = NodeSink(archive, args.to)
                manifest = export.run(sink, _console(), destination=f"node {args.to}")
                manifest["sent"] = sink.send()
    except (SelectionError, FileExistsError, UnknownNode, RemoteError) as exc:
        print(f"cannot export: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, indent=2))
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2024-05-31") from None


def _add_cohort(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="every study in the archive")
    parser.add_argument("--study", nargs="+", metavar="UID", help="these studies")
    parser.add_argument("--person", nargs="+", type=int, metavar="ID",
                        help="every study of these persons (case folders)")
    parser.add_argument("--from", dest="date_from", type=_day, help="study date on or after")
    parser.add_argument("--until", dest="date_until", type=_day, help="study date on or before")
    parser.add_argument("--modality", nargs="+", help="a series of this modality (e.g. CT)")
    parser.add_argument("--hospital", nargs="+", help="the record's IssuerOfPatientID")
    parser.add_argument("--nodule-type", nargs="+", choices=("solid", "part-solid", "ground-glass"))
    parser.add_argument("--min-size-mm", type=float, help="nodule mean diameter at least")
    parser.add_argument("--max-size-mm", type=float, help="nodule mean diameter at most")
    parser.add_argument("--growth", nargs="+", choices=GROWTH)
    parser.add_argument("--category", nargs="+", help="exam category (e.g. 4A, or Fleischner's)")
    parser.add_argument("--guideline", choices=tuple(GUIDELINES))


def register(commands: Any) -> None:
    research = commands.add_parser("research", help="de-identified research exports")
    actions = research.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="export a cohort de-identified (PS3.15 Annex E); prints the manifest",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arg(export)
    _add_cohort(export)
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="a new or empty folder for the files, CSV and manifest")
    where.add_argument("--to", metavar="NODE", help="C-STORE the instances to this node")
    export.add_argument("--no-dates", action="store_true",
                        help="remove dates instead of shifting them per person")
    export.add_argument("--no-characteristics", action="store_true",
                        help="remove age, sex, size and weight")
    export.add_argument("--no-clean-descriptors", action="store_true",
                        help="remove descriptions instead of cleaning them")
    export.add_argument("--retain-safe-private", action="store_true",
                        help="keep numeric private attributes (off by default)")
    export.set_defaults(func=run_export)
