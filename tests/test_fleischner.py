"""Fleischner 2017 rule table, row by row and at every size boundary.

Expected rows and intervals mirror the Table of MacMahon et al., Radiology
2017;284:228-243 (A: solid, B: subsolid) and Recommendations 1-5 of its text.
"""

from __future__ import annotations

from datetime import date

import pytest

from cloudfilm.domain.fleischner import (
    BENIGN_ONLY,
    SOLID_RULES,
    SUBSOLID_RULES,
    Patient,
    Risk,
    SizeBasis,
    assess,
)
from cloudfilm.domain.nodule import Calcification, Measurement, Method, NoduleType

ADULT_LOW = Patient(age_years=50, risk=Risk.LOW)
ADULT_HIGH = Patient(age_years=50, risk=Risk.HIGH)


def make(long: float = 6.0, short: float | None = None, **kw) -> Measurement:
    fields = dict(study_uid="1.2.3", series_uid="1.2.3.4", instance_uid="1.2.3.4.5",
                  centre_mm=(0.0, 0.0, 0.0), long_axis_mm=long,
                  short_axis_mm=long if short is None else short,
                  nodule_type=NoduleType.SOLID, study_date=date(2024, 1, 31), measured_by="dr-a")
    fields.update(kw)
    return Measurement(**fields)


SMALL_SOLID = make(3.0)  # a second, <6 mm solid nodule that never out-ranks the one tested


# -- Table A: solid nodules ------------------------------------------------------------------

@pytest.mark.parametrize(("multiple", "risk", "size", "row", "first"), [
    # single, low risk
    (False, Risk.LOW, 5.4, "F17-A-single-low-lt6", None),
    (False, Risk.LOW, 5.5, "F17-A-single-low-6to8", (6, 12)),
    (False, Risk.LOW, 6.0, "F17-A-single-low-6to8", (6, 12)),
    (False, Risk.LOW, 7.9, "F17-A-single-low-6to8", (6, 12)),
    (False, Risk.LOW, 8.0, "F17-A-single-low-6to8", (6, 12)),
    (False, Risk.LOW, 8.4, "F17-A-single-low-6to8", (6, 12)),
    (False, Risk.LOW, 8.5, "F17-A-single-low-gt8", (3, 3)),
    # single, high risk
    (False, Risk.HIGH, 5.4, "F17-A-single-high-lt6", (12, 12)),
    (False, Risk.HIGH, 5.5, "F17-A-single-high-6to8", (6, 12)),
    (False, Risk.HIGH, 8.0, "F17-A-single-high-6to8", (6, 12)),
    (False, Risk.HIGH, 8.5, "F17-A-single-high-gt8", (3, 3)),
    # multiple, low risk
    (True, Risk.LOW, 5.4, "F17-A-multiple-low-lt6", None),
    (True, Risk.LOW, 5.5, "F17-A-multiple-low-6to8", (3, 6)),
    (True, Risk.LOW, 8.0, "F17-A-multiple-low-6to8", (3, 6)),
    (True, Risk.LOW, 8.5, "F17-A-multiple-low-gt8", (3, 6)),
    # multiple, high risk
    (True, Risk.HIGH, 5.4, "F17-A-multiple-high-lt6", (12, 12)),
    (True, Risk.HIGH, 6.0, "F17-A-multiple-high-6to8", (3, 6)),
    (True, Risk.HIGH, 7.9, "F17-A-multiple-high-6to8", (3, 6)),
    (True, Risk.HIGH, 8.5, "F17-A-multiple-high-gt8", (3, 6)),
])
def test_solid_table(multiple: bool, risk: Risk, size: float, row: str,
                     first: tuple[int, int] | None) -> None:
    nodules = [make(size), SMALL_SOLID] if multiple else [make(size)]
    result = assess(Patient(age_years=60, risk=risk), nodules)
    assert result.applicable and result.row_id == row
    assert result.next_scan_months == first
    assert result.guiding is not None and result.guiding.index == 0
    assert result.guiding.basis is SizeBasis.DIAMETER


@pytest.mark.parametrize(("risk", "size", "text"), [
    (Risk.LOW, 5.0, "No routine follow-up."),
    (Risk.HIGH, 5.0, "Optional CT at 12 months."),
    (Risk.LOW, 7.0, "CT at 6-12 months, then consider CT at 18-24 months."),
    (Risk.HIGH, 7.0, "CT at 6-12 months, then CT at 18-24 months."),
    (Risk.LOW, 9.0, "Consider CT at 3 months, PET/CT, or tissue sampling."),
])
def test_solid_single_texts(risk: Risk, size: float, text: str) -> None:
    rule = assess(Patient(age_years=60, risk=risk), [make(size)]).rule
    assert rule is not None and rule.text == text


