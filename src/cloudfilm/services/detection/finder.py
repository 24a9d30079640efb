"""The built-in nodule finder: candidates in a stored study's CT, for a physician to confirm.

Which series: the largest axial CT volume of the study (single-frame CT Image Storage,
PS3.4 B.5, whose slice normal is within ``AXIAL_COSINE`` of the patient's z axis); a
series that is not one regular volume (missing slices, localizers) is skipped for the next
largest. The volume is loaded through the measurement cache, so accepting a candidate
(which measures it again at the same point) does not load the series twice.

Candidates are never a diagnosis: the AI-results service stores them as *pending* until a
physician accepts (and they become measurements) or rejects them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudfilm.domain.detection import DetectedCandidate, find_nodules
from cloudfilm.domain.volume import CtVolume
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.imaging.volumes import VolumeError
from cloudfilm.services.nodules.measure import volume_cache

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

DETECTOR_NAME = "cloudfilm-nodule-finder"
DETECTOR_VERSION = "1.0.0"   # bump when the method changes (docs/detection.md)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
AXIAL_COSINE = 0.9           # |slice normal · z| at least: an axial series
MIN_SLICES = 10              # fewer is not a chest volume (scout, a few key images)


@dataclass(frozen=True)
class DetectedNodule:
    """One candidate, located for the viewer and the SR (ai_contract.md)."""

    series_uid: str
    center_mm: tuple[float, float, float]   # patient coordinates (LPS), mm
    diameter_mm: float                      # mean axial diameter from segment_nodule
    volume_mm3: float
    score: float                            # 0..1, higher = more likely a nodule
    instance_uid: str                       # SOP Instance UID of the axial slice through the centre
    column: float                           # pixel column/row of the centre on that slice
    row: float                              # ((0, 0) = centre of the top-left pixel, as CtVolume)


def detect_study(archive: Archive, study_uid: str) -> list[DetectedNodule]:
    """Candidates in the study's largest axial CT volume, by score (highest first).

    Raises `NotStored` for an unknown study; a study without an axial CT volume has none.
    """
    volume = _ct_volume(archive, study_uid)
    if volume is None:
        return []
    return [_located(volume, candidate) for candidate in find_nodules(volume)]


def candidates_json(found: Sequence[DetectedNodule]) -> dict[str, Any]:
    """What ``cloudfilm detect`` prints: centre to 0.1 mm, volume to 1 mm³, score to 0.001."""
    return {"candidates": [{
                "center_mm": [round(v, 1) for v in n.center_mm],
                "diameter_mm": round(n.diameter_mm, 1), "volume_mm3": round(n.volume_mm3),
                "score": round(n.score, 3), "series_uid": n.series_uid,
                "instance_uid": n.instance_uid, "column": round(n.column, 2),
                "row": round(n.row, 2)} for n in found]}


def _ct_volume(archive: Archive, study_uid: str) -> CtVolume | None:
    """The largest axial CT series of the study that loads as one regular volume."""
    instances = archive.retrieve.instances(study_uid)   # NotStored for an unknown study
    counts = Counter(i.series_uid for i in instances
                     if i.sop_class_uid == CT_IMAGE_STORAGE and i.number_of_frames <= 1)
    for series_uid, count in counts.most_common():
        if count < MIN_SLICES:
            break
        stored = [i for i in instances if i.series_uid == series_uid]
        try:
            volume = volume_cache.get(archive, study_uid, series_uid, stored)
        except (VolumeError, NotStored):
            continue
        if abs(float(volume.normal[2])) >= AXIAL_COSINE:
            return volume
    return None


def _located(volume: CtVolume, candidate: DetectedCandidate) -> DetectedNodule:
    """Patient centre, and the slice and pixel through it."""
    seg = candidate.segmentation
    k, i, j = seg.centre_kij
    slice_index = int(np.clip(round(k), 0, volume.hu.shape[0] - 1))
    x, y, z = seg.centre_patient_mm
    return DetectedNodule(
        series_uid=volume.series_uid, center_mm=(x, y, z), diameter_mm=seg.mean_diameter_mm,
        volume_mm3=seg.volume_mm3, score=candidate.score,
        instance_uid=volume.instance_uids[slice_index], column=float(j), row=float(i))
