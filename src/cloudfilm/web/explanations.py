"""Plain-language explanations of a study's nodule measurements, for patients (zh and en).

Why: patients said unexplained jargon made them more anxious (../shared/context/USERS.md),
and physicians asked for "conclusions and recommendations patients can understand". Each
study with measurements gets five short paragraphs: what was found, how it changed, what
the guideline suggests and when, that most nodules are not cancer (with a cited number),
and that the doctor will explain. Never a diagnosis, never a personal chance of cancer
(the Brock number is for physicians, not for this text).

Every sentence is a gettext message with ``%(name)s`` placeholders, so clinicians and
translators review the whole text in the catalogue; the English text is kept at or below
US grade 8 (NIH/AMA advice, grade 6-8), checked by :func:`readability_report`.

Sources of the numbers shown to patients:

- NLST (National Lung Screening Trial Research Team, Aberle et al., "Reduced lung-cancer
  mortality with low-dose computed tomographic screening", N Engl J Med 2011;365:395-409),
  abstract: "A total of 96.4% of the positive screening results in the low-dose CT group
  ... were false positive results" -> "96 out of 100".
- Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243), Recommendation 1: "the
  average risk of cancer in solid nodules smaller than 6 mm in patients at high risk is
  less than 1%" -> "fewer than 1 in 100", shown only when every nodule is solid and <6 mm.
- Growth wording says "it has grown", and by how much, whenever the numbers the
  assessment shows count as growth (:func:`counts_as_growth`): the Lung-RADS v2022 growth
  note (mean diameter, to 0.1 mm, up by more than 1.5 mm, ``domain.growth.LUNGRADS_GROWTH_MM``;
  over any interval, as `lungrads.status_from_prior` calls > 1.5 mm over more than 12 months
  "slowly growing"), or NELSON / BTS 2015 significant volume change (more than 25 %,
  ``domain.growth.SIGNIFICANT_VOLUME_CHANGE_PERCENT``) when software measured the volume on
  both scans. A volume worked out from diameters is not used: it triples small diameter
  noise. Smaller changes are "about the same", with both sizes shown.
- Everyday size comparisons (:data:`SIZE_BANDS`) are this project's choice: rough typical
  sizes of common objects, for a picture in the mind, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from cloudfilm.domain.growth import LUNGRADS_GROWTH_MM, SIGNIFICANT_VOLUME_CHANGE_PERCENT
from cloudfilm.domain.nodule import Calcification, NoduleType
from cloudfilm.i18n import N_, Localizer

GUIDELINES = ("fleischner-2017", "lung-rads-2022")
LUNG_RADS_CATEGORIES = ("0", "1", "2", "3", "4A", "4B", "4X")
NOT_APPLICABLE = "not applicable"  # domain/advice.py: the guideline does not fit this patient
GROWTH_MM = float(LUNGRADS_GROWTH_MM)
FLEISCHNER_SMALL_MM = 6.0

# (upper bound in mm, exclusive; object). This project's choice of typical sizes: sesame
# seed ~3 mm, grain of rice ~5 mm, pea ~7-8 mm, peanut ~10-12 mm, grape ~15-20 mm, cherry
# tomato ~25 mm, ping-pong ball 40 mm.
SIZE_BANDS: tuple[tuple[float, str], ...] = (
    (4.0, N_("a sesame seed")),
    (6.0, N_("a grain of rice")),
    (9.0, N_("a pea")),
    (14.0, N_("a peanut")),
    (22.0, N_("a grape")),
    (30.0, N_("a cherry tomato")),
    (float("inf"), N_("a ping-pong ball")),
)

TYPE_SENTENCES = {
    NoduleType.SOLID: N_("It is solid. This means it looks dense on the scan."),
    NoduleType.PART_SOLID: N_("It is part-solid. This means part of it is hazy and part is "
                              "dense."),
    NoduleType.GROUND_GLASS: N_("It is ground-glass. This means it looks hazy, like frosted "
                                "glass."),
}

LUNG_RADS_MEANING = {
    "0": N_("Group 0 means the scan needs more information first, such as older scans to "
            "compare."),
    "1": N_("Groups 1 and 2 mean: keep having a screening scan once a year."),
    "2": N_("Groups 1 and 2 mean: keep having a screening scan once a year."),
    "3": N_("Group 3 means an extra scan is needed sooner than usual, in about 6 months."),
    "4A": N_("Group 4A means an extra scan is needed soon, in about 3 months."),
    "4B": N_("Group %(category)s means more tests are needed soon. Your doctor will plan "
             "them with you."),
    "4X": N_("Group %(category)s means more tests are needed soon. Your doctor will plan "
             "them with you."),
}


# -- the input: pure data, filled from the nodule tables ---------------------------------

@dataclass(frozen=True)
class NoduleChange:
    """How a nodule changed since the prior scan that showed it.

    ``growth_mm`` is current minus prior mean diameter (negative: smaller);
    ``vdt_days`` None means no doubling time: stable or smaller (domain/growth.py);
    ``volume_measured``: software measured the volume on both scans (not from diameters).
    """

    prior_date: date
    prior_mean_diameter_mm: float
    growth_mm: float
    volume_change_percent: float | None = None
    vdt_days: float | None = None
    volume_measured: bool = False

    def __post_init__(self) -> None:
        if self.prior_mean_diameter_mm <= 0:
            raise ValueError(f"prior_mean_diameter_mm must be > 0, got "
                             f"{self.prior_mean_diameter_mm}")
        if self.vdt_days is not None and self.vdt_days <= 0:
            raise ValueError(f"vdt_days must be > 0 or None (stable or smaller), got "
                             f"{self.vdt_days}")


@dataclass(frozen=True)
class NoduleFacts:
    """One nodule as measured on this study; ``change`` None: first time seen."""

    label: str
    nodule_type: str  # "solid" | "part-solid" | "ground-glass" (domain.nodule.NoduleType)
    mean_diameter_mm: float
    volume_mm3: float | None = None
    calcification: str = "none"  # domain.nodule.Calcification value
    change: NoduleChange | None = None

    def __post_init__(self) -> None:
        NoduleType(self.nodule_type)  # ValueError names the bad value
        Calcification(self.calcification)
        if self.mean_diameter_mm <= 0:
            raise ValueError(f"nodule {self.label}: mean_diameter_mm must be > 0, got "
                             f"{self.mean_diameter_mm}")


@dataclass(frozen=True)
class ExamAssessment:
    """The exam's guideline result: ``next_scan_*`` None means no routine follow-up date.

    ``category``: Lung-RADS "0".."4X" (optionally with "S"); for Fleischner the table cell
    (not shown to patients); "not applicable" when the guideline does not fit the patient.
    ``next_scan_optional``: the guideline calls the scan optional (Fleischner 2017, solid
    <6 mm, high risk: "Optional CT at 12 months"; rows F17-A-*-high-lt6).
    """

    guideline: str  # "fleischner-2017" | "lung-rads-2022"
    category: str
    exam_date: date
    next_scan_earliest: date | None = None
    next_scan_latest: date | None = None
    next_scan_optional: bool = False

    def __post_init__(self) -> None:
        if self.guideline not in GUIDELINES:
            raise ValueError(f"guideline {self.guideline!r} is not one of {GUIDELINES}")
        if self.not_applicable:
            return
        if self.guideline == "lung-rads-2022" and lung_rads_base(self.category) is None:
            raise ValueError(f"Lung-RADS category {self.category!r} is not one of "
                             f"{LUNG_RADS_CATEGORIES} (optionally followed by S)")
        if self.next_scan_latest is not None and self.next_scan_earliest is None:
            raise ValueError("next_scan_latest is set but next_scan_earliest is not")
        if (self.next_scan_earliest and self.next_scan_latest
                and self.next_scan_latest < self.next_scan_earliest):
            raise ValueError(f"next_scan_latest {self.next_scan_latest} is before "
                             f"next_scan_earliest {self.next_scan_earliest}")

    @property
    def not_applicable(self) -> bool:
        return self.category.strip().lower() == NOT_APPLICABLE


@dataclass(frozen=True)
class StudyNoduleSummary:
    """Everything the explanation of one study needs: its nodules and its assessment."""

    nodules: tuple[NoduleFacts, ...]
    assessment: ExamAssessment

    def __post_init__(self) -> None:
        if not self.nodules:
            raise ValueError("a nodule summary needs at least one measured nodule")


# -- the output ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Paragraph:
    """One part of the explanation; ``items`` are per-nodule lines when there are several."""

    key: str  # found | change | plan | not-cancer | doctor
    heading: str
    text: str
    items: tuple[str, ...] = ()

    @property
    def full_text(self) -> str:
        """The text, then each item on a line of its own."""
        return "\n".join((self.text, *self.items))


@dataclass(frozen=True)
class Explanation:
    language: str
    headline: str
    paragraphs: tuple[Paragraph, ...] = field(default_factory=tuple)

    def paragraph(self, key: str) -> Paragraph:
        return next(p for p in self.paragraphs if p.key == key)

    @property
    def text(self) -> str:
        """Everything as one plain text (headline, then each paragraph)."""
        return "\n\n".join([self.headline, *(f"{p.heading}\n{p.full_text}"
                                              for p in self.paragraphs)])


# -- building it ----------------------------------------------------------------------------

def size_text(mm: float) -> str:
    """0.1 mm, half up (Lung-RADS v2022 reports the mean to 0.1 mm); "6" rather than "6.0"."""
    value = Decimal(str(mm)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return str(value.quantize(Decimal("1"))) if value == value.to_integral_value() else str(value)


def everyday_object(mm: float) -> str:
    """The message id of the everyday object of about this size (:data:`SIZE_BANDS`)."""
    shown = float(size_text(mm))
    return next(thing for upper, thing in SIZE_BANDS if shown < upper)


def lung_rads_base(category: str) -> str | None:
    """"4AS" -> "4A"; None if it is not a Lung-RADS category."""
    base = category.strip().upper()
    base = base[:-1] if base.endswith("S") else base
    return base if base in LUNG_RADS_CATEGORIES else None


def _join(loc: Localizer, sentences: list[str]) -> str:
    """Chinese sentences end in 。 and are not separated by spaces."""
    return ("" if loc.language == "zh" else " ").join(s for s in sentences if s)


def _item(loc: Localizer, label: str, text: str) -> str:
    return loc.gettext("%(label)s: %(text)s", label=label, text=text)


def _describe_nodule(loc: Localizer, nodule: NoduleFacts) -> list[str]:
    sentences = [
        loc.gettext("It is %(size)s mm across, about the size of %(object)s.",
                  size=size_text(nodule.mean_diameter_mm),
                  object=loc.gettext(everyday_object(nodule.mean_diameter_mm))),
        loc.gettext(TYPE_SENTENCES[NoduleType(nodule.nodule_type)]),
    ]
    calcification = Calcification(nodule.calcification)
    if calcification.benign:
        sentences.append(loc.gettext("It is calcified: it has calcium in it, like bone. This "
                                   "kind of calcium is often seen in old, healed spots."))
    elif calcification is not Calcification.NONE:
        sentences.append(loc.gettext("It is calcified: it has some calcium in it, like bone."))
    return sentences


def _found(loc: Localizer, summary: StudyNoduleSummary) -> Paragraph:
    heading = loc.gettext("What was found")
    count = len(summary.nodules)
    if count == 1:
        intro = loc.gettext("The scan shows a small round spot in the lung. Doctors call it a "
                          "nodule.")
        return Paragraph("found", heading,
                         _join(loc, [intro, *_describe_nodule(loc, summary.nodules[0])]))
    intro = loc.gettext("The scan shows %(num)s small round spots in the lungs. Doctors call "
                      "them nodules.", num=count)
    items = tuple(_item(loc, n.label, _join(loc, _describe_nodule(loc, n))) for n in summary.nodules)
    return Paragraph("found", heading, intro, items)


def shown_growth_mm(nodule: NoduleFacts) -> Decimal:
    """Mean-diameter change as the reader sees it: both means to 0.1 mm, half up (the
    Lung-RADS v2022 Notes measure to 0.1 mm), so "6 mm then" and "7.5 mm now" differ by 1.5."""
    assert nodule.change is not None
    return (Decimal(size_text(nodule.mean_diameter_mm))
            - Decimal(size_text(nodule.change.prior_mean_diameter_mm)))


def counts_as_growth(nodule: NoduleFacts) -> bool:
    """Growth by the rules the assessment shows (module notes): mean diameter up by more
    than 1.5 mm, or a software-measured volume up by more than 25 %."""
    change = nodule.change
    if change is None:
        return False
    by_volume = (change.volume_measured and change.volume_change_percent is not None
                 and change.volume_change_percent > SIGNIFICANT_VOLUME_CHANGE_PERCENT)
    return shown_growth_mm(nodule) > LUNGRADS_GROWTH_MM or by_volume


def _growth_sentences(loc: Localizer, nodule: NoduleFacts, when: str, before: str) -> list[str]:
    change = nodule.change
    assert change is not None
    growth = shown_growth_mm(nodule)
    if growth > LUNGRADS_GROWTH_MM:
        sentences = [loc.gettext("It has grown by %(growth)s mm since your scan of %(date)s. It "
                               "was %(before)s mm then.", growth=size_text(float(growth)),
                               date=when, before=before)]
    else:
        sentences = [loc.gettext("It has grown since your scan of %(date)s. It was %(before)s mm "
                               "across then and is %(now)s mm now.", date=when, before=before,
                               now=size_text(nodule.mean_diameter_mm))]
    if change.volume_change_percent is not None and change.volume_change_percent > 0:
        sentences.append(loc.gettext("Its volume went up by about %(percent)s%%.",
                                   percent=round(change.volume_change_percent)))
    if change.vdt_days is not None:
        sentences.append(loc.gettext("At this pace, it would double in volume in about "
                                   "%(days)s days. Doctors call this the doubling time.",
                                   days=round(change.vdt_days)))
    return sentences


def _describe_change(loc: Localizer, nodule: NoduleFacts) -> list[str]:
    change = nodule.change
    if change is None:
        return [loc.gettext("This is the first scan in your folder that shows this spot. There "
                          "is no earlier scan to compare it with yet.")]
    when, before = loc.date(change.prior_date), size_text(change.prior_mean_diameter_mm)
    if counts_as_growth(nodule):
        return _growth_sentences(loc, nodule, when, before)
    if shown_growth_mm(nodule) < -LUNGRADS_GROWTH_MM:
        return [loc.gettext("It is smaller than on your scan of %(date)s. It was %(before)s mm "
                          "then.", date=when, before=before)]
    return [loc.gettext("It is about the same size as on your scan of %(date)s. It was "
                      "%(before)s mm then.", date=when, before=before),
            loc.gettext("Small differences between two scans are normal.")]


def _changed(loc: Localizer, summary: StudyNoduleSummary) -> Paragraph:
    heading = loc.gettext("How it changed")
    if len(summary.nodules) == 1:
        return Paragraph("change", heading, _join(loc, _describe_change(loc, summary.nodules[0])))
    items = []
    for nodule in summary.nodules:
        text = (loc.gettext("First seen on this scan.") if nodule.change is None
                else _join(loc, _describe_change(loc, nodule)))
        items.append(_item(loc, nodule.label, text))
    return Paragraph("change", heading,
                     loc.gettext("Here is how each spot compares with your last scan."),
                     tuple(items))


def _guideline(loc: Localizer, assessment: ExamAssessment) -> list[str]:
    if assessment.not_applicable:
        return [loc.gettext("The usual guide for these spots does not fit your case. Your "
                          "doctor will plan the next step with you.")]
    if assessment.guideline == "fleischner-2017":
        return [loc.gettext("Doctors used the Fleischner Society guide (2017) to plan the next "
                          "step. It is for spots found by chance on a CT scan.")]
    category = assessment.category.strip().upper()
    base = lung_rads_base(category) or category
    sentences = [loc.gettext("This was a lung screening scan. Doctors sort these scans with "
                           "Lung-RADS, a scale from 0 to 4. This scan is in group "
                           "%(category)s.", category=base),
                 loc.gettext(LUNG_RADS_MEANING[base], category=base)]
    if category.endswith("S"):
        sentences.append(loc.gettext("The letter S means the scan also showed something else. "
                                   "Your report says more about it."))
    return sentences


def _next_scan(loc: Localizer, assessment: ExamAssessment) -> list[str]:
    earliest, latest = assessment.next_scan_earliest, assessment.next_scan_latest
    if assessment.not_applicable:
        return []
    if earliest is None:
        if assessment.guideline == "fleischner-2017":
            return [loc.gettext("The guide says no more scans are needed just to watch this "
                              "spot.")]
        if lung_rads_base(assessment.category) in ("4B", "4X"):
            return []  # its meaning already says the doctor plans the tests
        return [loc.gettext("There is no set date for the next scan. Your doctor will plan the "
                          "next step with you.")]
    if assessment.next_scan_optional:
        return [loc.gettext("The guide says a CT scan around %(date)s is optional. Talk about it "
                          "with your doctor.", date=loc.date(earliest))]
    if latest is None or latest == earliest:
        when = loc.gettext("The guide suggests your next CT scan around %(date)s.",
                         date=loc.date(earliest))
    else:
        when = loc.gettext("The guide suggests your next CT scan between %(earliest)s and "
                         "%(latest)s.", earliest=loc.date(earliest), latest=loc.date(latest))
    return [when, loc.gettext("cloudfilm will send you a reminder before then.")]


def _plan(loc: Localizer, assessment: ExamAssessment) -> Paragraph:
    return Paragraph("plan", loc.gettext("What happens next"),
                     _join(loc, [*_guideline(loc, assessment), *_next_scan(loc, assessment)]))


def _not_cancer(loc: Localizer, summary: StudyNoduleSummary) -> Paragraph:
    sentences = [loc.gettext("Most lung nodules are not cancer."),
                 loc.gettext("In a large study of lung scans (NLST, 2011), when a scan showed a "
                           "spot worth checking, 96 times out of 100 it was not cancer.")]
    if all(n.nodule_type == NoduleType.SOLID.value
           and float(size_text(n.mean_diameter_mm)) < FLEISCHNER_SMALL_MM
           for n in summary.nodules):
        sentences.append(loc.gettext("Among solid spots smaller than 6 mm, fewer than 1 in 100 "
                                   "are cancer, even in people at higher risk (Fleischner "
                                   "Society, 2017)."))
    return Paragraph("not-cancer", loc.gettext("Most spots are not cancer"), _join(loc, sentences))


def _doctor(loc: Localizer) -> Paragraph:
    return Paragraph("doctor", loc.gettext("Your doctor will explain"), _join(loc, [
        loc.gettext("These words help you read the report. They are not a diagnosis."),
        loc.gettext("Your doctor will explain what it means for you."),
        loc.gettext("Write down your questions for your next visit."),
    ]))


def explain_study(loc: Localizer, summary: StudyNoduleSummary) -> Explanation:
    """The plain-language explanation of one study's nodules, in ``loc``'s language."""
    headline = loc.gettext("Your scan of %(date)s in plain words",
                         date=loc.date(summary.assessment.exam_date))
    return Explanation(loc.language, headline, (
        _found(loc, summary), _changed(loc, summary), _plan(loc, summary.assessment),
        _not_cancer(loc, summary), _doctor(loc)))


# -- readability ----------------------------------------------------------------------------

def representative_summaries() -> dict[str, StudyNoduleSummary]:
    """Inputs that together render every English template (each branch at least once)."""
    exam = date(2025, 3, 1)
    prior = exam - timedelta(days=365)
    grew = NoduleChange(prior, 6.0, 3.0, 237.5, 180.0)
    same = NoduleChange(prior, 5.8, 0.4, 7.0, None)
    smaller = NoduleChange(prior, 9.0, -2.5, -60.0, None)
    return {
        "first seen, solid <6 mm, Fleischner, no follow-up": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 4.6, 51.0),),
            ExamAssessment("fleischner-2017", "F17-A-single-low-lt6", exam)),
        "grown part-solid, Lung-RADS 4B": StudyNoduleSummary(
            (NoduleFacts("N1", "part-solid", 9.0, 382.0, change=grew),),
            ExamAssessment("lung-rads-2022", "4B", exam)),
        "grown by measured volume, Fleischner": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 7.2, 195.0, change=NoduleChange(
                prior, 6.0, 1.2, 65.0, 420.0, volume_measured=True)),),
            ExamAssessment("fleischner-2017", "F17-A-multiple-high-6to8", exam,
                           date(2025, 6, 1), date(2025, 9, 1))),
        "stable ground-glass, Fleischner, range": StudyNoduleSummary(
            (NoduleFacts("N1", "ground-glass", 6.2, 125.0, change=same),),
            ExamAssessment("fleischner-2017", "F17-B-single-ggn-ge6", exam,
                           date(2025, 9, 1), date(2026, 3, 1))),
        "several nodules, Lung-RADS 2S": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 5.0, 65.0, "central", change=same),
             NoduleFacts("N2", "solid", 6.5, 144.0, "indeterminate", change=smaller),
             NoduleFacts("N3", "ground-glass", 12.0, 905.0)),
            ExamAssessment("lung-rads-2022", "2S", exam, date(2026, 3, 1), date(2026, 3, 1))),
        "Fleischner optional scan": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 5.0, 65.0),),
            ExamAssessment("fleischner-2017", "Table A (solid), single, high risk, <6 mm", exam,
                           date(2026, 3, 1), date(2026, 3, 1), next_scan_optional=True)),
        "guideline not applicable": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 5.0, 65.0),),
            ExamAssessment("fleischner-2017", "not applicable", exam)),
        "Lung-RADS 0": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 7.0, 180.0),),
            ExamAssessment("lung-rads-2022", "0", exam)),
        "Lung-RADS 3": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 7.0, 180.0),),
            ExamAssessment("lung-rads-2022", "3", exam, date(2025, 9, 1), date(2025, 9, 1))),
        "Lung-RADS 4A": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 16.0, 2145.0),),
            ExamAssessment("lung-rads-2022", "4A", exam, date(2025, 6, 1), date(2025, 6, 1))),
        "large nodules": StudyNoduleSummary(
            (NoduleFacts("N1", "solid", 25.0), NoduleFacts("N2", "ground-glass", 31.0),
             NoduleFacts("N3", "solid", 20.0), NoduleFacts("N4", "solid", 3.0)),
            ExamAssessment("lung-rads-2022", "4X", exam)),
    }


def _grade(text: str) -> float:
    import textstat  # only the readability check needs it

    return float(textstat.flesch_kincaid_grade(text))


def readability_report() -> dict[str, Any]:
    """Flesch-Kincaid grade of every English paragraph kind (its worst rendering) and overall.

    Every representative summary is rendered in English; each paragraph kind keeps its
    highest grade over the renderings, and "overall" is the grade of all rendered text.
    The glossary's definitions are graded one by one ("glossary_worst") and together.
    """
    loc = Localizer("en")
    by_kind: dict[str, float] = {}
    samples: dict[str, str] = {}
    everything: list[str] = []
    for explanation in (explain_study(loc, s) for s in representative_summaries().values()):
        for part in (Paragraph("headline", "", explanation.headline), *explanation.paragraphs):
            grade = _grade(part.full_text)
            everything.append(part.full_text)
            if grade >= by_kind.get(part.key, float("-inf")):
                by_kind[part.key], samples[part.key] = grade, part.full_text
    from cloudfilm.web.glossary import entries  # the glossary's definitions are read too

    definitions = {e.key: _grade(e.definition) for e in entries(loc)}
    return {"metric": "Flesch-Kincaid grade (textstat 0.7.4)",
            "paragraphs": by_kind, "worst_text": samples,
            "overall": _grade(" ".join(everything)),
            "glossary_worst": max(definitions.values()),
            "glossary_overall": _grade(" ".join(e.definition for e in entries(loc)))}
