"""An AI service's result as candidates: DICOM SR TID 1500 or SEG, read with highdicom.

SR (PS3.16 TID 1500 Measurement Report): each measurement group with a region is one
finding. The region is an image SCOORD (TID 1410: points on a referenced image, PS3.3
C.18.6; the centre is their mean, mapped to patient coordinates by
`services.nodules.sr.centre_from_points`) or a SCOORD3D (points in the frame of
reference, mm; the centre is their mean). Its size: Diameter (SCT 81827009), else the
mean of Long and Short Axis (SCT 103339001, 103340004), else the Long Axis, else the
diameter of the sphere of its Volume (SCT 118565006); lengths in mm or cm, volumes in
mm3, cm3 or ml (UCUM). A measurement whose concept names a probability, likelihood or
score, in [0, 1] or in %, is the score.

SEG (PS3.3 A.51): each segment is one finding; its centroid and volume come from the
mask in patient coordinates (highdicom's `Segmentation.get_volume`, whose affine maps
voxel indices to LPS mm), weighted by the fraction for FRACTIONAL segmentations, and the
diameter is the equivalent sphere's, ``(6 V / π)^(1/3)``.

The algorithm: TID 4019 Algorithm Name / Version (DCM 111001 / 111003) anywhere in the
SR, else the device observer (TID 1004: Device Observer Name, Model Name, Manufacturer),
else the dataset's Manufacturer Model Name; version else Software Versions (0018,1020).
A SEG's Segmentation Algorithm Identification (0062,0007) or Segment Algorithm Name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import pydicom

SR_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
})
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
DIAMETER, LONG_AXIS, SHORT_AXIS, VOLUME = "81827009", "103339001", "103340004", "118565006"
ALGORITHM_NAME, ALGORITHM_VERSION = "111001", "111003"
LENGTH_UNITS = {"mm": 1.0, "cm": 10.0, "um": 0.001}
VOLUME_UNITS = {"mm3": 1.0, "cm3": 1000.0, "ml": 1000.0, "mL": 1000.0}
SCORE_WORDS = ("probab", "likelihood", "score", "confidence")


class ResultError(ValueError):
    """A result that cannot become candidates; the message says why."""


class UnknownImage(ResultError):
    """A region is drawn on an image the caller may not refer to (or that is not stored)."""


@dataclass(frozen=True)
class Finding:
    """One candidate as the result gives it (image point when the region is on an image)."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float | None = None
    score: float | None = None
    instance_uid: str = ""  # the image of an image SCOORD, with its pixel indices
    column: float = 0.0
    row: float = 0.0


@dataclass(frozen=True)
class AiResult:
    kind: str  # sr | seg
    algorithm_name: str
    algorithm_version: str
    referenced_series: frozenset[str]
    referenced_images: frozenset[str]  # SOP Instance UIDs the regions are drawn on
    findings: tuple[Finding, ...]


ImageGeometry = Any  # an image's DICOM JSON metadata (centre_from_points reads it)


def kind_of(sop_class_uid: str) -> str | None:
    return "sr" if sop_class_uid in SR_CLASSES else "seg" if sop_class_uid == SEG_CLASS else None


def read_result(ds: pydicom.Dataset, image_metadata: Any) -> AiResult:
    """The findings of an SR or SEG. ``image_metadata(sop_uid)`` gives a referenced image's
    DICOM JSON metadata (or raises LookupError). Raises `ResultError`."""
    kind = kind_of(str(ds.get("SOPClassUID", "")))
    try:
        if kind == "sr":
            return _read_sr(ds, image_metadata)
        if kind == "seg":
            return _read_seg(ds)
    except ResultError:
        raise
    except (ValueError, AttributeError, KeyError, IndexError, TypeError) as exc:
        raise ResultError(f"not a readable {kind.upper() if kind else 'result'}: {exc}") from exc
    raise ResultError("only DICOM SR (TID 1500) and SEG results are accepted")


# -- SR -------------------------------------------------------------------------------


def _read_sr(ds: pydicom.Dataset, image_metadata: Any) -> AiResult:
    report = hd.sr.MeasurementReport.from_sequence([ds])
    findings, images = [], set()
    for group in report.get_planar_roi_measurement_groups():
        found = _sr_finding(group, image_metadata)
        if found is not None:
            findings.append(found)
            if found.instance_uid:
                images.add(found.instance_uid)
    for vgroup in report.get_volumetric_roi_measurement_groups():
        found = _sr_volumetric(vgroup)
        if found is not None:
            findings.append(found)
    if not findings:
        raise ResultError("the SR has no measurement group with a region and a size "
                          "(TID 1410/1411 with a diameter, axis or volume)")
    name, version = _sr_algorithm(ds, report)
    return AiResult("sr", name, version, frozenset(_evidence_series(ds)), frozenset(images),
                    tuple(findings))


