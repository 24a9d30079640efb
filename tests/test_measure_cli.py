"""``cloudfilm measure`` on the demo CTs: a click on a truth nodule gives its size, volume, centre.

The demo's nodules are partial-volume spheres with known diameter and centre
(``demo-truth.json``); the targets are the issue's: mean diameter within ±0.5 mm, volume
within ±10% of π·d³/6, centre within 1 mm. Measuring reads files only, so SQLite suffices.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import demo_data, run_cli

Demo = tuple[Path, str, dict[str, Any]]
FIELDS = {"long_axis_mm", "short_axis_mm", "mean_diameter_mm", "volume_mm3", "center_patient_mm",
          "suggested_type", "best_slice_instance_uid", "mean_hu", "outline", "method"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data = tmp_path_factory.mktemp("measure") / "data"
    url = demo_data(tmp_path_factory, data, patients=1)
    return data, url, json.loads((data / "demo-truth.json").read_text())


def measure(demo: Demo, study: dict[str, Any], instance: str,
            x: float, y: float, study_uid: str | None = None) -> subprocess.CompletedProcess[str]:
    data, url, _ = demo
    return run_cli(["measure", "--data", str(data), "--study", study_uid or study["study_uid"],
                    "--series", study["series_uid"], "--instance", instance,
                    "--x", str(x), "--y", str(y)], url)


def test_a_click_on_each_nodule_measures_its_diameter_volume_and_centre(demo: Demo) -> None:
    study = demo[2]["patients"][0]["studies"][0]
    for nodule in study["nodules"]:
        column, row, _ = nodule["center_voxel"]
        result = measure(demo, study, nodule["instance_uid_at_center"], column, row)
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert set(found) >= FIELDS
        d = nodule["diameter_mm"]
        assert found["mean_diameter_mm"] == pytest.approx(d, abs=0.5)
        assert found["volume_mm3"] == pytest.approx(math.pi * d ** 3 / 6, rel=0.10)
        assert math.dist(found["center_patient_mm"], nodule["center_patient_mm"]) < 1.0
        assert found["suggested_type"] == nodule["type"]
        assert found["method"] == "semi-automatic"
        assert found["outline"]["instance_uid"] == found["best_slice_instance_uid"]
        assert isinstance(found["volume_mm3"], int)


def test_a_click_off_centre_on_the_same_nodule_gives_the_same_answer(demo: Demo) -> None:
    study = demo[2]["patients"][0]["studies"][-1]
    nodule = study["nodules"][0]
    column, row, _ = nodule["center_voxel"]
    centred = measure(demo, study, nodule["instance_uid_at_center"], column, row)
    beside = measure(demo, study, nodule["instance_uid_at_center"], column + 3, row - 2)
    assert centred.returncode == beside.returncode == 0, centred.stderr + beside.stderr
    assert json.loads(beside.stdout)["volume_mm3"] == json.loads(centred.stdout)["volume_mm3"]


def test_a_click_in_the_lung_away_from_any_nodule_exits_2(demo: Demo) -> None:
    """The demo keeps 16 mm of empty lung around every nodule: 8 mm beyond its edge is lung."""
    study = demo[2]["patients"][0]["studies"][0]
    nodule = study["nodules"][0]
    column, row, _ = nodule["center_voxel"]
    away = (nodule["diameter_mm"] / 2 + 8.0) / study["pixel_spacing_mm"]
    result = measure(demo, study, nodule["instance_uid_at_center"], column + away, row)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "not on a nodule" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_study_exits_2_and_names_it(demo: Demo) -> None:
    study = demo[2]["patients"][0]["studies"][0]
    nodule = study["nodules"][0]
    result = measure(demo, study, nodule["instance_uid_at_center"], 100, 100,
                     study_uid="1.2.826.0.1.3680043.10.999")
    assert result.returncode == 2
    assert "1.2.826.0.1.3680043.10.999" in result.stderr and "not stored" in result.stderr


def test_an_instance_of_another_series_exits_2(demo: Demo) -> None:
    first, second = demo[2]["patients"][0]["studies"][:2]
    result = measure(demo, first, second["nodules"][0]["instance_uid_at_center"], 100, 100)
    assert result.returncode == 2 and "not stored" in result.stderr


def test_a_second_click_in_the_same_series_reuses_the_loaded_volume(demo: Demo) -> None:
    from cloudfilm.config import Settings
    from cloudfilm.services.context import Archive
    from cloudfilm.services.nodules.measure import measure_at, volume_cache

    data, url, truth = demo
    study = truth["patients"][0]["studies"][0]
    archive = Archive.open(Settings.load(data, url), recover=False)
    try:
        volume_cache.clear()
        volumes = []
        for nodule in study["nodules"]:
            column, row, _ = nodule["center_voxel"]
            seg, volume = measure_at(archive, study["study_uid"], study["series_uid"],
                                     nodule["instance_uid_at_center"], column, row)
            assert seg.mean_diameter_mm == pytest.approx(nodule["diameter_mm"], abs=0.5)
            volumes.append(volume)
        assert volumes[0] is volumes[1]
    finally:
        volume_cache.clear()
        archive.close()
