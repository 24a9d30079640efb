"""Lung-RADS v2022 rule table, row by row and at every 0.1 mm boundary.

Expected categories mirror the ACR Lung-RADS v2022 Assessment Categories table and
its Notes (growth, size thresholds, stepped management, Category 0 and S).
"""

from __future__ import annotations

from datetime import date

import pytest

from cloudfilm.domain.lungrads import (
    SIZE_ROWS,
    Category,
    Finding,
    SizeBasis,
    Status,
    classify_exam,
    classify_finding,
    status_from_prior,
)
from cloudfilm.domain.nodule import Airway, Calcification, Measurement, Morphology, NoduleType

B, N, G = Status.BASELINE, Status.NEW, Status.GROWING
SOLID, PS, GGN = NoduleType.SOLID, NoduleType.PART_SOLID, NoduleType.GROUND_GLASS
C1, C2, C3 = Category.ONE, Category.TWO, Category.THREE
C4A, C4B, C4X = Category.FOUR_A, Category.FOUR_B, Category.FOUR_X


def make(long: float = 6.0, short: float | None = None, *, when: date = date(2024, 3, 1),
         **kw) -> Measurement:
    fields = dict(study_uid="1.2.3", series_uid="1.2.3.4", instance_uid="1.2.3.4.5",
                  centre_mm=(0.0, 0.0, 0.0), long_axis_mm=long,
                  short_axis_mm=long if short is None else short, nodule_type=SOLID,
                  study_date=when, measured_by="dr-a")
    fields.update(kw)
    return Measurement(**fields)


def category(m: Measurement, status: Status, **kw) -> Category:
    return classify_finding(Finding(m, status, **kw)).category


# -- solid ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "size", "expected"), [
    (B, 5.9, C2), (B, 6.0, C3), (B, 7.9, C3), (B, 8.0, C4A), (B, 14.9, C4A), (B, 15.0, C4B),
    (N, 3.9, C2), (N, 4.0, C3), (N, 5.9, C3), (N, 6.0, C4A), (N, 7.9, C4A), (N, 8.0, C4B),
    (G, 3.0, C4A), (G, 7.9, C4A), (G, 8.0, C4B), (G, 20.0, C4B),
])
def test_solid_rows(status: Status, size: float, expected: Category) -> None:
    assert category(make(size), status) is expected


def test_mean_of_axes_decides_a_boundary() -> None:
    """6.0 x 5.9 mm has a mean of 5.95, reported as 6.0: Category 3 at baseline."""
    assert category(make(6.0, 5.9), B) is C3
    assert category(make(6.0, 5.8), B) is C2  # 5.9


# -- part-solid: total size and solid component ------------------------------------------------

def part(total: float, solid: float | None) -> Measurement:
    return make(total, nodule_type=PS, solid_component_mm=solid)


@pytest.mark.parametrize(("status", "total", "solid", "expected"), [
    (B, 5.9, None, C2), (B, 5.9, 3.0, C2),
    (B, 6.0, 5.9, C3), (B, 6.0, 6.0, C4A), (B, 10.0, 7.9, C4A), (B, 10.0, 8.0, C4B),
    (N, 5.9, 3.9, C3), (N, 6.0, 3.9, C4A), (N, 6.0, 4.0, C4B), (N, 12.0, 8.0, C4B),
    (G, 6.0, 3.9, C4A), (G, 9.0, 4.0, C4B),
    (N, 5.9, 4.0, C4B),  # two rows meet: "new <6 mm total" (3) and "new ≥4 mm solid" (4B)
    (G, 5.9, 2.0, C3),   # extrapolated: no growing <6 mm row
])
def test_part_solid_rows(status: Status, total: float, solid: float | None,
                         expected: Category) -> None:
    assert category(part(total, solid), status) is expected


@pytest.mark.parametrize("status", [N, G])
def test_part_solid_needs_its_solid_component(status: Status) -> None:
    with pytest.raises(ValueError):
        category(part(5.0, None), status)
    with pytest.raises(ValueError):
        category(part(7.0, None), B)


# -- non-solid (ground glass) ---------------------------------------------------------------

