"""The printable share card, ``/api/shares/{id}/card.pdf``, in the portal's words.

The card (services/access/share_card.py) is printed once and read by whoever holds it, so
it carries Chinese and English from the catalogue.
"""

from __future__ import annotations

from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.people import call
from cloudfilm.api.shares import PRIVATE, owned_link
from cloudfilm.i18n import N_, Localizer
from cloudfilm.services.access import share_card
from cloudfilm.services.access.share_card import CardWords

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


async def card_pdf(request: Request) -> Response:
    """The printable card: masked name, study dates and hospitals, QR code, URL, PIN notes."""
    who, sharing, share, url = await owned_link(request)
    facts = await call(sharing.card_facts_of, who, share.id)
    body = await run_in_threadpool(share_card.card_pdf, facts, url, card_words(facts.valid_until))
    headers = PRIVATE | {"Content-Disposition": f'inline; filename="share-{share.id}.pdf"'}
    return Response(body, media_type="application/pdf", headers=headers)


# Mounted under /api by cloudfilm/app.py, next to api/shares.py's routes.
api_routes = [Route("/shares/{id}/card.pdf", card_pdf, methods=["GET"])]
