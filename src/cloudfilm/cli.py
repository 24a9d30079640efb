"""``cloudfilm``: a thin command line over the services.

serve   start the DICOMweb server and the DIMSE node
import  store files, folders, .zip archives and CD/USB folders with a DICOMDIR
demo    generate synthetic chest CTs with growing nodules and import them
check   verify that the index and the stored blobs agree
node    manage the known remote DICOM nodes
measure segment and measure the nodule under a click on a CT slice (JSON)
detect  find candidate nodules (solid, 4-30 mm) in a study's CT for a physician to confirm (JSON)
advise  guideline follow-up (Fleischner 2017, Lung-RADS v2022) for a nodule case on stdin
film    issue or withdraw a hospital cloud film (a link, QR code and slip for one study)
worker  run background jobs (registration and tracking, notifications, reminders, films)
research export a de-identified cohort (PS3.15 Annex E) to a folder or a node
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cloudfilm.commands import (
    advise,
    archive,
    audit,
    detect,
    films,
    measure,
    media,
    nodes,
    people,
    remote,
    research,
    retention,
    serve,
    users,
    worker,
)
from cloudfilm.config import SettingError

COMMAND_MODULES = [serve, archive, nodes, remote, media, users, audit, retention, people, advise,
                   measure, detect, films, worker, research]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudfilm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything written holds patient data: owner-only files and folders
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingError as exc:  # a bad environment variable: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