@pytest.mark.parametrize(("status", "size", "expected"), [
    (B, 29.9, C2), (N, 29.9, C2), (G, 29.9, C2),
    (B, 30.0, C3), (N, 30.0, C3), (G, 30.0, C3),
    (Status.STABLE, 35.0, C2), (Status.SLOWLY_GROWING, 35.0, C2), (Status.STABLE, 10.0, C2),
])
def test_ground_glass_rows(status: Status, size: float, expected: Category) -> None:
    assert category(make(size, nodule_type=GGN), status) is expected


def test_growing_large_ground_glass_is_marked_extrapolated() -> None:
    rule = classify_finding(Finding(make(31.0, nodule_type=GGN), G))
    assert rule.extrapolated and rule.row_id == "LR22-3-ggn-G"


# -- juxtapleural, airway, benign ---------------------------------------------------------------

PLEURAL = Morphology(juxtapleural=True, smooth_margins=True, benign_shape=True)


@pytest.mark.parametrize(("status", "size", "morphology", "expected"), [
    (B, 9.9, PLEURAL, C2),
    (N, 9.9, PLEURAL, C2),           # would be 4B as an ordinary new solid nodule
    (B, 10.0, PLEURAL, C4A),         # ≥10 mm: the solid rows apply
    (N, 10.0, PLEURAL, C4B),
    (B, 9.0, Morphology(juxtapleural=True, benign_shape=True), C4A),  # margins not smooth
    (B, 9.0, Morphology(juxtapleural=True, smooth_margins=True), C4A),  # shape not typical
    (G, 7.0, PLEURAL, C4A),          # growing: not covered by the juxtapleural row
])
def test_juxtapleural_row(status: Status, size: float, morphology: Morphology,
                          expected: Category) -> None:
    assert category(make(size, morphology=morphology), status) is expected


@pytest.mark.parametrize(("airway", "status", "expected", "row"), [
    (Airway.SUBSEGMENTAL, B, C2, "LR22-2-airway-subsegmental"),
    (Airway.SUBSEGMENTAL, N, C2, "LR22-2-airway-subsegmental"),
    (Airway.SEGMENTAL_OR_PROXIMAL, B, C4A, "LR22-4A-airway-segmental"),
    (Airway.SEGMENTAL_OR_PROXIMAL, N, C4A, "LR22-4A-airway-segmental"),
    (Airway.SEGMENTAL_OR_PROXIMAL, G, C4B, "LR22-4B-airway-segmental-3mo"),
])
def test_airway_rows(airway: Airway, status: Status, expected: Category, row: str) -> None:
    rule = classify_finding(Finding(make(9.0, morphology=Morphology(airway=airway)), status))
    assert (rule.category, rule.row_id) == (expected, row)


def test_airway_stable_rows() -> None:
    sub = make(5.0, morphology=Morphology(airway=Airway.SUBSEGMENTAL))
    seg = make(5.0, morphology=Morphology(airway=Airway.SEGMENTAL_OR_PROXIMAL))
    assert category(sub, Status.STABLE, prior_category=C2) is C2
    # segmental airway nodules are excluded from 4A stepped management: stable at 3 months is 4B
    assert category(seg, Status.STABLE, prior_category=C4A) is C4B


@pytest.mark.parametrize("m", [
    make(12.0, calcification=Calcification.POPCORN),
    make(12.0, calcification=Calcification.LAMINATED),
    make(12.0, morphology=Morphology(contains_fat=True)),
])
def test_benign_calcification_or_fat_is_category_1(m: Measurement) -> None:
    for status in (B, N, G):
        assert category(m, status) is C1


def test_indeterminate_calcification_is_not_benign() -> None:
    assert category(make(12.0, calcification=Calcification.INDETERMINATE), B) is C4A


# -- stable nodules and stepped management ---------------------------------------------------------

@pytest.mark.parametrize(("prior", "expected", "row"), [
    (C2, C2, "LR22-2-stable"),
    (C3, C2, "LR22-2-cat3-stable-6mo"),
    (C4A, C3, "LR22-3-cat4A-stable-3mo"),
    (C4B, C4B, "LR22-4B-pending-workup"),
    (C4X, C4B, "LR22-4B-pending-workup"),
])
def test_stepped_management(prior: Category, expected: Category, row: str) -> None:
    rule = classify_finding(Finding(make(7.0), Status.STABLE, prior_category=prior))
    assert (rule.category, rule.row_id) == (expected, row)


