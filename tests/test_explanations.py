"""Plain-language nodule explanations (web/explanations.py), the glossary (web/glossary.py)
and the partial that shows them, in English and Chinese.

The facts must survive translation: size, everyday object, change, next-scan dates in
the reader's date format, and the "most nodules are not cancer" number with its source.
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from markupsafe import Markup

from cloudfilm.web.explanations import (
    ExamAssessment,
    Explanation,
    NoduleChange,
    NoduleFacts,
    StudyNoduleSummary,
    everyday_object,
    explain_study,
    readability_report,
    representative_summaries,
    size_text,
)
from cloudfilm.web.glossary import TERMS, entries, highlight
from cloudfilm.web.i18n import Localizer, read_catalog, translations
from cloudfilm.web.templating import environment

EN, ZH = Localizer("en"), Localizer("zh")
EXAM = date(2025, 3, 1)
PRIOR = date(2024, 3, 1)
# Latin-letter words allowed in Chinese text: abbreviations and the names of sources.
ALLOWED_IN_CHINESE = re.compile(r"CT|Lung-RADS|Fleischner|NLST|S|4[ABX]|N\d+")
LATIN_WORD = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*")
CJK = re.compile(r"[\u4e00-\u9fff]")


def one_nodule(nodule: NoduleFacts, **assessment: object) -> StudyNoduleSummary:
    values = {"guideline": "fleischner-2017", "category": "Table A (solid), single, low risk, "
              "6-8 mm", "exam_date": EXAM} | assessment
    return StudyNoduleSummary((nodule,), ExamAssessment(**values))  # type: ignore[arg-type]


GROWN_PEA = one_nodule(
    NoduleFacts("N1", "solid", 6.0, 113.0, change=NoduleChange(PRIOR, 4.0, 2.0, 237.5, 171.0)),
    next_scan_earliest=date(2025, 9, 1), next_scan_latest=date(2026, 3, 1))


def test_english_says_size_object_change_and_next_scan_dates() -> None:
    text = explain_study(EN, GROWN_PEA)
    assert text.headline == "Your scan of March 1, 2025 in plain words"
    found, change, plan = (text.paragraph(k).text for k in ("found", "change", "plan"))
    assert "6 mm across, about the size of a pea" in found and "solid" in found
    assert "grown by 2 mm since your scan of March 1, 2024" in change
    assert "It was 4 mm then" in change and "about 238%" in change and "171 days" in change
    assert "between September 1, 2025 and March 1, 2026" in plan
    assert "Fleischner Society guide (2017)" in plan


def test_chinese_says_the_same_facts_in_chinese() -> None:
    text = explain_study(ZH, GROWN_PEA)
    assert text.language == "zh" and text.headline == "用简单的话说说您2025年3月1日的检查"
    found, change, plan = (text.paragraph(k).text for k in ("found", "change", "plan"))
    assert "6毫米" in found and "豌豆" in found and "实性" in found
    assert "2024年3月1日" in change and "长大了2毫米" in change and "4毫米" in change
    assert "238%" in change and "171天" in change
    assert "2025年9月1日到2026年3月1日之间" in plan and "Fleischner" in plan


@pytest.mark.parametrize("name", list(representative_summaries()))
def test_chinese_text_has_no_english_words_but_abbreviations(name: str) -> None:
    text = explain_study(ZH, representative_summaries()[name]).text
    assert len(CJK.findall(text)) > 100
    leftovers = [w for w in LATIN_WORD.findall(text) if not ALLOWED_IN_CHINESE.fullmatch(w)]
    assert leftovers == []


@pytest.mark.parametrize("loc, words", [
    (EN, ("Most lung nodules are not cancer.", "(NLST, 2011)", "96 times out of 100")),
    (ZH, ("大多数肺结节不是癌", "NLST，2011年", "每100次里约有96次不是癌")),
])
def test_most_nodules_are_not_cancer_with_the_number_and_its_source(
        loc: Localizer, words: tuple[str, ...]) -> None:
    paragraph = explain_study(loc, GROWN_PEA).paragraph("not-cancer").text
    assert all(word in paragraph for word in words)
    assert "Fleischner" not in paragraph  # a 6 mm nodule is not "smaller than 6 mm"


def test_the_small_solid_nodule_figure_is_shown_only_when_every_nodule_fits_it() -> None:
    small = NoduleFacts("N1", "solid", 5.4)
    hazy = NoduleFacts("N2", "ground-glass", 4.0)
    sentence = "fewer than 1 in 100 are cancer, even in people at higher risk (Fleischner"
    assert sentence in explain_study(EN, one_nodule(small)).paragraph("not-cancer").text
    both = StudyNoduleSummary((small, hazy), ExamAssessment("fleischner-2017", "x", EXAM))
    assert sentence not in explain_study(EN, both).paragraph("not-cancer").text
    assert "（Fleischner学会，2017年）" in explain_study(ZH, one_nodule(small)).text


@pytest.mark.parametrize("name", list(representative_summaries()))
def test_never_a_diagnosis_or_a_personal_chance_of_cancer(name: str) -> None:
    text = explain_study(EN, representative_summaries()[name]).text.lower()
    for word in ("malignan", "your risk", "your chance", "probability", "likely", "tumor",
                 "tumour", "you have cancer"):
        assert word not in text
    assert "your doctor will explain what it means for you." in text
    assert "they are not a diagnosis." in text


@pytest.mark.parametrize("mm, thing", [
    (3.0, "a sesame seed"), (3.94, "a sesame seed"), (3.95, "a grain of rice"),
    (5.9, "a grain of rice"), (5.95, "a pea"), (6.0, "a pea"), (8.9, "a pea"),
    (9.0, "a peanut"), (13.9, "a peanut"), (14.0, "a grape"), (22.0, "a cherry tomato"),
    (30.0, "a ping-pong ball"),
])
def test_everyday_object_bands_on_the_shown_size(mm: float, thing: str) -> None:
    assert everyday_object(mm) == thing


def test_sizes_are_shown_to_a_tenth_of_a_millimetre_rounded_half_up() -> None:
    assert [size_text(v) for v in (6.0, 6.25, 6.04, 12.35, 0.05)] == ["6", "6.3", "6", "12.4",
                                                                       "0.1"]


@pytest.mark.parametrize("growth, words", [
    (1.5, "about the same size"), (1.6, "grown by 1.6 mm"), (-1.5, "about the same size"),
    (-1.6, "smaller than on your scan"),
])
def test_changes_within_the_lung_rads_growth_threshold_read_as_about_the_same(
        growth: float, words: str) -> None:
    change = NoduleChange(PRIOR, 6.0, growth, None, 400.0 if growth > 0 else None)
    text = explain_study(EN, one_nodule(NoduleFacts("N1", "solid", 6 + growth, change=change)))
    assert words in text.paragraph("change").text
    assert ("doubling time" in text.paragraph("change").text) == (growth > 1.5)


def test_a_nodule_without_a_prior_is_seen_for_the_first_time() -> None:
    text = explain_study(EN, one_nodule(NoduleFacts("N1", "ground-glass", 7.0)))
    assert "first scan in your folder that shows this spot" in text.paragraph("change").text
    assert "frosted glass" in text.paragraph("found").text


def test_several_nodules_get_a_line_each() -> None:
    summary = representative_summaries()["several nodules, Lung-RADS 2S"]
    for loc, first in ((EN, "N1: It is 5 mm across"), (ZH, "N1：它大约5毫米大")):
        found = explain_study(loc, summary).paragraph("found")
        assert len(found.items) == 3 and found.items[0].startswith(first)


@pytest.mark.parametrize("category, meaning", [
    ("1", "once a year"), ("2S", "The letter S means"), ("3", "in about 6 months"),
    ("4A", "in about 3 months"), ("4B", "Group 4B means more tests are needed soon"),
    ("0", "older scans to compare"),
])
def test_lung_rads_groups_are_explained(category: str, meaning: str) -> None:
    summary = one_nodule(NoduleFacts("N1", "solid", 7.0), guideline="lung-rads-2022",
                         category=category)
    plan = explain_study(EN, summary).paragraph("plan").text
    assert f"This scan is in group {category.removesuffix('S')}." in plan and meaning in plan


def test_no_follow_up_optional_and_not_applicable_read_differently() -> None:
    none = one_nodule(NoduleFacts("N1", "solid", 4.0))
    optional = one_nodule(NoduleFacts("N1", "solid", 4.0), next_scan_earliest=date(2026, 3, 1),
                          next_scan_latest=date(2026, 3, 1), next_scan_optional=True)
    unfit = one_nodule(NoduleFacts("N1", "solid", 4.0), category="not applicable")
    assert "no more scans are needed" in explain_study(EN, none).paragraph("plan").text
    assert "around March 1, 2026 is optional" in explain_study(EN, optional).paragraph("plan").text
    assert "does not fit your case" in explain_study(EN, unfit).paragraph("plan").text
    assert "2026年3月1日前后" in explain_study(ZH, optional).paragraph("plan").text


def test_inputs_that_make_no_sense_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="'round'"):
        NoduleFacts("N1", "round", 5.0)
    with pytest.raises(ValueError, match="mean_diameter_mm"):
        NoduleFacts("N1", "solid", 0.0)
    with pytest.raises(ValueError, match="Lung-RADS category '5'"):
        ExamAssessment("lung-rads-2022", "5", EXAM)
    with pytest.raises(ValueError, match="next_scan_latest"):
        ExamAssessment("fleischner-2017", "x", EXAM, date(2025, 9, 1), date(2025, 6, 1))
    with pytest.raises(ValueError, match="vdt_days"):
        NoduleChange(PRIOR, 5.0, -1.0, None, -30.0)
    with pytest.raises(ValueError, match="at least one"):
        StudyNoduleSummary((), ExamAssessment("fleischner-2017", "x", EXAM))


def test_every_english_paragraph_reads_at_grade_8_or_below() -> None:
    report = readability_report()
    assert set(report["paragraphs"]) == {"headline", "found", "change", "plan", "not-cancer",
                                         "doctor"}
    assert all(grade <= 8.0 for grade in report["paragraphs"].values()), report
    assert report["overall"] <= 8.0
    assert report["glossary_worst"] <= 8.0 and report["glossary_overall"] <= 8.0


def test_every_explanation_and_glossary_message_has_a_chinese_translation() -> None:
    mine = ("explanations.py", "glossary.py", "templates/_nodule_explanation.html")
    messages = [m for m in read_catalog("zh")
                if m.id and any(path in mine for path, _ in m.locations)]
    assert len(messages) > 90
    assert [m.id for m in messages if not m.string or m.fuzzy] == []
    zh = translations("zh")
    assert all(zh.gettext(t.definition) != t.definition for t in TERMS)


# --- the glossary ---------------------------------------------------------------------------

def test_highlight_escapes_the_text_and_marks_terms() -> None:
    html = highlight(EN, 'A <script>alert("x")</script> ground-glass and a nodule', id_prefix="t")
    assert isinstance(html, Markup)
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert ('<button type="button" class="term-word" aria-describedby="t-1">ground-glass'
            '</button><span class="term-tip" role="tooltip" id="t-1">A hazy area') in html
    assert 'data-term="nodule"' in html


def test_the_longest_word_wins_and_english_ignores_case() -> None:
    html = highlight(EN, "Part-solid, non-solid and SOLID. Right upper lobe. PET-CT. "
                         "Solid nodule", id_prefix="t")
    keys = re.findall(r'data-term="([^"]+)"', html)
    assert keys == ["part-solid", "ground-glass", "solid", "lobe", "pet-ct"]
    assert ">Part-solid</button>" in html and ">SOLID</button>" in html
    assert ">Right upper lobe</button>" in html


def test_words_inside_other_words_are_not_marked() -> None:
    assert "term" not in highlight(EN, "consolidation, semi-solid, CTA, mmHg, volumes")


def test_only_the_first_occurrence_is_marked_and_ids_are_unique() -> None:
    html = highlight(EN, "nodule, nodule, CT and CT")
    assert html.count('class="term"') == 2
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) == 2
    assert highlight(EN, "CT") != highlight(EN, "CT")  # default ids differ between calls


def test_markup_is_marked_outside_tags_links_and_marked_terms_only() -> None:
    once = highlight(EN, "solid, nodule", id_prefix="a")
    twice = highlight(EN, Markup('<a href="/x">nodule</a> ') + once + Markup(" nodule"),
                      id_prefix="b")
    assert twice.count('class="term"') == 3  # the two marked terms as they were, one new
    assert '<a href="/x">nodule</a>' in twice and 'id="b-1"' in twice
    assert twice.index('id="b-1"') > twice.index('id="a-2"')


def test_chinese_words_are_marked_with_chinese_definitions() -> None:
    html = highlight(ZH, "右肺上叶见磨玻璃结节，约6毫米，建议复查CT。", id_prefix="z")
    keys = re.findall(r'data-term="([^"]+)"', html)
    assert keys == ["lobe", "ground-glass", "mm", "follow-up-ct"]
    assert "像磨砂玻璃" in html and "<" + "script" not in html


def test_glossary_entries_cover_the_issue_words_in_both_languages() -> None:
    wanted = {"nodule", "ground-glass", "solid", "part-solid", "lung-rads", "fleischner",
              "follow-up-ct", "calcified", "mm", "volume", "doubling-time", "ct", "lobe"}
    for loc in (EN, ZH):
        found = {e.key: e for e in entries(loc)}
        assert wanted <= set(found) and all(e.title and e.definition for e in found.values())
    assert {e.key: e.title for e in entries(ZH)}["part-solid"] == "部分实性"


def test_bad_id_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="id_prefix"):
        highlight(EN, "CT", id_prefix='x" onclick="')


# --- the partial ------------------------------------------------------------------------------

def render_partial(loc: Localizer, explanation: Explanation, **extra: object) -> str:
    template = environment(loc.language).get_template("_nodule_explanation.html")
    return template.render(explanation=explanation, loc=loc, highlight=highlight, **extra)


@pytest.mark.parametrize("loc", [EN, ZH])
def test_the_partial_renders_headings_terms_and_items(loc: Localizer) -> None:
    summary = representative_summaries()["several nodules, Lung-RADS 2S"]
    explanation = explain_study(loc, summary)
    html = render_partial(loc, explanation, explanation_id="exp-1", explanation_level=3)
    assert '<section class="panel explanation" id="exp-1" aria-labelledby="exp-1-title">' in html
    assert f'<h3 id="exp-1-title">{explanation.headline}</h3>' in html
    assert html.count("<h4>") == 5 and html.count("<li>") == 6
    described = re.findall(r'aria-describedby="([^"]+)"', html)
    ids = re.findall(r' id="([^"]+)"', html)
    assert described and len(ids) == len(set(ids)) and set(described) <= set(ids)


def test_the_partial_escapes_report_data() -> None:
    summary = one_nodule(NoduleFacts("<b>N1</b>", "solid", 6.0))
    several = StudyNoduleSummary((summary.nodules[0], NoduleFacts("N2", "solid", 5.0)),
                                 summary.assessment)
    html = render_partial(EN, explain_study(EN, several))
    assert "<b>N1</b>" not in html and "&lt;b&gt;N1&lt;/b&gt;" in html


# -- growth: the text says what the assessment counts ------------------------------------------

@pytest.mark.parametrize("now, grew", [(7.4, False), (7.5, False), (7.6, True), (7.54, False),
                                       (7.56, True)])
def test_diameter_growth_is_counted_as_lung_rads_does(now: float, grew: bool) -> None:
    """Lung-RADS v2022 growth note: mean diameter (to 0.1 mm) up by more than 1.5 mm."""
    change = NoduleChange(PRIOR, 6.0, now - 6.0, None, 400.0)
    text = explain_study(EN, one_nodule(NoduleFacts("N1", "solid", now, change=change)))
    words = text.paragraph("change").text
    assert ("has grown by" in words) == grew
    assert ("about the same size" in words) == (not grew)
    if grew:
        assert f"grown by {now - 6.0:.1f} mm" in words and "It was 6 mm then" in words


@pytest.mark.parametrize("percent, measured, grew", [
    (25.0, True, False), (26.0, True, True), (65.0, True, True), (65.0, False, False)])
def test_measured_volume_growth_over_25_percent_reads_as_grown(
        percent: float, measured: bool, grew: bool) -> None:
    """NELSON / BTS 2015: more than 25 % volume increase is significant, when software
    measured both volumes (a volume worked out from a diameter is not counted)."""
    change = NoduleChange(PRIOR, 6.0, 1.2, percent, 500.0, volume_measured=measured)
    summary = one_nodule(NoduleFacts("N1", "solid", 7.2, 190.0, change=change))
    en = explain_study(EN, summary).paragraph("change").text
    zh = explain_study(ZH, summary).paragraph("change").text
    assert ("It has grown since your scan of March 1, 2024" in en) == grew
    assert ("about the same size" in en) == (not grew)
    assert ("长大了" in zh) == grew
    if grew:
        assert "was 6 mm across then and is 7.2 mm now" in en
        assert f"about {round(percent)}%" in en and f"{round(percent)}%" in zh
        assert "6毫米" in zh and "7.2毫米" in zh


# -- guideline wording: every domain row has a message, in both registers -----------------------

def _fleischner_rules() -> list:
    from cloudfilm.domain import fleischner
    return [*fleischner.SOLID_RULES.values(), *fleischner.SUBSOLID_RULES.values(),
            fleischner.BENIGN_ONLY]


def test_every_guideline_row_has_clinician_and_patient_wording_in_chinese() -> None:
    from cloudfilm.domain import lungrads
    from cloudfilm.domain.advice import fleischner_cell
    from cloudfilm.domain.fleischner import Patient, Risk, applicability
    from cloudfilm.web.guideline_words import (
        CLINICIAN_TEXT,
        PATIENT_CATEGORY,
        PATIENT_RECOMMENDATION,
    )
    reasons = applicability(Patient(age_years=30, risk=Risk.HIGH, screening=True,
                                    known_cancer=True, immunosuppressed=True))
    managements = [*lungrads.MANAGEMENT.values(), *lungrads.INCOMPLETE_MANAGEMENT.values()]
    clinician = [*(fleischner_cell(r) for r in _fleischner_rules()),
                 *(r.text for r in _fleischner_rules()), *reasons, *(m.text for m in managements)]
    assert len(reasons) == 4 and set(clinician) <= set(CLINICIAN_TEXT)
    patient = [*(PATIENT_CATEGORY[r.row_id] for r in _fleischner_rules()),
               *(PATIENT_RECOMMENDATION[r.row_id] for r in _fleischner_rules()),
               *(PATIENT_RECOMMENDATION[f"LR22-{c.value}"] for c in lungrads.Category)]
    for message in clinician + patient:
        assert CJK.search(ZH.gettext(message)), message


@pytest.mark.parametrize("clinician", [True, False])
def test_guideline_words_on_a_chinese_page_are_chinese(clinician: bool) -> None:
    from cloudfilm.web.guideline_words import category_text, recommendation_text
    cases = [{"guideline": "fleischner-2017", "category": "Table A (solid), multiple, high risk, "
              ">8 mm", "rule_id": "F17-A-multiple-high-gt8",
              "recommendation": "CT at 3-6 months, then CT at 18-24 months."},
             {"guideline": "lung-rads-2022", "category": "4A", "rule_id": "LR22-4A-solid-G",
              "recommendation": "LDCT in 3 months; PET/CT may be considered if there is a ≥8 "
              "mm solid nodule or solid component."},
             {"guideline": "fleischner-2017", "category": "not applicable", "rule_id": "F17-scope",
              "recommendation": "age under 35: the guideline does not apply; manage individually"
              "; lung cancer screening: use Lung-RADS instead"}]
    for case in cases:
        for text in (category_text(ZH, case, clinician), recommendation_text(ZH, case, clinician)):
            leftovers = [w for w in LATIN_WORD.findall(text)
                         if not re.fullmatch(r"CT|PET|LDCT|Lung-RADS|mm|4A|A|B|N\d+", w)]
            assert CJK.search(text) and leftovers == [], (case, text)
        assert category_text(EN, case, True) == (
            case["category"] if case["guideline"] == "fleischner-2017"
            else f"Lung-RADS category {case['category']}")
    assert "high risk" not in category_text(EN, cases[0], False)  # patients: no risk column