# -- volume instead of diameter -------------------------------------------------------------

@pytest.mark.parametrize(("volume", "row"), [
    (99.0, "F17-A-single-low-lt6"),
    (100.0, "F17-A-single-low-6to8"),
    (250.0, "F17-A-single-low-6to8"),
    (250.4, "F17-A-single-low-6to8"),  # whole mm³: 250
    (251.0, "F17-A-single-low-gt8"),
])
def test_solid_volume_columns(volume: float, row: str) -> None:
    nodule = make(7.0, method=Method.SEMI_AUTOMATIC, volume_mm3=volume)
    result = assess(ADULT_LOW, [nodule])
    assert result.row_id == row
    assert result.guiding is not None and result.guiding.basis is SizeBasis.VOLUME


def test_diameter_and_volume_disagreement_is_recorded() -> None:
    """A 5.9 mm mean rounds to 6 mm (6-8 column) while 99 mm³ is in the <100 column."""
    nodule = make(6.0, 5.8, volume_mm3=99.0)
    guiding = assess(ADULT_LOW, [nodule]).guiding
    assert guiding is not None
    assert (guiding.diameter_class, guiding.volume_class) == ("6to8", "lt6")
    assert guiding.classes_disagree
    by_diameter = assess(ADULT_LOW, [nodule], basis=SizeBasis.DIAMETER)
    assert by_diameter.row_id == "F17-A-single-low-6to8"
    assert by_diameter.guiding is not None and by_diameter.guiding.basis is SizeBasis.DIAMETER


def test_volume_basis_needs_a_measured_volume() -> None:
    with pytest.raises(ValueError):
        assess(ADULT_LOW, [make(7.0)], basis=SizeBasis.VOLUME)


# -- Table B: subsolid nodules ----------------------------------------------------------------

GGN, PS = NoduleType.GROUND_GLASS, NoduleType.PART_SOLID


@pytest.mark.parametrize(("nodule", "row", "first"), [
    (make(5.4, nodule_type=GGN), "F17-B-single-ggn-lt6", None),
    (make(5.5, nodule_type=GGN), "F17-B-single-ggn-ge6", (6, 12)),
    (make(20.0, nodule_type=GGN), "F17-B-single-ggn-ge6", (6, 12)),
    (make(5.4, nodule_type=PS, solid_component_mm=3.0), "F17-B-single-ps-lt6", None),
    (make(5.4, nodule_type=PS), "F17-B-single-ps-lt6", None),
    (make(6.0, nodule_type=PS, solid_component_mm=5.4), "F17-B-single-ps-ge6-solid-lt6", (3, 6)),
    (make(6.0, nodule_type=PS, solid_component_mm=5.5), "F17-B-single-ps-ge6-solid-ge6", (3, 6)),
    (make(12.0, nodule_type=PS, solid_component_mm=9.0), "F17-B-single-ps-ge6-solid-ge6", (3, 6)),
    (make(7.0, nodule_type=PS), "F17-B-single-ps-ge6-solid-unmeasured", (3, 6)),
])
def test_single_subsolid_table(nodule: Measurement, row: str,
                               first: tuple[int, int] | None) -> None:
    for risk in Risk:  # Table B has no risk split
        result = assess(Patient(age_years=60, risk=risk), [nodule])
        assert result.row_id == row and result.next_scan_months == first


@pytest.mark.parametrize(("sizes", "row"), [
    ((4.0, 5.4), "F17-B-multiple-lt6"),
    ((4.0, 5.5), "F17-B-multiple-ge6"),
    ((6.0, 9.0), "F17-B-multiple-ge6"),
])
def test_multiple_subsolid_table(sizes: tuple[float, float], row: str) -> None:
    result = assess(ADULT_LOW, [make(s, nodule_type=GGN) for s in sizes])
    assert result.row_id == row and result.next_scan_months == (3, 6)


@pytest.mark.parametrize(("volume", "row"), [(99.0, "F17-B-single-ggn-lt6"),
                                             (100.0, "F17-B-single-ggn-ge6")])