def test_4b_proven_benign_after_workup() -> None:
    finding = Finding(make(16.0), Status.STABLE, prior_category=C4B, benign_after_workup=True)
    assert classify_finding(finding).row_id == "LR22-2-cat4B-benign"


def test_stable_needs_prior_category() -> None:
    with pytest.raises(ValueError):
        category(make(7.0), Status.STABLE)
    with pytest.raises(ValueError):
        category(make(7.0), Status.STABLE, prior_category=Category.ZERO)


def test_crossing_a_size_threshold_without_growth_reclassifies() -> None:
    """5.9 -> 6.2 mm is not growth (0.3 mm) but crosses the 6 mm line (Notes, size thresholds)."""
    prior = make(5.9, when=date(2023, 3, 1))
    current = make(6.2)
    assert status_from_prior(prior, current) is Status.STABLE
    rule = classify_finding(Finding(current, Status.STABLE, prior_category=C2, prior=prior))
    assert rule.category is C3 and rule.row_id == "LR22-3-solid-B+crossed"
    unchanged = make(5.9)
    assert category(unchanged, Status.STABLE, prior_category=C2, prior=prior) is C2


@pytest.mark.parametrize(("before", "after", "months_later", "status"), [
    (6.0, 7.5, 12, Status.STABLE),          # +1.5 mm: not > 1.5
    (6.0, 7.6, 12, Status.GROWING),         # +1.6 mm within 12 months
    (6.0, 7.6, 13, Status.SLOWLY_GROWING),  # +1.6 mm but over 13 months
    (6.0, 5.0, 6, Status.STABLE),
])
def test_status_from_prior(before: float, after: float, months_later: int, status: Status) -> None:
    from cloudfilm.domain.nodule import add_months
    prior = make(before, when=date(2023, 1, 15))
    current = make(after, when=add_months(date(2023, 1, 15), months_later))
    assert status_from_prior(prior, current) is status


# -- 4X and the exam -------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "expected"), [(5.0, C2), (7.0, C4X), (9.0, C4X), (16.0, C4X)])
def test_4x_applies_to_3_and_4_only(size: float, expected: Category) -> None:
    assert category(make(size), B, suspicious_features=True) is expected


def test_exam_takes_the_most_suspicious_finding() -> None:
    findings = [Finding(make(5.0), B), Finding(make(9.0), B), Finding(make(7.0), B)]
    exam = classify_exam(findings)
    assert exam.category is C4A and exam.guiding == 1
    assert [f.category for f in exam.findings] == [C2, C4A, C3]
    assert exam.rule.row_id == "LR22-4A-solid-B"
    assert exam.rule.citation.startswith("ACR Lung-RADS v2022, Category 4A")


def test_no_nodules_is_category_1() -> None:
    exam = classify_exam([])
    assert exam.category is C1 and exam.rule.row_id == "LR22-1-none"
    assert exam.negative_screen and not exam.positive_screen


@pytest.mark.parametrize(("flags", "row", "months"), [
    (dict(priors_being_located=True), "LR22-0-priors", None),
    (dict(lungs_not_evaluable=True), "LR22-0-unevaluable", None),
    (dict(infection_suspected=True), "LR22-0-infection", 1),
])
def test_category_0(flags: dict, row: str, months: int | None) -> None:
    exam = classify_exam([Finding(make(16.0), B)], **flags)
    assert exam.category is Category.ZERO and exam.rule.row_id == row
    assert exam.next_scan_months == months
    assert not exam.negative_screen and not exam.positive_screen


def test_infection_window_is_one_to_three_months() -> None:
    exam = classify_exam([], infection_suspected=True)
    assert exam.next_scan_window(date(2024, 1, 31)) == (date(2024, 2, 29), date(2024, 4, 30))


def test_s_modifier() -> None:
    exam = classify_exam([Finding(make(5.0), B)], significant_findings=["aortic aneurysm 5.6 cm"])
    assert exam.label == "2S" and exam.s_modifier
    assert exam.significant_findings == ("aortic aneurysm 5.6 cm",)
    assert classify_exam([Finding(make(5.0), B)]).label == "2"


