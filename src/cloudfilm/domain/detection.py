"""Automatic detection of solid pulmonary nodules of 4-30 mm: candidates a physician confirms.

A classical computer-aided detection (CADe) pipeline, in four steps (docs/detection.md
gives the reasons for every parameter and the measured FROC):

1. **Working grid and lungs.** The volume is bin-averaged in plane to about
   ``WORKING_SPACING_MM`` (a 512x512 slice of 0.7 mm pixels becomes 256x256 of 1.4 mm: a
   4 mm nodule still spans three voxels). The lungs are `cloudfilm.domain.lung`'s mask;
   candidates must lie in the lungs with what they enclose on an axial slice, closed by
   ``PLEURA_REACH_MM`` so that a nodule bulging from the pleura still counts.
2. **Blob enhancement.** The scale-normalised Laplacian of Gaussian, -σ²∇²(G_σ * I)
   (Lindeberg, "Feature detection with automatic scale selection", IJCV 1998;30:79-116),
   at ``SCALES_MM``: for a bright sphere of radius r it peaks at σ = r/√3, so the scales
   cover radii of 2-15 mm. Gaussians are computed as a cascade (each from the previous,
   by the difference in variance), the Laplacian by central differences in mm.
3. **Candidates and features.** Local maxima of the best response over scales, at least
   ``MIN_RESPONSE_HU``, on voxels at least ``MIN_CENTRE_HU``. For each: the Hessian
   eigenvalues at its scale (Li, Sone and Doi, "Selective enhancement filters for
   nodules, vessels, and airway walls in two- and three-dimensional CT scans", Med Phys
   2003;30:2040-2051: a blob has three large negative eigenvalues, a vessel one near
   zero), the contrast of its core against a shell around it, and the share of lung in
   that shell.
4. **False-positive reduction and measurement.** Rules on those features
   (`passes_rules`), then the semi-automatic segmentation (`segment_nodule`) from the
   strongest ``MAX_SEGMENTED`` candidates, first on the working grid (cheap: most vessel
   junctions fail there), then at full resolution. A candidate that does not segment,
   measures outside 4-30 mm (with the segmentation's ±0.5 mm accuracy as tolerance), is
   long like a vessel (`elongation_of`) or branched like a junction (`compactness_of`) is
   dropped; candidates that segment to the same nodule are merged. The score is a small
   logistic model the project trains itself (`score_of`), 0-1.

The result is a list of candidates for a physician to accept or reject, never a diagnosis.
Pure logic, no I/O. Array order is (slice k, row i, column j), as in `CtVolume`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudfilm.domain.lazy_modules import lazy_module
from cloudfilm.domain.lung import lung_regions
from cloudfilm.domain.segmentation import NoduleSegmentation, SegmentationError, segment_nodule
from cloudfilm.domain.volume import CtVolume

ndimage = lazy_module("scipy.ndimage")

# -- parameters (the reasons are in docs/detection.md) -----------------------------------------

WORKING_SPACING_MM = 1.4      # in-plane voxel size of the enhancement stage
SCALES_MM = (1.15, 1.6, 2.25, 3.15, 4.4, 6.2, 8.7)  # σ = r/√3 for radii of 2-15 mm
PLEURA_REACH_MM = 8.0         # closing radius that puts juxtapleural nodules in the lungs
MIN_RESPONSE_HU = 120.0       # scale-normalised LoG at a candidate
MIN_CENTRE_HU = -600.0        # smoothed attenuation at a candidate (ground glass is ~-600)
PEAK_WINDOW = 3               # local maxima over this many working voxels per axis
MAX_CANDIDATES = 300          # strongest maxima examined
MAX_SEGMENTED = 16            # strongest rule-passing candidates measured (0.2-3 s each)
MIN_BLOBNESS = 0.3            # |λ1|/|λ3| of the Hessian: ~1 for a sphere, ~0 for a tube
MIN_CONTRAST_HU = 250.0       # core mean minus the shell's median
MIN_LUNG_SHARE = 0.5          # of the shell around the candidate
SHELL_MM = (2.0, 6.0)         # shell: this far beyond the estimated radius
MIN_DIAMETER_MM, MAX_DIAMETER_MM = 4.0, 30.0
SIZE_TOLERANCE_MM = 0.5       # the segmentation's stated accuracy (docs/segmentation.md)
MAX_ELONGATION = 2.0          # longest / middle principal axis of the segmented mask
MIN_COMPACTNESS = 0.15        # volume / sphere of the long axis (a vessel junction: < 0.1)

# Score: a small logistic model the project trains itself: `benchmarks/detection_froc.py
# --train` fits it (L2-regularised) on LIDC-shaped training scans whose patients and outlines
# are not in the validation scans (docs/detection.md).
SCORE_BIAS = -1.99
SCORE_WEIGHTS = {"blobness": 1.32, "contrast": 1.82, "lung_share": 0.25, "roundness": 1.83}


@dataclass(frozen=True)
class CandidateFeatures:
    """What the false-positive reduction looks at, for one local maximum of the response."""

    centre_kij: tuple[int, int, int]   # full-resolution voxel
    centre_mm: tuple[float, float, float]  # the same in voxel-grid mm (not patient space)
    scale_mm: float                    # σ of the strongest response
    response_hu: float                 # scale-normalised LoG there
    blobness: float                    # |λ1| / |λ3| (0 tube or plate, 1 sphere)
    bright: bool                       # all three Hessian eigenvalues negative
    contrast_hu: float                 # core mean minus shell median
    lung_share: float                  # share of the shell that is aerated lung

    @property
    def radius_mm(self) -> float:
        return math.sqrt(3.0) * self.scale_mm


@dataclass(frozen=True, eq=False)
class DetectedCandidate:
    """A measured candidate nodule: its segmentation, features and score (0-1)."""

    segmentation: NoduleSegmentation
    features: CandidateFeatures
    elongation: float
    score: float

    @property
    def diameter_mm(self) -> float:
        return self.segmentation.mean_diameter_mm


def find_nodules(volume: CtVolume) -> list[DetectedCandidate]:
    """Candidate solid nodules of 4-30 mm in a chest CT, by score (highest first)."""
    grid = _WorkingGrid.of(volume)
    found: list[DetectedCandidate] = []
    seen: list[tuple[np.ndarray, float]] = []   # centres (patient mm) and radii measured so far
    for feature in _strongest_apart(candidate_features(volume, grid))[:MAX_SEGMENTED]:
        first = grid.first_look(feature)
        if first is None or _within(first, seen):
            continue
        measured = _measure(volume, feature, first if grid.is_original else None)
        if measured is not None and not _within(measured.segmentation, seen):
            found.append(measured)
            seen.append((np.asarray(measured.segmentation.centre_patient_mm),
                         measured.diameter_mm / 2))
    return sorted(found, key=lambda c: c.score, reverse=True)


def _within(seg: NoduleSegmentation, seen: Sequence[tuple[np.ndarray, float]]) -> bool:
    """True if the nodule's centre lies inside one already measured (the same nodule)."""
    centre = np.asarray(seg.centre_patient_mm)
    return any(np.linalg.norm(centre - other) <= max(radius, seg.mean_diameter_mm / 2)
               for other, radius in seen)