def test_subsolid_volume_column(volume: float, row: str) -> None:
    assert assess(ADULT_LOW, [make(6.0, nodule_type=GGN, volume_mm3=volume)]).row_id == row


def test_part_solid_solid_component_texts() -> None:
    low = assess(ADULT_LOW, [make(8.0, nodule_type=PS, solid_component_mm=4.0)]).rule
    high = assess(ADULT_LOW, [make(8.0, nodule_type=PS, solid_component_mm=6.0)]).rule
    assert low is not None and "annual CT for 5 years" in low.text
    assert high is not None and "highly suspicious" in high.text


# -- multiple nodules: the most suspicious guides ------------------------------------------------

def test_most_suspicious_nodule_guides() -> None:
    nodules = [make(7.0), make(8.0, nodule_type=PS, solid_component_mm=6.0), make(4.0)]
    result = assess(ADULT_HIGH, nodules)
    assert result.guiding is not None and result.guiding.index == 1
    assert result.row_id == "F17-B-single-ps-ge6-solid-ge6"
    assert [a.index for a in result.assessments] == [0, 1, 2]
    assert result.assessments[0].rule.row_id == "F17-A-multiple-high-6to8"


def test_larger_nodule_breaks_a_tie() -> None:
    result = assess(ADULT_LOW, [make(6.0), make(7.5)])
    assert result.guiding is not None and result.guiding.index == 1


def test_physician_may_name_the_guiding_nodule() -> None:
    nodules = [make(7.0), make(8.0, nodule_type=PS, solid_component_mm=6.0)]
    result = assess(ADULT_LOW, nodules, guide=0)
    assert result.row_id == "F17-A-multiple-low-6to8"
    with pytest.raises(ValueError):
        assess(ADULT_LOW, nodules, guide=5)


def test_solid_plus_one_ground_glass() -> None:
    """The solid nodule is one of several; the lone ground-glass nodule is a single subsolid."""
    result = assess(ADULT_LOW, [make(7.0), make(7.0, nodule_type=GGN)])
    rows = {a.index: a.rule.row_id for a in result.assessments}
    assert rows == {0: "F17-A-multiple-low-6to8", 1: "F17-B-single-ggn-ge6"}
    assert result.row_id == "F17-A-multiple-low-6to8"


def test_benign_nodules_are_out_of_scope_and_not_counted() -> None:
    granuloma = make(9.0, calcification=Calcification.DIFFUSE)
    assert assess(ADULT_LOW, [granuloma]).rule is BENIGN_ONLY
    assert assess(ADULT_LOW, [granuloma]).next_scan_window(date(2024, 1, 1)) is None
    result = assess(ADULT_LOW, [granuloma, make(7.0)])
    assert result.row_id == "F17-A-single-low-6to8"


def test_no_nodules_is_an_error() -> None:
    with pytest.raises(ValueError):
        assess(ADULT_LOW, [])


# -- applicability ------------------------------------------------------------------------------

@pytest.mark.parametrize(("patient", "fragment"), [
    (Patient(age_years=34), "age under 35"),
    (Patient(age_years=60, screening=True), "Lung-RADS"),
    (Patient(age_years=60, known_cancer=True), "known primary cancer"),
    (Patient(age_years=60, immunosuppressed=True), "immunosuppressed"),
])
def test_not_applicable_with_reason(patient: Patient, fragment: str) -> None:
    result = assess(patient, [make(7.0)])
    assert not result.applicable and result.rule is None
    assert any(fragment in reason for reason in result.reasons)
    assert result.next_scan_window(date(2024, 1, 1)) is None


def test_age_35_applies() -> None:
    assert assess(Patient(age_years=35), [make(7.0)]).applicable


def test_every_reason_is_listed() -> None:
    patient = Patient(age_years=20, screening=True, known_cancer=True, immunosuppressed=True)
    assert len(assess(patient, [make(7.0)]).reasons) == 4


# -- dates and citations ------------------------------------------------------------------------

@pytest.mark.parametrize(("nodules", "window"), [
    ([make(7.0)], (date(2024, 7, 31), date(2025, 1, 31))),
    ([make(9.0)], (date(2024, 4, 30), date(2024, 4, 30))),
    ([make(7.0), make(3.0)], (date(2024, 4, 30), date(2024, 7, 31))),
    ([make(5.0)], None),
])
def test_next_scan_window_from_exam_date(nodules: list[Measurement], window) -> None:
    assert assess(ADULT_LOW, nodules).next_scan_window(date(2024, 1, 31)) == window


