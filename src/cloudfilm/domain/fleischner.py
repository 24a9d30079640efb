"""Fleischner Society 2017 follow-up for incidental pulmonary nodules, as a rule table.

Decision support for a physician, never a diagnosis: the result names the guideline
row that matched and its recommended interval; the physician decides.

Source: MacMahon H, et al. Guidelines for Management of Incidental Pulmonary Nodules
Detected on CT Images: From the Fleischner Society 2017. Radiology 2017;284:228-243
(the Table, parts A "solid" and B "subsolid", and Recommendations 1-5 of the text).

Scope (Table note): adults aged 35 or older; not lung cancer screening (use
Lung-RADS), not patients with a known primary cancer or immunosuppression. Outside it,
`assess` returns "not applicable" with every reason.

Size: the average of the long and short axes, rounded to the nearest mm (half up; see
`nodule.Measurement.fleischner_size_mm`), so "<6 mm" means 5 mm or smaller
(Recommendation 1). Volume equivalents from the Table: <100, 100-250, >250 mm³. A
measured volume (whole mm³) is used when one exists, otherwise the diameter; the
result records which, and both classes, because 100 and 250 mm³ correspond to
spheres of about 5.8 and 7.8 mm and the two can disagree. Sphere estimates are never
used as "volume" here.

Multiple nodules: "the most suspicious nodule should guide management". The guiding
nodule is picked by rule severity, then size; a physician may name another one.

Verification (``VERIFICATION`` holds the verdict for every row_id): every Table row was
checked against the MacMahon 2017 text as mirrored in full on ynjr.net (Recommendations 1,
2, 4 and 5 read verbatim: "5 mm or smaller" for "<6 mm"; multiple solid nodules with one
≥ 6 mm: 3-6 months, then an optional 18-24 month scan by risk; part-solid ≥ 6 mm with a
solid component < 6 mm: 3-6 months, then annually for 5 years; solid component ≥ 6 mm:
3-6 months, then PET/CT, biopsy or resection for suspicious morphology, a growing solid
component or a solid component > 8 mm; multiple subsolid: 3-6 months, then 2 and 4 years
if < 6 mm, the most suspicious nodule if one is ≥ 6 mm), and the Table cells as
reproduced by radiology.ae, Radiopaedia and World J Radiol 2017;9:304 (Tables 1-4), which
agree cell for cell (including multiple solid > 8 mm = multiple solid 6-8 mm: "CT at 3-6
months, then [consider] CT at 18-24 months"). A University of Washington teaching page
also writes "then consider CT at 18-24 months" in the single high-risk 6-8 mm cell,
against the other three; it is not followed. pubs.rsna.org (the primary) is
stored only as its abstract.

Readings where the Table is silent (no Fleischner row is marked; each is stated here):
* 100 mm³ exactly for a subsolid nodule: the Table heads its columns "<6 mm (<100 mm³)"
  and "≥6 mm (>100 mm³)"; 100 mm³ is put in the ≥ 6 mm column.
* The solid component is rounded to the nearest mm like the whole nodule before the
  6 mm split (the Table note on rounding speaks of the nodule's dimensions).
* F17-B-single-ps-ge6-solid-unmeasured is a project row: a part-solid nodule ≥ 6 mm
  whose solid component was not measured gets the first step both Table branches share.
* A solid nodule is "multiple" when the exam has any other indeterminate nodule, solid or
  subsolid; a subsolid one when there is another subsolid nodule (Table B "multiple").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum

from cloudfilm.domain.nodule import Measurement, NoduleType, add_months

SOURCE = "Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243)"
MIN_AGE = 35


class Risk(str, Enum):
    """Clinical risk, judged by the physician (Table note).

    Low: minimal or absent smoking history and no other known risk factors. High:
    smoking history or other known risk factors (family history of lung cancer,
    exposure to asbestos, radon or uranium, emphysema, pulmonary fibrosis, older age,
    upper-lobe location, spiculation).
    """

    LOW = "low"
    HIGH = "high"


class SizeBasis(str, Enum):
    DIAMETER = "diameter"
    VOLUME = "volume"


@dataclass(frozen=True)
class Patient:
    """What decides whether Fleischner 2017 applies at all, and the risk column."""

    age_years: int
    risk: Risk = Risk.LOW
    screening: bool = False
    known_cancer: bool = False
    immunosuppressed: bool = False


@dataclass(frozen=True)
class Rule:
    """One row of the Table, with the interval of the first follow-up CT.

    ``first_scan_months`` is (min, max) months after the exam, or None when no
    follow-up CT is recommended. ``rank`` orders rows by how suspicious they are, to
    pick the guiding nodule among several.
    """

    row_id: str
    citation: str
    template_key: str
    text: str
    first_scan_months: tuple[int, int] | None
    rank: int


def _rule(row_id: str, where: str, key: str, text: str,
          first: tuple[int, int] | None, rank: int) -> Rule:
    return Rule(row_id, f"{SOURCE}, {where}", key, text, first, rank)


# Table A, solid nodules: (multiple, risk, size class) -> row. Size classes: "lt6" = <6 mm
# (<100 mm³); "6to8" = 6-8 mm (100-250 mm³); "gt8" = >8 mm (>250 mm³).
SOLID_RULES: dict[tuple[bool, Risk, str], Rule] = {
    (False, Risk.LOW, "lt6"): _rule(
        "F17-A-single-low-lt6", "Table A (solid), single, low risk, <6 mm (<100 mm³); Rec. 1",
        "fleischner.solid.single.low.lt6", "No routine follow-up.", None, 0),
    (False, Risk.HIGH, "lt6"): _rule(
        "F17-A-single-high-lt6", "Table A (solid), single, high risk, <6 mm (<100 mm³); Rec. 1",
        "fleischner.solid.single.high.lt6", "Optional CT at 12 months.", (12, 12), 1),
    (False, Risk.LOW, "6to8"): _rule(
        "F17-A-single-low-6to8", "Table A (solid), single, low risk, 6-8 mm (100-250 mm³); Rec. 1",
        "fleischner.solid.single.low.6to8",
        "CT at 6-12 months, then consider CT at 18-24 months.", (6, 12), 2),
    (False, Risk.HIGH, "6to8"): _rule(
        "F17-A-single-high-6to8",
        "Table A (solid), single, high risk, 6-8 mm (100-250 mm³); Rec. 1",
        "fleischner.solid.single.high.6to8",
        "CT at 6-12 months, then CT at 18-24 months.", (6, 12), 2),
    (False, Risk.LOW, "gt8"): _rule(
        "F17-A-single-low-gt8", "Table A (solid), single, low risk, >8 mm (>250 mm³); Rec. 1",
        "fleischner.solid.single.gt8",
        "Consider CT at 3 months, PET/CT, or tissue sampling.", (3, 3), 4),
    (False, Risk.HIGH, "gt8"): _rule(
        "F17-A-single-high-gt8", "Table A (solid), single, high risk, >8 mm (>250 mm³); Rec. 1",
        "fleischner.solid.single.gt8",
        "Consider CT at 3 months, PET/CT, or tissue sampling.", (3, 3), 4),
    (True, Risk.LOW, "lt6"): _rule(
        "F17-A-multiple-low-lt6", "Table A (solid), multiple, low risk, <6 mm (<100 mm³); Rec. 2",
        "fleischner.solid.multiple.low.lt6", "No routine follow-up.", None, 0),
    (True, Risk.HIGH, "lt6"): _rule(
        "F17-A-multiple-high-lt6", "Table A (solid), multiple, high risk, <6 mm (<100 mm³); Rec. 2",
        "fleischner.solid.multiple.high.lt6", "Optional CT at 12 months.", (12, 12), 1),
    (True, Risk.LOW, "6to8"): _rule(
        "F17-A-multiple-low-6to8",
        "Table A (solid), multiple, low risk, 6-8 mm (100-250 mm³); Rec. 2",
        "fleischner.solid.multiple.low.6to8",
        "CT at 3-6 months, then consider CT at 18-24 months.", (3, 6), 3),
    (True, Risk.HIGH, "6to8"): _rule(
        "F17-A-multiple-high-6to8",
        "Table A (solid), multiple, high risk, 6-8 mm (100-250 mm³); Rec. 2",
        "fleischner.solid.multiple.high.6to8",
        "CT at 3-6 months, then CT at 18-24 months.", (3, 6), 3),
    (True, Risk.LOW, "gt8"): _rule(
        "F17-A-multiple-low-gt8", "Table A (solid), multiple, low risk, >8 mm (>250 mm³); Rec. 2",
        "fleischner.solid.multiple.low.gt8",
        "CT at 3-6 months, then consider CT at 18-24 months.", (3, 6), 3),
    (True, Risk.HIGH, "gt8"): _rule(
        "F17-A-multiple-high-gt8", "Table A (solid), multiple, high risk, >8 mm (>250 mm³); Rec. 2",
        "fleischner.solid.multiple.high.gt8",
        "CT at 3-6 months, then CT at 18-24 months.", (3, 6), 3),
}

# Table B, subsolid nodules (no risk split): (row kind, size class) -> row. Size classes:
# "lt6" = <6 mm (<100 mm³); "ge6" = ≥6 mm; part-solid ≥6 mm splits on the solid component.
SUBSOLID_RULES: dict[tuple[str, str], Rule] = {
    ("single-ggn", "lt6"): _rule(
        "F17-B-single-ggn-lt6", "Table B (subsolid), single ground glass, <6 mm (<100 mm³); Rec. 3",
        "fleischner.ggn.single.lt6", "No routine follow-up.", None, 0),
    ("single-ggn", "ge6"): _rule(
        "F17-B-single-ggn-ge6", "Table B (subsolid), single ground glass, ≥6 mm (>100 mm³); Rec. 3",
        "fleischner.ggn.single.ge6",
        "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years.",
        (6, 12), 2),
    ("single-part-solid", "lt6"): _rule(
        "F17-B-single-ps-lt6", "Table B (subsolid), single part-solid, <6 mm (<100 mm³); Rec. 4",
        "fleischner.ps.single.lt6", "No routine follow-up.", None, 0),
    ("single-part-solid", "ge6-solid-lt6"): _rule(
        "F17-B-single-ps-ge6-solid-lt6",
        "Table B (subsolid), single part-solid, ≥6 mm, solid component <6 mm; Rec. 4",
        "fleischner.ps.single.ge6.solid_lt6",
        "CT at 3-6 months to confirm persistence. If unchanged and the solid component "
        "remains <6 mm, annual CT for 5 years.", (3, 6), 3),
    ("single-part-solid", "ge6-solid-ge6"): _rule(
        "F17-B-single-ps-ge6-solid-ge6",
        "Table B (subsolid), single part-solid, ≥6 mm, solid component ≥6 mm; Rec. 4",
        "fleischner.ps.single.ge6.solid_ge6",
        "CT at 3-6 months to confirm persistence. A persistent part-solid nodule with a solid "
        "component ≥6 mm is highly suspicious: PET/CT, biopsy or resection if the morphology "
        "is suspicious, the solid component grows, or the solid component is >8 mm.",
        (3, 6), 5),
    ("single-part-solid", "ge6-solid-unmeasured"): _rule(
        "F17-B-single-ps-ge6-solid-unmeasured",
        "Table B (subsolid), single part-solid, ≥6 mm (both branches start with CT at 3-6 months); "
        "Rec. 4",
        "fleischner.ps.single.ge6.solid_unmeasured",
        "CT at 3-6 months to confirm persistence; measure the solid component to choose the "
        "next step.", (3, 6), 3),
    ("multiple", "lt6"): _rule(
        "F17-B-multiple-lt6", "Table B (subsolid), multiple, <6 mm (<100 mm³); Rec. 5",
        "fleischner.subsolid.multiple.lt6",
        "CT at 3-6 months. If stable, consider CT at 2 and 4 years.", (3, 6), 2),
    ("multiple", "ge6"): _rule(
        "F17-B-multiple-ge6", "Table B (subsolid), multiple, ≥6 mm (>100 mm³); Rec. 5",
        "fleischner.subsolid.multiple.ge6",
        "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s).",
        (3, 6), 3),
}

_TABLE = "Table cell (radiology.ae, Radiopaedia, World J Radiol 2017 Tables 1-4 agree)"
# row_id -> (verdict, sources): what each row was checked against (module docstring).
VERIFICATION: dict[str, tuple[str, str]] = {
    "F17-A-single-low-lt6": ("verified", f"{_TABLE}; Rec. 1 text (ynjr.net mirror)"),
    "F17-A-single-high-lt6": ("verified", f"{_TABLE}; Rec. 1 text (ynjr.net mirror)"),
    "F17-A-single-low-6to8": ("verified", _TABLE),
    "F17-A-single-high-6to8": ("verified", _TABLE),
    "F17-A-single-low-gt8": ("verified", _TABLE),
    "F17-A-single-high-gt8": ("verified", _TABLE),
    "F17-A-multiple-low-lt6": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-A-multiple-high-lt6": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-A-multiple-low-6to8": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-A-multiple-high-6to8": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-A-multiple-low-gt8": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-A-multiple-high-gt8": ("verified", f"{_TABLE}; Rec. 2 text (ynjr.net mirror)"),
    "F17-B-single-ggn-lt6": ("verified", _TABLE),
    "F17-B-single-ggn-ge6": ("verified", _TABLE),
    "F17-B-single-ps-lt6": ("verified", f"{_TABLE}; Rec. 4 text (ynjr.net mirror)"),
    "F17-B-single-ps-ge6-solid-lt6": ("verified", f"{_TABLE}; Rec. 4 text (ynjr.net mirror)"),
    "F17-B-single-ps-ge6-solid-ge6": ("verified", "Table comment (persistent, solid component "
                                      "≥6 mm: highly suspicious); Rec. 4 text (ynjr.net "
                                      "mirror)"),
    "F17-B-single-ps-ge6-solid-unmeasured": ("project row", "first step shared by both Rec. 4 "
                                             "branches; not a Table row"),
    "F17-B-multiple-lt6": ("verified", f"{_TABLE}; Rec. 5 text (ynjr.net mirror)"),
    "F17-B-multiple-ge6": ("verified", f"{_TABLE}; Rec. 5 text (ynjr.net mirror)"),
    "F17-scope-benign": ("verified", "Rec. 1-2 are for noncalcified nodules (ynjr.net "
                         "mirror); not a Table row"),
}

# No indeterminate nodule: the Table covers noncalcified (indeterminate) nodules only.
BENIGN_ONLY = _rule(
    "F17-scope-benign", "scope: the Table covers indeterminate (noncalcified) nodules",
    "fleischner.scope.benign",
    "Benign calcification or fat only: not an indeterminate nodule; no Fleischner follow-up row "
    "applies.", None, 0)


def solid_class_by_diameter(size_mm: int) -> str:
    """Table A columns on the rounded size: <6, 6-8 (inclusive), >8 mm."""
    return "lt6" if size_mm < 6 else "6to8" if size_mm <= 8 else "gt8"


def solid_class_by_volume(volume_mm3: int) -> str:
    """Table A columns on volume: <100, 100-250 (inclusive), >250 mm³."""
    return "lt6" if volume_mm3 < 100 else "6to8" if volume_mm3 <= 250 else "gt8"


def subsolid_class_by_diameter(size_mm: int) -> str:
    return "lt6" if size_mm < 6 else "ge6"


def subsolid_class_by_volume(volume_mm3: int) -> str:
    """Table B heads <100 mm³ against >100 mm³; 100 mm³ itself counts as ≥6 mm (a reading)."""
    return "lt6" if volume_mm3 < 100 else "ge6"


@dataclass(frozen=True)
class NoduleAssessment:
    """How one nodule was classed: the row it maps to and the size that decided it."""

    index: int
    rule: Rule
    basis: SizeBasis
    size_mm: int
    volume_mm3: int | None
    diameter_class: str
    volume_class: str | None

    @property
    def classes_disagree(self) -> bool:
        """True when the diameter and the measured volume fall in different columns."""
        return self.volume_class is not None and self.volume_class != self.diameter_class


@dataclass(frozen=True)
class FleischnerResult:
    """The recommendation for the exam, or why Fleischner 2017 does not apply."""

    applicable: bool
    reasons: tuple[str, ...] = ()
    rule: Rule | None = None
    guiding: NoduleAssessment | None = None
    assessments: tuple[NoduleAssessment, ...] = ()

    @property
    def row_id(self) -> str | None:
        return self.rule.row_id if self.rule else None

    @property
    def next_scan_months(self) -> tuple[int, int] | None:
        return self.rule.first_scan_months if self.rule else None

    def next_scan_window(self, exam_date: date) -> tuple[date, date] | None:
        """The recommended window for the next CT as calendar dates after ``exam_date``."""
        months = self.next_scan_months
        if months is None:
            return None
        return add_months(exam_date, months[0]), add_months(exam_date, months[1])


def applicability(patient: Patient) -> tuple[str, ...]:
    """Every reason Fleischner 2017 does not apply (empty when it does). Table note."""
    reasons = []
    if patient.age_years < MIN_AGE:
        reasons.append("age under 35: the guideline does not apply; manage individually")
    if patient.screening:
        reasons.append("lung cancer screening: use Lung-RADS instead")
    if patient.known_cancer:
        reasons.append("known primary cancer: the guideline does not apply")
    if patient.immunosuppressed:
        reasons.append("immunosuppressed patient: the guideline does not apply")
    return tuple(reasons)


def _basis(measurement: Measurement, basis: SizeBasis | None) -> SizeBasis:
    """Measured volume when there is one (Table: volume equivalents), else the diameter."""
    if basis is SizeBasis.VOLUME and measurement.volume_mm3 is None:
        raise ValueError("volume basis asked for, but the nodule has no measured volume")
    if basis is not None:
        return basis
    return SizeBasis.VOLUME if measurement.volume_mm3 is not None else SizeBasis.DIAMETER


def assess_nodule(index: int, m: Measurement, risk: Risk, *, other_nodules: int,
                  other_subsolid: int, basis: SizeBasis | None = None) -> NoduleAssessment:
    """Map one indeterminate nodule to its Table row, given how many others the exam has."""
    used = _basis(m, basis)
    size, volume = m.fleischner_size_mm, m.measured_volume_whole_mm3
    if m.nodule_type is NoduleType.SOLID:
        d_class = solid_class_by_diameter(size)
        v_class = solid_class_by_volume(volume) if volume is not None else None
        chosen = v_class if used is SizeBasis.VOLUME and v_class is not None else d_class
        rule = SOLID_RULES[(other_nodules > 0, risk, chosen)]
        return NoduleAssessment(index, rule, used, size, volume, d_class, v_class)
    d_class = subsolid_class_by_diameter(size)
    v_class = subsolid_class_by_volume(volume) if volume is not None else None
    chosen = v_class if used is SizeBasis.VOLUME and v_class is not None else d_class
    if other_subsolid > 0:
        rule = SUBSOLID_RULES[("multiple", chosen)]
    elif m.nodule_type is NoduleType.GROUND_GLASS:
        rule = SUBSOLID_RULES[("single-ggn", chosen)]
    elif chosen == "lt6":
        rule = SUBSOLID_RULES[("single-part-solid", "lt6")]
    else:
        solid = m.fleischner_solid_component_mm
        branch = ("ge6-solid-unmeasured" if solid is None
                  else "ge6-solid-lt6" if solid < 6 else "ge6-solid-ge6")
        rule = SUBSOLID_RULES[("single-part-solid", branch)]
    return NoduleAssessment(index, rule, used, size, volume, d_class, v_class)


def assess(patient: Patient, nodules: Sequence[Measurement], *, basis: SizeBasis | None = None,
           guide: int | None = None) -> FleischnerResult:
    """Fleischner 2017 recommendation for the nodules of one exam.

    Benign-appearing nodules (benign calcification, fat) are left out. Solid nodules
    count as "multiple" when the exam has any other indeterminate nodule; subsolid
    nodules when it has another subsolid one (Table B "multiple subsolid"). The
    guiding nodule is ``guide`` (an index into ``nodules``) if given, else the one
    whose row ranks most suspicious, then the largest.
    """
    if not nodules:
        raise ValueError("no nodules to assess")
    reasons = applicability(patient)
    if reasons:
        return FleischnerResult(applicable=False, reasons=reasons)
    indeterminate = [(i, m) for i, m in enumerate(nodules) if not m.benign_appearance]
    if not indeterminate:
        return FleischnerResult(applicable=True, rule=BENIGN_ONLY)
    subsolid = sum(1 for _, m in indeterminate if m.nodule_type.subsolid)
    assessments = tuple(
        assess_nodule(i, m, patient.risk, other_nodules=len(indeterminate) - 1,
                      other_subsolid=subsolid - (1 if m.nodule_type.subsolid else 0), basis=basis)
        for i, m in indeterminate)
    if guide is not None:
        chosen = [a for a in assessments if a.index == guide]
        if not chosen:
            raise ValueError(f"nodule {guide} is not an indeterminate nodule of this exam")
        guiding = chosen[0]
    else:
        guiding = max(assessments, key=lambda a: (a.rule.rank, nodules[a.index].mean_diameter_mm,
                                                  -a.index))
    return FleischnerResult(applicable=True, rule=guiding.rule, guiding=guiding,
                            assessments=assessments)
