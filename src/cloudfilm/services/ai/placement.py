"""Where a point in patient coordinates lies on a stored series: the nearest slice and
its pixel indices, so a candidate opens on an image and is measured with a click there.

Each slice's plane is read from its DICOM JSON metadata (Image Position and Orientation
(Patient), Pixel Spacing: PS3.3 C.7.6.2.1.1). The point is projected on the plane of the
slice nearest along the normal: column = (P − S)·X / Δc, row = (P − S)·Y / Δr, so
(0, 0) is the centre of the top-left pixel, as in `CtVolume` and the measure API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

IPP, IOP, SPACING, SOP = "00200032", "00200037", "00280030", "00080018"


@dataclass(frozen=True)
class Plane:
    sop_uid: str
    origin: np.ndarray
    row_dir: np.ndarray  # X: along a row (increasing column)
    col_dir: np.ndarray  # Y: down a column (increasing row)
    spacing: tuple[float, float]  # (between rows, between columns)


def _floats(attrs: dict[str, Any], tag: str) -> list[float]:
    return [float(v) for v in attrs.get(tag, {}).get("Value", []) or []]


def planes_of(metadata: Sequence[bytes]) -> list[Plane]:
    """The single-frame images of a series with a full geometry."""
    planes = []
    for raw in metadata:
        attrs = orjson.loads(raw)
        position, orientation = _floats(attrs, IPP), _floats(attrs, IOP)
        spacing = _floats(attrs, SPACING)
        sop = attrs.get(SOP, {}).get("Value", [""])[0]
        if len(position) == 3 and len(orientation) == 6 and len(spacing) == 2 and sop:
            planes.append(Plane(str(sop), np.array(position), np.array(orientation[:3]),
                                np.array(orientation[3:]), (spacing[0], spacing[1])))
    return planes


def nearest_pixel(planes: Sequence[Plane], point: Sequence[float]) -> tuple[str, float, float]:
    """(SOP Instance UID, column, row) of ``point`` (LPS mm) on the nearest slice."""
    if not planes:
        raise LookupError("the series has no image with a plane geometry")
    p = np.asarray(point, dtype=float)

    def distance(plane: Plane) -> float:
        normal = np.cross(plane.row_dir, plane.col_dir)
        return abs(float(np.dot(p - plane.origin, normal)))

    best = min(planes, key=distance)
    offset = p - best.origin
    column = float(np.dot(offset, best.row_dir)) / best.spacing[1]
    row = float(np.dot(offset, best.col_dir)) / best.spacing[0]
    return best.sop_uid, column, row
