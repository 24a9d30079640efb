"""Semi-automatic 3D segmentation of a pulmonary nodule from one click, and its measurements.

Why this method: solid and ground-glass nodules are brighter than the aerated lung around
them, so a threshold region grow from the click finds them; what is hard is choosing the
threshold and cutting off what touches the nodule. The approach is that of Kuhnigk et al.,
"Morphological segmentation and partial volume analysis for volumetry of solid pulmonary
lesions in thoracic CT scans", IEEE TMI 2006;25:417-434 (threshold, morphological
separation, then partial-volume volumetry); the details are this module's own:

* **Threshold at half maximum, estimated locally.** Partial volume blurs every edge over
  about a voxel; the true edge lies where the intensity is halfway between the two sides
  (full width at half maximum). A fixed -400 HU is halfway for a solid nodule in -850 HU
  lung but above a -600 HU ground-glass nodule altogether. Here the lung level is the median
  of a shell just outside the region, the nodule level the median of a band just inside its
  partial-volume rim, and the threshold is iterated to their midpoint. The band is the
  *outer* part of the nodule, so a part-solid nodule is cut at its ground-glass edge.
* **Vessel detachment by opening.** A Euclidean opening (in mm, so anisotropic voxels are
  handled exactly) by a ball of 0.3x the nodule's inscribed radius removes what is thinner
  than the ball (vessels, fissures, pleural tags); the component with the click is kept.
  Cut-off pieces that stay within two opening radii of it (surface chips, flat
  lobulations) are given back; pieces that run further (vessels) are not.
* **Restricted to the lung.** When the region still leaks to the edge of the search box,
  a wider opening (0.5x) is tried, then the grow is repeated inside the lung hull: the
  aerated lung closed by a 15 mm ball, which holds nodules bulging into the lung from the
  pleura but not the wall behind them (a simplification of our own).
* **Partial-volume volume.** Voxels in the rim are counted by how much of them is nodule,
  (HU - lung) / (nodule - lung), clipped to [0, 1]; the core counts whole, in the spirit of
  the paper's segmentation-based partial volume analysis. Counting the mask's voxels
  instead under-counts 4-8 mm spheres by 2-8% (docs/segmentation.md).

Measurements follow Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243) and
Lung-RADS v2022: long and short axis on the axial slice where the nodule is largest, the
short axis being the longest diameter perpendicular to the long axis. They are measured on
the sub-pixel half-maximum contour of that slice, not between pixel centres (which would
shorten every axis by about a pixel).

Pure logic, no I/O. Array order is (slice k, row i, column j), as in `CtVolume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloudfilm.domain.lazy_modules import lazy_module
from cloudfilm.domain.nodule import NoduleType
from cloudfilm.domain.volume import CtVolume

# SciPy and scikit-image load on the first measurement, not in every process (lazy_modules.py).
ndimage = lazy_module("scipy.ndimage")
spatial = lazy_module("scipy.spatial")
measure = lazy_module("skimage.measure")

# -- parameters (the reasons are in docs/segmentation.md) --------------------------------------

SEARCH_RADIUS_MM = 2.5        # a click this far off a small nodule still finds it
SEARCH_BOX_MM = (20.0, 40.0)  # half-sizes of the boxes tried around the click
MIN_CONTRAST_HU = 100.0       # nodule minus lung, at the click and after segmentation
FIRST_STEP_HU = 100.0         # first threshold: lung + this, low enough for ground glass
SMOOTHING_MM = 0.35           # in-plane Gaussian sigma before thresholding (noise only)
SHELL_MM = (1.5, 5.0)         # lung level: median of this shell outside the region
BAND_MM = 1.5                 # nodule level: median of this band inside the rim
OPENING_FRACTION = 0.3        # opening radius / inscribed radius of the nodule
OPENING_MM = (0.6, 2.0)       # ... clamped to this range
OPENING_FRACTION_WIDE = 0.5   # ... when the region leaks along a thicker vessel
OPENING_MM_WIDE = 3.0
LOBE_REACH = 2.0              # cut-off pieces within this many opening radii are kept
LUNG_HULL_MM = 15.0           # closing radius of the lung hull: half the largest nodule
MAX_ITERATIONS = 6
CONVERGED_HU = 2.0

# Solid component: attenuation at or above -160 HU, the "conventional high threshold" for
# the solid part of a subsolid nodule (Lee JH et al., PLoS One 2018;13:e0205490, which also
# tests -400 HU). An interior at least 80% solid with a mean at or above -160 HU suggests
# "solid"; under 5% solid (noise, a crossing vessel) "ground-glass"; between, "part-solid".
SOLID_HU = -160.0
SOLID_FRACTION_SOLID = 0.80
SOLID_FRACTION_GROUND_GLASS = 0.05


class SegmentationError(ValueError):
    """The click does not lead to one measurable nodule; the message says why."""


@dataclass(frozen=True, eq=False)
class NoduleSegmentation:
    """One nodule's 3D mask and the measurements a follow-up guideline needs.

    Axes in mm on slice ``best_slice``; ``volume_mm3`` is partial-volume weighted;
    ``mean_hu`` and ``solid_fraction`` describe the interior (the mask without its rim).
    ``mask`` is cropped to its bounding box, whose first voxel is ``mask_offset_kij``.
    ``outline`` draws the result on the best slice, in pixel coordinates [column, row]:
    {"instance_uid", "contour", "long_axis", "short_axis"}.
    """

    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    centre_kij: tuple[float, float, float]
    centre_patient_mm: tuple[float, float, float]
    best_slice: int
    best_slice_instance_uid: str
    mean_hu: float
    solid_fraction: float
    suggested_type: NoduleType
    threshold_hu: float
    lung_hu: float
    nodule_hu: float
    mask: np.ndarray
    mask_offset_kij: tuple[int, int, int]
    outline: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_diameter_mm(self) -> float:
        """(long + short) / 2: the size both Fleischner and Lung-RADS use."""
        return (self.long_axis_mm + self.short_axis_mm) / 2


def segment_nodule(volume: CtVolume, seed_kij: tuple[int, int, int]) -> NoduleSegmentation:
    """Segment and measure the nodule at (or within `SEARCH_RADIUS_MM` of) voxel ``seed_kij``.

    Raises `SegmentationError` when the click is outside the volume or not brighter than the
    lung around it, or when the region leaks out of the search box or reaches the volume edge.
    """
    shape = volume.hu.shape
    if not all(0 <= int(s) < n for s, n in zip(seed_kij, shape, strict=True)):
        raise SegmentationError(f"the click {tuple(seed_kij)} (slice, row, column) is outside "
                                f"the volume of {shape[0]} slices of {shape[1]}x{shape[2]}")
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    for half_mm in SEARCH_BOX_MM:
        box = _Box.around(shape, seed_kij, spacing, half_mm)
        hu = np.asarray(volume.hu[box.slices], dtype=np.float32)
        seed = tuple(int(s) - o for s, o in zip(seed_kij, box.offset, strict=True))
        region = _segment_in_box(hu, spacing, seed, box)
        if region is not None:
            return _measure(volume, hu, spacing, region, box)
    raise SegmentationError(
        f"the region grown from the click leaks beyond {SEARCH_BOX_MM[-1]:.0f} mm: not a "
        "separable nodule (broadly attached to the chest wall or mediastinum, or a vessel "
        "as thick as the nodule?)")


# -- search box --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Box:
    """Part of the volume around the click, and which of its faces are the volume's edges."""

    slices: tuple[slice, slice, slice]
    at_volume_edge: tuple[tuple[bool, bool], ...]

    @classmethod
    def around(cls, shape: tuple[int, ...], seed: tuple[int, int, int], spacing: np.ndarray,
               half_mm: float) -> _Box:
        bounds = []
        for s, n, d in zip(seed, shape, spacing, strict=True):
            half = int(math.ceil(half_mm / d))
            bounds.append((max(0, int(s) - half), min(n, int(s) + half + 1), n))
        return cls(tuple(slice(lo, hi) for lo, hi, _ in bounds),  # type: ignore[arg-type]
                   tuple((lo == 0, hi == n) for lo, hi, n in bounds))

    @property
    def offset(self) -> tuple[int, int, int]:
        return (self.slices[0].start, self.slices[1].start, self.slices[2].start)

    def leaks(self, region: np.ndarray) -> bool:
        """True if the region reaches a face of the box inside the volume."""
        return any(_face(region, axis, end).any() and not self.at_volume_edge[axis][end]
                   for axis in range(3) for end in (0, 1))

    def at_volume_edge_of(self, region: np.ndarray) -> bool:
        """True if the region reaches a face of the box that is the volume's own edge."""
        return any(_face(region, axis, end).any() and self.at_volume_edge[axis][end]
                   for axis in range(3) for end in (0, 1))