@pytest.mark.parametrize(("finding", "months", "workup", "window"), [
    (Finding(make(5.0), B), 12, False, (date(2025, 3, 1), date(2025, 3, 1))),
    (Finding(make(7.0), B), 6, False, (date(2024, 9, 1), date(2024, 9, 1))),
    (Finding(make(9.0), B), 3, False, (date(2024, 6, 1), date(2024, 6, 1))),
    (Finding(make(16.0), B), None, True, None),
    (Finding(make(9.0), B, suspicious_features=True), None, True, None),
])
def test_management_and_next_scan(finding: Finding, months: int | None, workup: bool,
                                  window) -> None:
    exam = classify_exam([finding])
    assert exam.next_scan_months == months
    assert exam.management.diagnostic_workup is workup
    assert exam.next_scan_window(date(2024, 3, 1)) == window


@pytest.mark.parametrize(("finding", "pet"), [
    (Finding(make(9.0), B), True),                  # 4A, solid ≥8 mm
    (Finding(make(7.0), G), False),                 # 4A, growing <8 mm
    (Finding(part(10.0, 6.5), B), False),           # 4A, solid component <8 mm
    (Finding(part(12.0, 8.0), B), True),            # 4B, solid component ≥8 mm
    (Finding(make(7.0), B), False),                 # Category 3
])
def test_pet_ct_note(finding: Finding, pet: bool) -> None:
    assert classify_exam([finding]).pet_ct_may_be_considered is pet


# -- volumes instead of diameters ------------------------------------------------------------------

@pytest.mark.parametrize(("volume", "status", "expected"), [
    (112.0, B, C2), (113.0, B, C3), (267.0, B, C3), (268.0, B, C4A),
    (1766.0, B, C4A), (1767.0, B, C4B), (33.0, N, C2), (34.0, N, C3),
])
def test_volume_basis(volume: float, status: Status, expected: Category) -> None:
    m = make(7.0, volume_mm3=volume)  # the diameter would say otherwise in most rows
    assert classify_finding(Finding(m, status), SizeBasis.VOLUME).category is expected


def test_volume_basis_needs_measured_volume() -> None:
    with pytest.raises(ValueError):
        classify_finding(Finding(make(7.0), B), SizeBasis.VOLUME)


# -- the table itself ------------------------------------------------------------------------------

def test_every_size_row_is_reachable_and_cited() -> None:
    probes = [make(s) for s in (3.0, 5.0, 7.0, 9.0, 16.0)]
    probes += [part(t, s) for t, s in ((5.0, 2.0), (7.0, 3.0), (7.0, 5.0), (9.0, 7.0), (12.0, 9.0))]
    probes += [make(s, nodule_type=GGN) for s in (10.0, 31.0)]
    reached = set()
    for m in probes:
        for status in (B, N, G):
            reached.add(classify_finding(Finding(m, status)).row_id)
    assert {row.rule.row_id for row in SIZE_ROWS} <= reached
    for row in SIZE_ROWS:
        assert row.rule.citation.startswith("ACR Lung-RADS v2022, Category ")


# -- boundaries, from the v2022 table (each row [lower, upper): "≥ lower", "< upper") --------------

@pytest.mark.parametrize(("status", "volume", "expected"), [
    # new solid: < 34 -> 2, 34 to < 113 -> 3, 113 to < 268 -> 4A, ≥ 268 -> 4B
    (N, 112.0, C3), (N, 113.0, C4A), (N, 267.0, C4A), (N, 268.0, C4B),
    # growing solid: < 268 -> 4A, ≥ 268 -> 4B
    (G, 20.0, C4A), (G, 267.0, C4A), (G, 268.0, C4B),
    # baseline solid ≥ 15 mm: 1,767 mm³
    (B, 1767.4, C4B),  # whole mm³: 1767
    (B, 1766.4, C4A),  # whole mm³: 1766
])
def test_solid_volume_boundaries(status: Status, volume: float, expected: Category) -> None:
    m = make(7.0, volume_mm3=volume)
    assert classify_finding(Finding(m, status), SizeBasis.VOLUME).category is expected


