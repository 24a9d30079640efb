"""The exam's guideline category and recommendation in the reader's language and register.

Why here and not in `domain`: the rule tables (`domain.fleischner`, `domain.lungrads`) stay
pure and cite the guideline in its own English words; this module maps their rows to
catalogue messages. Clinicians read the guideline's wording, translated (the English
msgid is the domain's text, so English pages show exactly the cited words); patients and
caregivers read plain words keyed by rule row (Fleischner 2017) or category (Lung-RADS
v2022), with no risk column, no table names and no Brock number. A row the tables do
not know (a new domain row without a message here) falls back to the domain's English for
clinicians and to "your doctor will explain" for patients; a test checks every domain row
is known.
"""

from __future__ import annotations

from typing import Any

from cloudfilm.domain import fleischner, lungrads
from cloudfilm.i18n import N_, Localizer

# Why Fleischner 2017 does not apply (fleischner.applicability; advice joins them with "; ").
_REASONS = (
    N_("age under 35: the guideline does not apply; manage individually"),
    N_("lung cancer screening: use Lung-RADS instead"),
    N_("known primary cancer: the guideline does not apply"),
    N_("immunosuppressed patient: the guideline does not apply"),
)
# Fleischner 2017 table cells (advice.fleischner_cell) and recommendations (Rule.text).
CLINICIAN_TEXT: dict[str, str] = {text: text for text in (
    N_("Table A (solid), single, low risk, <6 mm"),
    N_("Table A (solid), single, high risk, <6 mm"),
    N_("Table A (solid), single, low risk, 6-8 mm"),
    N_("Table A (solid), single, high risk, 6-8 mm"),
    N_("Table A (solid), single, low risk, >8 mm"),
    N_("Table A (solid), single, high risk, >8 mm"),
    N_("Table A (solid), multiple, low risk, <6 mm"),
    N_("Table A (solid), multiple, high risk, <6 mm"),
    N_("Table A (solid), multiple, low risk, 6-8 mm"),
    N_("Table A (solid), multiple, high risk, 6-8 mm"),
    N_("Table A (solid), multiple, low risk, >8 mm"),
    N_("Table A (solid), multiple, high risk, >8 mm"),
    N_("Table B (subsolid), single ground glass, <6 mm"),
    N_("Table B (subsolid), single ground glass, ≥6 mm"),
    N_("Table B (subsolid), single part-solid, <6 mm"),
    N_("Table B (subsolid), single part-solid, ≥6 mm, solid component <6 mm"),
    N_("Table B (subsolid), single part-solid, ≥6 mm, solid component ≥6 mm"),
    N_("Table B (subsolid), single part-solid, ≥6 mm (both branches start with CT at 3-6 "
       "months)"),
    N_("Table B (subsolid), multiple, <6 mm"),
    N_("Table B (subsolid), multiple, ≥6 mm"),
    N_("scope: the Table covers indeterminate (noncalcified) nodules"),
    N_("No routine follow-up."),
    N_("Optional CT at 12 months."),
    N_("CT at 6-12 months, then consider CT at 18-24 months."),
    N_("CT at 6-12 months, then CT at 18-24 months."),
    N_("Consider CT at 3 months, PET/CT, or tissue sampling."),
    N_("CT at 3-6 months, then consider CT at 18-24 months."),
    N_("CT at 3-6 months, then CT at 18-24 months."),
    N_("CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years."),
    N_("CT at 3-6 months to confirm persistence. If unchanged and the solid component remains "
       "<6 mm, annual CT for 5 years."),
    N_("CT at 3-6 months to confirm persistence. A persistent part-solid nodule with a solid "
       "component ≥6 mm is highly suspicious: PET/CT, biopsy or resection if the morphology is "
       "suspicious, the solid component grows, or the solid component is >8 mm."),
    N_("CT at 3-6 months to confirm persistence; measure the solid component to choose the "
       "next step."),
    N_("CT at 3-6 months. If stable, consider CT at 2 and 4 years."),
    N_("CT at 3-6 months. Subsequent management based on the most suspicious nodule(s)."),
    N_("Benign calcification or fat only: not an indeterminate nodule; no Fleischner follow-up "
       "row applies."),
    *_REASONS,
    # Lung-RADS v2022 management (lungrads.MANAGEMENT, INCOMPLETE_MANAGEMENT)
    N_("Continue annual screening with LDCT in 12 months."),
    N_("LDCT in 6 months."),
    N_("LDCT in 3 months; PET/CT may be considered if there is a ≥8 mm solid nodule or solid "
       "component."),
    N_("Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a "
       "≥8 mm solid nodule or solid component; tissue sampling; and/or referral for further "
       "clinical evaluation, depending on the probability of malignancy and comorbidities."),
    N_("Comparison to prior chest CT examination(s)."),
    N_("Additional lung cancer screening CT images and/or comparison to prior chest CT "
       "examinations."),
    N_("LDCT in 1-3 months, then classify by the most suspicious nodule."),
)}