def _face(region: np.ndarray, axis: int, end: int) -> np.ndarray:
    return np.asarray(np.take(region, -1 if end else 0, axis=axis))


# -- the region --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Region:
    """The segmented nodule in box coordinates, with the levels that defined it."""

    mask: np.ndarray      # the nodule, rim restored
    smooth: np.ndarray    # the image the threshold applies to
    threshold: float
    lung: float
    nodule: float


@dataclass(frozen=True, eq=False)
class _Image:
    hu: np.ndarray
    smooth: np.ndarray
    spacing: np.ndarray


def _segment_in_box(hu: np.ndarray, spacing: np.ndarray, click: tuple[int, ...],
                    box: _Box) -> _Region | None:
    """Iterate threshold → grow → open to the half-maximum threshold; None: "box too small"."""
    sigma = np.array([0.0, *(SMOOTHING_MM / spacing[1:])])
    image = _Image(hu, ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest"), spacing)
    seed = _find_seed(image, click)
    lung = _lung_around(image, seed)
    threshold = lung + min((float(image.smooth[seed]) - lung) / 2, FIRST_STEP_HU)
    nodule, attempt = float(image.smooth[seed]), 0
    for _ in range(MAX_ITERATIONS):
        found = _contained(image, seed, threshold, box, attempt)
        if found is None:
            return None
        mask, attempt = found
        lung, nodule = _levels(image, mask, threshold)
        if nodule - lung < MIN_CONTRAST_HU:
            raise SegmentationError(f"the click is not on a nodule: {nodule:.0f} HU against "
                                    f"{lung:.0f} HU of the lung around it")
        previous, threshold = threshold, (lung + nodule) / 2
        if abs(threshold - previous) < CONVERGED_HU:
            break
    found = _contained(image, seed, threshold, box, attempt)
    if found is None:
        return None
    return _Region(found[0], image.smooth, threshold, lung, nodule)


# Ways to keep the region to the nodule, gentlest first: (opening radius / inscribed radius,
# largest opening radius in mm, grow only inside the lung hull).
_ATTEMPTS = ((OPENING_FRACTION, OPENING_MM[1], False),
             (OPENING_FRACTION_WIDE, OPENING_MM_WIDE, False),
             (OPENING_FRACTION, OPENING_MM[1], True),
             (OPENING_FRACTION_WIDE, OPENING_MM_WIDE, True))


def _contained(image: _Image, seed: tuple[int, ...], threshold: float, box: _Box,
               start: int) -> tuple[np.ndarray, int] | None:
    """The first attempt (from ``start``) whose region stays inside the box and the volume.

    A wider opening cuts thicker vessels; the lung hull cuts the chest wall. None means the
    region still reaches the box (try a larger box); reaching the volume's edge is an error.
    """
    at_volume_edge = False
    for attempt in range(start, len(_ATTEMPTS)):
        fraction, largest, in_hull = _ATTEMPTS[attempt]
        restrict = _lung_hull(image, threshold) if in_hull else None
        mask = _grow_and_open(image, seed, threshold, restrict, fraction, largest)
        if box.leaks(mask):
            continue
        at_volume_edge = box.at_volume_edge_of(mask)
        if not at_volume_edge:
            return mask, attempt
    if at_volume_edge:
        raise SegmentationError("the region reaches the edge of the volume (first or last "
                                "slice, or the image border): the nodule is not fully imaged, "
                                "or is joined to a vessel or wall thicker than the opening")
    return None


def _find_seed(image: _Image, click: tuple[int, ...]) -> tuple[int, ...]:
    """The click if it is brighter than the lung near it, else the brightest voxel close by.

    Tolerates a click beside a small nodule; a click already on the nodule is kept, because
    the brightest voxel nearby could be a vessel next to a ground-glass nodule.
    """
    reach = np.ceil(SEARCH_RADIUS_MM / image.spacing).astype(int)
    lo = [max(0, c - r) for c, r in zip(click, reach, strict=True)]
    hi = [min(n, c + r + 1) for c, n, r in zip(click, image.hu.shape, reach, strict=True)]
    window = image.smooth[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    if image.smooth[click] >= float(np.percentile(window, 10)) + MIN_CONTRAST_HU:
        return click
    axes = [(np.arange(a, b) - c) * d for a, b, c, d in zip(lo, hi, click, image.spacing, strict=True)]
    k, i, j = np.meshgrid(*axes, indexing="ij")
    near = k ** 2 + i ** 2 + j ** 2 <= SEARCH_RADIUS_MM ** 2
    best = np.unravel_index(int(np.argmax(np.where(near, window, -np.inf))), window.shape)
    return tuple(int(b) + a for a, b in zip(lo, best, strict=True))


def _lung_around(image: _Image, seed: tuple[int, ...]) -> float:
    """First lung level: the median of what is clearly darker than the seed.

    Refuses a seed that is not brighter than most of the box (lung, air, or inside a large
    soft-tissue region): there is no nodule edge to find.
    """
    seed_hu = float(image.smooth[seed])
    darker = image.hu[image.smooth < seed_hu - MIN_CONTRAST_HU]
    if darker.size < 0.2 * image.hu.size:
        raise SegmentationError(
            f"the click is not on a nodule: {seed_hu:.0f} HU there is not {MIN_CONTRAST_HU:.0f} "
            "HU brighter than the lung around it (a click in lung, air or soft tissue?)")
    return float(np.median(darker))


def _grow_and_open(image: _Image, seed: tuple[int, ...], threshold: float,
                   restrict: np.ndarray | None, fraction: float, largest: float) -> np.ndarray:
    """The region ≥ threshold at the seed, with thin attachments opened off."""
    above = image.smooth >= threshold
    if restrict is not None:
        above &= restrict
    try:
        grown = _component_at(above, _nearest(above, seed, image.spacing))
    except SegmentationError:
        if restrict is None:
            raise
        raise SegmentationError("the click is not in the lung: the region grown from it runs "
                                "into the chest wall or mediastinum") from None
    spacing = image.spacing
    inscribed = float(ndimage.distance_transform_edt(grown, sampling=spacing).max())
    radius = float(np.clip(fraction * inscribed, OPENING_MM[0], largest))
    opened = _open(grown, spacing, radius)
    if not opened.any():
        return grown
    kept = _component_at(opened, seed) if opened[seed] else _largest(opened)
    return _restore_rim(grown, kept, spacing, radius)


def _nearest(mask: np.ndarray, seed: tuple[int, ...], spacing: np.ndarray) -> tuple[int, ...]:
    """The voxel of ``mask`` nearest the seed, within `SEARCH_RADIUS_MM` (a click on the rim)."""
    if mask[seed]:
        return seed
    reach = np.ceil(SEARCH_RADIUS_MM / spacing).astype(int)
    lo = [max(0, s - r) for s, r in zip(seed, reach, strict=True)]
    found = np.argwhere(mask[tuple(slice(a, s + r + 1) for a, s, r in zip(lo, seed, reach, strict=True))])
    if found.size:
        gaps = np.linalg.norm((found + lo - np.asarray(seed)) * spacing, axis=1)
        if gaps.min() <= SEARCH_RADIUS_MM:
            return tuple(int(v) for v in found[int(np.argmin(gaps))] + lo)
    raise SegmentationError("the click is not on a nodule: nothing within "
                            f"{SEARCH_RADIUS_MM:g} mm of it is bright enough")


def _restore_rim(grown: np.ndarray, kept: np.ndarray, spacing: np.ndarray,
                 radius: float) -> np.ndarray:
    """Give back what the opening took off the nodule itself, not what is attached to it.

    A removed piece that stays within `LOBE_REACH` opening radii (or a voxel diagonal) of the
    kept core is part of the nodule: a surface chip or a flat lobulation. A piece that runs
    further is a vessel, fissure or wall, and is cut where it meets the core.
    """
    removed = grown & ~kept
    labels, count = ndimage.label(removed)
    if not count:
        return kept
    away = _distance_to(kept, spacing)
    farthest = np.asarray(ndimage.maximum(away, labels, index=np.arange(1, count + 1)))
    reach = max(LOBE_REACH * radius, float(np.linalg.norm(spacing)))
    near = np.flatnonzero(farthest <= reach) + 1
    return kept | np.isin(labels, near)


def _component_at(mask: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    """The 26-connected component of ``mask`` that contains ``seed`` (empty if none does)."""
    if not mask[seed]:
        return np.zeros_like(mask)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    return np.asarray(labels == labels[seed])


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def _distance_to(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from every voxel to the nearest voxel of ``mask``."""
    return np.asarray(ndimage.distance_transform_edt(~mask, sampling=spacing))


def _open(mask: np.ndarray, spacing: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean opening by a ball of ``radius`` mm (erosion and dilation by distance maps)."""
    pad = int(math.ceil(radius / spacing.min())) + 1
    padded = np.pad(mask, pad)
    core = ndimage.distance_transform_edt(padded, sampling=spacing) > radius
    opened = _distance_to(core, spacing) <= radius
    return np.asarray(opened[pad:-pad, pad:-pad, pad:-pad] & mask)


def _lung_hull(image: _Image, threshold: float) -> np.ndarray:
    """Aerated lung closed by a `LUNG_HULL_MM` ball: nodules and vessels in, chest wall out."""
    lung = image.smooth < threshold
    pad = int(math.ceil(LUNG_HULL_MM / image.spacing.min())) + 1
    padded = np.pad(lung, pad, mode="edge")
    dilated = _distance_to(padded, image.spacing) <= LUNG_HULL_MM
    closed = ndimage.distance_transform_edt(dilated, sampling=image.spacing) > LUNG_HULL_MM
    return np.asarray(closed[pad:-pad, pad:-pad, pad:-pad] | lung)


def _levels(image: _Image, mask: np.ndarray, threshold: float) -> tuple[float, float]:
    """Lung level (shell outside, other structures excluded) and nodule level (inner band)."""
    outside = _distance_to(mask, image.spacing)
    shell = (outside >= SHELL_MM[0]) & (outside <= SHELL_MM[1]) & (image.smooth < threshold)
    if not shell.any():
        shell = ~mask & (image.smooth < threshold)
    depth = ndimage.distance_transform_edt(mask, sampling=image.spacing)
    rim = float(image.spacing.max())
    band = (depth > rim) & (depth <= rim + BAND_MM)
    if not band.any():
        band = mask & (depth >= np.percentile(depth[mask], 80))
    return float(np.median(image.hu[shell])), float(np.median(image.hu[band]))


# -- measurements --------------------------------------------------------------------------------

def _measure(volume: CtVolume, hu: np.ndarray, spacing: np.ndarray, region: _Region,
             box: _Box) -> NoduleSegmentation:
    """Axes on the best axial slice, partial-volume volume and centre, type suggestion."""
    offset = np.asarray(box.offset)
    fraction = _nodule_fraction(region, spacing)
    volume_mm3 = float(fraction.sum()) * float(np.prod(spacing))
    centre_kij = np.asarray(ndimage.center_of_mass(fraction)) + offset
    best = _best_slice(region.mask, float(centre_kij[0] - offset[0]))
    contour = _slice_contour(region, best)
    long_ends, short_ends = _axes(contour, spacing[1:])
    interior = ndimage.binary_erosion(region.mask)
    if not interior.any():
        interior = region.mask
    mean_hu = float(np.mean(hu[interior]))
    solid_fraction = float(np.mean(hu[interior] >= SOLID_HU))
    lo, hi = _bounds(region.mask)
    uid = volume.instance_uids[best + int(offset[0])]
    shift = offset[1:][::-1]  # (column, row) of the box's first pixel
    x, y, z = (float(v) for v in volume.voxel_to_patient(centre_kij))
    return NoduleSegmentation(
        long_axis_mm=_length(long_ends, spacing[1:]),
        short_axis_mm=_length(short_ends, spacing[1:]), volume_mm3=volume_mm3,
        centre_kij=(float(centre_kij[0]), float(centre_kij[1]), float(centre_kij[2])),
        centre_patient_mm=(x, y, z), best_slice=best + int(offset[0]),
        best_slice_instance_uid=uid, mean_hu=mean_hu, solid_fraction=solid_fraction,
        suggested_type=suggest_type(mean_hu, solid_fraction), threshold_hu=region.threshold,
        lung_hu=region.lung, nodule_hu=region.nodule,
        mask=region.mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy(),
        mask_offset_kij=(lo[0] + int(offset[0]), lo[1] + int(offset[1]), lo[2] + int(offset[2])),
        outline={"instance_uid": uid, "contour": _pixels(contour[:, ::-1] + shift),
                 "long_axis": _pixels(long_ends[:, ::-1] + shift),
                 "short_axis": _pixels(short_ends[:, ::-1] + shift)})


def suggest_type(mean_hu: float, solid_fraction: float) -> NoduleType:
    """Solid / part-solid / ground-glass from the interior's share of voxels ≥ `SOLID_HU`.

    A suggestion for the reader, who decides: partial volume makes nodules under ~5 mm look
    less dense than they are, and a mean alone cannot tell part-solid from solid.
    """
    if solid_fraction >= SOLID_FRACTION_SOLID and mean_hu >= SOLID_HU:
        return NoduleType.SOLID
    if solid_fraction < SOLID_FRACTION_GROUND_GLASS:
        return NoduleType.GROUND_GLASS
    return NoduleType.PART_SOLID


def _nodule_fraction(region: _Region, spacing: np.ndarray) -> np.ndarray:
    """How much of each voxel is nodule: 1 in the core, (HU - lung)/(nodule - lung) in the rim.

    The rim reaches one voxel diagonal outside the mask, where partial volume can still
    hold nodule; voxels of other structures there (cut-off vessels) count nothing.
    """
    reach = float(np.linalg.norm(spacing))
    outside = _distance_to(region.mask, spacing)
    depth = ndimage.distance_transform_edt(region.mask, sampling=spacing)
    scale = max(region.nodule - region.lung, MIN_CONTRAST_HU)
    share = np.clip((region.smooth - region.lung) / scale, 0.0, 1.0)
    other = ~region.mask & (region.smooth >= region.threshold)
    rim = ((outside > 0) & (outside <= reach) & ~other) | (region.mask & (depth <= reach))
    return np.where(rim, share, region.mask.astype(float))


def _best_slice(mask: np.ndarray, centre_k: float) -> int:
    """The slice with the largest cross-section (ties: the one nearest the centre)."""
    areas = mask.sum(axis=(1, 2))
    largest = np.flatnonzero(areas == areas.max())
    return int(min(largest, key=lambda k: abs(k - centre_k)))


def _bounds(mask: np.ndarray) -> tuple[list[int], list[int]]:
    """First and one-past-last index of the mask along each axis."""
    lo, hi = [], []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(present[0]))
        hi.append(int(present[-1]) + 1)
    return lo, hi


def _slice_contour(region: _Region, k: int) -> np.ndarray:
    """Sub-pixel half-maximum contour (row, col) of the region on slice ``k``.

    The image is kept in the region and the pixel around it, except where that pixel belongs
    to something else above the threshold (a cut-off vessel): there and beyond it is set to
    the lung level, so the outline follows the cut instead of the vessel.
    """
    mask, smooth = region.mask[k], region.smooth[k]
    keep = ndimage.binary_dilation(mask) & (mask | (smooth < region.threshold))
    image = np.pad(np.where(keep, smooth, region.lung), 1, constant_values=region.lung)
    contours = measure.find_contours(image, region.threshold)
    if not contours:
        raise SegmentationError("no outline found on the best slice")
    return np.asarray(max(contours, key=_polygon_area) - 1.0)


def _polygon_area(points: np.ndarray) -> float:
    y, x = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _axes(contour: np.ndarray, pixel_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Long axis (longest diameter) and short axis (longest chord perpendicular to it).

    Both as (2, 2) arrays of (row, col) end points in pixels; computed in mm, so
    non-square pixels are measured correctly.
    """
    mm = contour * pixel_mm
    try:
        hull = mm[spatial.ConvexHull(mm).vertices]
    except (spatial.QhullError, ValueError):
        hull = mm
    gaps = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    a, b = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    direction = (hull[b] - hull[a]) / max(float(gaps[a, b]), 1e-9)
    return np.stack([hull[a], hull[b]]) / pixel_mm, _short_axis(mm, direction) / pixel_mm


def _short_axis(mm: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The longest chord of the outline perpendicular to ``direction`` (end points in mm)."""
    normal = np.array([-direction[1], direction[0]])
    u, v = mm @ direction, mm @ normal
    u_next, v_next = np.roll(u, -1), np.roll(v, -1)
    best_length, best = -1.0, np.stack([mm.mean(axis=0)] * 2)
    for at in np.linspace(u.min(), u.max(), 243)[1:-1]:
        crossing = ((u - at) * (u_next - at) <= 0) & (u != u_next)
        if crossing.sum() < 2:
            continue
        t = (at - u[crossing]) / (u_next[crossing] - u[crossing])
        vs = v[crossing] + t * (v_next[crossing] - v[crossing])
        if vs.max() - vs.min() > best_length:
            best_length = float(vs.max() - vs.min())
            best = np.stack([at * direction + vs.min() * normal,
                             at * direction + vs.max() * normal])
    return best


def _length(ends: np.ndarray, pixel_mm: np.ndarray) -> float:
    return float(np.linalg.norm((ends[1] - ends[0]) * pixel_mm))


def _pixels(points: np.ndarray) -> list[list[float]]:
    """[[column, row], ...] rounded to 0.01 pixel for drawing."""
    return [[round(float(c), 2), round(float(r), 2)] for c, r in points]
