"""Rigid registration of a follow-up chest CT to its prior, restricted to the lungs.

Why: two studies of one patient rarely share a frame of reference. Hospitals put the
table origin in different places and the patient lies a little differently each time, so
the same nodule has patient coordinates hundreds of millimetres apart. Nodules are
matched by position only after the current study is mapped into the prior's space.

How (SimpleITK, ITK v4 registration framework):

* Both series become SimpleITK images whose physical space *is* DICOM patient space
  (origin = ImagePositionPatient of the first slice, direction = row, column and slice
  cosines), downsampled by bin-averaging to about ``TARGET_SPACING_MM``: rigid alignment
  of whole lungs needs no fine detail, and it keeps a pair of 512×512×300 series to a
  few seconds.
* Lungs: air-like voxels inside the body, small air pockets (bowel gas) dropped by size
  (`cloudfilm.domain.lung`, shared with nodule detection).
* The metric is evaluated only inside the prior's lung mask, dilated by
  ``LUNG_MARGIN_MM`` so the lung boundary -- the strongest feature -- is inside it. The
  rest of the body (arms, abdomen, neck) moves independently of the lungs.
* The transform starts from the translation between the lung centroids (different table
  origins can put them hundreds of millimetres apart in z, far beyond an optimiser's
  capture range), then an Euler (3 rotations + 3 translations) transform is optimised
  over ``SHRINK_FACTORS`` resolutions.
* Metric: Mattes mutual information. The two CTs come from different scanners,
  reconstruction kernels, doses and breathing depths; lung attenuation changes by tens
  to a hundred HU with inspiration, and contrast may differ. Mean squares assumes equal
  HU for equal tissue and is pulled by such global shifts; mutual information only
  needs a consistent relation between the two intensities.
* Deterministic: metric samples are drawn with the fixed ``SAMPLING_SEED`` and the
  registration runs on one thread, so a pair always gives the same transform.

The result is checked: a registration whose optimiser ran out of iterations, whose lungs
overlap by less than ``MIN_LUNG_OVERLAP`` afterwards, or that rotates by more than
``MAX_ROTATION_DEG`` (patient coordinates follow the patient, so even a prone or
feet-first scan differs from a supine one by a few degrees only) raises
`RegistrationError`; callers then fall back to a manual link.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from cloudfilm.domain.lung import AIR_HU_MAX, lung_mask
from cloudfilm.domain.volume import CtVolume

TARGET_SPACING_MM = 4.0   # voxel size the registration works at
MIN_LUNG_ML = 100.0       # less air inside the body than this is not a chest CT
LUNG_MARGIN_MM = 15.0     # the metric mask reaches this far beyond the lungs (chest wall)
SHRINK_FACTORS = (4, 2, 1)  # multi-resolution: 16, 8 and 4 mm voxels
SMOOTHING_SIGMAS_MM = (8.0, 4.0, 0.0)
HISTOGRAM_BINS = 32
SAMPLING_FRACTION = 0.25
SAMPLING_SEED = 20261122
MAX_ITERATIONS = 300
INITIAL_STEP_MM = 4.0     # optimiser step (scaled so 1 = 1 mm of voxel shift)
MIN_STEP_MM = 0.001
MIN_LUNG_OVERLAP = 0.8    # |prior ∩ current| / smaller lung, after registration
MAX_ROTATION_DEG = 15.0   # patient coordinates follow the patient: larger means astray


Vector = tuple[float, float, float]


class RegistrationError(RuntimeError):
    """The two CTs could not be aligned; the reason says why (match manually instead)."""


@dataclass(frozen=True)
class RigidTransform:
    """A rotation and translation taking the current study's patient space to the prior's.

    ``p_prior = rotation @ p_current + translation_mm``. ``metric_value`` is the final
    Mattes mutual-information value (negative; lower is better), kept for the record.
    ``lung_overlap`` is the fraction of the smaller lung mask covered by the other after
    registration (1.0 is perfect).
    """

    rotation: tuple[Vector, Vector, Vector]  # rows
    translation_mm: Vector
    metric_value: float
    lung_overlap: float

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, dtype=float)
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6) \
                or np.linalg.det(r) < 0:
            raise ValueError("rotation must be a 3×3 rotation matrix (orthonormal, det +1)")
        if len(self.translation_mm) != 3:
            raise ValueError("translation_mm must have three components (x, y, z)")

    def current_to_prior(self, xyz: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """Map patient point(s) (x, y, z) in mm, shape (3,) or (n, 3), into the prior."""
        points = np.asarray(xyz, dtype=float)
        mapped: np.ndarray = points @ np.asarray(self.rotation).T + np.asarray(self.translation_mm)
        return mapped

    @property
    def rotation_deg(self) -> float:
        """Total rotation angle, for display and plausibility checks."""
        cos = (np.trace(np.asarray(self.rotation)) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def register_rigid(prior: CtVolume, current: CtVolume) -> RigidTransform:
    """Align ``current`` (moving) to ``prior`` (fixed) on the lungs; see the module notes.

    Raises `RegistrationError` when either study has no lungs, the optimiser does not
    converge, the lungs do not overlap afterwards or the rotation is implausible.
    """
    fixed, moving = _working_image(prior), _working_image(current)
    fixed_lung, moving_lung = _lung_mask(fixed, "prior"), _lung_mask(moving, "current")
    transform = _initial_transform(fixed_lung, moving_lung)
    method = _registration_method(_dilate(fixed_lung, LUNG_MARGIN_MM))
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise RegistrationError(f"the optimiser failed: {exc}") from exc
    if method.GetOptimizerIteration() >= MAX_ITERATIONS:
        raise RegistrationError(
            f"the optimiser did not converge in {MAX_ITERATIONS} iterations "
            f"({method.GetOptimizerStopConditionDescription()})")
    overlap = _lung_overlap(fixed_lung, moving_lung, transform)
    if overlap < MIN_LUNG_OVERLAP:
        raise RegistrationError(
            f"after registration only {overlap:.0%} of the lungs overlap "
            f"(at least {MIN_LUNG_OVERLAP:.0%} needed): the scans may cover different regions")
    result = _current_to_prior(transform, method.GetMetricValue(), overlap)
    if result.rotation_deg > MAX_ROTATION_DEG:
        raise RegistrationError(
            f"registration ended rotated by {result.rotation_deg:.0f}° (at most "
            f"{MAX_ROTATION_DEG:g}° expected between two chest CTs of one patient)")
    return result


def patient_space_image(volume: CtVolume) -> sitk.Image:
    """The volume as a float32 SimpleITK image whose physical space is DICOM patient space.

    Array (k, i, j) becomes image (x = j, y = i, z = k); the direction matrix's columns
    are the row cosines, the column cosines and the slice normal (PS3.3 C.7.6.2.1.1).
    """
    image = sitk.GetImageFromArray(volume.hu)
    dk, di, dj = volume.spacing_mm
    image.SetSpacing((dj, di, dk))
    image.SetOrigin(volume.origin_mm)
    axes = np.column_stack([volume.row_cosines, volume.column_cosines, volume.normal])
    image.SetDirection(tuple(float(v) for v in axes.ravel()))
    return image


def _working_image(volume: CtVolume) -> sitk.Image:
    """The volume in patient space, bin-averaged to about ``TARGET_SPACING_MM``."""
    dk, di, dj = volume.spacing_mm
    factors = [max(1, round(TARGET_SPACING_MM / s)) for s in (dj, di, dk)]
    shrunk: sitk.Image = sitk.BinShrink(patient_space_image(volume), factors)
    return shrunk


def _lung_mask(image: sitk.Image, which: str) -> sitk.Image:
    """Air-like voxels inside the body, without small pockets (uint8, 1 = lung; domain/lung.py)."""
    lung = lung_mask(sitk.GetArrayFromImage(image))
    volume_ml = float(lung.sum()) * _voxel_ml(image)
    if volume_ml < MIN_LUNG_ML:
        raise RegistrationError(
            f"no lung found in the {which} study: {volume_ml:.0f} ml of air-like voxels "
            f"(< {AIR_HU_MAX:g} HU) inside the body, at least {MIN_LUNG_ML:g} ml needed")
    mask = sitk.GetImageFromArray(lung.astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def _dilate(mask: sitk.Image, margin_mm: float) -> sitk.Image:
    """Grow a mask by about ``margin_mm`` in every direction."""
    radius = [max(1, round(margin_mm / s)) for s in mask.GetSpacing()]
    dilated: sitk.Image = sitk.BinaryDilate(mask, radius, sitk.sitkBall)
    return dilated


def _centroid(mask: sitk.Image) -> np.ndarray:
    """Physical centre of a binary mask."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return np.asarray(stats.GetCentroid(1))


