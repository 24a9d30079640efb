"""The share card's words (services/access/share_card.py) from the portal's catalogue: the card
is printed once and read by whoever holds it, so it carries Chinese and English."""

from __future__ import annotations

from datetime import date

from cloudfilm.services.access.share_card import CardWords
from cloudfilm.web.i18n import N_, Localizer

CARD_LANGUAGES = ("zh", "en")  # Chinese first
TITLE = N_("Medical images shared with you")
PATIENT = N_("Patient")
MORE = N_("+ %(num)s more")
NO_STUDIES = N_("(no scans yet)")
VALID_UNTIL = N_("This link works until %(date)s.")
NO_END = N_("This link has no end date: it works as long as the hospital keeps the images.")
SCAN = N_("Scan the code with a phone camera, or type the address above.")
PIN_NOTE = N_("This link is protected by a PIN: ask the patient for it (it is not printed "
              "here). After 5 wrong PINs the link locks for 15 minutes.")


def card_words(valid_until: date | None) -> list[CardWords]:
    """The card's words in each of CARD_LANGUAGES, validity filled in."""
    found = []
    for language in CARD_LANGUAGES:
        loc = Localizer(language)
        validity = (loc.gettext(VALID_UNTIL, date=valid_until.isoformat()) if valid_until
                    else loc.gettext(NO_END))
        found.append(CardWords(loc.gettext(TITLE), loc.gettext(PATIENT),
                               loc.gettext(MORE),
                               loc.gettext(NO_STUDIES), validity, loc.gettext(SCAN),
                               loc.gettext(PIN_NOTE)))
    return found
