"""Nodule measurement model: each guideline's rounding, sphere volumes, validation.

Expected values come from the rounding rules quoted in cloudfilm.domain.nodule:
Fleischner 2017 (nearest mm; "smaller than 6 mm (those 5 mm or smaller)"), and the
Lung-RADS v2022 Notes (axes and mean to 0.1 mm, volumes to the nearest mm³).
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import pytest

from cloudfilm.domain.lungrads import VOLUME_AT_MM
from cloudfilm.domain.nodule import (
    Airway,
    Calcification,
    Lobe,
    Measurement,
    Method,
    Morphology,
    NoduleType,
    VolumeSource,
    add_months,
    round_half_up,
    sphere_volume_mm3,
)


def make(long: float = 6.0, short: float | None = None, **kw) -> Measurement:
    fields = dict(study_uid="1.2.3", series_uid="1.2.3.4", instance_uid="1.2.3.4.5",
                  centre_mm=(10.0, -20.5, 33.0), long_axis_mm=long,
                  short_axis_mm=long if short is None else short,
                  nodule_type=NoduleType.SOLID, study_date=date(2024, 1, 10), measured_by="dr-a")
    fields.update(kw)
    return Measurement(**fields)


# -- Fleischner: average of the axes, nearest mm, half up ---------------------------------

@pytest.mark.parametrize(("long", "short", "size"), [
    (5.4, 5.4, 5),   # below the 6 mm line: "5 mm or smaller"
    (5.49, 5.49, 5),
    (5.5, 5.5, 6),   # the tie goes up
    (6.0, 5.0, 6),   # mean 5.5
    (6.3, 4.7, 6),   # mean 5.5 exactly; binary floats would give 5.4999...
    (6.0, 6.0, 6),
    (6.5, 6.5, 7),   # Python's round(6.5) is 6
    (7.9, 7.9, 8),
    (8.0, 8.0, 8),
    (8.4, 8.4, 8),
    (8.5, 8.5, 9),   # leaves the 6-8 mm column
    (12.0, 7.0, 10),  # mean 9.5
])
def test_fleischner_size_rounds_half_up(long: float, short: float, size: int) -> None:
    assert make(long, short).fleischner_size_mm == size


def test_python_round_would_be_wrong() -> None:
    assert round(6.5) == 6 and make(6.5).fleischner_size_mm == 7
    assert round_half_up(2.5) == Decimal("3")


def test_mean_diameter_is_exact() -> None:
    assert make(6.3, 4.7).mean_diameter_mm == Decimal("5.5")
    assert make(7.1, 6.2).mean_diameter_mm == Decimal("6.65")


@pytest.mark.parametrize(("solid", "rounded"), [(5.4, 5), (5.5, 6), (5.9, 6), (6.0, 6)])
def test_fleischner_solid_component_rounds_half_up(solid: float, rounded: int) -> None:
    m = make(9.0, nodule_type=NoduleType.PART_SOLID, solid_component_mm=solid)
    assert m.fleischner_solid_component_mm == rounded


# -- Lung-RADS: axes and mean to 0.1 mm ----------------------------------------------------

@pytest.mark.parametrize(("long", "short", "mean"), [
    (5.9, 5.9, "5.9"),
    (6.0, 5.9, "6.0"),    # 5.95 -> 6.0 (half up; ACR does not state the tie-break)
    (5.9, 5.8, "5.9"),    # 5.85 -> 5.9
    (6.04, 6.04, "6.0"),  # each axis to 0.1 mm first
    (6.05, 6.05, "6.1"),
    (14.9, 14.9, "14.9"),
    (15.0, 14.9, "15.0"),  # 14.95 -> 15.0
    (7.94, 7.94, "7.9"),
])
def test_lungrads_mean_to_tenth_mm(long: float, short: float, mean: str) -> None:
    assert make(long, short).lungrads_mean_mm == Decimal(mean)


def test_lungrads_solid_component_to_tenth() -> None:
    m = make(9.0, nodule_type=NoduleType.PART_SOLID, solid_component_mm=3.95)
    assert m.lungrads_solid_component_mm == Decimal("4.0")


# -- volumes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("diameter", [4, 6, 8, 10, 15, 30])
def test_sphere_volume_matches_lungrads_cutoffs(diameter: int) -> None:
    """Lung-RADS v2022 volume equivalents are π·d³/6 to the nearest mm³."""
    assert int(round_half_up(sphere_volume_mm3(diameter))) == VOLUME_AT_MM[diameter]


def test_fleischner_volume_lines_are_not_the_diameter_lines() -> None:
    """100 and 250 mm³ are spheres of about 5.8 and 7.8 mm, not 6 and 8 mm."""
    assert round((6 * 100 / math.pi) ** (1 / 3), 1) == 5.8
    assert round((6 * 250 / math.pi) ** (1 / 3), 1) == 7.8
    assert sphere_volume_mm3(6) > 100 and sphere_volume_mm3(8) > 250


def test_volume_estimated_from_mean_diameter_when_not_measured() -> None:
    value, source = make(6.0, 5.0).volume
    assert source is VolumeSource.SPHERE_ESTIMATE
    assert value == pytest.approx(math.pi * 5.5 ** 3 / 6)
    assert make(6.0, 5.0).measured_volume_whole_mm3 is None


def test_measured_volume_is_used_and_recorded() -> None:
    m = make(6.0, method=Method.SEMI_AUTOMATIC, volume_mm3=120.4)
    assert m.volume == (120.4, VolumeSource.MEASURED)
    assert m.volume_whole_mm3 == 120


@pytest.mark.parametrize(("volume", "whole"),
                         [(112.4, 112), (112.5, 113), (267.5, 268), (99.49, 99)])
def test_volume_to_nearest_whole_mm3_half_up(volume: float, whole: int) -> None:
    assert make(volume_mm3=volume).measured_volume_whole_mm3 == whole


# -- the rest of the model -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "lobe", "upper"), [
    ("RUL", Lobe.RUL, True), ("right middle lobe", Lobe.RML, False), ("rll", Lobe.RLL, False),
    ("left upper lobe", Lobe.LUL, True), ("Lingula", Lobe.LUL, True), ("LLL", Lobe.LLL, False),
])
def test_lobes_and_lingula(text: str, lobe: Lobe, upper: bool) -> None:
    assert Lobe.parse(text) is lobe and lobe.is_upper is upper


def test_unknown_lobe_refused() -> None:
    with pytest.raises(ValueError):
        Lobe.parse("left middle lobe")


@pytest.mark.parametrize(("pattern", "benign"), [
    (Calcification.NONE, False), (Calcification.DIFFUSE, True), (Calcification.CENTRAL, True),
    (Calcification.LAMINATED, True), (Calcification.POPCORN, True),
    (Calcification.INDETERMINATE, False),
])
def test_benign_calcification_patterns(pattern: Calcification, benign: bool) -> None:
    assert make(calcification=pattern).benign_appearance is benign


def test_fat_is_benign_appearance() -> None:
    assert make(morphology=Morphology(contains_fat=True)).benign_appearance


def test_image_reference_and_morphology_kept() -> None:
    m = make(frame_number=3, lobe=Lobe.LUL,
             morphology=Morphology(spiculated=True, airway=Airway.SUBSEGMENTAL))
    assert (m.frame_number, m.centre_mm, m.upper_lobe) == (3, (10.0, -20.5, 33.0), True)
    assert m.morphology.airway is Airway.SUBSEGMENTAL


@pytest.mark.parametrize("bad", [
    dict(long=5.0, short=6.0),
    dict(long=0.0, short=0.0),
    dict(solid_component_mm=3.0),  # a solid nodule has no solid component
    dict(nodule_type=NoduleType.PART_SOLID, solid_component_mm=7.0, long=6.0),
    dict(study_uid=""),
    dict(frame_number=0),
    dict(volume_mm3=0.0),
    dict(centre_mm=(1.0, 2.0)),
])
def test_invalid_measurements_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        make(**bad)


@pytest.mark.parametrize(("start", "months", "end"), [
    (date(2024, 1, 31), 1, date(2024, 2, 29)),
    (date(2023, 1, 31), 1, date(2023, 2, 28)),
    (date(2024, 11, 15), 3, date(2025, 2, 15)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)),
    (date(2024, 6, 30), 0, date(2024, 6, 30)),
])
def test_add_months_clamps_to_month_end(start: date, months: int, end: date) -> None:
    assert add_months(start, months) == end
