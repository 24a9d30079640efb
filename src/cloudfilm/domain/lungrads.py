"""ACR Lung-RADS v2022 assessment categories for lung cancer screening CT, as a rule table.

Decision support for a physician, never a diagnosis: each finding is mapped to the
row of the v2022 category table it meets, the exam takes the most suspicious
finding's category, and the radiologist confirms or overrides it.

Source: ACR Lung-RADS v2022 Assessment Categories and Notes (released November 2022;
summarised in Christensen J, et al. ACR Lung-RADS v2022: Assessment Categories and
Management Recommendations. CHEST 2024;165:738-753 and J Am Coll Radiol 2024;21:473-488).

Keys: B = baseline (first screening CT), N = new, G = growing (> 1.5 mm mean-diameter
increase within 12 months; `growth.lungrads_growth`). Sizes are mean diameters to
0.1 mm (`Measurement.lungrads_mean_mm`); with ``SizeBasis.VOLUME`` the measured volume
(whole mm³) is compared with the table's volume equivalents instead (34, 113, 268,
524, 1,767, 14,137 mm³ for 4, 6, 8, 10, 15, 30 mm). The part-solid solid component
is always compared by diameter. Every size row is [lower, upper): "≥ lower" and
"< upper", as the table writes them.

Verification (``VERIFICATION`` holds the verdict for every row_id). The ACR PDF itself
could not be read here; the rows were checked against these stored sources:
* [RDES267] the v2022 table as transcribed in the ACR RadElement set RDES267 "Lung-RADS
  categorization" (hoodcm/oifm-definitions, findingmodels/text/lung_rads_categorization.md,
  MIT): Category 0, 1 and 2 rows and the Category 3 solid row, read verbatim. Its
  Category 3-4X entries (including the 4B part-solid entry with the known typo) were not
  readable in the stored copy.
* [Notes] the v2022 Notes quoted verbatim (nodule size to 0.1 mm; growth "> 1.5 mm
  (> 2 mm³) within a 12-month interval"; size thresholds; Category 0 for infectious or
  inflammatory findings with 1-3 month LDCT) on yingbo777.com/home/lung-rads and in
  ECR EPOS posters (portal.myesr.org, C-22137 and the Lung-RADS 2022 poster).
* [v1.1] the ACR v1.1 table reproduced in NCBI Bookshelf NBK568579 (Appendix A, Table 2),
  whose Category 3 and 4A solid and part-solid thresholds v2022 kept (v2022 added "at
  baseline" and "mean diameter"); it fixes that "new or growing < 4 mm solid component"
  (4A) belongs to a part-solid nodule ≥ 6 mm. PMC7177089 Table 2 (CHEST 2020 expert panel,
  summarising v1.1) gives the same 4A/4B part-solid split (new or growing solid component
  ≥ 4 mm -> 4B; solid component ≥ 8 mm -> 4B).
* [ACR-release] the ACR release as reported by Diagnostic Imaging ("Seven takeaways from
  Lung-RADS 2022"): stepped management for 3 and 4A, airway nodules persisting at 3 months
  -> 4B, slow growth over multiple screens -> 4B.
* [secondary] two independent public v2022 encodings (an AutoHotkey Lung-RADS v2022
  calculator and a TypeScript teaching app), used only as corroboration.
A row is "verified" when a primary or near-primary text above states it; "corroborated"
when only [v1.1] (unchanged wording) plus [ACR-release]/[secondary] support it.

Rows that are the project's reading where the table is silent (``extrapolated=True``):
* LR22-3-ps-G: a growing part-solid nodule < 6 mm total with a < 4 mm solid component
  is classed as if new (Category 3): 4A "new or growing < 4 mm solid component" needs a
  nodule ≥ 6 mm, and no other row covers it;
* LR22-3-ggn-G: a growing non-solid nodule ≥ 30 mm is classed as if new (Category 3):
  the table has ≥ 30 mm only at baseline, new, stable or slowly growing;
* LR22-4B-pending-workup: a Category 4B/4X finding that is re-imaged without a benign
  work-up stays 4B (the table only says when it drops to 2);
* LR22-2-stable: a previously Category 1/2 nodule that is stable stays Category 2 (no
  table row is keyed "stable"; the size-thresholds note only reclassifies a nodule that
  crosses into a higher size category, which `_stable_rule` applies first).
Other readings, not rows: where two rows match (e.g. new part-solid < 6 mm total with a
≥ 4 mm solid part: 3 and 4B) the higher category is taken; a subsegmental airway nodule
that grows is classed by the size rows. Atypical pulmonary cysts are not modelled.

Open points (see ``Status``): for a part-solid nodule the 4A/4B "new or growing" rows are
about the *solid component*; the finding's status is taken as given, and
`status_from_prior` judges growth on the whole nodule's mean diameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import Enum

from cloudfilm.domain.growth import lungrads_growth
from cloudfilm.domain.nodule import Airway, Measurement, NoduleType, add_months

SOURCE = "ACR Lung-RADS v2022"

# Table volume equivalents of the diameter cut-offs (mm -> mm³), = π·d³/6 rounded.
VOLUME_AT_MM: dict[int, int] = {4: 34, 6: 113, 8: 268, 10: 524, 15: 1767, 30: 14137}


class Category(str, Enum):
    """Lung-RADS categories. 1-2 are a negative screen, 3-4X a positive one."""

    ZERO = "0"
    ONE = "1"
    TWO = "2"
    THREE = "3"
    FOUR_A = "4A"
    FOUR_B = "4B"
    FOUR_X = "4X"

    @property
    def rank(self) -> int:
        """Suspicion order for "the exam category is the most suspicious finding"."""
        return _RANK[self]

    @property
    def positive(self) -> bool:
        return self.rank >= _RANK[Category.THREE]


_RANK = {Category.ZERO: 0, Category.ONE: 1, Category.TWO: 2, Category.THREE: 3,
         Category.FOUR_A: 4, Category.FOUR_B: 5, Category.FOUR_X: 6}


class Status(str, Enum):
    """How the nodule relates to the previous screening CT.

    For a part-solid nodule the table's N/G rows (4A/4B) are worded on the solid
    component ("new or growing < 4 mm / ≥ 4 mm solid component"): the status given is
    read that way. SLOWLY_GROWING is the v2022 4B "slow growing solid or part solid
    nodule that demonstrates growth over multiple screening exams" (for a non-solid
    nodule it is Category 2).
    """

    BASELINE = "baseline"  # B: first screening CT
    NEW = "new"  # N: not present on the prior screen
    GROWING = "growing"  # G: > 1.5 mm mean-diameter increase within 12 months
    STABLE = "stable"  # seen before: unchanged or smaller
    SLOWLY_GROWING = "slowly-growing"  # enlarging, but not meeting the growth definition


class SizeBasis(str, Enum):
    DIAMETER = "diameter"
    VOLUME = "volume"


def status_from_prior(prior: Measurement, current: Measurement) -> Status:
    """Growing / slowly growing / stable from two measurements (v2022 Notes, growth).

    Growing: > 1.5 mm mean-diameter increase within 12 months. Slowly growing: > 1.5 mm
    over more than 12 months, the project's proxy for "growth over multiple screening
    exams" (v2022 4B) when the prior is an earlier screen; the reader confirms it. The
    whole nodule is compared, also for a part-solid one (see `Status`).
    """
    growth = lungrads_growth(prior, current)
    if growth.growing:
        return Status.GROWING
    if growth.slowly_enlarging:
        return Status.SLOWLY_GROWING
    return Status.STABLE


@dataclass(frozen=True)
class Rule:
    """A row of the category table that a finding met."""

    row_id: str
    category: Category
    citation: str
    extrapolated: bool = False


def _cite(where: str) -> str:
    return f"{SOURCE}, {where}"


B, N, G = Status.BASELINE, Status.NEW, Status.GROWING
STABLE_LIKE = frozenset({Status.STABLE, Status.SLOWLY_GROWING})


@dataclass(frozen=True)
class SizeRow:
    """A size row: nodule type, statuses, and [min, max) bounds in mm (None = open).

    ``total`` bounds the mean diameter of the whole nodule; ``solid`` that of the solid
    component of a part-solid nodule.
    """

    rule: Rule
    nodule_type: NoduleType
    statuses: frozenset[Status]
    total: tuple[int | None, int | None] = (None, None)
    solid: tuple[int | None, int | None] = (None, None)


def _row(row_id: str, category: Category, where: str, nodule_type: NoduleType,
         statuses: set[Status], total: tuple[int | None, int | None] = (None, None),
         solid: tuple[int | None, int | None] = (None, None),
         extrapolated: bool = False) -> SizeRow:
    return SizeRow(Rule(row_id, category, _cite(where), extrapolated), nodule_type,
                   frozenset(statuses), total, solid)


SOLID, PART, GGN = NoduleType.SOLID, NoduleType.PART_SOLID, NoduleType.GROUND_GLASS
C2, C3, C4A, C4B = Category.TWO, Category.THREE, Category.FOUR_A, Category.FOUR_B

# Each row's check against the sources is in VERIFICATION (below), keyed by row_id.
SIZE_ROWS: tuple[SizeRow, ...] = (
    # Solid
    _row("LR22-2-solid-B", C2, "Category 2, solid: <6 mm (<113 mm³) at baseline", SOLID, {B},
         total=(None, 6)),
    _row("LR22-2-solid-N", C2, "Category 2, solid: new <4 mm (<34 mm³)", SOLID, {N},
         total=(None, 4)),
    _row("LR22-3-solid-B", C3, "Category 3, solid: ≥6 to <8 mm (≥113 to <268 mm³) at baseline",
         SOLID, {B}, total=(6, 8)),
    _row("LR22-3-solid-N", C3, "Category 3, solid: new 4 to <6 mm (34 to <113 mm³)", SOLID, {N},
         total=(4, 6)),
    _row("LR22-4A-solid-B", C4A,
         "Category 4A, solid: ≥8 to <15 mm (≥268 to <1,767 mm³) at baseline",
         SOLID, {B}, total=(8, 15)),
    _row("LR22-4A-solid-G", C4A, "Category 4A, solid: growing <8 mm (<268 mm³)", SOLID, {G},
         total=(None, 8)),
    _row("LR22-4A-solid-N", C4A, "Category 4A, solid: new 6 to <8 mm (113 to <268 mm³)", SOLID, {N},
         total=(6, 8)),
    _row("LR22-4B-solid-B", C4B, "Category 4B, solid: ≥15 mm (≥1,767 mm³) at baseline", SOLID, {B},
         total=(15, None)),
    _row("LR22-4B-solid-NG", C4B, "Category 4B, solid: new or growing ≥8 mm (≥268 mm³)", SOLID,
         {N, G}, total=(8, None)),
    # Part-solid: total mean diameter and solid component
    _row("LR22-2-ps-B", C2,
         "Category 2, part solid: <6 mm total mean diameter (<113 mm³) at baseline",
         PART, {B}, total=(None, 6)),
    _row("LR22-3-ps-B", C3, "Category 3, part solid: ≥6 mm total mean diameter (≥113 mm³) with "
         "solid component <6 mm at baseline", PART, {B}, total=(6, None), solid=(None, 6)),
    _row("LR22-3-ps-N", C3, "Category 3, part solid: new <6 mm total mean diameter (<113 mm³)",
         PART, {N}, total=(None, 6)),
    _row("LR22-3-ps-G", C3, "Category 3, part solid: new <6 mm total mean diameter, applied to a "
         "growing nodule (the table has no growing <6 mm row)", PART, {G}, total=(None, 6),
         extrapolated=True),
    _row("LR22-4A-ps-B", C4A, "Category 4A, part solid: ≥6 mm total mean diameter (≥113 mm³) with "
         "solid component ≥6 to <8 mm at baseline", PART, {B}, total=(6, None), solid=(6, 8)),
    _row("LR22-4A-ps-NG", C4A, "Category 4A, part solid: ≥6 mm total mean diameter with a new or "
         "growing <4 mm solid component", PART, {N, G}, total=(6, None), solid=(None, 4)),
    _row("LR22-4B-ps-B", C4B,
         "Category 4B, part solid: solid component ≥8 mm (≥268 mm³) at baseline",
         PART, {B}, solid=(8, None)),
    _row("LR22-4B-ps-NG", C4B, "Category 4B, part solid: new or growing ≥4 mm (≥34 mm³) solid "
         "component", PART, {N, G}, solid=(4, None)),
    # Non-solid (ground glass)
    _row("LR22-2-ggn-BNG", C2, "Category 2, non-solid: <30 mm (<14,137 mm³) at baseline, new, or "
         "growing", GGN, {B, N, G}, total=(None, 30)),
    _row("LR22-3-ggn-BN", C3, "Category 3, non-solid: ≥30 mm (≥14,137 mm³) at baseline or new", GGN,
         {B, N}, total=(30, None)),
    _row("LR22-3-ggn-G", C3, "Category 3, non-solid: ≥30 mm at baseline or new, applied to a "
         "growing nodule (the table has no growing ≥30 mm row)", GGN, {G}, total=(30, None),
         extrapolated=True),
)

BENIGN = Rule("LR22-1-benign", Category.ONE, _cite(
    "Category 1: nodule(s) with specific calcifications (complete, central, popcorn, concentric "
    "rings) or fat-containing nodules"))
NO_NODULES = Rule("LR22-1-none", Category.ONE, _cite("Category 1: no lung nodules"))
JUXTAPLEURAL = Rule("LR22-2-juxtapleural", Category.TWO, _cite(
    "Category 2, juxtapleural nodule(s): <10 mm (<524 mm³) mean diameter at baseline or new, "
    "solid, smooth margins, and oval, lentiform or triangular shape"))
AIRWAY_SUBSEGMENTAL = Rule("LR22-2-airway-subsegmental", Category.TWO, _cite(
    "Category 2, airway nodule(s): subsegmental, at baseline, new, or stable"))
AIRWAY_SEGMENTAL = Rule("LR22-4A-airway-segmental", Category.FOUR_A, _cite(
    "Category 4A, airway nodule(s): segmental or more proximal, at baseline or new"))
AIRWAY_SEGMENTAL_PERSISTENT = Rule("LR22-4B-airway-segmental-3mo", Category.FOUR_B, _cite(
    "Category 4B, airway nodule(s): segmental or more proximal, stable or growing at 3-month "
    "follow-up CT"))
GGN_STABLE = Rule("LR22-2-ggn-stable", Category.TWO, _cite(
    "Category 2, non-solid: ≥30 mm stable or slowly growing (and <30 mm at any status)"))
STABLE_2 = Rule("LR22-2-stable", Category.TWO, _cite(
    "Category 2 kept: previously Category 1/2 nodule, stable (unchanged or smaller) and not "
    "crossing a size threshold (Notes, size thresholds; not a table row)"),
    extrapolated=True)
STEP_3_TO_2 = Rule("LR22-2-cat3-stable-6mo", Category.TWO, _cite(
    "Category 2: Category 3 lesion that is stable or decreased in size at 6-month follow-up CT "
    "(stepped management)"))
STEP_4A_TO_3 = Rule("LR22-3-cat4A-stable-3mo", Category.THREE, _cite(
    "Category 3: Category 4A lesion that is stable or decreased in size at 3-month follow-up CT, "
    "excluding airway nodules (stepped management)"))
BENIGN_AFTER_WORKUP = Rule("LR22-2-cat4B-benign", Category.TWO, _cite(
    "Category 2: Category 4B lesion proven to be benign in etiology following appropriate "
    "diagnostic workup"))
SLOW_GROWTH_4B = Rule("LR22-4B-slow-growth", Category.FOUR_B, _cite(
    "Category 4B: slow growing solid or part solid nodule that demonstrates growth over "
    "multiple screening exams (without > 1.5 mm in a 12-month interval)"))
PERSISTING_4B = Rule("LR22-4B-pending-workup", Category.FOUR_B, _cite(
    "Category 4B kept: re-imaged 4B/4X lesion without a benign diagnostic workup "
    "(not a table row)"),
    extrapolated=True)
FOUR_X = Rule("LR22-4X", Category.FOUR_X, _cite(
    "Category 4X: Category 3 or 4 nodules with additional features or imaging findings that "
    "increase the suspicion for lung cancer"))
INCOMPLETE_PRIORS = Rule("LR22-0-priors", Category.ZERO, _cite(
    "Category 0: prior chest CT examination(s) being located for comparison"))
INCOMPLETE_UNEVALUABLE = Rule("LR22-0-unevaluable", Category.ZERO, _cite(
    "Category 0: part or all of lungs cannot be evaluated"))
INCOMPLETE_INFECTION = Rule("LR22-0-infection", Category.ZERO, _cite(
    "Category 0: findings suggestive of an inflammatory or infectious process (Notes: 1-3 month "
    "follow-up LDCT)"))

_VERIFIED = "verified"
_CORROBORATED = "corroborated"
# row_id -> (verdict, sources); sources as named in the module docstring.
VERIFICATION: dict[str, tuple[str, str]] = {
    "LR22-2-solid-B": (_VERIFIED, "RDES267 Category 2 solid"),
    "LR22-2-solid-N": (_VERIFIED, "RDES267 Category 2 solid"),
    "LR22-3-solid-B": (_VERIFIED, "RDES267 Category 3 solid"),
    "LR22-3-solid-N": (_VERIFIED, "RDES267 Category 3 solid"),
    "LR22-4A-solid-B": (_CORROBORATED, "v1.1 4A solid (same thresholds); secondary"),
    "LR22-4A-solid-G": (_CORROBORATED, "v1.1 4A solid (same thresholds); secondary"),
    "LR22-4A-solid-N": (_CORROBORATED, "v1.1 4A solid (same thresholds); secondary"),
    "LR22-4B-solid-B": (_CORROBORATED, "secondary (v2022 4B solid)"),
    "LR22-4B-solid-NG": (_CORROBORATED, "secondary (v2022 4B solid)"),
    "LR22-2-ps-B": (_VERIFIED, "RDES267 Category 2 part solid"),
    "LR22-3-ps-B": (_CORROBORATED, "v1.1 3 part solid (same thresholds); secondary"),
    "LR22-3-ps-N": (_CORROBORATED, "v1.1 3 part solid (same thresholds); secondary"),
    "LR22-3-ps-G": ("extrapolated", "no table row: growing part-solid < 6 mm, solid < 4 mm"),
    "LR22-4A-ps-B": (_CORROBORATED, "v1.1 4A part solid (same thresholds); secondary"),
    "LR22-4A-ps-NG": (_CORROBORATED, "v1.1 4A part solid: the < 4 mm new or growing solid "
                      "component belongs to a nodule ≥ 6 mm; PMC7177089; secondary"),
    "LR22-4B-ps-B": (_CORROBORATED, "PMC7177089 (solid component ≥ 8 mm -> 4B); secondary"),
    "LR22-4B-ps-NG": (_CORROBORATED, "PMC7177089 (new or growing ≥ 4 mm -> 4B); secondary"),
    "LR22-2-ggn-BNG": (_VERIFIED, "RDES267 Category 2 non-solid"),
    "LR22-3-ggn-BN": (_CORROBORATED, "v1.1 3 non-solid (≥ 30 mm baseline or new); secondary"),
    "LR22-3-ggn-G": ("extrapolated", "no table row: growing non-solid ≥ 30 mm"),
    "LR22-1-benign": (_VERIFIED, "RDES267 Category 1"),
    "LR22-1-none": (_VERIFIED, "RDES267 Category 1"),
    "LR22-2-juxtapleural": (_VERIFIED, "RDES267 Category 2 juxtapleural"),
    "LR22-2-airway-subsegmental": (_VERIFIED, "RDES267 Category 2 airway"),
    "LR22-4A-airway-segmental": (_CORROBORATED, "ACR-release; Notes (EPOS poster); secondary"),
    "LR22-4B-airway-segmental-3mo": (_CORROBORATED, "ACR-release; secondary"),
    "LR22-2-ggn-stable": (_VERIFIED, "RDES267 Category 2 non-solid (≥ 30 mm stable or "
                          "slowly growing)"),
    "LR22-2-stable": ("extrapolated", "Notes, size thresholds; no table row"),
    "LR22-2-cat3-stable-6mo": (_VERIFIED, "RDES267 Category 2 (stepped management)"),
    "LR22-3-cat4A-stable-3mo": (_CORROBORATED, "ACR-release (stepped management for 4A); "
                                "secondary (excluding airway nodules)"),
    "LR22-2-cat4B-benign": (_VERIFIED, "RDES267 Category 2"),
    "LR22-4B-slow-growth": (_CORROBORATED, "ACR-release; secondary (4B row and Notes)"),
    "LR22-4B-pending-workup": ("extrapolated", "no table row: 4B/4X re-imaged, no work-up"),
    "LR22-4X": (_CORROBORATED, "v1.1 and v2022 4X wording; secondary"),
    "LR22-0-priors": (_VERIFIED, "RDES267 Category 0"),
    "LR22-0-unevaluable": (_VERIFIED, "RDES267 Category 0"),
    "LR22-0-infection": (_VERIFIED, "RDES267 Category 0; Notes (1-3 month LDCT, verbatim)"),
}


@dataclass(frozen=True)
class Management:
    """What the category asks for next. ``next_scan_months`` None means no routine LDCT."""

    template_key: str
    text: str
    next_scan_months: int | None
    diagnostic_workup: bool = False


_ANNUAL = Management("lungrads.mgmt.annual",
                     "Continue annual screening with LDCT in 12 months.", 12)
_WORKUP = Management(
    "lungrads.mgmt.workup",
    "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a ≥8 mm "
    "solid nodule or solid component; tissue sampling; and/or referral for further clinical "
    "evaluation, depending on the probability of malignancy and comorbidities.", None, True)
MANAGEMENT: dict[Category, Management] = {
    Category.ONE: _ANNUAL,
    Category.TWO: _ANNUAL,
    Category.THREE: Management("lungrads.mgmt.6mo", "LDCT in 6 months.", 6),
    Category.FOUR_A: Management(
        "lungrads.mgmt.3mo", "LDCT in 3 months; PET/CT may be considered if there is a ≥8 mm solid "
        "nodule or solid component.", 3),
    Category.FOUR_B: _WORKUP,
    Category.FOUR_X: _WORKUP,
}
INCOMPLETE_MANAGEMENT: dict[str, Management] = {
    INCOMPLETE_PRIORS.row_id: Management(
        "lungrads.mgmt.compare", "Comparison to prior chest CT examination(s).", None),
    INCOMPLETE_UNEVALUABLE.row_id: Management(
        "lungrads.mgmt.additional", "Additional lung cancer screening CT images and/or comparison "
        "to prior chest CT examinations.", None),
    INCOMPLETE_INFECTION.row_id: Management(
        "lungrads.mgmt.1to3mo", "LDCT in 1-3 months, then classify by the most suspicious nodule.",
        1),
}


@dataclass(frozen=True)
class Finding:
    """One nodule as the radiologist reports it on this screening CT.

    ``prior_category`` is the Lung-RADS category it had on the previous CT, needed for
    stable nodules (stepped management). ``prior`` is the previous measurement, used
    to reclassify a stable nodule that crossed into a higher size category.
    ``suspicious_features`` is the reader's 4X judgement (e.g. spiculation or suspicious
    lymph nodes); it is not inferred from the morphology flags.
    """

    measurement: Measurement
    status: Status
    prior_category: Category | None = None
    prior: Measurement | None = None
    suspicious_features: bool = False
    benign_after_workup: bool = False


@dataclass(frozen=True)
class FindingResult:
    index: int
    category: Category
    rule: Rule


def _at_least(m: Measurement, mm: int, basis: SizeBasis) -> bool:
    """Mean diameter ≥ ``mm`` (0.1 mm), or measured volume ≥ the table's equivalent."""
    if basis is SizeBasis.VOLUME:
        volume = m.measured_volume_whole_mm3
        if volume is None:
            raise ValueError("volume basis asked for, but the nodule has no measured volume")
        return volume >= VOLUME_AT_MM[mm]
    return m.lungrads_mean_mm >= Decimal(mm)


