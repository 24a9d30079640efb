"""A CT series as one 3D volume in Hounsfield units, with its patient geometry.

Why a type of its own: segmentation works in voxels while measurements, tracking and the
SR are in patient coordinates (DICOM LPS, mm). Keeping the mapping next to the pixels means
every caller converts the same way (PS3.3 C.7.6.2.1.1: ImagePositionPatient is the centre
of the first transmitted pixel; ImageOrientationPatient gives the row and column
direction cosines).

Array order is (slice k, row i, column j); ``spacing_mm`` is (slice, row, column), i.e.
(between slices along the normal, PixelSpacing[0] between rows, PixelSpacing[1] between
columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class CtVolume:
    hu: np.ndarray  # float32, shape (slices, rows, columns)
    origin_mm: tuple[float, float, float]  # ImagePositionPatient of slice 0
    spacing_mm: tuple[float, float, float]  # (slice, row, column)
    row_cosines: tuple[float, float, float]  # direction of increasing column index j
    column_cosines: tuple[float, float, float]  # direction of increasing row index i
    instance_uids: tuple[str, ...]  # SOP Instance UID of each slice k
    study_uid: str = ""
    series_uid: str = ""
    frame_of_reference_uid: str = ""

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError("a CT volume is 3D (slices, rows, columns)")
        if len(self.instance_uids) != self.hu.shape[0]:
            raise ValueError("one SOP Instance UID per slice is needed")
        if min(self.spacing_mm) <= 0:
            raise ValueError("voxel spacing must be positive")

    @property
    def normal(self) -> np.ndarray:
        """Slice normal (row × column cosines): the direction of increasing slice index."""
        return np.cross(np.asarray(self.row_cosines), np.asarray(self.column_cosines))

    def _axes(self) -> np.ndarray:
        """3×3 matrix whose columns map (k, i, j) steps to mm in patient space."""
        dk, di, dj = self.spacing_mm
        return np.column_stack([self.normal * dk, np.asarray(self.column_cosines) * di,
                                np.asarray(self.row_cosines) * dj])

    def voxel_to_patient(self, kij: tuple[float, float, float] | np.ndarray) -> np.ndarray:
        """Patient (x, y, z) in mm of the (fractional) voxel (k, i, j)."""
        return np.asarray(np.asarray(self.origin_mm) + self._axes() @ np.asarray(kij, dtype=float))

    def patient_to_voxel(self, xyz: tuple[float, float, float] | np.ndarray) -> np.ndarray:
        """Fractional voxel (k, i, j) of the patient point (x, y, z) in mm."""
        return np.linalg.solve(self._axes(), np.asarray(xyz, dtype=float) - np.asarray(self.origin_mm))

    def slice_of(self, sop_instance_uid: str) -> int:
        """Index k of the slice with this SOP Instance UID."""
        try:
            return self.instance_uids.index(sop_instance_uid)
        except ValueError:
            raise KeyError(f"instance {sop_instance_uid} is not a slice of this series") from None