def test_every_row_cites_the_table() -> None:
    for rule in [*SOLID_RULES.values(), *SUBSOLID_RULES.values(), BENIGN_ONLY]:
        assert rule.citation.startswith("Fleischner 2017 (MacMahon et al., Radiology 2017;284:228")
        assert rule.text and rule.template_key.startswith("fleischner.")
    for rule in [*SOLID_RULES.values(), *SUBSOLID_RULES.values()]:
        assert "Table" in rule.citation and "Rec." in rule.citation


def test_every_table_row_is_reachable() -> None:
    reached = set()
    for risk in Risk:
        patient = Patient(age_years=60, risk=risk)
        for size in (5.0, 7.0, 9.0):
            reached.add(assess(patient, [make(size)]).row_id)
            reached.add(assess(patient, [make(size), SMALL_SOLID]).row_id)
    for nodule in (make(5.0, nodule_type=GGN), make(7.0, nodule_type=GGN),
                   make(5.0, nodule_type=PS), make(7.0, nodule_type=PS),
                   make(7.0, nodule_type=PS, solid_component_mm=3.0),
                   make(7.0, nodule_type=PS, solid_component_mm=6.0)):
        reached.add(assess(ADULT_LOW, [nodule]).row_id)
    for size in (5.0, 7.0):
        pair = [make(size, nodule_type=GGN), make(4.0, nodule_type=GGN)]
        reached.add(assess(ADULT_LOW, pair).row_id)
    assert reached == {r.row_id for r in [*SOLID_RULES.values(), *SUBSOLID_RULES.values()]}


# -- the Table, cell by cell (MacMahon 2017 Table; Recommendations 1-5) ----------------------------

@pytest.mark.parametrize(("multiple", "risk", "size", "text"), [
    (True, Risk.LOW, 5.0, "No routine follow-up."),
    (True, Risk.HIGH, 5.0, "Optional CT at 12 months."),
    (True, Risk.LOW, 7.0, "CT at 3-6 months, then consider CT at 18-24 months."),
    (True, Risk.HIGH, 7.0, "CT at 3-6 months, then CT at 18-24 months."),
    # multiple > 8 mm: the same cells as multiple 6-8 mm (not "CT at 3 months, PET/CT ...")
    (True, Risk.LOW, 9.0, "CT at 3-6 months, then consider CT at 18-24 months."),
    (True, Risk.HIGH, 9.0, "CT at 3-6 months, then CT at 18-24 months."),
    (False, Risk.HIGH, 9.0, "Consider CT at 3 months, PET/CT, or tissue sampling."),
])
def test_solid_cell_texts(multiple: bool, risk: Risk, size: float, text: str) -> None:
    nodules = [make(size), SMALL_SOLID] if multiple else [make(size)]
    rule = assess(Patient(age_years=60, risk=risk), nodules).rule
    assert rule is not None and rule.text == text


@pytest.mark.parametrize(("risk", "size", "row"), [
    (Risk.LOW, 5.4, "F17-A-multiple-low-lt6"),
    (Risk.LOW, 6.0, "F17-A-multiple-low-6to8"),
    (Risk.LOW, 8.0, "F17-A-multiple-low-6to8"),
    (Risk.LOW, 8.4, "F17-A-multiple-low-6to8"),
    (Risk.HIGH, 8.0, "F17-A-multiple-high-6to8"),
    (Risk.HIGH, 8.4, "F17-A-multiple-high-6to8"),
    (Risk.HIGH, 8.5, "F17-A-multiple-high-gt8"),
    (Risk.HIGH, 15.0, "F17-A-multiple-high-gt8"),
])
def test_multiple_solid_boundaries(risk: Risk, size: float, row: str) -> None:
    result = assess(Patient(age_years=60, risk=risk), [make(size), SMALL_SOLID])
    assert result.row_id == row


@pytest.mark.parametrize(("volume", "row"), [
    (99.0, "F17-A-multiple-low-lt6"), (100.0, "F17-A-multiple-low-6to8"),
    (250.0, "F17-A-multiple-low-6to8"), (251.0, "F17-A-multiple-low-gt8"),
])
def test_multiple_solid_volume_columns(volume: float, row: str) -> None:
    nodule = make(7.0, method=Method.SEMI_AUTOMATIC, volume_mm3=volume)
    assert assess(ADULT_LOW, [nodule, SMALL_SOLID]).row_id == row