def _within(value_at_least: Callable[[int], bool], bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value_at_least(low)) and (high is None or not value_at_least(high))


def _row_matches(row: SizeRow, m: Measurement, status: Status, basis: SizeBasis) -> bool:
    if row.nodule_type is not m.nodule_type or status not in row.statuses:
        return False
    if not _within(lambda mm: _at_least(m, mm, basis), row.total):
        return False
    if row.solid == (None, None):
        return True
    solid = m.lungrads_solid_component_mm
    return solid is not None and _within(lambda mm: solid >= Decimal(mm), row.solid)


def size_rule(m: Measurement, status: Status, basis: SizeBasis = SizeBasis.DIAMETER) -> Rule:
    """The most suspicious size row a nodule meets for a B, N or G status.

    A part-solid nodule needs its solid component unless it is < 6 mm at baseline
    (Category 2 whatever the solid part), since every other row depends on it.
    """
    if (m.nodule_type is NoduleType.PART_SOLID and m.solid_component_mm is None
            and not (status is B and not _at_least(m, 6, basis))):
        raise ValueError("measure the solid component: Lung-RADS part-solid rows depend on it")
    matched = [row.rule for row in SIZE_ROWS if _row_matches(row, m, status, basis)]
    if not matched:
        raise ValueError(f"no Lung-RADS v2022 size row for a {status.value} "
                         f"{m.nodule_type.value} nodule")
    return max(matched, key=lambda rule: rule.category.rank)