_SOLID_SIZE = {"lt6": N_("One solid spot, smaller than 6 mm"),
               "6to8": N_("One solid spot, 6 to 8 mm"),
               "gt8": N_("One solid spot, larger than 8 mm")}
_SOLID_SIZES = {"lt6": N_("Several solid spots, all smaller than 6 mm"),
                "6to8": N_("Several solid spots, the largest 6 to 8 mm"),
                "gt8": N_("Several solid spots, the largest more than 8 mm")}
PATIENT_CATEGORY: dict[str, str] = {
    **{f"F17-A-single-{risk}-{size}": text for size, text in _SOLID_SIZE.items()
       for risk in ("low", "high")},
    **{f"F17-A-multiple-{risk}-{size}": text for size, text in _SOLID_SIZES.items()
       for risk in ("low", "high")},
    "F17-B-single-ggn-lt6": N_("One hazy spot, smaller than 6 mm"),
    "F17-B-single-ggn-ge6": N_("One hazy spot, 6 mm or larger"),
    "F17-B-single-ps-lt6": N_("One partly solid spot, smaller than 6 mm"),
    "F17-B-single-ps-ge6-solid-lt6": N_("One partly solid spot, 6 mm or larger"),
    "F17-B-single-ps-ge6-solid-ge6": N_("One partly solid spot, 6 mm or larger"),
    "F17-B-single-ps-ge6-solid-unmeasured": N_("One partly solid spot, 6 mm or larger"),
    "F17-B-multiple-lt6": N_("Several hazy or partly solid spots, smaller than 6 mm"),
    "F17-B-multiple-ge6": N_("Several hazy or partly solid spots, the largest 6 mm or more"),
    "F17-scope-benign": N_("Spots with calcium or fat that need no follow-up"),
}
_NONE = N_("No more scans are needed just to watch these spots.")
_OPTIONAL = N_("A CT scan in about 12 months is optional.")
_CT_3_6_THEN = N_("A CT scan in 3 to 6 months, then another one 18 to 24 months from now.")
_CT_3_6_MAYBE = N_("A CT scan in 3 to 6 months. Your doctor may suggest another one 18 to 24 "
                   "months from now.")
