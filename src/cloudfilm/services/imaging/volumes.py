"""Load a stored CT series into a `CtVolume` (HU, geometry), for segmentation and registration.

Slices are ordered by their position along the slice normal, not by InstanceNumber, which
hospitals number differently; the spacing is measured from the positions because
SliceThickness can differ from the distance between slices (overlapping reconstructions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from cloudfilm.domain.volume import CtVolume

if TYPE_CHECKING:
    from cloudfilm.services.archive.retrieve import StoredInstance
    from cloudfilm.services.context import Archive

SPACING_TOLERANCE = 0.02  # relative: gaps larger than this make the series non-uniform


class VolumeError(ValueError):
    """The series cannot be treated as one regular 3D volume."""


def _xyz(values: Iterable[float], keyword: str) -> tuple[float, float, float]:
    """Three numbers of a patient-space vector (PS3.3 C.7.6.2.1.1)."""
    numbers = [float(v) for v in values]
    if len(numbers) != 3:
        raise VolumeError(f"{keyword} needs three numbers per vector, not {len(numbers)}")
    return numbers[0], numbers[1], numbers[2]


def volume_from_datasets(datasets: Sequence[pydicom.Dataset]) -> CtVolume:
    """Stack single-frame axial slices (any order) into a HU volume."""
    if len(datasets) < 2:
        raise VolumeError("a volume needs at least two slices")
    first = datasets[0]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    row, column = iop[:3], iop[3:]
    normal = np.cross(row, column)
    for ds in datasets:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-4):
            raise VolumeError("slices have different orientations")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise VolumeError("slices have different sizes")
    ordered = sorted(datasets, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    positions = np.asarray([np.dot(normal, [float(v) for v in ds.ImagePositionPatient]) for ds in ordered])
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    if spacing <= 0 or np.any(np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing):
        raise VolumeError("slices are not evenly spaced (missing or duplicate slices?)")
    hu = np.empty((len(ordered), int(first.Rows), int(first.Columns)), dtype=np.float32)
    for k, ds in enumerate(ordered):
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        hu[k] = ds.pixel_array.astype(np.float32) * slope + intercept
    pixel_spacing = [float(v) for v in first.PixelSpacing]
    return CtVolume(
        hu=hu, origin_mm=_xyz(ordered[0].ImagePositionPatient, "ImagePositionPatient"),
        spacing_mm=(spacing, pixel_spacing[0], pixel_spacing[1]),
        row_cosines=_xyz(row, "ImageOrientationPatient"),
        column_cosines=_xyz(column, "ImageOrientationPatient"),
        instance_uids=tuple(str(ds.SOPInstanceUID) for ds in ordered),
        study_uid=str(first.get("StudyInstanceUID", "")),
        series_uid=str(first.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")))


def load_series_volume(archive: Archive, study_uid: str, series_uid: str) -> CtVolume:
    """Read every stored instance of a series (decoding any transfer syntax) into a volume."""
    instances = archive.retrieve.instances(study_uid, series_uid)
    datasets = [_read_whole(archive, instance) for instance in instances
                if instance.number_of_frames <= 1]
    datasets = [ds for ds in datasets if "PixelData" in ds and "ImagePositionPatient" in ds]
    return volume_from_datasets(datasets)


def _read_whole(archive: Archive, instance: StoredInstance) -> pydicom.Dataset:
    """The whole data set, pixels included, read before the stream closes."""
    with archive.retrieve.open(instance) as stream:
        return pydicom.dcmread(stream)