def _strongest_apart(features: Sequence[CandidateFeatures]) -> list[CandidateFeatures]:
    """Rule-passing candidates by response x blobness, none within another's radius.

    Several maxima of one blob (at different scales, or along a vessel junction) would
    otherwise each cost a segmentation.
    """
    kept: list[CandidateFeatures] = []
    for f in sorted((f for f in features if passes_rules(f)),
                    key=lambda f: f.response_hu * f.blobness, reverse=True):
        here = np.asarray(f.centre_mm)
        if all(np.linalg.norm(here - np.asarray(k.centre_mm)) > max(k.radius_mm, f.radius_mm)
               for k in kept):
            kept.append(f)
    return kept


def passes_rules(f: CandidateFeatures) -> bool:
    """A bright blob, clearly denser than the lung around it, mostly surrounded by lung."""
    return (f.bright and f.blobness >= MIN_BLOBNESS and f.contrast_hu >= MIN_CONTRAST_HU
            and f.lung_share >= MIN_LUNG_SHARE)


def score_terms(f: CandidateFeatures, elongation: float) -> dict[str, float]:
    """The score's inputs, each scaled to about [0, 1] (1 = most nodule-like)."""
    return {"blobness": min(f.blobness, 1.0), "contrast": min(f.contrast_hu / 800.0, 1.0),
            "lung_share": f.lung_share, "roundness": 1.0 / max(elongation, 1.0)}


