"""The hospital desk's cloud-film page, ``/admin/films``, the slip, and ``/code`` (issue 12).

An operator finds a study by PatientID, accession number or name, presses "Issue cloud
film" and gets the link, its QR code and the printable slip at once; earlier films of the
study are listed with a button to withdraw each. The slip's words live here, in the
catalogue, so the PDF (services/access/film_slip.py, served at
``/api/films/{id}/slip.pdf``) is Chinese first like every patient page. A patient without
a camera types the slip's code at ``/code``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, principal, require_user
from cloudfilm.api.films import PRIVATE
from cloudfilm.api.people import OPERATORS, call, int_param
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Principal, Role
from cloudfilm.i18n import N_, Localizer, localizer
from cloudfilm.services.access.film_slip import SlipWords, slip_pdf
from cloudfilm.services.access.films import FilmInfo, FilmService, SlipFacts
from cloudfilm.services.access.people import ServiceError, TooManyAttempts
from cloudfilm.web.pages import archive_of, is_user, not_found
from cloudfilm.web.share_links import HEADERS, cross_site
from cloudfilm.web.templating import render

CODE_WRONG = N_("This code does not open a cloud film. Check each letter and try again, or "
                "scan the QR code.")
CODE_LOCKED = N_("Too many wrong codes from this network. Please wait 15 minutes, or scan "
                 "the QR code.")
STEPS = (N_("Scan the code with your phone camera."),
         N_("Tap the picture to see your images."),
         N_("Keep it in your folder, so it stays with you."))


def slip_words(language: str, facts: SlipFacts, code_url: str) -> SlipWords:
    """The slip's words in ``language`` from the catalogue."""
    loc = Localizer(language)
    validity = (loc.gettext("This link works until %(date)s.", date=loc.date(facts.valid_until))
                if facts.valid_until else
                loc.gettext("This link has no end date: it works as long as the hospital "
                            "keeps the images."))
    return SlipWords(
        title=loc.gettext("Your cloud film"), hospital=loc.gettext("Hospital"),
        date=loc.gettext("Date"), exam=loc.gettext("Exam"),
        steps=(loc.gettext(STEPS[0]), loc.gettext(STEPS[1]), loc.gettext(STEPS[2])),
        validity=validity,
        pin_note=loc.gettext("The hospital gave you a PIN for this link; it is not printed "
                             "here."),
        code_hint=loc.gettext("No camera? Open %(address)s and type this code:",
                              address=code_url))


def film_slip_pdf(info: FilmInfo, facts: SlipFacts, base: str) -> bytes:
    """The printable slip of one film (`FilmService.slip`), Chinese first and English below;
    ``base`` is the server's public address (the QR code and the typed-code address start
    with it)."""
    code_url = f"{base}/code"
    return slip_pdf(facts, f"{base}{info.path}", info.code, slip_words("zh", facts, code_url),
                    slip_words("en", facts, code_url))


async def slip(request: Request) -> Response:
    """``GET /api/films/{id}/slip.pdf``: the printable slip, for operators and admins."""
    who = require_user(request, OPERATORS)
    info, facts = await call(FilmService(archive_of(request)).slip, who,
                             int_param(request.path_params["id"], "film id"))
    body = await run_in_threadpool(film_slip_pdf, info, facts, site_base(request))
    headers = PRIVATE | {"Content-Disposition": f'inline; filename="film-{info.id}.pdf"'}
    return Response(body, media_type="application/pdf", headers=headers)


def _desk(request: Request) -> Principal | None:
    """The operator or admin at the desk; anyone else gets "not found"."""
    who = principal(request)
    return who if is_user(who, Role.OPERATOR, Role.ADMIN) else None


def _film_view(loc: Localizer, info: FilmInfo, base: str) -> dict[str, Any]:
    status = {"active": loc.gettext("active"), "expired": loc.gettext("expired"),
              "revoked": loc.gettext("withdrawn")}.get(info.status, info.status)
    return {"id": info.id, "url": f"{base}{info.path}", "status": status,
            "active": info.status == "active", "opens": info.open_count, "code": info.code,
            "until": loc.date(info.valid_until) if info.valid_until
            else loc.gettext("No end date"),
            "qr": f"/api/films/{info.id}/qr.png", "slip": f"/api/films/{info.id}/slip.pdf"}