def _juxtapleural_benign(m: Measurement, status: Status, basis: SizeBasis) -> bool:
    """v2022 Category 2, juxtapleural: solid, smooth, oval/lentiform/triangular, <10 mm, B or N."""
    shape = m.morphology
    return (m.nodule_type is NoduleType.SOLID and shape.juxtapleural and shape.smooth_margins
            and shape.benign_shape and status in (B, N) and not _at_least(m, 10, basis))


def _stable_rule(finding: Finding, basis: SizeBasis) -> Rule:
    """A nodule seen before and not growing.

    First the Notes' size-threshold rule (a crossed size line reclassifies by size, as
    at baseline); then v2022 stepped management: Category 3 stable at its 6-month CT
    -> 2, Category 4A stable at its 3-month CT -> 3, Category 2 stays 2, and a 4B lesion
    proven benign after work-up -> 2.
    """
    m, prior_category = finding.measurement, finding.prior_category
    if prior_category is None:
        raise ValueError("a stable nodule needs the Lung-RADS category it had on the prior CT")
    if prior_category is Category.ZERO:
        raise ValueError("Category 0 is an exam state, not a nodule's prior category")
    if finding.prior is not None:
        now, before = size_rule(m, B, basis), size_rule(finding.prior, B, basis)
        if now.category.rank > before.category.rank:
            return replace(now, row_id=f"{now.row_id}+crossed", citation=(
                f"{now.citation}; Notes, size thresholds: a nodule that crosses into a higher size "
                "category is reclassified by size even without meeting the growth definition"))
    if prior_category in (Category.ONE, Category.TWO):
        return STABLE_2
    if prior_category is Category.THREE:
        return STEP_3_TO_2
    if prior_category is Category.FOUR_A:
        return STEP_4A_TO_3
    return BENIGN_AFTER_WORKUP if finding.benign_after_workup else PERSISTING_4B