def _initial_transform(fixed_lung: sitk.Image, moving_lung: sitk.Image) -> sitk.Euler3DTransform:
    """Rotate about the prior's lung centre; start by moving it onto the current's."""
    fixed_centre, moving_centre = _centroid(fixed_lung), _centroid(moving_lung)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(tuple(float(v) for v in fixed_centre))
    transform.SetTranslation(tuple(float(v) for v in moving_centre - fixed_centre))
    return transform


def _registration_method(metric_mask: sitk.Image) -> sitk.ImageRegistrationMethod:
    """Mattes MI inside the mask, regular-step gradient descent, three resolutions."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    method.SetMetricFixedMask(metric_mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=INITIAL_STEP_MM, minStep=MIN_STEP_MM, numberOfIterations=MAX_ITERATIONS,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_SIGMAS_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetNumberOfThreads(1)
    method.SetNumberOfWorkUnits(1)
    return method


def _lung_overlap(fixed_lung: sitk.Image, moving_lung: sitk.Image,
                  transform: sitk.Transform) -> float:
    """Share of the smaller lung (by volume) that the other covers, in the prior's grid."""
    moved = sitk.Resample(moving_lung, fixed_lung, transform, sitk.sitkNearestNeighbor, 0)
    common = sitk.GetArrayFromImage(fixed_lung & moved).sum() * _voxel_ml(fixed_lung)
    smaller = min(_mask_ml(fixed_lung), _mask_ml(moving_lung))
    return float(common / smaller)


def _voxel_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def _mask_ml(mask: sitk.Image) -> float:
    """Volume of a binary mask in millilitres."""
    return float(sitk.GetArrayFromImage(mask).sum()) * _voxel_ml(mask)


def _current_to_prior(transform: sitk.Euler3DTransform, metric: float,
                      overlap: float) -> RigidTransform:
    """Invert ITK's prior→current map x_c = M(x_p − c) + c + t into current→prior."""
    m = np.asarray(transform.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation())
    rotation = m.T
    translation = c - rotation @ (c + t)
    return RigidTransform(
        rotation=(_vector(rotation[0]), _vector(rotation[1]), _vector(rotation[2])),
        translation_mm=_vector(translation),
        metric_value=float(metric), lung_overlap=overlap)


def _vector(values: np.ndarray) -> Vector:
    """Three numpy numbers as a plain, hashable tuple."""
    return (float(values[0]), float(values[1]), float(values[2]))