@pytest.mark.parametrize(("status", "total", "solid", "expected", "row"), [
    # baseline: < 6 mm total is 2 whatever the solid part
    (B, 5.9, 5.9, C2, "LR22-2-ps-B"),
    # baseline ≥ 6 mm total: solid < 6 -> 3, 6 to < 8 -> 4A, ≥ 8 -> 4B
    (B, 6.0, 5.9, C3, "LR22-3-ps-B"), (B, 12.0, 5.9, C3, "LR22-3-ps-B"),
    (B, 12.0, 6.0, C4A, "LR22-4A-ps-B"), (B, 12.0, 7.9, C4A, "LR22-4A-ps-B"),
    (B, 12.0, 8.0, C4B, "LR22-4B-ps-B"),
    # new or growing ≥ 6 mm total: solid < 4 -> 4A, ≥ 4 -> 4B
    (N, 20.0, 3.9, C4A, "LR22-4A-ps-NG"), (N, 20.0, 4.0, C4B, "LR22-4B-ps-NG"),
    (G, 6.0, 3.9, C4A, "LR22-4A-ps-NG"), (G, 6.0, 4.0, C4B, "LR22-4B-ps-NG"),
    (G, 12.0, 6.0, C4B, "LR22-4B-ps-NG"), (G, 12.0, 8.0, C4B, "LR22-4B-ps-NG"),
    # new < 6 mm total: 3, unless the ≥ 4 mm new solid component row (4B) also applies
    (N, 5.9, 3.9, C3, "LR22-3-ps-N"), (N, 5.9, 4.0, C4B, "LR22-4B-ps-NG"),
    # growing < 6 mm total with a < 4 mm solid part: no row, classed as if new
    (G, 5.9, 3.9, C3, "LR22-3-ps-G"), (G, 5.9, 4.0, C4B, "LR22-4B-ps-NG"),
])
def test_part_solid_boundaries(status: Status, total: float, solid: float, expected: Category,
                               row: str) -> None:
    rule = classify_finding(Finding(part(total, solid), status))
    assert (rule.category, rule.row_id) == (expected, row)
    assert rule.extrapolated is (row == "LR22-3-ps-G")


def test_part_solid_total_volume_boundary() -> None:
    """The total size may be a volume (113 mm³ = 6 mm); the solid part stays a diameter."""
    small = make(7.0, nodule_type=PS, solid_component_mm=3.0, volume_mm3=112.0)
    large = make(7.0, nodule_type=PS, solid_component_mm=3.0, volume_mm3=113.0)
    assert classify_finding(Finding(small, N), SizeBasis.VOLUME).category is C3
    assert classify_finding(Finding(large, N), SizeBasis.VOLUME).category is C4A


@pytest.mark.parametrize(("volume", "status", "expected"), [
    (14136.0, B, C2), (14137.0, B, C3), (14136.0, N, C2), (14137.0, N, C3),
])
def test_ground_glass_volume_boundary(volume: float, status: Status, expected: Category) -> None:
    m = make(31.0, nodule_type=GGN, volume_mm3=volume)
    assert classify_finding(Finding(m, status), SizeBasis.VOLUME).category is expected


def test_juxtapleural_volume_boundary() -> None:
    """< 10 mm is < 524 mm³."""
    below = make(9.0, morphology=PLEURAL, volume_mm3=523.0)
    at = make(9.0, morphology=PLEURAL, volume_mm3=524.0)
    assert classify_finding(Finding(below, B), SizeBasis.VOLUME).category is C2
    assert classify_finding(Finding(at, B), SizeBasis.VOLUME).category is C4A


# -- growth: > 1.5 mm within 12 months, end to end -------------------------------------------------

def _followed(before: float, after: float, months: int, prior_category: Category | None = None,
              nodule_type: NoduleType = SOLID) -> tuple[Status, Category, str]:
    from cloudfilm.domain.nodule import add_months
    start = date(2023, 1, 15)
    prior = make(before, when=start, nodule_type=nodule_type)
    current = make(after, when=add_months(start, months), nodule_type=nodule_type)
    status = status_from_prior(prior, current)
    rule = classify_finding(Finding(current, status, prior_category=prior_category, prior=prior))
    return status, rule.category, rule.row_id