def classify_finding(finding: Finding, basis: SizeBasis = SizeBasis.DIAMETER) -> Rule:
    """The v2022 row one finding meets; 4X is applied on top of a 3/4A/4B row."""
    rule = _base_rule(finding, basis)
    if finding.suspicious_features and rule.category in (C3, C4A, C4B):
        return FOUR_X
    return rule


def _base_rule(finding: Finding, basis: SizeBasis) -> Rule:
    """Rows in precedence order: Category 1 benign features, airway rows, the
    juxtapleural row, the non-solid stable/slowly growing row, the 4B slow-growth row
    (solid or part-solid, not an airway nodule, not proven benign), stable rules
    (size thresholds, stepped management), then the size rows."""
    m, status = finding.measurement, finding.status
    if m.benign_appearance:
        return BENIGN
    airway = m.morphology.airway
    if airway is Airway.SUBSEGMENTAL and status in (B, N, Status.STABLE):
        return AIRWAY_SUBSEGMENTAL
    if airway is Airway.SEGMENTAL_OR_PROXIMAL:
        return AIRWAY_SEGMENTAL if status in (B, N) else AIRWAY_SEGMENTAL_PERSISTENT
    if _juxtapleural_benign(m, status, basis):
        return JUXTAPLEURAL
    if status in STABLE_LIKE:
        if m.nodule_type is NoduleType.GROUND_GLASS:
            return GGN_STABLE
        if (status is Status.SLOWLY_GROWING and airway is Airway.NONE
                and not finding.benign_after_workup):
            return SLOW_GROWTH_4B
        return _stable_rule(finding, basis)
    return size_rule(m, status, basis)


