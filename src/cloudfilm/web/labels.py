"""Plain-language words for DICOM codes, roles and statuses (both languages); the audit
actions' words are the access log's (api/audit.py).

Why: patients said jargon made them anxious; "CT scan" and a one-line explanation read
better than "CT" or "Modality".
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudfilm.i18n import N_, Localizer

MODALITIES = {
    "CT": N_("CT scan"), "MR": N_("MRI scan"), "CR": N_("X-ray"), "DX": N_("X-ray"),
    "US": N_("Ultrasound"), "PT": N_("PET scan"), "NM": N_("Nuclear medicine scan"),
    "MG": N_("Mammogram"), "XA": N_("Angiogram"), "RF": N_("X-ray video"),
    "SR": N_("Report"), "DOC": N_("Document"), "OT": N_("Other pictures"),
}

GLOSSARY = {
    "CT": N_("A CT scan takes many X-ray pictures and builds thin slices of the body from "
             "them, like the pages of a book."),
    "MR": N_("An MRI scan uses a strong magnet and radio waves instead of X-rays."),
    "CR": N_("An X-ray is a single picture made with a small dose of radiation."),
    "DX": N_("An X-ray is a single picture made with a small dose of radiation."),
    "US": N_("Ultrasound uses sound waves to make pictures; it uses no radiation."),
    "PT": N_("A PET scan shows how active the cells of the body are."),
    "MG": N_("A mammogram is an X-ray picture of the breast."),
}

EXPLAINED = (
    (N_("Series"), N_("One set of pictures taken in one go, for example one pass of the "
                      "scanner.")),
    (N_("Prior"), N_("An earlier scan of the same kind. Comparing them shows whether "
                     "something has changed.")),
    (N_("Report"), N_("What the radiologist (the doctor who reads the images) wrote about "
                      "them.")),
)

ROLES = {
    "patient": N_("patient"), "caregiver": N_("family helper"), "physician": N_("doctor"),
    "operator": N_("hospital staff"), "admin": N_("administrator"), "share": N_("share link"),
}

SHARE_STATUS = {
    "active": N_("Active"), "expired": N_("Expired"), "revoked": N_("Stopped"),
    "used-up": N_("Used up"),
}

CAREGIVER_STATUS = {"invited": N_("Invitation sent, not yet accepted"), "active": N_("Active")}

DOCUMENT_KINDS = {"report": N_("Report"), "pdf": N_("PDF document"),
                  "secondary-capture": N_("Photo or picture")}


def modality(loc: Localizer, code: str) -> str:
    return loc.gettext(MODALITIES[code]) if code in MODALITIES else code


def modalities(loc: Localizer, codes: Sequence[str]) -> str:
    shown = [c for c in codes if c not in ("SR", "DOC", "OT")] or list(codes)
    return ", ".join(dict.fromkeys(modality(loc, c) for c in shown))


def glossary(loc: Localizer, codes: Sequence[str]) -> list[tuple[str, str]]:
    """(term, explanation) for the kinds of scan shown, then the common words."""
    found = [(modality(loc, c), loc.gettext(GLOSSARY[c])) for c in dict.fromkeys(codes)
             if c in GLOSSARY]
    return found + [(loc.gettext(term), loc.gettext(text)) for term, text in EXPLAINED]


def translate(loc: Localizer, table: dict[str, str], key: str) -> str:
    return loc.gettext(table[key]) if key in table else key