async def films_page(request: Request) -> Response:
    """GET /admin/films?q=…[&study=UID]: search, and a study's films."""
    who = _desk(request)
    if who is None:
        return not_found(request)
    loc, films = localizer(request), FilmService(request.app.state.archive)
    query, study = request.query_params.get("q", ""), request.query_params.get("study", "")
    hits = await run_in_threadpool(films.find_studies, who, query) if query else []
    issued = await run_in_threadpool(films.list, who, study) if study else []
    base = site_base(request)
    return render(request, "admin_films.html", {
        "title": loc.gettext("Cloud films"), "q": query, "study": study,
        "searched": bool(query),
        "hits": [{"uid": h.study_uid, "date": loc.date(h.date) if h.date else "",
                  "description": h.description, "accession": h.accession,
                  "patient_id": h.patient_id, "issuer": h.issuer, "name": h.name,
                  "hospital": h.hospital} for h in hits],
        "films": [_film_view(loc, f, base) for f in issued],
        "new_film": request.query_params.get("issued", ""),
    }, active="admin")


async def issue_from_page(request: Request) -> Response:
    """POST /admin/films (study_uid): issue, then show the study's films with the new one."""
    who = _desk(request)
    if who is None:
        return not_found(request)
    form = await request.form()
    uid, query = str(form.get("study_uid", "")).strip(), str(form.get("q", ""))
    try:
        info = await run_in_threadpool(FilmService(request.app.state.archive).issue, who, uid)
    except ServiceError as exc:
        loc = localizer(request)
        return render(request, "message.html", {
            "title": loc.gettext("Cloud films"), "heading": loc.gettext("Cloud films"),
            "detail": str(exc), "link": ("/admin/films", loc.gettext("Back"))},
            status=exc.status)
    params = urlencode({"q": query, "study": uid, "issued": info.id})
    return RedirectResponse(f"/admin/films?{params}", status_code=303)


async def revoke_from_page(request: Request) -> Response:
    """POST /admin/films/{id}/revoke: the link stops at once."""
    who = _desk(request)
    if who is None:
        return not_found(request)
    form = await request.form()
    films = FilmService(request.app.state.archive)
    try:
        film_id = int(request.path_params["id"])
        await run_in_threadpool(films.revoke, who, film_id)
    except (ValueError, ServiceError):
        return not_found(request)
    params = urlencode({"q": str(form.get("q", "")), "study": str(form.get("study", ""))})
    return RedirectResponse(f"/admin/films?{params}", status_code=303)


# -- typing the slip's code: /code ----------------------------------------------------------


def code_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    """The form for the code on the slip (works without JavaScript, no account needed)."""
    loc = localizer(request)
    return render(request, "film_code.html", {"title": loc.gettext("Open your cloud film"),
                                              "message": message},
                  status=status, anonymous=True, headers=HEADERS)


async def code_form(request: Request) -> Response:
    return code_page(request)


async def submit_code(request: Request) -> Response:
    """POST /code with ``code``: the film's link (which then opens as every link does), or
    the form again; wrong codes count against the address (10 per 15 minutes)."""
    loc = localizer(request)
    if cross_site(request):
        return code_page(request, loc.gettext("Please open the link again."), 403)
    typed = str((await request.form()).get("code", ""))[:40]
    films = FilmService(archive_of(request))
    try:
        path = await run_in_threadpool(films.open_code, typed, client_ip(request))
    except TooManyAttempts:
        response = code_page(request, loc.gettext(CODE_LOCKED), 429)
        response.headers["Retry-After"] = str(15 * 60)
        return response
    if path is None:
        return code_page(request, loc.gettext(CODE_WRONG), 404)
    return RedirectResponse(path, status_code=303, headers=HEADERS)


routes = [
    Route("/code", code_form, methods=["GET"]),
    Route("/code", submit_code, methods=["POST"]),
    Route("/admin/films", films_page, methods=["GET"]),
    Route("/admin/films", issue_from_page, methods=["POST"]),
    Route("/admin/films/{id}/revoke", revoke_from_page, methods=["POST"]),
]

# Mounted under /api by cloudfilm/app.py, next to api/films.py's routes.
api_routes = [Route("/films/{id}/slip.pdf", slip, methods=["GET"])]
