"""Nodules of a follow-up CT are paired with the same nodules of the prior CT.

Why: growth, doubling time and the follow-up rules compare a nodule with *itself*; a
wrong pair turns a new nodule into "growth" or hides one. The proposal is one-to-one,
optimal rather than greedy, bounded by a tolerance, and on the demo data it pairs every
nodule with its own prior across hospitals once the studies are registered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cloudfilm.domain.tracking import (
    DEFAULT_TOLERANCE_MM,
    Match,
    NodulePoint,
    TrackingResult,
    match_nodules,
    shares_frame_of_reference,
)
from cloudfilm.domain.volume import CtVolume
from cloudfilm.services.demo.generate import DemoOptions, demo_truth
from cloudfilm.services.imaging.registration import register_rigid
from factory import demo_volumes


def nodule(name: str, x: float, y: float = 0.0, z: float = 0.0, d: float = 6.0) -> NodulePoint:
    """A nodule on the x axis unless told otherwise, 6 mm across."""
    return NodulePoint(name, (x, y, z), d)


def shifted(dx: float, dy: float, dz: float) -> Callable[[np.ndarray], np.ndarray]:
    """A point map that only translates."""
    return lambda points: np.asarray(points) + np.asarray([dx, dy, dz])


def test_same_positions_pair_each_nodule_with_itself() -> None:
    prior = [nodule("a", 0), nodule("b", 50), nodule("c", 100)]
    current = [nodule("A", 0), nodule("B", 50), nodule("C", 100)]
    result = match_nodules(prior, current, None)
    assert result == TrackingResult(
        pairs=(Match("A", "a", 0.0), Match("B", "b", 0.0), Match("C", "c", 0.0)),
        new=(), missing=())


def test_input_order_does_not_change_the_pairs() -> None:
    prior = [nodule("a", 0), nodule("b", 50), nodule("c", 100)]
    current = [nodule("C", 101), nodule("A", 1), nodule("B", 51)]
    result = match_nodules(prior, current, None)
    assert {(m.current_id, m.prior_id) for m in result.pairs} == {("A", "a"), ("B", "b"), ("C", "c")}
    assert [m.current_id for m in result.pairs] == ["C", "A", "B"]  # current order kept


def test_the_point_map_is_applied_before_measuring() -> None:
    prior = [nodule("a", 0), nodule("b", 50)]
    current = [nodule("A", 300, 5, -255), nodule("B", 350, 5, -255)]
    result = match_nodules(prior, current, shifted(-300, -5, 255))
    assert [(m.current_id, m.prior_id) for m in result.pairs] == [("A", "a"), ("B", "b")]
    assert match_nodules(prior, current, None).pairs == ()


def test_a_nodule_without_prior_is_new() -> None:
    result = match_nodules([nodule("a", 0)], [nodule("A", 1), nodule("N", 80)], None)
    assert [(m.current_id, m.prior_id) for m in result.pairs] == [("A", "a")]
    assert result.new == ("N",)
    assert result.missing == ()
    assert result.prior_of("N") is None
    assert result.prior_of("A") == "a"


def test_a_prior_nodule_not_found_now_is_missing() -> None:
    result = match_nodules([nodule("a", 0), nodule("gone", 80)], [nodule("A", 1)], None)
    assert result.missing == ("gone",)
    assert result.new == ()


def test_no_nodules_on_one_side() -> None:
    assert match_nodules([], [nodule("A", 0)], None) == TrackingResult((), ("A",), ())
    assert match_nodules([nodule("a", 0)], [], None) == TrackingResult((), (), ("a",))


def test_two_close_nodules_are_assigned_optimally_not_greedily() -> None:
    # Greedy takes the closest pair (A-b, 1 mm) first and leaves B with a, 9 mm away;
    # pairing A-a and B-b costs 4 + 4 = 8 mm in total instead of 1 + 9 = 10 mm.
    prior = [nodule("a", 0), nodule("b", 5)]
    current = [nodule("A", 4), nodule("B", 9)]
    result = match_nodules(prior, current, None)
    assert [(m.current_id, m.prior_id, m.distance_mm) for m in result.pairs] == [
        ("A", "a", 4.0), ("B", "b", 4.0)]


def test_a_distant_new_nodule_does_not_pull_a_close_pair_apart() -> None:
    # Without gating the cheapest full assignment is A-b (14) + N-a (14) = 28 < 2 + 30,
    # and both pairs would then be dropped as too far: A must stay with a.
    prior = [nodule("a", 0), nodule("b", 16)]
    current = [nodule("A", 2), nodule("N", -14)]
    result = match_nodules(prior, current, None, tolerance_mm=10.0)
    assert [(m.current_id, m.prior_id) for m in result.pairs] == [("A", "a")]
    assert result.new == ("N",)
    assert result.missing == ("b",)


def test_a_pair_at_exactly_the_tolerance_matches_and_just_beyond_does_not() -> None:
    prior = [nodule("a", 0)]
    assert match_nodules(prior, [nodule("A", 10.0)], None, tolerance_mm=10.0).pairs == (
        Match("A", "a", 10.0),)
    beyond = match_nodules(prior, [nodule("A", 10.001)], None, tolerance_mm=10.0)
    assert beyond.pairs == ()
    assert (beyond.new, beyond.missing) == (("A",), ("a",))


def test_default_tolerance_is_the_floor_or_the_larger_diameter() -> None:
    small, at_floor = [nodule("a", 0, d=6)], [nodule("A", DEFAULT_TOLERANCE_MM, d=6)]
    assert len(match_nodules(small, at_floor, None).pairs) == 1
    assert match_nodules(small, [nodule("A", DEFAULT_TOLERANCE_MM + 0.01, d=6)], None).pairs == ()
    large = [nodule("a", 0, d=30)]
    assert len(match_nodules(large, [nodule("A", 29.9, d=20)], None).pairs) == 1
    assert match_nodules(large, [nodule("A", 30.1, d=20)], None).pairs == ()


def test_ids_must_be_unique_within_a_study() -> None:
    with pytest.raises(ValueError, match="current nodule ids repeat: A"):
        match_nodules([nodule("a", 0)], [nodule("A", 0), nodule("A", 9)], None)


def test_a_nodule_point_cannot_be_built_invalid() -> None:
    with pytest.raises(ValueError, match="centre_mm"):
        NodulePoint("a", (0.0, float("nan"), 0.0), 5.0)
    with pytest.raises(ValueError, match="diameter_mm"):
        NodulePoint("a", (0.0, 0.0, 0.0), -1.0)


def test_only_a_shared_frame_of_reference_allows_matching_without_registration() -> None:
    assert shares_frame_of_reference("1.2.3", "1.2.3")
    assert not shares_frame_of_reference("1.2.3", "1.2.4")
    assert not shares_frame_of_reference("", "")


# --------------------------------------------------------------- demo, end to end

OPTS = DemoOptions(patients=3, slices=80)
TRUTH = demo_truth(OPTS)
Key = tuple[int, int]  # (patient index, study index)


@pytest.fixture(scope="module")
def volumes() -> dict[Key, CtVolume]:
    """Every demo study as a volume, built from in-memory datasets."""
    return demo_volumes(OPTS)


def _points(study: dict) -> list[NodulePoint]:
    """The truth nodules of a demo study (ids are stable across a patient's studies)."""
    return [NodulePoint(n["id"], tuple(n["center_patient_mm"]), n["diameter_mm"])
            for n in study["nodules"]]


PAIRS = [(p, s) for p, patient in enumerate(TRUTH["patients"])
         for s in range(1, len(patient["studies"]))]


@pytest.mark.parametrize(("patient", "study"), PAIRS)
def test_every_demo_nodule_is_matched_to_its_own_prior(
        volumes: dict[Key, CtVolume], patient: int, study: int) -> None:
    studies = TRUTH["patients"][patient]["studies"]
    prior, current = studies[study - 1], studies[study]
    assert not shares_frame_of_reference(prior["frame_of_reference_uid"],
                                         current["frame_of_reference_uid"])
    transform = register_rigid(volumes[(patient, study - 1)], volumes[(patient, study)])

    result = match_nodules(_points(prior), _points(current), transform.current_to_prior)

    assert [(m.current_id, m.prior_id) for m in result.pairs] == [
        (n["id"], n["id"]) for n in current["nodules"]]
    assert (result.new, result.missing) == ((), ())


def test_demo_studies_from_two_hospitals_do_not_match_unregistered() -> None:
    zhang = TRUTH["patients"][0]["studies"]
    assert zhang[0]["issuer"] != zhang[1]["issuer"]
    result = match_nodules(_points(zhang[0]), _points(zhang[1]), None)
    assert result.pairs == ()
