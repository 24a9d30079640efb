"""Rigid lung registration maps a follow-up CT's patient coordinates into its prior's.

Why: nodules are tracked across studies by position, and two studies of one patient
rarely share coordinates (other hospital, other table origin, other lying position).
The demo data places every study at a different body offset -- 255 mm apart in z between
its two hospitals -- and knows where each nodule really is, so the mapping can be
checked exactly; a resampled copy with a known rotation checks what the demo cannot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from cloudfilm.domain.volume import CtVolume
from cloudfilm.services.demo.generate import DemoOptions, demo_truth
from cloudfilm.services.imaging.registration import (
    RegistrationError,
    RigidTransform,
    patient_space_image,
    register_rigid,
)
from factory import demo_volumes

OPTS = DemoOptions(patients=2, slices=80)
TRUTH = demo_truth(OPTS)
Key = tuple[int, int]  # (patient index, study index)


@pytest.fixture(scope="module")
def volumes() -> dict[Key, CtVolume]:
    """Every demo study as a volume, built from in-memory datasets."""
    return demo_volumes(OPTS)


def _consecutive_pairs(truth: dict) -> list[tuple[int, int]]:
    """(patient, current study) for every study that has a prior."""
    return [(p, s) for p, patient in enumerate(truth["patients"])
            for s in range(1, len(patient["studies"]))]


@pytest.mark.parametrize(("patient", "study"), _consecutive_pairs(TRUTH))
def test_every_demo_nodule_maps_onto_its_prior_position(
        volumes: dict[Key, CtVolume], patient: int, study: int) -> None:
    studies = TRUTH["patients"][patient]["studies"]
    transform = register_rigid(volumes[(patient, study - 1)], volumes[(patient, study)])
    prior = {n["id"]: np.asarray(n["center_patient_mm"]) for n in studies[study - 1]["nodules"]}
    current = studies[study]["nodules"]
    assert current, "the demo study has nodules to check"
    for nodule in current:
        mapped = transform.current_to_prior(nodule["center_patient_mm"])
        assert np.linalg.norm(mapped - prior[nodule["id"]]) < 3.0, nodule["id"]
    assert transform.lung_overlap > 0.9


def test_a_known_rotation_and_shift_are_recovered_within_2_mm(
        volumes: dict[Key, CtVolume]) -> None:
    prior = volumes[(0, 0)]
    image = patient_space_image(prior)
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    known = sitk.VersorRigid3DTransform()  # current point -> prior point
    known.SetCenter(centre)
    known.SetRotation((1.0, 1.0, 1.0), math.radians(5.0))
    known.SetTranslation((12.0, -12.0, 10.0))  # 19.97 mm
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, known, sitk.sitkLinear, -1000.0))
    kept = slice(16, 64)  # the follow-up covers less, so no empty slab enters the scan
    current = CtVolume(hu=moved[kept], origin_mm=tuple(prior.voxel_to_patient((16, 0, 0))),
                       spacing_mm=prior.spacing_mm, row_cosines=prior.row_cosines,
                       column_cosines=prior.column_cosines,
                       instance_uids=prior.instance_uids[kept])

    transform = register_rigid(prior, current)

    points = np.asarray(centre) + np.random.default_rng(1).uniform(-1, 1, (200, 3)) * [90, 60, 25]
    expected = np.asarray([known.TransformPoint(tuple(p)) for p in points])
    errors = np.linalg.norm(transform.current_to_prior(points) - expected, axis=1)
    assert errors.max() < 2.0
    assert transform.rotation_deg == pytest.approx(5.0, abs=0.5)


def test_registration_is_deterministic(volumes: dict[Key, CtVolume]) -> None:
    first = register_rigid(volumes[(1, 0)], volumes[(1, 1)])
    assert register_rigid(volumes[(1, 0)], volumes[(1, 1)]) == first


def _chest_without_lungs() -> CtVolume:
    """A soft-tissue cylinder in air: a body, but nothing air-like inside it."""
    _, i, j = np.mgrid[0:40, 0:128, 0:128]
    body = ((i - 63.5) / 38) ** 2 + ((j - 63.5) / 54) ** 2 <= 1
    hu = np.where(body, 40.0, -1000.0).astype(np.float32)
    return CtVolume(hu=hu, origin_mm=(-178.0, -178.0, -50.0), spacing_mm=(2.5, 2.8, 2.8),
                    row_cosines=(1.0, 0.0, 0.0), column_cosines=(0.0, 1.0, 0.0),
                    instance_uids=tuple(f"1.2.3.{n}" for n in range(40)))


def test_a_study_without_lungs_raises_registration_error(volumes: dict[Key, CtVolume]) -> None:
    with pytest.raises(RegistrationError, match="no lung found in the current study"):
        register_rigid(volumes[(0, 0)], _chest_without_lungs())
    with pytest.raises(RegistrationError, match="no lung found in the prior study"):
        register_rigid(_chest_without_lungs(), volumes[(0, 0)])


def test_rigid_transform_maps_one_point_or_many() -> None:
    quarter_turn = ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    transform = RigidTransform(quarter_turn, (10.0, 0.0, -5.0), metric_value=-1.0,
                               lung_overlap=1.0)
    assert transform.current_to_prior((1.0, 2.0, 3.0)).tolist() == [8.0, 1.0, -2.0]
    assert transform.current_to_prior(np.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])).tolist() \
        == [[8.0, 1.0, -2.0], [10.0, 0.0, -5.0]]
    assert transform.rotation_deg == pytest.approx(90.0)


def test_a_reflection_is_not_a_rigid_transform() -> None:
    mirror = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="rotation"):
        RigidTransform(mirror, (0.0, 0.0, 0.0), metric_value=-1.0, lung_overlap=1.0)
