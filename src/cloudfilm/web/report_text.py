"""Reports as a patient reads them: headings and sentences, never an SR content tree.

Why: a DICOM SR (PS3.3 C.17.3) is a tree of coded items meant for software. Shown as is,
a patient reads "Tracking Unique Identifier: 2.25…" and "8.39687040043431 mm". A report
written by a radiologist (TID 2000 Basic Diagnostic Imaging Report) keeps its words in
CONTAINER headings ("Findings", "Impression") and TEXT items, so those are what a patient,
a caregiver or a link visitor gets. cloudfilm's own nodule measurement SR (TID 1500,
services/nodules/reports.py) is shown to them only through the Nodules panel. Clinicians
still get the whole tree (templates/sr.html).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudfilm.domain.access import Principal
from cloudfilm.i18n import N_, Localizer
from cloudfilm.services.access.study_detail import DocumentInfo, SrItem
from cloudfilm.services.nodules.reports import report_series_uid
from cloudfilm.web.nodule_views import is_clinician

# Titles that are the meaning of a standard document code (LOINC 18748-4, DCM 126000 ...)
# rather than words a hospital wrote: shown in the reader's language.
CODED_TITLES = {
    "diagnostic imaging report": N_("Diagnostic imaging report"),
    "imaging report": N_("Imaging report"),
    "radiology report": N_("Radiology report"),
}


@dataclass
class ReportSection:
    """One heading of a report (may be empty for text before any heading) and its text."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)


def is_nodule_report(doc: DocumentInfo, study_uid: str) -> bool:
    """cloudfilm's own TID 1500 nodule SR: it lives in the series derived from the study."""
    return doc.kind == "report" and doc.series_uid == report_series_uid(study_uid)


# Concepts that describe the document or its software, not the patient (PS3.16 TID 1204,
# TID 1002, TID 4019, TID 1410): left out of the readable text.
MACHINE_CONCEPTS = frozenset({
    "Language of Content Item and Descendants", "Observer Type", "Device Observer UID",
    "Tracking Identifier", "Tracking Unique Identifier", "Algorithm Name", "Algorithm Version",
    "Measurement Method", "Derivation", "Procedure reported",
})


def readable_report(items: Sequence[SrItem]) -> list[ReportSection]:
    """Headings from CONTAINER items; paragraphs from TEXT values, coded values ("Impression:
    Benign appearance") and numbers rounded to one decimal ("Diameter: 6 mm"). UIDs, dates,
    image references and the document's machine concepts are left out."""
    sections = [ReportSection("")]
    _walk(items, sections)
    return [s for s in sections if s.paragraphs]


def _walk(items: Sequence[SrItem], sections: list[ReportSection]) -> None:
    for item in items:
        if item.label in MACHINE_CONCEPTS:
            continue
        if item.kind == "container":
            sections.append(ReportSection(item.label))
            _walk(item.children, sections)
            sections.append(ReportSection(""))  # what follows is outside this heading
            continue
        if paragraph := _paragraph(item):
            sections[-1].paragraphs.append(paragraph)
        _walk(item.children, sections)


def _paragraph(item: SrItem) -> str:
    value = item.value.strip()
    if not value or item.kind not in ("text", "code", "num"):
        return ""
    if item.kind == "num":
        value = _rounded(value)
    if item.kind == "text":
        return value
    return f"{item.label}: {value}" if item.label else value


def _rounded(value: str) -> str:
    """"8.39687040043431 mm" → "8.4 mm": a measurement is not more exact than a tenth."""
    number, _, unit = value.partition(" ")
    try:
        shown = f"{round(float(number), 1):g}"
    except ValueError:
        return value
    return f"{shown} {unit}".strip()


LANGUAGE_ITEM = "Language of Content Item and Descendants"  # TID 1204, DCM 121049


def _language_rank(doc: DocumentInfo, reader: str) -> int:
    """0: written in the reader's language, 1: not said, 2: another language. A hospital
    that sends its report in Chinese and in English shows each reader theirs first."""
    meaning = next((i.value for i in doc.sr if i.label == LANGUAGE_ITEM), "").strip().lower()
    if not meaning:
        return 1
    ours = {"zh": ("chinese", "中文", "zh"), "en": ("english", "en")}.get(reader, (reader,))
    return 0 if meaning.startswith(ours) else 2


def report_entries(loc: Localizer, who: Principal, study_uid: str,
                   documents: Sequence[DocumentInfo]) -> list[dict[str, Any]]:
    """The reports of one study as the page shows them to ``who``: clinicians see every
    report with its full tree; everyone else the readable text, without the nodule SR.
    ``title`` is translated when it is a coded title, else None (the document's own)."""
    clinician = is_clinician(who)
    entries = []
    for doc in sorted(documents, key=lambda d: _language_rank(d, loc.language)):
        if doc.kind not in ("report", "pdf"):
            continue
        if not clinician and (is_nodule_report(doc, study_uid) or doc.ai_result):
            continue  # patients see findings only once a physician accepted them
        coded = CODED_TITLES.get(doc.title.strip().lower())
        entries.append({"doc": doc, "full_sr": clinician,
                        "title": loc.gettext(coded) if coded else None,
                        "text": [] if clinician else readable_report(doc.sr)})
    return entries