def compactness_of(seg: NoduleSegmentation) -> float:
    """Volume over that of the sphere on the long axis (1 for a sphere; ~0 for a branching)."""
    return min(seg.volume_mm3 / (math.pi / 6 * max(seg.long_axis_mm, 1e-6) ** 3), 1.0)


def score_of(terms: dict[str, float]) -> float:
    """Logistic score in [0, 1]: `SCORE_BIAS` + Σ `SCORE_WEIGHTS` x term."""
    z = SCORE_BIAS + sum(SCORE_WEIGHTS[name] * value for name, value in terms.items())
    return 1.0 / (1.0 + math.exp(-z))


# -- working grid --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _WorkingGrid:
    """The volume bin-averaged to about `WORKING_SPACING_MM` in plane, and its lungs."""

    hu: np.ndarray
    spacing: np.ndarray
    factors: tuple[int, int, int]
    lungs: np.ndarray        # aerated lung
    region: np.ndarray       # where a candidate may lie
    volume: CtVolume         # the working grid as a volume (the original if not binned)

    @classmethod
    def of(cls, volume: CtVolume) -> _WorkingGrid:
        dk, di, dj = volume.spacing_mm
        factors = (max(1, round(WORKING_SPACING_MM / dk)), max(1, round(WORKING_SPACING_MM / di)),
                   max(1, round(WORKING_SPACING_MM / dj)))
        hu = _bin_average(volume.hu, factors)
        spacing = np.asarray(volume.spacing_mm, dtype=float) * np.asarray(factors)
        lungs, enclosed = lung_regions(hu)
        if factors == (1, 1, 1):
            working = volume
        else:
            first_centre = volume.voxel_to_patient(np.asarray([(f - 1) / 2 for f in factors]))
            working = CtVolume(
                hu=hu, origin_mm=(float(first_centre[0]), float(first_centre[1]),
                                  float(first_centre[2])),
                spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
                row_cosines=volume.row_cosines, column_cosines=volume.column_cosines,
                instance_uids=tuple(str(k) for k in range(hu.shape[0])))
        return cls(hu, spacing, factors, lungs, _close(enclosed, spacing, PLEURA_REACH_MM),
                   working)

    @property
    def is_original(self) -> bool:
        return self.factors == (1, 1, 1)

    def to_full(self, kij: np.ndarray) -> tuple[int, int, int]:
        """Full-resolution voxel at the centre of working voxel ``kij``."""
        k, i, j = (int(v) * f + (f - 1) // 2 for v, f in zip(kij, self.factors, strict=True))
        return k, i, j

    def first_look(self, feature: CandidateFeatures) -> NoduleSegmentation | None:
        """A cheap first segmentation on the working grid (a quarter of the voxels or less).

        Most candidates that will not segment at full resolution (vessel junctions whose
        region leaks) fail here first, at a fraction of the cost; None for those, and for
        results clearly outside the size or elongation limits.
        """
        k, i, j = (int(c) // f for c, f in zip(feature.centre_kij, self.factors, strict=True))
        try:
            seg = segment_nodule(self.volume, (k, i, j))
        except SegmentationError:
            return None
        slack = float(self.spacing.max())
        fits = (MIN_DIAMETER_MM - slack <= seg.mean_diameter_mm <= MAX_DIAMETER_MM + slack
                and elongation_of(seg.mask, self.spacing) <= MAX_ELONGATION * 1.2)
        return seg if fits else None


def _bin_average(hu: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean of each block of ``factors`` voxels (the trailing remainder is dropped)."""
    fk, fi, fj = factors
    k, i, j = (n // f * f for n, f in zip(hu.shape, factors, strict=True))
    blocks = hu[:k, :i, :j].reshape(k // fk, fk, i // fi, fi, j // fj, fj)
    return np.asarray(blocks.mean(axis=(1, 3, 5), dtype=np.float32))


def _close(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Closing by about ``radius_mm``: repeated 18-connected steps (fast, nearly round)."""
    steps = max(1, int(round(radius_mm / float(np.mean(spacing)))))
    structure = ndimage.generate_binary_structure(3, 2)
    padded = np.pad(mask, steps, mode="edge")
    closed = ndimage.binary_closing(padded, structure=structure, iterations=steps)
    return np.asarray(closed[(slice(steps, -steps),) * 3] | mask)


# -- enhancement and candidates -------------------------------------------------------------------

def blob_response(hu: np.ndarray, spacing: np.ndarray,
                  scales_mm: Sequence[float] = SCALES_MM) -> tuple[np.ndarray, np.ndarray]:
    """Best scale-normalised LoG response over ``scales_mm`` and the index of that scale."""
    best = np.full(hu.shape, -np.inf, dtype=np.float32)
    which = np.zeros(hu.shape, dtype=np.int8)
    smooth, previous = hu, 0.0
    for index, sigma in enumerate(scales_mm):
        step = math.sqrt(sigma ** 2 - previous ** 2)
        smooth = ndimage.gaussian_filter(smooth, sigma=step / spacing, mode="nearest",
                                         truncate=3.0)
        previous = sigma
        response = -(sigma ** 2) * _laplacian(smooth, spacing)
        better = response > best
        best[better] = response[better]
        which[better] = index
    return best, which


def _laplacian(image: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Sum of central second differences along each axis, in HU/mm²."""
    out = np.zeros(image.shape, dtype=np.float32)
    for axis, h in enumerate(spacing):
        out += ndimage.correlate1d(image, np.array([1.0, -2.0, 1.0]) / h ** 2, axis=axis,
                                   mode="nearest")
    return out


def candidate_features(volume: CtVolume, grid: _WorkingGrid | None = None,
                       ) -> list[CandidateFeatures]:
    """Features of the strongest local maxima of the blob response inside the lungs."""
    grid = grid or _WorkingGrid.of(volume)
    best, which = blob_response(grid.hu, grid.spacing)
    centre = ndimage.gaussian_filter(grid.hu, sigma=SCALES_MM[0] / grid.spacing, truncate=3.0)
    peaks = ((best == ndimage.maximum_filter(best, size=PEAK_WINDOW)) & grid.region
             & (best >= MIN_RESPONSE_HU) & (centre >= MIN_CENTRE_HU))
    found = np.argwhere(peaks)
    order = np.argsort(-best[tuple(found.T)], kind="stable")[:MAX_CANDIDATES]
    return [_features(grid, found[n], SCALES_MM[int(which[tuple(found[n])])],
                      float(best[tuple(found[n])])) for n in order]


def _features(grid: _WorkingGrid, kij: np.ndarray, sigma: float,
              response: float) -> CandidateFeatures:
    """Hessian eigenvalues at the candidate's scale, contrast and lung share around it."""
    radius = math.sqrt(3.0) * sigma
    reach = np.ceil((radius + SHELL_MM[1] + 3 * sigma) / grid.spacing).astype(int) + 2
    lo = np.maximum(kij - reach, 0)
    hi = np.minimum(kij + reach + 1, grid.hu.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    patch, at = grid.hu[box], tuple(int(v) for v in kij - lo)
    eigen = _hessian_eigenvalues(patch, grid.spacing, sigma, at)
    axes = [(np.arange(a, b) - c) * d for a, b, c, d in zip(lo, hi, kij, grid.spacing, strict=True)]
    kk, ii, jj = np.meshgrid(*axes, indexing="ij", sparse=True)
    distance = np.sqrt(kk ** 2 + ii ** 2 + jj ** 2)
    core = distance <= max(0.5 * radius, float(grid.spacing.max()))
    shell = (distance >= radius + SHELL_MM[0]) & (distance <= radius + SHELL_MM[1])
    shell_hu = patch[shell] if shell.any() else patch.ravel()
    magnitudes = np.sort(np.abs(eigen))
    return CandidateFeatures(
        centre_kij=grid.to_full(kij),
        centre_mm=(float(kij[0] * grid.spacing[0]), float(kij[1] * grid.spacing[1]),
                   float(kij[2] * grid.spacing[2])), scale_mm=sigma, response_hu=response,
        blobness=float(magnitudes[0] / max(magnitudes[2], 1e-6)),
        bright=bool(np.all(eigen < 0)),
        contrast_hu=float(patch[core].mean() - np.median(shell_hu)),
        lung_share=float(grid.lungs[box][shell].mean()) if shell.any() else 0.0)


def _hessian_eigenvalues(patch: np.ndarray, spacing: np.ndarray, sigma: float,
                         at: tuple[int, ...]) -> np.ndarray:
    """Eigenvalues of the Hessian of the patch smoothed by σ, at voxel ``at`` (HU/mm²)."""
    smooth = ndimage.gaussian_filter(patch, sigma=sigma / spacing, mode="nearest", truncate=3.0)
    hessian = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            hessian[a, b] = hessian[b, a] = _second_derivative(smooth, spacing, at, a, b)
    return np.asarray(np.linalg.eigvalsh(hessian))


def _second_derivative(image: np.ndarray, spacing: np.ndarray, at: tuple[int, ...],
                       a: int, b: int) -> float:
    """∂²I/∂a∂b at ``at`` by central differences (one-sided steps clamp at the border)."""
    def value(steps: dict[int, int]) -> float:
        index = list(at)
        for axis, step in steps.items():
            index[axis] = min(max(index[axis] + step, 0), image.shape[axis] - 1)
        return float(image[tuple(index)])
    if a == b:
        return (value({a: 1}) - 2 * value({}) + value({a: -1})) / float(spacing[a]) ** 2
    return (value({a: 1, b: 1}) - value({a: 1, b: -1}) - value({a: -1, b: 1})
            + value({a: -1, b: -1})) / (4 * float(spacing[a]) * float(spacing[b]))


# -- measurement ---------------------------------------------------------------------------------

def _measure(volume: CtVolume, feature: CandidateFeatures,
             seg: NoduleSegmentation | None = None) -> DetectedCandidate | None:
    """Segment from the candidate (unless ``seg`` is given); None unless it is one nodule
    of 4-30 mm, neither long like a vessel nor branched like a vessel junction."""
    if seg is None:
        try:
            seg = segment_nodule(volume, feature.centre_kij)
        except SegmentationError:
            return None
    if not (MIN_DIAMETER_MM - SIZE_TOLERANCE_MM <= seg.mean_diameter_mm
            <= MAX_DIAMETER_MM + SIZE_TOLERANCE_MM):
        return None
    elongation = elongation_of(seg.mask, np.asarray(volume.spacing_mm, dtype=float))
    if elongation > MAX_ELONGATION or compactness_of(seg) < MIN_COMPACTNESS:
        return None
    return DetectedCandidate(seg, feature, elongation,
                             score_of(score_terms(feature, elongation)))


def elongation_of(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Longest principal axis over the next one, in mm (1 for a sphere or a disc).

    A vessel is long in one direction and round across it; a flat nodule (as some LIDC
    outlines drawn on thick slices are) is not vessel-like and keeps a low value.
    """
    points = np.argwhere(mask) * spacing
    if len(points) < 4:
        return 1.0
    variances = np.linalg.eigvalsh(np.cov(points.T) + np.eye(3) * (spacing ** 2 / 12))
    return float(math.sqrt(variances[2] / max(variances[1], 1e-9)))
