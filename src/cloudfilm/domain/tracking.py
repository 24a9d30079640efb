"""Which nodule of the current CT is which nodule of the prior one.

Decision support: the result is a proposal shown to the physician, who confirms it, links,
unlinks or marks a nodule as new. Pure logic, no I/O.

Nodule centres are patient coordinates (DICOM LPS, mm) of their own study. Coordinates of
two studies are comparable only within one frame of reference (PS3.3 C.7.4.1.1.1: the
FrameOfReferenceUID identifies the coordinate system). When both studies share a
FrameOfReferenceUID, ``to_prior=None`` (identity) is right; otherwise the current centres
must first be mapped into the prior's space by a registration (see
``cloudfilm.services.imaging.registration``), because table origins and patient position differ
between scans by centimetres up to hundreds of millimetres.

Matching is an optimal one-to-one assignment (Hungarian method,
`scipy.optimize.linear_sum_assignment`) on the distances between the mapped current
centres and the prior centres. A greedy nearest-first rule can take a nodule's true
partner for a neighbour and leave the nodule unmatched; the assignment minimises the
total distance instead. Pairs farther apart than the tolerance are not allowed to take
part in the optimum (they are "gated" with a prohibitive cost), so a distant new nodule
never pulls a close pair apart; then they are reported as new and missing.

Default tolerance, per pair: ``max(DEFAULT_TOLERANCE_MM, larger diameter)``. This is this
project's choice, not a guideline value. Reasons: a rigid registration cannot follow
breathing-depth and posture changes inside the lungs, and a published comparison on 60
low-dose CT pairs about two years apart reported mean nodule registration errors close to
10 mm for rigid and for non-rigid (Demons) registration alike (9.6 mm and 10.0 mm; read
as an abstract, not verified further). A 10 mm tolerance would therefore miss a large
share of true pairs; 15 mm keeps most while nodules of one patient are usually several
centimetres apart. A large nodule's centre can also move by up to half its diameter
change as it grows asymmetrically, and a mapped centre still inside the nodule is a match
however large the nodule, hence the diameter term. The physician confirms every pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cloudfilm.domain.lazy_modules import lazy_module

optimize = lazy_module("scipy.optimize")  # loaded on the first match, not in every process

DEFAULT_TOLERANCE_MM = 15.0

PointMap = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class NodulePoint:
    """A nodule of one study: its id there, its centre (patient mm) and its diameter."""

    id: str
    centre_mm: tuple[float, float, float]
    diameter_mm: float

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a nodule needs an id")
        centre: tuple[float, ...] = self.centre_mm  # callers may pass any tuple (JSON input)
        if len(centre) != 3 or not all(math.isfinite(v) for v in centre):
            raise ValueError(f"nodule {self.id}: centre_mm must be three finite numbers (x, y, z)")
        if not (math.isfinite(self.diameter_mm) and self.diameter_mm >= 0):
            raise ValueError(f"nodule {self.id}: diameter_mm must be a finite number >= 0")


@dataclass(frozen=True)
class Match:
    """A current nodule proposed as the follow-up of a prior one."""

    current_id: str
    prior_id: str
    distance_mm: float  # between the mapped current centre and the prior centre


@dataclass(frozen=True)
class TrackingResult:
    """The proposal: pairs, new nodules (current ids) and missing ones (prior ids)."""

    pairs: tuple[Match, ...]
    new: tuple[str, ...]
    missing: tuple[str, ...]

    def prior_of(self, current_id: str) -> str | None:
        """The prior nodule matched to ``current_id``, or None if it is new."""
        return next((m.prior_id for m in self.pairs if m.current_id == current_id), None)


def shares_frame_of_reference(prior_frame_uid: str, current_frame_uid: str) -> bool:
    """True when centres of the two studies are directly comparable (``to_prior=None``).

    An empty FrameOfReferenceUID proves nothing, so it never counts as shared.
    """
    return bool(prior_frame_uid) and prior_frame_uid == current_frame_uid


def match_nodules(prior: Sequence[NodulePoint], current: Sequence[NodulePoint],
                  to_prior: PointMap | None, tolerance_mm: float | None = None) -> TrackingResult:
    """Pair current nodules with prior ones; see the module notes for method and tolerance.

    ``to_prior`` maps an (n, 3) array of current patient coordinates into the prior's
    (e.g. ``RigidTransform.current_to_prior``); None means both studies share a frame of
    reference. ``tolerance_mm`` replaces the per-pair default when given.
    Results keep the input order: pairs and ``new`` by current, ``missing`` by prior.
    """
    _check_unique(prior, "prior")
    _check_unique(current, "current")
    if tolerance_mm is not None and not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ValueError("tolerance_mm must be a finite number >= 0")
    if not prior or not current:
        return TrackingResult((), tuple(n.id for n in current), tuple(n.id for n in prior))
    distances = _distances(prior, current, to_prior)
    allowed = distances <= _tolerances(prior, current, tolerance_mm)
    rows, cols = optimize.linear_sum_assignment(_gated_cost(distances, allowed))
    kept = sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c])
    pairs = tuple(Match(current[r].id, prior[c].id, float(distances[r, c])) for r, c in kept)
    matched_current = {r for r, _ in kept}
    matched_prior = {c for _, c in kept}
    return TrackingResult(
        pairs=pairs,
        new=tuple(n.id for i, n in enumerate(current) if i not in matched_current),
        missing=tuple(n.id for i, n in enumerate(prior) if i not in matched_prior))


def _check_unique(nodules: Sequence[NodulePoint], which: str) -> None:
    """Ids identify nodules within a study, so they must not repeat."""
    ids = [n.id for n in nodules]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{which} nodule ids repeat: {', '.join(repeated)}")


def _distances(prior: Sequence[NodulePoint], current: Sequence[NodulePoint],
               to_prior: PointMap | None) -> np.ndarray:
    """Matrix [current, prior] of distances in the prior's space, in mm."""
    points = np.asarray([n.centre_mm for n in current], dtype=float)
    mapped = points if to_prior is None else np.asarray(to_prior(points), dtype=float)
    if mapped.shape != points.shape:
        raise ValueError(f"to_prior returned shape {mapped.shape}, expected {points.shape}")
    targets = np.asarray([n.centre_mm for n in prior], dtype=float)
    distances: np.ndarray = np.linalg.norm(mapped[:, None, :] - targets[None, :, :], axis=2)
    return distances


def _tolerances(prior: Sequence[NodulePoint], current: Sequence[NodulePoint],
                tolerance_mm: float | None) -> np.ndarray | float:
    """The given tolerance, or per pair max(DEFAULT_TOLERANCE_MM, larger diameter)."""
    if tolerance_mm is not None:
        return tolerance_mm
    larger = np.maximum.outer([n.diameter_mm for n in current], [n.diameter_mm for n in prior])
    return np.maximum(DEFAULT_TOLERANCE_MM, larger)


def _gated_cost(distances: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Distances, with disallowed pairs costing more than all allowed pairs together.

    So the optimum first maximises the number of pairs within tolerance, then minimises
    their total distance.
    """
    prohibitive = 1.0 + float(distances[allowed].sum())
    return np.where(allowed, distances, prohibitive)