@pytest.mark.parametrize(("before", "after", "months", "prior", "expected"), [
    # +1.5 mm within 12 months is not growth: a stable Category 3 steps down to 2 ...
    (6.0, 7.5, 12, C3, (Status.STABLE, C2, "LR22-2-cat3-stable-6mo")),
    # ... +1.6 mm is growth: growing solid < 8 mm is 4A
    (6.0, 7.6, 12, C3, (Status.GROWING, C4A, "LR22-4A-solid-G")),
    # growing to exactly 8.0 mm is "new or growing ≥ 8 mm": 4B
    (6.4, 8.0, 12, C3, (Status.GROWING, C4B, "LR22-4B-solid-NG")),
    # +1.5 mm that crosses 8 mm is not growth, but the size threshold reclassifies it (4A)
    (6.5, 8.0, 12, C3, (Status.STABLE, C4A, "LR22-4A-solid-B+crossed")),
    # +1.6 mm over 13 months: slow growth, v2022 4B
    (6.0, 7.6, 13, C3, (Status.SLOWLY_GROWING, C4B, "LR22-4B-slow-growth")),
])
def test_growth_boundary_end_to_end(before: float, after: float, months: int,
                                    prior: Category, expected: tuple) -> None:
    assert _followed(before, after, months, prior) == expected


def test_slow_growth_is_4b_for_solid_and_part_solid_only() -> None:
    """v2022 4B: slow growing solid or part solid nodule, growth over multiple screens."""
    solid = classify_finding(Finding(make(5.0), Status.SLOWLY_GROWING, prior_category=C2))
    assert (solid.category, solid.row_id) == (C4B, "LR22-4B-slow-growth")
    assert not solid.extrapolated
    ps = classify_finding(Finding(part(9.0, 3.0), Status.SLOWLY_GROWING, prior_category=C3))
    assert ps.category is C4B
    # non-solid: ≥ 30 mm (or smaller) slowly growing stays Category 2
    assert category(make(12.0, nodule_type=GGN), Status.SLOWLY_GROWING) is C2
    # 4X is applied on top of the 4B row
    assert category(make(5.0), Status.SLOWLY_GROWING, prior_category=C2,
                    suspicious_features=True) is C4X
    # proven benign after work-up (4B -> 2) is not overridden
    benign = Finding(make(16.0), Status.SLOWLY_GROWING, prior_category=C4B,
                     benign_after_workup=True)
    assert classify_finding(benign).row_id == "LR22-2-cat4B-benign"
    # segmental airway nodules keep their own row (4B at follow-up)
    seg = make(5.0, morphology=Morphology(airway=Airway.SEGMENTAL_OR_PROXIMAL))
    assert classify_finding(Finding(seg, Status.SLOWLY_GROWING, prior_category=C4A)).row_id == \
        "LR22-4B-airway-segmental-3mo"


def test_stable_category_2_is_marked_as_a_reading() -> None:
    rule = classify_finding(Finding(make(5.0), Status.STABLE, prior_category=C2))
    assert rule.row_id == "LR22-2-stable" and rule.extrapolated


def test_stable_4a_steps_down_but_airway_does_not() -> None:
    assert category(make(9.0), Status.STABLE, prior_category=C4A) is C3
    seg = make(9.0, morphology=Morphology(airway=Airway.SEGMENTAL_OR_PROXIMAL))
    assert category(seg, Status.STABLE, prior_category=C4A) is C4B


# -- management intervals (v2022 table) ------------------------------------------------------------

@pytest.mark.parametrize(("cat", "months", "workup"), [
    (C1, 12, False), (C2, 12, False), (C3, 6, False), (C4A, 3, False), (C4B, None, True),
    (C4X, None, True),
])
def test_management_intervals(cat: Category, months: int | None, workup: bool) -> None:
    from cloudfilm.domain.lungrads import MANAGEMENT
    assert MANAGEMENT[cat].next_scan_months == months
    assert MANAGEMENT[cat].diagnostic_workup is workup


# -- verification record --------------------------------------------------------------------------

def _all_rules() -> list:
    from cloudfilm.domain import lungrads
    rules = [row.rule for row in SIZE_ROWS]
    rules += [v for v in vars(lungrads).values() if isinstance(v, lungrads.Rule)]
    return rules


def test_every_row_has_a_verification_verdict() -> None:
    from cloudfilm.domain import lungrads
    ids = {rule.row_id for rule in _all_rules()}
    assert set(lungrads.VERIFICATION) == ids
    for rule in _all_rules():
        verdict, sources = lungrads.VERIFICATION[rule.row_id]
        assert verdict in ("verified", "corroborated", "extrapolated") and sources
        # a row is extrapolated exactly when it is recorded so, and the docstring names it
        assert (verdict == "extrapolated") is rule.extrapolated, rule.row_id
        if rule.extrapolated:
            assert rule.row_id in (lungrads.__doc__ or "")