PATIENT_RECOMMENDATION: dict[str, str] = {
    "F17-A-single-low-lt6": _NONE, "F17-A-single-high-lt6": _OPTIONAL,
    "F17-A-single-low-6to8": N_("A CT scan in 6 to 12 months. Your doctor may suggest another "
                                "one 18 to 24 months from now."),
    "F17-A-single-high-6to8": N_("A CT scan in 6 to 12 months, then another one 18 to 24 "
                                 "months from now."),
    "F17-A-single-low-gt8": N_("Your doctor may suggest a CT scan in 3 months or other tests."),
    "F17-A-single-high-gt8": N_("Your doctor may suggest a CT scan in 3 months or other tests."),
    "F17-A-multiple-low-lt6": _NONE, "F17-A-multiple-high-lt6": _OPTIONAL,
    "F17-A-multiple-low-6to8": _CT_3_6_MAYBE, "F17-A-multiple-high-6to8": _CT_3_6_THEN,
    "F17-A-multiple-low-gt8": _CT_3_6_MAYBE, "F17-A-multiple-high-gt8": _CT_3_6_THEN,
    "F17-B-single-ggn-lt6": _NONE,
    "F17-B-single-ggn-ge6": N_("A CT scan in 6 to 12 months to see if the spot is still there, "
                               "then one every 2 years for 5 years."),
    "F17-B-single-ps-lt6": _NONE,
    "F17-B-single-ps-ge6-solid-lt6": N_("A CT scan in 3 to 6 months to see if the spot is still "
                                        "there. If it has not changed, one scan a year for 5 "
                                        "years."),
    "F17-B-single-ps-ge6-solid-ge6": N_("A CT scan in 3 to 6 months to see if the spot is still "
                                        "there. Your doctor may then suggest more tests."),
    "F17-B-single-ps-ge6-solid-unmeasured": N_("A CT scan in 3 to 6 months to see if the spot "
                                               "is still there."),
    "F17-B-multiple-lt6": N_("A CT scan in 3 to 6 months. If nothing has changed, your doctor "
                             "may suggest scans 2 and 4 years from now."),
    "F17-B-multiple-ge6": N_("A CT scan in 3 to 6 months. Your doctor will plan the next steps "
                             "from there."),
    "F17-scope-benign": _NONE,
    "LR22-0": N_("More pictures or older scans are needed first. Your doctor will tell you what "
                 "comes next."),
    "LR22-1": N_("Keep having a screening scan once a year."),
    "LR22-2": N_("Keep having a screening scan once a year."),
    "LR22-3": N_("A low-dose CT scan in about 6 months."),
    "LR22-4A": N_("A low-dose CT scan in about 3 months. Your doctor may suggest other tests."),
    "LR22-4B": N_("More tests are needed soon. Your doctor will plan them with you."),
    "LR22-4X": N_("More tests are needed soon. Your doctor will plan them with you."),
}
_ASK_DOCTOR = N_("Your doctor will explain the next step.")
_LUNG_RADS_CLINICIAN = N_("Lung-RADS category %(category)s")
_LUNG_RADS_PATIENT = N_("Lung-RADS group %(category)s")
_NOT_APPLICABLE = N_("not applicable")
_NOT_APPLICABLE_PATIENT = N_("The usual guide does not fit your case")


def _lung_rads_base(category: str) -> str:
    base = category.strip().upper()
    return base[:-1] if base.endswith("S") and len(base) > 1 else base


def _clinician(loc: Localizer, text: str) -> str:
    """The domain's English wording, translated; unknown text is shown as it is."""
    return loc.gettext(CLINICIAN_TEXT[text]) if text in CLINICIAN_TEXT else text


def category_text(loc: Localizer, assessment: dict[str, Any], clinician: bool) -> str:
    """The category cell (clinicians) or what kind of spots it is about (patients)."""
    category, guideline = str(assessment.get("category", "")), assessment.get("guideline")
    if guideline == "lung-rads-2022":
        return loc.gettext(_LUNG_RADS_CLINICIAN if clinician else _LUNG_RADS_PATIENT,
                           category=category)
    if category == _NOT_APPLICABLE:
        return loc.gettext(_NOT_APPLICABLE if clinician else _NOT_APPLICABLE_PATIENT)
    if clinician:
        return _clinician(loc, category)
    words = PATIENT_CATEGORY.get(str(assessment.get("rule_id", "")))
    return loc.gettext(words) if words else loc.gettext(_ASK_DOCTOR)


def recommendation_text(loc: Localizer, assessment: dict[str, Any], clinician: bool) -> str:
    """The guideline's recommendation (clinicians) or the same in plain words (patients)."""
    text = str(assessment.get("recommendation", ""))
    if clinician:
        separator = "；" if loc.language == "zh" else "; "
        reasons = sorted((text.index(r), r) for r in _REASONS if r in text)
        if assessment.get("category") == _NOT_APPLICABLE and reasons:
            return separator.join(loc.gettext(r) for _, r in reasons)
        return _clinician(loc, text)
    key = str(assessment.get("rule_id", ""))
    if assessment.get("guideline") == "lung-rads-2022":
        key = f"LR22-{_lung_rads_base(str(assessment.get('category', '')))}"
    words = PATIENT_RECOMMENDATION.get(key)
    return loc.gettext(words) if words else loc.gettext(_ASK_DOCTOR)


def rule_text(loc: Localizer, assessment: dict[str, Any]) -> str:
    """The cited row for clinicians: the full citation in English, else source and row id
    (the citation repeats the English table cell)."""
    if loc.language == "en":
        return str(assessment.get("rule", ""))
    source = fleischner.SOURCE if assessment.get("guideline") == "fleischner-2017" else \
        lungrads.SOURCE
    return f"{source} · {assessment.get('rule_id', '')}"