@dataclass(frozen=True)
class ExamResult:
    """The exam's category, the finding that set it, and what to do next."""

    category: Category
    rule: Rule
    management: Management
    findings: tuple[FindingResult, ...] = ()
    guiding: int | None = None
    s_modifier: bool = False
    significant_findings: tuple[str, ...] = ()
    pet_ct_may_be_considered: bool = False

    @property
    def label(self) -> str:
        """Category as reported, with the S modifier appended (e.g. "2S")."""
        return f"{self.category.value}{'S' if self.s_modifier else ''}"

    @property
    def negative_screen(self) -> bool:
        return self.category in (Category.ONE, Category.TWO)

    @property
    def positive_screen(self) -> bool:
        return self.category.positive

    @property
    def next_scan_months(self) -> int | None:
        return self.management.next_scan_months

    def next_scan_window(self, exam_date: date) -> tuple[date, date] | None:
        """Dates for the next LDCT; Category 0 for infection gives the 1-3 month range."""
        months = self.management.next_scan_months
        if months is None:
            return None
        last = 3 if self.rule is INCOMPLETE_INFECTION else months
        return add_months(exam_date, months), add_months(exam_date, last)


def _needs_pet_ct(m: Measurement) -> bool:
    """PET/CT may be considered for a ≥ 8 mm solid nodule or solid component (4A/4B text)."""
    if m.nodule_type is NoduleType.SOLID:
        return m.lungrads_mean_mm >= 8
    solid = m.lungrads_solid_component_mm
    return solid is not None and solid >= 8