@pytest.mark.parametrize(("nodule", "row"), [
    # the solid component is rounded like the nodule: 5.4 -> 5 (< 6), 5.5 -> 6 (≥ 6)
    (make(10.0, nodule_type=PS, solid_component_mm=5.4), "F17-B-single-ps-ge6-solid-lt6"),
    (make(10.0, nodule_type=PS, solid_component_mm=5.5), "F17-B-single-ps-ge6-solid-ge6"),
    (make(10.0, nodule_type=PS, solid_component_mm=6.0), "F17-B-single-ps-ge6-solid-ge6"),
    (make(20.0, nodule_type=PS, solid_component_mm=8.5), "F17-B-single-ps-ge6-solid-ge6"),
    # < 6 mm total: no routine follow-up whatever the solid part
    (make(5.4, nodule_type=PS, solid_component_mm=5.4), "F17-B-single-ps-lt6"),
])
def test_part_solid_solid_component_boundaries(nodule: Measurement, row: str) -> None:
    result = assess(ADULT_HIGH, [nodule])
    assert result.row_id == row and result.next_scan_months in (None, (3, 6))


def test_part_solid_solid_ge6_text_follows_rec_4() -> None:
    """Rec. 4: PET/CT, biopsy or resection for suspicious morphology, a growing solid component
    or a solid component larger than 8 mm (not a nodule larger than 8 mm)."""
    rule = SUBSOLID_RULES[("single-part-solid", "ge6-solid-ge6")]
    assert "solid component is >8 mm" in rule.text
    assert rule.first_scan_months == (3, 6)


@pytest.mark.parametrize(("key", "text", "first"), [
    (("single-ggn", "lt6"), "No routine follow-up.", None),
    (("single-ggn", "ge6"),
     "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years.", (6, 12)),
    (("single-part-solid", "lt6"), "No routine follow-up.", None),
    (("multiple", "lt6"), "CT at 3-6 months. If stable, consider CT at 2 and 4 years.", (3, 6)),
    (("multiple", "ge6"),
     "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s).", (3, 6)),
])
def test_subsolid_cell_texts(key: tuple[str, str], text: str, first) -> None:
    rule = SUBSOLID_RULES[key]
    assert rule.text == text and rule.first_scan_months == first


def test_ps_solid_lt6_text_follows_the_table() -> None:
    rule = SUBSOLID_RULES[("single-part-solid", "ge6-solid-lt6")]
    assert rule.text.startswith("CT at 3-6 months to confirm persistence. If unchanged and the "
                                "solid component remains <6 mm, annual CT for 5 years")


@pytest.mark.parametrize(("volume", "row"), [
    (99.0, "F17-B-multiple-lt6"), (100.0, "F17-B-multiple-ge6"),  # 100 mm³: a reading
])
def test_multiple_subsolid_volume_column(volume: float, row: str) -> None:
    nodules = [make(6.0, nodule_type=GGN, volume_mm3=volume),
               make(4.0, nodule_type=GGN, volume_mm3=30.0)]
    assert assess(ADULT_LOW, nodules).row_id == row


def test_multiple_subsolid_one_ge6_guides() -> None:
    """Rec. 5: with at least one subsolid nodule ≥ 6 mm, the most suspicious one guides."""
    nodules = [make(4.0, nodule_type=GGN), make(6.0, nodule_type=PS, solid_component_mm=3.0)]
    result = assess(ADULT_LOW, nodules)
    assert result.row_id == "F17-B-multiple-ge6" and result.guiding is not None
    assert result.guiding.index == 1
    assert result.assessments[0].rule.row_id == "F17-B-multiple-lt6"


def test_subsolid_ge6_citations_use_the_table_volume_label() -> None:
    assert "(>100 mm³)" in SUBSOLID_RULES[("single-ggn", "ge6")].citation
    assert "(>100 mm³)" in SUBSOLID_RULES[("multiple", "ge6")].citation


def test_every_row_has_a_verification_verdict() -> None:
    from cloudfilm.domain.fleischner import VERIFICATION
    rules = [*SOLID_RULES.values(), *SUBSOLID_RULES.values(), BENIGN_ONLY]
    assert set(VERIFICATION) == {r.row_id for r in rules}
    for verdict, sources in VERIFICATION.values():
        assert verdict in ("verified", "project row") and sources
    assert VERIFICATION["F17-B-single-ps-ge6-solid-unmeasured"][0] == "project row"
