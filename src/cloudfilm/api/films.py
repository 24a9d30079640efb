"""JSON API for hospital-issued cloud films: ``/api/films`` (issue 12, part 1).

``POST /api/films`` ``{"study_uid", "valid_until"?, "pin"?}`` answers 201 with the film's
``url`` (``/s/<secret>``: the share-link route), ``qr_png_url``, ``slip_pdf_url`` and
``valid_until`` (null: no end date). ``GET /api/films?study_uid=`` lists a study's films,
``DELETE /api/films/{id}`` revokes one at once. Operators and admins only; the QR code and
the slip are for the desk too (the patient takes the printed slip home).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, require_user
from cloudfilm.api.links import HEADERS, _cross_site
from cloudfilm.api.people import OPERATORS, archive_of, call, int_param, json_body, respond
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Principal
from cloudfilm.services.access import share_card
from cloudfilm.services.access.films import FilmInfo, FilmService, film_json, parse_film_request
from cloudfilm.services.access.people import TooManyAttempts
from cloudfilm.services.access.policy import utcnow
from cloudfilm.web.films import CODE_LOCKED, CODE_WRONG, film_slip_pdf
from cloudfilm.web.i18n import localizer
from cloudfilm.web.templating import render

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def issue_film(films: FilmService, who: Principal, body: dict[str, Any]) -> FilmInfo:
    uid, until, pin = parse_film_request(body, utcnow().date())
    return films.issue(who, uid, until, pin)


async def create_film(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    body = await json_body(request)
    info = await call(issue_film, FilmService(archive_of(request)), who, body)
    return respond(film_json(site_base(request), info), 201)


async def list_films(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    uid = request.query_params.get("study_uid", "").strip()
    if not uid:
        raise HTTPException(400, "give the study: ?study_uid=STUDY_INSTANCE_UID")
    films = await call(FilmService(archive_of(request)).list, who, uid)
    base = site_base(request)
    return respond([film_json(base, info) for info in films])


async def revoke_film(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    await call(FilmService(archive_of(request)).revoke, who,
               int_param(request.path_params["id"], "film id"))
    return Response(status_code=204)


async def _film_url(request: Request) -> tuple[FilmService, Any, Any, str]:
    who = require_user(request, OPERATORS)
    films = FilmService(archive_of(request))
    film, grant = await call(films.get, who, int_param(request.path_params["id"], "film id"))
    return films, film, grant, f"{site_base(request)}{films.path(grant)}"


async def qr_png(request: Request) -> Response:
    _, _, _, url = await _film_url(request)
    body = await run_in_threadpool(share_card.qr_png, url)
    return Response(body, media_type="image/png", headers=PRIVATE)


async def slip_pdf(request: Request) -> Response:
    """The printable slip, Chinese first and English below."""
    films, film, grant, _ = await _film_url(request)
    body = await call(film_slip_pdf, films, film, grant, site_base(request))
    headers = PRIVATE | {"Content-Disposition": f'inline; filename="film-{film.id}.pdf"'}
    return Response(body, media_type="application/pdf", headers=headers)


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
    if _cross_site(request):
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


page_routes = [
    Route("/code", code_form, methods=["GET"]),
    Route("/code", submit_code, methods=["POST"]),
]

routes = [
    Route("/films", create_film, methods=["POST"]),
    Route("/films", list_films, methods=["GET"]),
    Route("/films/{id}", revoke_film, methods=["DELETE"]),
    Route("/films/{id}/qr.png", qr_png, methods=["GET"]),
    Route("/films/{id}/slip.pdf", slip_pdf, methods=["GET"]),
]
