"""The built-in nodule finder: spheres at the size limits, vessels refused, the CLI, the FROC.

The pure detector runs on a box of lung in a chest wall with spheres of 4, 10 and 30 mm
and a straight vessel; ``cloudfilm detect`` runs on demo CTs imported with
``cloudfilm import``; the FROC runs on small LIDC-shaped scans
(benchmarks/detection_scans.py: LIDC-IDRI outlines, vessel trees, ground glass, noise).
docs/detection.md has the full-size figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks.detection_scans import froc, judge, lidc_scans

from cloudfilm.domain.detection import find_nodules
from cloudfilm.services.demo.generate import DemoOptions, generate_demo
from conftest import database_url_for, run_cli
from test_segmentation import coverage, ct

LUNG_HU, WALL_HU, AIR_HU, SOLID_HU, NOISE_SD_HU = -850.0, 40.0, -1000.0, 40.0, 15.0
SPACING = (1.25, 0.8, 0.8)
SPHERES_MM = {4.0: (40.0, 40.0, 45.0), 10.0: (40.0, 95.0, 45.0), 30.0: (40.0, 60.0, 130.0)}
VESSEL = (np.array([0.0, 35.0, 105.0]), np.array([1.0, 0.25, 0.0]), 1.5)  # point, direction, radius


def chest_box(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Air around a 15 mm wall around lung (z runs through, as in a scan of the chest)."""
    shape = (64, 160, 225)
    spacing = np.asarray(SPACING)
    grid = np.stack(np.meshgrid(*[np.arange(n) * d for n, d in zip(shape, spacing, strict=True)],
                                indexing="ij"), axis=-1)
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    body = (grid[..., 1] > 5) & (grid[..., 1] < 123) & (grid[..., 2] > 5) & (grid[..., 2] < 175)
    hu[body] = WALL_HU
    lung = (grid[..., 1] > 20) & (grid[..., 1] < 108) & (grid[..., 2] > 20) & (grid[..., 2] < 160)
    hu[lung] = LUNG_HU
    for diameter, centre in SPHERES_MM.items():
        c = np.asarray(centre)
        fraction = coverage(shape, spacing, lambda p, c=c, r=diameter / 2:
                            np.linalg.norm(p - c, axis=-1) - r)
        hu += (SOLID_HU - hu) * fraction
    point, direction, radius = VESSEL
    u = direction / np.linalg.norm(direction)

    def tube(p: np.ndarray) -> np.ndarray:
        d = p - point
        return np.linalg.norm(d - (d @ u)[..., None] * u, axis=-1) - radius
    hu += (SOLID_HU - hu) * coverage(shape, spacing, tube) * lung
    return hu + rng.normal(0, NOISE_SD_HU, shape).astype(np.float32), grid


def test_spheres_of_4_10_and_30_mm_are_found_and_the_vessel_is_not() -> None:
    hu, _ = chest_box(np.random.default_rng(4))
    volume = ct(hu, SPACING)
    found = find_nodules(volume)
    origin = np.asarray(volume.origin_mm)
    for diameter, centre in SPHERES_MM.items():
        # ct() has identity cosines: patient = origin + (j, i, k) * spacing
        expected = origin + np.asarray(centre)[::-1]
        near = [c for c in found
                if math.dist(c.segmentation.centre_patient_mm, expected) <= max(diameter / 2, 2.0)]
        assert len(near) == 1, (diameter, [c.segmentation.centre_patient_mm for c in found])
        assert near[0].diameter_mm == pytest.approx(diameter, abs=0.6)
        assert 0.0 <= near[0].score <= 1.0
    assert len(found) == len(SPHERES_MM), [(c.segmentation.centre_kij, c.diameter_mm) for c in found]
    point, direction, _ = VESSEL
    u = direction / np.linalg.norm(direction)
    for c in found:
        d = np.asarray(c.segmentation.centre_kij) * SPACING - point
        assert np.linalg.norm(d - (d @ u) * u) > 5.0


def test_the_froc_reaches_90_percent_at_2_false_positives_per_scan() -> None:
    options = DemoOptions(patients=2, rows=320, columns=320, pixel_spacing_mm=0.8, slices=64,
                          seed=5)
    judged = []
    for scan in lidc_scans(options, seed=5, part=0, solid_per_scan=5, limits=False):
        found = find_nodules(scan.volume)
        judged.append((scan, judge(scan, [(c.segmentation.centre_patient_mm, c.score)
                                          for c in found])))
    result = froc(judged)
    assert result.targets >= 10
    assert result.sensitivity_at(2.0) >= 0.9, result


# -- the command over an imported study ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("detect-files")
    truth = generate_demo(out, DemoOptions(patients=1, rows=320, columns=320,
                                           pixel_spacing_mm=0.8, slices=64))
    return out, truth["patients"][0]["studies"][0]


@pytest.fixture(scope="module")
def imported(database_kind: str, tmp_path_factory: pytest.TempPathFactory,
             demo_files: tuple[Path, dict[str, Any]]) -> Iterator[tuple[Path, str]]:
    files, study = demo_files
    data = tmp_path_factory.mktemp(f"detect-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data)
    done = run_cli(["import", "--data", str(data), str(files / study["path"])], url)
    assert done.returncode == 0, done.stdout + done.stderr
    yield data, url
    if schema:
        schema.drop()


def test_detect_prints_the_imported_studys_nodules_as_json(
        imported: tuple[Path, str], demo_files: tuple[Path, dict[str, Any]]) -> None:
    data, url = imported
    study = demo_files[1]
    result = run_cli(["detect", "--data", str(data), "--study", study["study_uid"]], url)
    assert result.returncode == 0, result.stderr
    candidates = json.loads(result.stdout)["candidates"]
    for c in candidates:
        assert {"center_mm", "diameter_mm", "volume_mm3", "score", "series_uid"} <= set(c)
        assert len(c["center_mm"]) == 3 and 0.0 <= c["score"] <= 1.0
        assert c["series_uid"] == study["series_uid"]
        assert 4.0 - 0.5 <= c["diameter_mm"] <= 30.5 and c["volume_mm3"] > 0
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    solid = [n for n in study["nodules"] if n["type"] == "solid"]
    assert solid
    for nodule in solid:
        hits = [c for c in candidates
                if math.dist(c["center_mm"], nodule["center_patient_mm"]) <= 1.5]
        assert len(hits) == 1, (nodule, candidates)
        assert hits[0]["diameter_mm"] == pytest.approx(nodule["diameter_mm"], abs=0.7)
    assert len(candidates) <= len(study["nodules"]) + 2


def test_detect_on_an_unknown_study_exits_2(imported: tuple[Path, str]) -> None:
    data, url = imported
    result = run_cli(["detect", "--data", str(data), "--study", "1.2.826.0.1.3680043.10.998"], url)
    assert result.returncode == 2 and result.stdout == ""
    assert "1.2.826.0.1.3680043.10.998" in result.stderr and "not stored" in result.stderr
