"""``cloudfilm detect``: find candidate nodules in a stored study's CT, print JSON.

detect [--data DIR] --study UID

Runs the built-in finder (services/detection/finder.py, docs/detection.md) on the study's
largest axial CT series. Exit 0 with ``{"candidates": [...]}`` on stdout (an empty list
when there is no CT volume or nothing is found); exit 2 with one line on stderr when the
study is not stored or its CT cannot be read as a volume.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.detection.finder import candidates_json, detect_study
from cloudfilm.services.imaging.volumes import VolumeError


def run_detect(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            found = detect_study(archive, args.study)
    except NotStored as exc:
        print(f"cannot detect: {exc} is not stored", file=sys.stderr)
        return 2
    except VolumeError as exc:
        print(f"cannot detect: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(candidates_json(found), indent=2))
    return 0


def register(commands: Any) -> None:
    detect = commands.add_parser(
        "detect", help="find candidate nodules (4-30 mm, solid) in a study's CT (JSON)")
    add_data_arg(detect)
    detect.add_argument("--study", required=True, help="StudyInstanceUID")
    detect.set_defaults(func=run_detect)
