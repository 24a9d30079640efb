"""``cloudfilm measure``: segment and measure the nodule under a click, print JSON.

measure [--data DIR] --study UID --series UID --instance UID --x COL --y ROW

The click is a pixel of one slice (column x, row y; 0 is the centre of the first pixel).
Exit 0 with the measurement on stdout; exit 2 with one line on stderr when a UID is not
stored or the click is not on a measurable nodule.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.segmentation import SegmentationError
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.imaging.volumes import VolumeError
from cloudfilm.services.nodules.measure import measure_at, measurement_json


def run_measure(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            seg, volume = measure_at(archive, args.study, args.series, args.instance,
                                     args.x, args.y)
    except NotStored as exc:
        print(f"cannot measure: {exc} is not stored", file=sys.stderr)
        return 2
    except (SegmentationError, VolumeError) as exc:
        print(f"cannot measure: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(measurement_json(seg, volume), indent=2))
    return 0


def register(commands: Any) -> None:
    measure = commands.add_parser(
        "measure", help="segment the nodule under a click and print its measurements (JSON)")
    add_data_arg(measure)
    measure.add_argument("--study", required=True, help="StudyInstanceUID")
    measure.add_argument("--series", required=True, help="SeriesInstanceUID of the CT series")
    measure.add_argument("--instance", required=True, help="SOPInstanceUID of the clicked slice")
    measure.add_argument("--x", type=float, required=True, help="column of the click (pixels)")
    measure.add_argument("--y", type=float, required=True, help="row of the click (pixels)")
    measure.set_defaults(func=run_measure)