def _sr_finding(group: Any, image_metadata: Any) -> Finding | None:
    size = _size(group.get_measurements())
    roi = group.roi
    if size is None or roi is None:
        return None
    points = np.asarray(roi.value, dtype=float)
    if isinstance(roi, hd.sr.ImageRegion3D):
        return _finding_3d(points, size)
    from cloudfilm.services.nodules.sr import centre_from_points
    sop = str(roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    try:
        metadata = image_metadata(sop)
    except LookupError:
        raise UnknownImage(f"the SR's region is on image {sop}") from None
    centre = centre_from_points(points.tolist(), metadata)
    distinct = _distinct(points)
    c, r = distinct.mean(axis=0)
    return Finding(centre, size[0], size[1], size[2], sop, float(c) - 0.5, float(r) - 0.5)


def _sr_volumetric(group: Any) -> Finding | None:
    size = _size(group.get_measurements())
    surface = group.roi if hasattr(group, "roi") else None
    if size is None or surface is None or not hasattr(surface, "value"):
        return None
    return _finding_3d(np.asarray(surface.value, dtype=float), size)


def _finding_3d(points: np.ndarray, size: tuple[float, float | None, float | None]) -> Finding:
    centre = _distinct(points).mean(axis=0)
    return Finding((float(centre[0]), float(centre[1]), float(centre[2])), *size)


def _distinct(points: np.ndarray) -> np.ndarray:
    """A closed outline's repeated last point counts once."""
    if len(points) > 2 and np.allclose(points[0], points[-1]):
        return points[:-1]
    return points


def _size(measurements: Sequence[Any]) -> tuple[float, float | None, float | None] | None:
    """(diameter mm, volume mm3, score) of a group's measurements; None without a size."""
    lengths: dict[str, float] = {}
    volume = score = None
    for m in measurements:
        code, unit, value = str(m.name.value), str(m.unit.value), float(m.value)
        if code in (DIAMETER, LONG_AXIS, SHORT_AXIS) and unit in LENGTH_UNITS:
            lengths[code] = value * LENGTH_UNITS[unit]
        elif code == VOLUME and unit in VOLUME_UNITS:
            volume = value * VOLUME_UNITS[unit]
        elif any(w in str(m.name.meaning).lower() for w in SCORE_WORDS):
            score = value / 100 if unit == "%" else value
    if DIAMETER in lengths:
        diameter = lengths[DIAMETER]
    elif LONG_AXIS in lengths:
        diameter = (lengths[LONG_AXIS] + lengths.get(SHORT_AXIS, lengths[LONG_AXIS])) / 2
    elif volume is not None:
        diameter = (6 * volume / math.pi) ** (1 / 3)
    else:
        return None
    if not (0 < diameter < 1000) or (score is not None and not 0 <= score <= 1):
        raise ResultError(f"implausible measurement (diameter {diameter:g} mm, score {score})")
    return diameter, volume, score


def _walk(items: Sequence[pydicom.Dataset]) -> Iterator[pydicom.Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _text_of(ds: pydicom.Dataset, code: str) -> str:
    for item in _walk(ds.get("ContentSequence", [])):
        names = item.get("ConceptNameCodeSequence", [])
        if names and str(names[0].CodeValue) == code and "TextValue" in item:
            return str(item.TextValue)
    return ""


def _sr_algorithm(ds: pydicom.Dataset, report: Any) -> tuple[str, str]:
    name, version = _text_of(ds, ALGORITHM_NAME), _text_of(ds, ALGORITHM_VERSION)
    for context in report.get_observer_contexts():
        device = context.observer_identifying_attributes
        if isinstance(device, hd.sr.DeviceObserverIdentifyingAttributes):
            name = name or device.name or device.model_name or device.manufacturer_name or ""
    name = name or str(ds.get("ManufacturerModelName", "") or ds.get("Manufacturer", ""))
    return name, version or _software_version(ds)


def _software_version(ds: pydicom.Dataset) -> str:
    value = ds.get("SoftwareVersions", "")
    return str(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _evidence_series(ds: pydicom.Dataset) -> set[str]:
    """Series the SR says it is about: Current Requested Procedure and Pertinent Other
    Evidence (PS3.3 C.17.2)."""
    found = set()
    for keyword in ("CurrentRequestedProcedureEvidenceSequence",
                    "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            found |= {str(s.SeriesInstanceUID) for s in study.get("ReferencedSeriesSequence", [])}
    return found


# -- SEG ------------------------------------------------------------------------------


def _read_seg(ds: pydicom.Dataset) -> AiResult:
    seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    findings = []
    for number in seg.get_segment_numbers():
        volume = seg.get_volume(segment_numbers=[number], combine_segments=True,
                                dtype=np.float32)
        if volume is None:
            continue
        weights = np.asarray(volume.array, dtype=float)
        total = float(weights.sum())
        if total <= 0:
            continue
        index = np.argwhere(weights > 0)
        w = weights[tuple(index.T)]
        centre_ijk = (index * w[:, None]).sum(axis=0) / w.sum()
        centre = (np.asarray(volume.affine) @ np.r_[centre_ijk, 1.0])[:3]
        voxel_mm3 = abs(float(np.linalg.det(np.asarray(volume.affine)[:3, :3])))
        mm3 = total * voxel_mm3
        findings.append(Finding((float(centre[0]), float(centre[1]), float(centre[2])),
                                (6 * mm3 / math.pi) ** (1 / 3), mm3))
    if not findings:
        raise ResultError("the SEG has no segment with any voxel")
    series = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])}
    name, version = _seg_algorithm(ds)
    return AiResult("seg", name, version, frozenset(series), frozenset(), tuple(findings))


def _seg_algorithm(ds: pydicom.Dataset) -> tuple[str, str]:
    for segment in ds.get("SegmentSequence", []):
        for algorithm in segment.get("SegmentationAlgorithmIdentificationSequence", []):
            return str(algorithm.get("AlgorithmName", "")), str(
                algorithm.get("AlgorithmVersion", "") or _software_version(ds))
        if segment.get("SegmentAlgorithmName"):
            return str(segment.SegmentAlgorithmName), _software_version(ds)
    return str(ds.get("ManufacturerModelName", "")), _software_version(ds)