def classify_exam(findings: Sequence[Finding], *, priors_being_located: bool = False,
                  lungs_not_evaluable: bool = False, infection_suspected: bool = False,
                  significant_findings: Sequence[str] = (),
                  basis: SizeBasis = SizeBasis.DIAMETER) -> ExamResult:
    """The exam category: Category 0 if the exam is incomplete, else the most suspicious
    finding (ties go to the larger nodule), Category 1 without nodules.

    ``significant_findings`` (findings that are not lung cancer, e.g. an aortic
    aneurysm) set the S modifier; its management is whatever the finding requires.
    """
    extra = tuple(significant_findings)
    incomplete = [rule for flag, rule in ((priors_being_located, INCOMPLETE_PRIORS),
                                          (lungs_not_evaluable, INCOMPLETE_UNEVALUABLE),
                                          (infection_suspected, INCOMPLETE_INFECTION)) if flag]
    results = tuple(FindingResult(i, (r := classify_finding(f, basis)).category, r)
                    for i, f in enumerate(findings))
    if incomplete:
        rule = incomplete[0]
        return ExamResult(Category.ZERO, rule, INCOMPLETE_MANAGEMENT[rule.row_id], results,
                          s_modifier=bool(extra), significant_findings=extra)
    if not results:
        return ExamResult(Category.ONE, NO_NODULES, MANAGEMENT[Category.ONE],
                          s_modifier=bool(extra), significant_findings=extra)
    top = max(results, key=lambda r: (r.category.rank,
                                      findings[r.index].measurement.lungrads_mean_mm, -r.index))
    pet = top.category in (C4A, C4B, Category.FOUR_X) and _needs_pet_ct(
        findings[top.index].measurement)
    return ExamResult(top.category, top.rule, MANAGEMENT[top.category], results, top.index,
                      s_modifier=bool(extra), significant_findings=extra,
                      pet_ct_may_be_considered=pet)
